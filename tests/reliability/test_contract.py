"""Contract fuzzing: the server against its own OpenAPI document (GET /openapi.json).

- The document is valid OpenAPI 3.1 and describes exactly the routes the app serves.
- Every status the patient lookup documents is provoked for every pattern, and each response
  conforms (tests/contract.py: status, content type, headers, body schema).
- schemathesis fuzzes a live `carebench serve --error-rate 0` over real HTTP on 127.0.0.1:
  its coverage phase (boundary and invalid values, missing parameters, every other method),
  then generated requests, each response run through all its checks (documented status,
  content type, required headers, body schema, no 5xx, invalid input rejected, valid input
  accepted, 405 with Allow for undocumented methods).

schemathesis runs through its engine (what its CLI runs), not its pytest plugin: the plugin's
fixture loader sets `Function._nodeid`, which pytest 9 no longer has.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.engine import events, from_schema

from carebench.backends.simulator import SimulatorConfig
from carebench.errors import PatientNotFound
from carebench.faults.config import FaultConfig
from carebench.loop_clock import ManualLoopClock
from carebench.models import Patient
from carebench.patterns.base import PatternConfig, create_pattern, pattern_names
from carebench.resilience.config import ResilienceConfig
from carebench.server import openapi
from carebench.server.app import PATIENTS_PATH, CareBenchApp
from carebench.server.process import ServerProcess
from carebench.server.setup import ServerSetup
from tests.contract import ConformanceHook, document_for
from tests.fakes import GatedBackend
from tests.reliability.conftest import Figures, long_runs

PART = "contract"

#: Fuzzed live: the default pattern, and the one with its own (pooled) response encoder.
FUZZED_PATTERNS = pattern_names() if long_runs() else ["workerpool", "optimized"]
#: Generated requests per operation in the fuzzing phase (the coverage phase adds its own);
#: schemathesis sends ~100 a second here, most of the time its own checking.
MAX_EXAMPLES = 500 if long_runs() else 100
#: A database that answers at once and never fails: any 5xx is the server's fault.
RELIABLE_DB = ["--error-rate", "0", "--min-latency", "0", "--max-latency", "0"]


class LookupBackend(GatedBackend):
    """GatedBackend that also knows a missing patient (as the SQL backends do)."""

    missing = "P404"

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        if patient_id == self.missing:
            raise PatientNotFound(patient_id)
        return await super().get_patient(patient_id, deadline)


#: Room for every lookup of a test, and a pattern that can be filled: one worker, one queued.
ROOMY = PatternConfig(8, 8, limit=16, burst=16)
SMALL = PatternConfig(1, 1, limit=2, burst=2)


def build_app(
    pattern: str = "workerpool",
    backend: Any = None,
    profiling: bool = False,
    config: PatternConfig = ROOMY,
    **kwargs: Any,
) -> CareBenchApp:
    backend = backend or LookupBackend(open_gate=True)
    return CareBenchApp(
        create_pattern(pattern, backend, config, ManualLoopClock()),
        backend,
        drain_timeout=1.0,
        enable_profiling=profiling,
        **kwargs,
    )


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("profiling", [False, True])
def test_document_is_valid_openapi_3_1(profiling: bool) -> None:
    """The OpenAPI 3.1 meta-schema accepts it, every schema in it is a valid 2020-12 schema,
    and every $ref resolves."""
    document = document_for(build_app(profiling=profiling)._routes)
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()
    for node in walk(document):
        if "schema" in node:
            Draft202012Validator.check_schema(node["schema"])
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_broken_document_is_rejected() -> None:
    """The validity check above can fail: a response without a description is invalid."""
    document = document_for(build_app()._routes)
    del document["paths"]["/health"]["get"]["responses"]["200"]["description"]
    with pytest.raises(Exception, match="description"):
        schemathesis.openapi.from_dict(document).validate()


@pytest.mark.parametrize("profiling", [False, True])
def test_document_describes_every_route_and_nothing_else(profiling: bool) -> None:
    """Its paths are the app's routes, each with GET only; an undocumented route cannot be
    added: the app's construction fails on it."""
    app = build_app(profiling=profiling)
    document = document_for(app._routes)
    assert set(document["paths"]) == set(app._routes)
    assert all(set(item) == {"get"} for item in document["paths"].values())
    assert (openapi.PROFILE_PATH in document["paths"]) is profiling
    with pytest.raises(ValueError, match="/undocumented"):
        openapi.document([*app._routes, "/undocumented"])


