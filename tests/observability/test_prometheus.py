"""deploy/prometheus and deploy/grafana against a real Prometheus scraping a real server.

A `carebench serve` (shedder: it has a priority queue and a learned limit; a circuit breaker
and a --faults schedule, so their families exist) runs under a little load while Prometheus,
started from the shipped prometheus.yml with only the target and the intervals changed,
scrapes it every second and evaluates the shipped rules. Then every PromQL expression of the
rules and of the dashboard (its `$pattern` and `$__rate_interval` substituted) must return
data through Prometheus' HTTP API: a panel or a rule querying a metric carebench does not
export returns nothing and fails. promtool checks the shipped files too.

Prometheus and promtool come from Debian's `prometheus` package, which .ci/run installs: in
CI (CI set) their absence fails the test; elsewhere the tests skip, saying how to install it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
import pytest

from carebench.models import PRIORITIES
from carebench.server.process import ServerProcess
from carebench.server.startup import free_port

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "carebench.json"
PACKAGE = "prometheus"  # Debian's package: both prometheus and promtool
PATTERN = "shedder"
SERVER_ARGS = [
    "--pattern", PATTERN, "--circuit-breaker", "--faults", "at 600s outage for 1s", "--quiet",
]  # fmt: skip
#: Client threads sending lookups back to back while Prometheus scrapes.
LOAD_CLIENTS = 6
#: `$__rate_interval` (Grafana's window for rate()): one holding every scrape of the test.
RATE_INTERVAL = "1m"
#: Load, scrapes and rule evaluations until every expression has data: ~4 s when quiet.
DATA_TIMEOUT = 20.0


def binary(name: str) -> str:
    """The path of prometheus or promtool; fails in CI, skips elsewhere, when absent."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} not found: install Debian's package with `apt-get install {PACKAGE}`"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run installs it as root)")
        pytest.skip(f"{message}; skipped only outside CI (CI unset), where it must run")
    return found


