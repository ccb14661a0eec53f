"""Settings of one load test (loop model, volume, timing, which ids) and of a sweep."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from carebench.errors import ConfigError
from carebench.loadgen.endpoints import ENDPOINTS
from carebench.loadgen.ids import parse_ids
from carebench.loadgen.priorities import parse_priorities
from carebench.loadgen.stages import LoadShape, StagesError, parse_stages
from carebench.registry import check_choice
from carebench.settings import FLOAT, INT, LEVELS, SECONDS, SWITCH, setting

LOOPS = ("closed", "open")
ARRIVALS = ("constant", "poisson")
MODES = ("http", "inprocess")
#: How each simulated client behaves: the LoadConfig settings a sweep shares.
CLIENT_SETTINGS = (
    "timeout",
    "ids",
    "priorities",
    "honor_retry_after",
    "endpoint",
    "token",
    "token_file",
)
#: Most --generators: more processes than this only compete for the same cores.
MAX_GENERATORS = 64
#: RFC 6750's b64token: what may follow `Bearer ` (a JWT, an API key).
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What to send and how.

    Closed loop: `concurrency` clients send `requests` in total, or for `duration` seconds
    when a duration is given. Open loop (`rate` set): `rate` arrivals per second for
    `duration` seconds over at most `concurrency` connections.
    """

    requests: int = setting(1000, "--requests", "closed loop: requests in total", INT)
    concurrency: int = setting(
        100, "--concurrency", "closed loop: clients; open loop: most connections", INT
    )
    rate: float | None = setting(
        None, "--rate", "open loop: arrivals per second (with --duration)", FLOAT
    )
    duration: float | None = setting(
        None,
        "--duration",
        "how long to send (open loop; closed loop: instead of --requests)",
        SECONDS,
    )
    stages: str | None = setting(
        None,
        "--stages",
        "a load shape instead of --rate/--duration: DURATION@LEVEL stages, arrivals per "
        "second (10s@100/s,20s@400/s,10s@100/s) or clients (10s@20,20s@200,10s@20)",
    )
    arrivals: str = setting(
        "constant", "--arrivals", "open loop: spacing of arrivals", choices=ARRIVALS
    )
    timeout: float = setting(5.0, "--timeout", "client-side timeout per request", SECONDS)
    warmup: float = setting(
        0.0, "--warmup", "load sent before measuring, left out of the statistics", SECONDS
    )
    ids: str = setting("fixed:P12345", "--ids", "patient ids: fixed:ID, uniform:N or zipf:N[:S]")
    priorities: str | None = setting(
        None,
        "--priorities",
        "send X-Request-Priority drawn from weights, e.g. critical:10,standard:70,batch:20",
    )
    honor_retry_after: bool = setting(
        False,
        "--honor-retry-after",
        "closed loop: a refused client waits Retry-After before its next request "
        "(otherwise it re-sends at once, as the reference's load test does)",
        SWITCH,
    )
    endpoint: str = setting(
        "legacy",
        "--endpoint",
        "what each request asks for: legacy (/api/v1/patients?id=), fhir-read "
        "(/fhir/Patient/ID), fhir-search (/fhir/Patient?_id=ID), fhir-everything "
        "(/fhir/Patient/ID/$everything)",
        choices=tuple(ENDPOINTS),
    )
    token: str | None = setting(
        None,
        "--token",
        "send Authorization: Bearer TOKEN with every request (serve --auth jwt or apikey)",
    )
    token_file: str | None = setting(
        None,
        "--token-file",
        "read the --token from FILE (keeps it out of the process list and shell history)",
        metavar="FILE",
    )
    generators: int = setting(
        1,
        "--generators",
        "client processes sharing the load, each pinned to its own core where there are "
        "cores to spare; their histograms and counts are merged exactly (docs/generators.md)",
        INT,
    )
    #: Set from the server's --seed, so one seed makes the whole run reproducible.
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ConfigError(f"--requests ({self.requests}) must be >= 1")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency ({self.concurrency}) must be >= 1")
        if self.stages is not None:
            self._take_duration_from_stages()
        if self.rate is not None and self.duration is None:
            raise ConfigError("--rate needs --duration (open loop: how long to send for)")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"--rate ({self.rate:g}) must be > 0 requests per second")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration ({self.duration:g}) must be > 0 seconds")
        check_choice("--arrivals", "arrival process", self.arrivals, ARRIVALS)
        if self.timeout <= 0:
            raise ConfigError(f"--timeout ({self.timeout:g}) must be > 0 seconds")
        if self.warmup < 0:
            raise ConfigError(f"--warmup ({self.warmup:g}) must be >= 0 seconds")
        parse_ids(self.ids)
        parse_priorities(self.priorities)
        check_choice("--endpoint", "endpoint", self.endpoint, ENDPOINTS)
        if self.token_file is not None:
            self._take_token_from_file(self.token_file)
        if self.token is not None and not _BEARER_TOKEN.fullmatch(self.token):
            raise ConfigError(
                "--token: not a bearer token (letters, digits and -._~+/, then = padding)"
            )
        self._check_generators()

    def _check_generators(self) -> None:
        count = self.generators
        if not 1 <= count <= MAX_GENERATORS:
            raise ConfigError(
                f"--generators ({count}) must be between 1 and {MAX_GENERATORS} "
                "(one process per core is the point)"
            )
        if count > self.connections:
            raise ConfigError(
                f"--generators ({count}) must be <= the connections ({self.connections}): "
                "each generator needs one. Raise --concurrency or lower --generators."
            )
        if self.duration is None and count > self.requests:
            raise ConfigError(f"--generators ({count}) must be <= --requests ({self.requests})")

    def _take_token_from_file(self, path: str) -> None:
        if self.token is not None:
            raise ConfigError("give --token or --token-file, not both")
        try:
            token = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--token-file {path}: cannot read it ({exc})") from None
        object.__setattr__(self, "token", token)

    @property
    def headers(self) -> dict[str, str]:
        """Headers every request carries: the bearer token, when one was given."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _take_duration_from_stages(self) -> None:
        if self.rate is not None or self.duration is not None:
            raise ConfigError(
                "--stages sets the levels and the duration: leave out --rate and --duration"
            )
        try:
            shape = parse_stages(self.stages or "")
        except StagesError as error:
            raise ConfigError(str(error)) from None
        # The run lasts as long as its stages; everything time-bounded reads `duration`.
        object.__setattr__(self, "duration", shape.duration)

    @property
    def shape(self) -> LoadShape | None:
        """The --stages load shape, if one was given."""
        return parse_stages(self.stages) if self.stages is not None else None

    @property
    def loop(self) -> str:
        shape = self.shape
        open_loop = self.rate is not None or (shape is not None and shape.open)
        return "open" if open_loop else "closed"

    @property
    def connections(self) -> int:
        """Connections to open: a closed-loop shape's peak clients, otherwise --concurrency."""
        shape = self.shape
        if shape is not None and not shape.open:
            return int(shape.peak)
        return self.concurrency