async def test_served_document_is_the_built_one() -> None:
    """GET /openapi.json serves the encoded document, and the index lists it."""
    app = build_app()
    await app.startup()
    try:
        async with client_for(app) as client:
            served = await client.get(openapi.OPENAPI_PATH)
            index = (await client.get("/")).json()
    finally:
        await app.shutdown()
    assert served.content == openapi.encoded(frozenset(app._routes))
    assert "GET /openapi.json" in index["endpoints"]


@asynccontextmanager
async def client_for(app: CareBenchApp) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client whose every response must conform to the app's document."""
    hook = ConformanceHook(document_for(app._routes))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        event_hooks={"response": [hook]},
    ) as client:
        yield client


@asynccontextmanager
async def serving(pattern: str, backend: GatedBackend, **kwargs: Any) -> AsyncIterator[Any]:
    app = build_app(pattern, backend, **kwargs)
    await app.startup()
    try:
        async with client_for(app) as client:
            yield app, client
    finally:
        await app.shutdown()


async def provoke_every_status(pattern: str) -> Counter[int]:
    """Patient lookups answered with each status the pattern can give; status -> responses."""
    seen: Counter[int] = Counter()
    backend = LookupBackend(open_gate=True)
    backend.fail_ids.add("P500")
    async with serving(pattern, backend) as (_, client):
        for query in ("id=P1", "id=bad!", "id=", f"id={backend.missing}", "id=P500"):
            seen[(await client.get(f"{PATIENTS_PATH}?{query}")).status_code] += 1
        bad_priority = {"X-Request-Priority": "urgent"}
        seen[(await client.get(f"{PATIENTS_PATH}?id=P1", headers=bad_priority)).status_code] += 1
    # Past capacity (one worker and one queued, a limit or a burst of two; adaptive's
    # algorithm sets its own limit): 503, or 429 from the rate limiter.
    backend = LookupBackend()
    async with serving(pattern, backend, config=SMALL) as (app, client):
        count = (app.pattern.capacity or 2) + 2
        lookups = [
            asyncio.create_task(client.get(f"{PATIENTS_PATH}?id=P{i}")) for i in range(count)
        ]
        await backend.wait_active(1)
        for _ in range(50):
            await asyncio.sleep(0)
        backend.release()
        seen.update(response.status_code for response in await asyncio.gather(*lookups))
    # A database slower than the deadline.
    async with serving(pattern, LookupBackend(), request_timeout=0.02) as (_, client):
        seen[(await client.get(f"{PATIENTS_PATH}?id=P1")).status_code] += 1
    return seen


@pytest.mark.parametrize("pattern", pattern_names())
async def test_every_documented_status_is_served_and_conforms(
    pattern: str, figures: Figures
) -> None:
    """Each status documented for GET /api/v1/patients is provoked and conforms, and no other
    status occurs (429 is the rate limiter's refusal, 503 the others'; the naive pattern
    refuses nothing)."""
    documented = document_for(build_app()._routes)["paths"][PATIENTS_PATH]["get"]["responses"]
    seen = await provoke_every_status(pattern)
    refusals = {"naive": set(), "ratelimit": {429}}.get(pattern, {503})
    assert set(seen) == {int(status) for status in documented} - ({429, 503} - refusals)
    figures.add(pattern=pattern, responses=seen.total(), statuses=len(seen), non_conforming=0)