def test_promtool_accepts_the_shipped_config_and_rules(tmp_path: Path) -> None:
    """`promtool check config` (which checks the rule files it names) and `check rules` pass
    on the shipped files, and fail on a rule whose expression does not parse."""
    promtool = binary("promtool")
    config = subprocess.run(
        [promtool, "check", "config", str(SCRAPE_CONFIG)], capture_output=True, text=True
    )
    rules = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("> 0.25", "> > 0.25", 1))
    refused = subprocess.run(
        [promtool, "check", "rules", str(broken)], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS" in rules.stdout and "rules found" in rules.stdout
    assert refused.returncode != 0


@dataclass(slots=True)
class Stack:
    """The server, the Prometheus scraping it, and a client of Prometheus' HTTP API."""

    server_url: str
    api: httpx.Client

    def query(self, expr: str) -> list[Any]:
        """The instant query's result; [] when it has no data. An invalid query fails."""
        answer = self.api.get("/api/v1/query", params={"query": expr}).json()
        assert answer["status"] == "success", (expr, answer)
        result: list[Any] = answer["data"]["result"]
        return result


def send_load(url: str, stop: threading.Event) -> None:
    """Patient lookups back to back across the priority classes, until `stop`."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for n, priority in enumerate(cycle(PRIORITIES)):
            if stop.is_set():
                return
            headers = {"X-Request-Priority": priority}
            params = {"id": f"P{n % 5000:05d}"}
            try:
                response = client.get("/api/v1/patients", params=params, headers=headers)
            except httpx.TransportError:
                stop.wait(0.1)
                continue
            if response.status_code in (429, 503):
                stop.wait(0.1)  # refused: back off instead of spinning on fast refusals


def scrape_config_for(target: str) -> str:
    """The shipped prometheus.yml aimed at `target`, scraping and evaluating every second."""
    text = SCRAPE_CONFIG.read_text()
    for old, new in (
        ('"127.0.0.1:8080"', f'"{target}"'),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("evaluation_interval: 5s", "evaluation_interval: 1s"),
    ):
        assert text.count(old) == 1, f"{SCRAPE_CONFIG} no longer has {old!r} once"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    stop = threading.Event()
    with ServerProcess(SERVER_ARGS) as server:
        loaders = [
            threading.Thread(target=send_load, args=(server.url, stop), daemon=True)
            for _ in range(LOAD_CLIENTS)
        ]
        for loader in loaders:
            loader.start()
        try:
            with scraping(prometheus, workdir, server.url) as api:
                yield Stack(server.url, api)
        finally:
            stop.set()
            for loader in loaders:
                loader.join(timeout=15)


@contextmanager
def scraping(prometheus: str, workdir: Path, server_url: str) -> Iterator[httpx.Client]:
    """A Prometheus on a free port, from the shipped config aimed at `server_url`; a client
    of its HTTP API once it is ready."""
    (workdir / "prometheus.yml").write_text(scrape_config_for(server_url.split("//")[1]))
    shutil.copy(RULES, workdir / "rules.yml")  # rule_files are relative to the config
    port = free_port("127.0.0.1")
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as api:
                wait_ready(api, process, log_path)
                yield api
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(api: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /-/ready until Prometheus serves queries (it replays an empty TSDB first)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited {process.returncode}:\n{log.read_text()}")
        try:
            if api.get("/-/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling readiness
    raise AssertionError(f"prometheus not ready after 20 s:\n{log.read_text()}")


def without_data(stack: Stack, exprs: list[str]) -> list[str]:
    """The expressions still without data once DATA_TIMEOUT has passed (polled meanwhile:
    rates need two scrapes, recording rules an evaluation after them)."""
    deadline = time.monotonic() + DATA_TIMEOUT
    missing = list(exprs)
    while missing:
        missing = [expr for expr in missing if not stack.query(expr)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.25)  # the next scrape or evaluation, 1 s apart
    return missing


def comparisons_as_bool(expr: str) -> str:
    """`expr` with each comparison outside label matchers made a `bool` one, so an alert's
    condition returns its 0/1 series whether or not it fires (empty only without data)."""
    out: list[str] = []
    depth, quote, i = 0, "", 0
    while i < len(expr):
        char = expr[i]
        if quote:
            quote = "" if char == quote and expr[i - 1] != "\\" else quote
        elif char in "\"'`":
            quote = char
        elif char in "{}":
            depth += 1 if char == "{" else -1
        elif depth == 0:
            match = re.match(r"(==|!=|>=|<=|>|<)(\s*bool\b)?", expr[i:])
            if match:
                out.append(match.group(0) if match.group(2) else f"{match.group(1)} bool")
                i += len(match.group(0))
                continue
        out.append(char)
        i += 1
    return "".join(out)


def dashboard_queries() -> dict[str, str]:
    """Panel title + refId -> expression, with the template variables substituted."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            expr = expr.replace("${pattern}", PATTERN).replace("$pattern", PATTERN)
            assert "$" not in expr, f"unsubstituted variable in {panel['title']}: {expr}"
            queries[f"{panel['title']} {target['refId']}"] = expr
    return queries


def test_prometheus_scrapes_the_shipped_path(stack: Stack) -> None:
    """The shipped scrape config reaches /metrics in the Prometheus format, and the target
    is up."""
    assert not without_data(stack, ['up{job="carebench"} == 1'])
    targets = stack.api.get("/api/v1/targets").json()["data"]["activeTargets"]
    assert [(t["scrapeUrl"], t["health"]) for t in targets] == [
        (f"{stack.server_url}/metrics?format=prometheus", "up")
    ]


def test_every_rule_is_loaded_healthy_and_returns_data(stack: Stack) -> None:
    """Prometheus loads every rule of rules.yml, evaluates each without error, and every
    recording rule and alert condition (comparisons made bool) returns data."""
    rule_lines = re.findall(r"^\s*- (record|alert): (\S+)", RULES.read_text(), re.MULTILINE)
    missing = without_data(stack, ["carebench:success_latency_seconds:p99_5m"])
    groups = stack.api.get("/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert sorted(rule["name"] for rule in rules) == sorted(name for _, name in rule_lines)
    assert {alert for kind, alert in rule_lines if kind == "alert"} >= {
        "CarebenchSuccessLatencyOverSLO",
        "CarebenchHighRejectionRate",
        "CarebenchCircuitOpen",
        "CarebenchBackendDown",
        "CarebenchFaultInjected",
    }
    exprs = {rule["name"]: comparisons_as_bool(rule["query"]) for rule in rules}
    missing += without_data(stack, list(exprs.values()))
    assert not missing, f"no data for: {missing}"
    groups = stack.api.get("/api/v1/rules").json()["data"]["groups"]
    unhealthy = [
        (rule["name"], rule.get("lastError"))
        for group in groups
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]
    assert not unhealthy


def test_every_dashboard_expression_returns_data(stack: Stack) -> None:
    """Each panel's every query returns data for the server's pattern, and the `pattern`
    variable's label_values query finds that pattern."""
    queries = dashboard_queries()
    missing = without_data(stack, list(queries.values()))
    assert not [title for title, expr in queries.items() if expr in missing], missing
    patterns = stack.api.get(
        "/api/v1/label/pattern/values", params={"match[]": "carebench_requests_total"}
    ).json()["data"]
    assert patterns == [PATTERN]


def test_a_metric_carebench_does_not_export_is_caught(stack: Stack) -> None:
    """The check above can fail: a panel renamed to a metric carebench does not export, and
    an alert on one, return no data."""
    renamed = next(iter(dashboard_queries().values())).replace(
        "carebench_requests_total", "carebench_requests_count"
    )
    bogus_alert = comparisons_as_bool('carebench_queue_full{pattern="shedder"} == 1')
    assert stack.query("carebench_requests_total")
    assert not stack.query(renamed)
    assert not stack.query(bogus_alert)


def test_comparisons_as_bool_leaves_label_matchers() -> None:
    """Comparisons become bool ones; != and =~ inside {} and quoted strings are left alone."""
    expr = 'a{outcome!="invalid",x=~"<b>"} / b > 0.25 and c == bool 1 or d >= 2'
    assert comparisons_as_bool(expr) == (
        'a{outcome!="invalid",x=~"<b>"} / b > bool 0.25 and c == bool 1 or d >= bool 2'
    )