@dataclass(frozen=True, slots=True)
class SweepConfig:
    """The load levels of a sweep: closed-loop client counts or open-loop rates, not both."""

    concurrency: tuple[float, ...] | None = setting(
        None, "--concurrency", "closed-loop levels: clients, e.g. 10,50,100", LEVELS
    )
    rate: tuple[float, ...] | None = setting(
        None, "--rate", "open-loop levels: arrivals per second, e.g. 50,100,200", LEVELS
    )
    duration: float = setting(5.0, "--duration", "how long each level runs", SECONDS)
    warmup: float = setting(1.0, "--warmup", "load before each level is measured", SECONDS)
    connections: int = setting(1000, "--connections", "open loop: most connections per run", INT)

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ConfigError(
                "sweep needs exactly one of --concurrency LEVELS (closed loop) or "
                "--rate LEVELS (open loop)"
            )
        if self.concurrency and any(level != int(level) for level in self.concurrency):
            raise ConfigError("--concurrency: levels must be whole numbers of clients")
        if self.duration <= 0:
            raise ConfigError(f"--duration ({self.duration:g}) must be > 0 seconds")
        if self.warmup < 0:
            raise ConfigError(f"--warmup ({self.warmup:g}) must be >= 0 seconds")
        if self.connections < 1:
            raise ConfigError(f"--connections ({self.connections}) must be >= 1")

    @property
    def axis(self) -> str:
        return "concurrency" if self.concurrency is not None else "rate"

    @property
    def levels(self) -> list[float]:
        return list(self.concurrency or self.rate or ())
