"""The simulated database: latency bounds, USL inflation, errors, seeding and the pool."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.errors import BackendError, ConfigError


class RecordingSleep:
    """A fake `sleep` that records each requested duration and returns at once."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.durations.append(seconds)


class GatedSleep:
    """A fake `sleep` that records each duration and holds every caller until `open()`."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._gate = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.durations.append(seconds)
        await self._gate.wait()

    def open(self) -> None:
        self._gate.set()


async def wait_until(predicate: Any, what: str) -> None:
    """Yield to the loop until `predicate()` holds (bounded, never a timed sleep)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached: {what}")


async def run_queries(backend: SimulatedBackend, n: int) -> list[bool]:
    """Run `n` queries one after another; True where the query failed."""
    failed = []
    for i in range(n):
        try:
            await backend.get_patient(f"p-{i}")
        except BackendError:
            failed.append(True)
        else:
            failed.append(False)
    return failed


@pytest.mark.parametrize("profile", ["ideal", "realistic"])
async def test_latency_stays_within_min_and_max(profile: str) -> None:
    """Without concurrency every query sleeps uniform[min, max], spread across the range."""
    sleep = RecordingSleep()
    config = SimulatorConfig(
        min_latency=0.05, max_latency=0.1, error_rate=0.0, profile=profile, seed=1
    )
    backend = SimulatedBackend(config, sleep=sleep)

    await run_queries(backend, 2000)

    assert len(sleep.durations) == 2000
    assert all(0.05 <= d <= 0.1 for d in sleep.durations)
    assert min(sleep.durations) < 0.055
    assert max(sleep.durations) > 0.095


async def test_equal_min_and_max_give_constant_latency() -> None:
    """min == max is valid (the reference crashed on it) and every query sleeps exactly that."""
    sleep = RecordingSleep()
    config = SimulatorConfig(min_latency=0.07, max_latency=0.07, error_rate=0.0, seed=3)
    backend = SimulatedBackend(config, sleep=sleep)

    await run_queries(backend, 100)

    assert sleep.durations == [0.07] * 100


async def test_realistic_latency_inflates_by_usl_slowdown_under_concurrency() -> None:
    """With k queries running, the k-th to start sleeps base * slowdown(k)."""
    sleep = GatedSleep()
    config = SimulatorConfig(
        min_latency=0.05,
        max_latency=0.05,
        error_rate=0.0,
        profile="realistic",
        contention=0.1,
        coherency=0.01,
    )
    backend = SimulatedBackend(config, sleep=sleep)
    n = 6

    tasks = [asyncio.create_task(backend.get_patient(f"p-{i}")) for i in range(n)]
    await wait_until(lambda: backend.active == n, f"{n} active queries")

    assert sleep.durations == [0.05 * config.slowdown(k) for k in range(1, n + 1)]
    assert sleep.durations[-1] == pytest.approx(0.05 * (1 + 0.1 * 5 + 0.01 * 6 * 5))
    assert backend.stats()["active_queries"] == n
    sleep.open()
    await asyncio.gather(*tasks)
    assert backend.active == 0
    assert backend.peak_active == n


async def test_ideal_latency_does_not_inflate_under_concurrency() -> None:
    """Profile ideal has unlimited capacity: concurrent queries all sleep the base latency."""
    sleep = GatedSleep()
    config = SimulatorConfig(min_latency=0.05, max_latency=0.05, error_rate=0.0, profile="ideal")
    backend = SimulatedBackend(config, sleep=sleep)

    tasks = [asyncio.create_task(backend.get_patient(f"p-{i}")) for i in range(8)]
    await wait_until(lambda: backend.active == 8, "8 active queries")

    assert sleep.durations == [0.05] * 8
    sleep.open()
    await asyncio.gather(*tasks)