async def test_metrics_and_health_conform_with_every_backend_wrapper(figures: Figures) -> None:
    """With retries, a circuit breaker and a fault schedule around the simulator, /metrics
    (JSON and Prometheus) and /health still conform, through an error, an open circuit and
    an active fault window."""
    setup = ServerSetup(
        database=SimulatorConfig(0.0, 0.0, error_rate=1.0, profile="realistic"),
        resilience=ResilienceConfig(retries=1, circuit_breaker=True, breaker_threshold=1),
        faults=FaultConfig("at 0s slow x2"),
    )
    backend = setup.build_backend()
    app = build_app("workerpool", backend)
    await app.startup()
    seen: Counter[int] = Counter()
    try:
        async with client_for(app) as client:
            for target in (f"{PATIENTS_PATH}?id=P1", f"{PATIENTS_PATH}?id=P2", "/health"):
                seen[(await client.get(target)).status_code] += 1
            metrics = await client.get("/metrics")
            await client.get("/metrics?format=prometheus")
    finally:
        await app.shutdown()
    backend_state = metrics.json()["backend"]
    assert {"retries", "circuit_breaker", "faults"} <= set(backend_state)
    assert backend_state["circuit_breaker"]["state"] == "open"
    assert backend_state["faults"]["active"] is not None, backend_state["faults"]
    # The retry of the first failure finds the circuit open: both lookups are refused.
    assert seen == {503: 2, 200: 1}
    figures.add(wrappers="retries,circuit_breaker,faults", non_conforming=0)


def fuzz(base_url: str, document: dict[str, Any]) -> dict[str, Any]:
    """Run schemathesis against `base_url`; what it sent, got and found."""
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base_url, request_timeout=10)
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    statuses: Counter[int] = Counter()
    methods: set[str] = set()
    phases: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    failures: list[str] = []
    errors: list[str] = []
    finished: events.EngineFinished | None = None
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorder = event.recorder
            for interaction in recorder.interactions.values():
                statuses[interaction.response.status_code if interaction.response else 0] += 1
                methods.add(interaction.request.method)
                phases[event.phase if isinstance(event, events.ScenarioFinished) else "fuzz"] += 1
            for case_id, nodes in recorder.checks.items():
                for node in nodes:
                    checks[node.name] += 1
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        curl = recorder.cases[case_id].value.as_curl_command()
                        failures.append(f"{failure.title}: {failure.message}\n  {curl}")
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(repr(event))
        elif isinstance(event, events.EngineFinished):
            finished = event
    assert finished is not None
    return {
        "statuses": statuses,
        "methods": methods,
        "phases": phases,
        "checks": checks,
        "failures": failures,
        "errors": errors,
        "stop_reason": finished.stop_reason,
    }


@pytest.mark.slow
@pytest.mark.timeout(600 if long_runs() else 120)
@pytest.mark.parametrize("pattern", FUZZED_PATTERNS)
def test_fuzzed_live_server_keeps_its_contract(pattern: str, figures: Figures) -> None:
    """No response of a live server breaks the document, none is a 5xx, nothing is logged as
    an error; the coverage phase's probes and the fuzzer's requests all reach the server."""
    started = time.perf_counter()
    with ServerProcess(["--pattern", pattern, "--quiet", *RELIABLE_DB]) as server:
        served = httpx.get(server.url + openapi.OPENAPI_PATH).json()
        assert served == document_for(build_app()._routes)
        result = fuzz(server.url, served)
    log = "\n".join(server.output)
    tracebacks = log.count("Traceback")
    statuses = result["statuses"]
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    figures.add(
        pattern=pattern,
        operations=len(served["paths"]),
        max_examples=MAX_EXAMPLES,
        requests=statuses.total(),
        coverage_requests=result["phases"]["coverage"],
        fuzzing_requests=statuses.total() - result["phases"]["coverage"],
        responses_2xx=sum(n for status, n in statuses.items() if 200 <= status < 300),
        responses_4xx=sum(n for status, n in statuses.items() if 400 <= status < 500),
        methods=len(result["methods"]),
        checks_run=result["checks"].total(),
        non_conforming=len(result["failures"]),
        server_errors=server_errors,
        tracebacks=tracebacks,
        seconds=round(time.perf_counter() - started, 1),
    )
    assert not result["failures"], "\n".join(result["failures"][:10])
    assert not result["errors"], result["errors"]
    assert result["stop_reason"] == "completed"
    assert server_errors == 0 and 0 not in statuses
    assert tracebacks == 0 and "ERROR" not in log, log
    # The run did what it claims: every operation, valid and invalid input, other methods.
    assert {200, 400, 405} <= set(statuses)
    assert len(result["methods"]) > 1
    assert statuses.total() >= len(served["paths"]) * MAX_EXAMPLES * 0.9
    for check in ("response_schema_conformance", "response_headers_conformance"):
        assert result["checks"][check] > 0