async def test_error_rate_matches_configuration_statistically() -> None:
    """20k seeded queries at error rate 0.05 fail within 4 sigma of 5 %, and are counted."""
    n, p = 20_000, 0.05
    config = SimulatorConfig(
        min_latency=0.0, max_latency=0.0, error_rate=p, profile="ideal", seed=7
    )
    backend = SimulatedBackend(config, sleep=RecordingSleep())

    failures = sum(await run_queries(backend, n))

    sigma = math.sqrt(n * p * (1 - p))
    assert abs(failures - n * p) <= 4 * sigma
    assert backend.errors == failures
    assert backend.queries == n


@pytest.mark.parametrize(("rate", "expected_failures"), [(0.0, 0), (1.0, 500)])
async def test_error_rate_extremes(rate: float, expected_failures: int) -> None:
    """Error rate 0 never fails a query; error rate 1 fails every one."""
    config = SimulatorConfig(min_latency=0.0, max_latency=0.0, error_rate=rate, seed=11)
    backend = SimulatedBackend(config, sleep=RecordingSleep())

    failures = sum(await run_queries(backend, 500))

    assert failures == expected_failures


async def test_failed_query_raises_backend_error_with_message() -> None:
    """A simulated failure raises BackendError saying it is a simulated database error."""
    config = SimulatorConfig(error_rate=1.0)
    backend = SimulatedBackend(config, sleep=RecordingSleep())

    with pytest.raises(BackendError, match="simulated database error"):
        await backend.get_patient("p-1")


async def test_successful_query_returns_the_requested_patient() -> None:
    """A query that does not fail returns the synthetic record for the requested id."""
    backend = SimulatedBackend(SimulatorConfig(error_rate=0.0), sleep=RecordingSleep())

    patient = await backend.get_patient("abc-123")

    assert patient.id == "abc-123"


async def _trace(seed: int | None) -> tuple[list[float], list[bool]]:
    sleep = RecordingSleep()
    config = SimulatorConfig(error_rate=0.3, seed=seed)
    failed = await run_queries(SimulatedBackend(config, sleep=sleep), 300)
    return sleep.durations, failed


async def test_same_seed_reproduces_latencies_and_failures() -> None:
    """Two backends with the same seed produce the same latency and failure sequences."""
    assert await _trace(42) == await _trace(42)


async def test_different_seeds_give_different_sequences() -> None:
    """Different seeds give different latency and failure sequences."""
    durations_a, failed_a = await _trace(42)
    durations_b, failed_b = await _trace(43)

    assert durations_a != durations_b
    assert failed_a != failed_b


async def test_pool_exhaustion_fails_query_after_pool_timeout() -> None:
    """With every connection held, a further query fails with 'connection pool exhausted'."""
    sleep = GatedSleep()
    config = SimulatorConfig(error_rate=0.0, pool_size=2, pool_timeout=0.05)
    backend = SimulatedBackend(config, sleep=sleep)

    holders = [asyncio.create_task(backend.get_patient(f"p-{i}")) for i in range(2)]
    await wait_until(lambda: backend.active == 2, "2 queries holding connections")

    with pytest.raises(BackendError, match="connection pool exhausted"):
        await backend.get_patient("p-late")

    assert backend.pool_exhausted == 1
    assert backend.errors == 1
    assert backend.waiting == 0
    assert backend.stats()["pool_exhausted"] == 1
    sleep.open()
    results = await asyncio.gather(*holders)
    assert [p.id for p in results] == ["p-0", "p-1"]


async def test_waiting_query_gets_a_connection_when_one_is_freed() -> None:
    """A query queued for a connection proceeds once a holder finishes (no exhaustion)."""
    sleep = GatedSleep()
    config = SimulatorConfig(error_rate=0.0, pool_size=1, pool_timeout=30.0)
    backend = SimulatedBackend(config, sleep=sleep)

    first = asyncio.create_task(backend.get_patient("p-1"))
    await wait_until(lambda: backend.active == 1, "first query running")
    second = asyncio.create_task(backend.get_patient("p-2"))
    await wait_until(lambda: backend.waiting == 1, "second query waiting")

    assert backend.stats()["waiting_for_connection"] == 1
    assert backend.active == 1
    sleep.open()
    patients = await asyncio.gather(first, second)

    assert [p.id for p in patients] == ["p-1", "p-2"]
    assert backend.pool_exhausted == 0
    assert backend.waiting == 0


async def test_health_never_runs_a_query() -> None:
    """health() reports from counters only: the query count does not move, even at error rate 1."""
    sleep = RecordingSleep()
    backend = SimulatedBackend(SimulatorConfig(error_rate=1.0), sleep=sleep)
    with pytest.raises(BackendError):
        await backend.get_patient("p-1")

    health = [backend.health() for _ in range(50)]

    assert backend.queries == 1
    assert len(sleep.durations) == 1
    assert all(h["status"] == "healthy" for h in health)
    assert health[-1]["total_queries"] == 1
    assert health[-1]["total_errors"] == 1


def test_ideal_stats_report_no_pool_size() -> None:
    """Profile ideal has no connection pool, so stats report pool_size None."""
    ideal = SimulatedBackend(SimulatorConfig(profile="ideal")).stats()
    realistic = SimulatedBackend(SimulatorConfig(profile="realistic", pool_size=7)).stats()

    assert ideal["pool_size"] is None
    assert realistic["pool_size"] == 7


def test_peak_concurrency_follows_usl_formula() -> None:
    """Throughput peaks at sqrt((1 - sigma) / kappa)."""
    config = SimulatorConfig(contention=0.03, coherency=0.001)

    assert config.peak_concurrency() == pytest.approx(math.sqrt(0.97 / 0.001))


def test_peak_concurrency_is_where_throughput_is_highest() -> None:
    """The integer concurrency maximising N / slowdown(N) is next to peak_concurrency()."""
    config = SimulatorConfig(contention=0.05, coherency=0.002)

    best = max(range(1, 500), key=lambda n: n / config.slowdown(n))

    peak = config.peak_concurrency()
    assert best in (math.floor(peak), math.ceil(peak))


@pytest.mark.parametrize(
    "config",
    [SimulatorConfig(profile="ideal"), SimulatorConfig(contention=0.1, coherency=0.0)],
    ids=["ideal", "no-coherency"],
)
def test_peak_concurrency_is_infinite_without_coherency_penalty(config: SimulatorConfig) -> None:
    """Ideal profile or kappa = 0 never peaks: peak_concurrency is infinite."""
    assert config.peak_concurrency() == math.inf


def test_slowdown_is_one_when_ideal_or_alone() -> None:
    """slowdown is 1 for a single query, and always 1 in the ideal profile."""
    assert SimulatorConfig().slowdown(1) == 1.0
    assert SimulatorConfig(profile="ideal").slowdown(500) == 1.0
    assert SimulatorConfig().slowdown(2) > 1.0


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"min_latency": 0.12, "max_latency": 0.1}, "--min-latency (120) must be <= --max-latency"),
        ({"min_latency": -0.001}, "--min-latency"),
        ({"error_rate": 1.5}, "--error-rate (1.5)"),
        ({"error_rate": -0.1}, "--error-rate"),
        ({"pool_size": 0}, "--db-pool-size (0)"),
        ({"profile": "weird"}, "--db-profile: unknown profile 'weird'"),
        ({"pool_timeout": 0.0}, "--db-pool-timeout"),
        ({"contention": 1.0}, "--db-contention"),
        ({"coherency": -0.5}, "--db-coherency"),
    ],
)
def test_invalid_config_names_the_option(kwargs: dict[str, Any], option: str) -> None:
    """Each invalid setting raises ConfigError whose message names the option and value."""
    with pytest.raises(ConfigError) as excinfo:
        SimulatorConfig(**kwargs)

    assert option in str(excinfo.value)


def test_equal_min_and_max_is_valid() -> None:
    """min_latency == max_latency is accepted."""
    config = SimulatorConfig(min_latency=0.1, max_latency=0.1)

    assert config.min_latency == config.max_latency == 0.1
