"""What every backend promises, whether it simulates a database or reads a real one."""

from __future__ import annotations

import asyncio
from typing import NotRequired, get_origin, get_type_hints

import pytest

from carebench.backends.base import Backend, BackendHealth, BackendStats
from carebench.backends.records import synthetic_clinical, synthetic_patient
from carebench.errors import PatientNotFound

SAMPLE_IDS = ("P00000", "P00042", "P00299", "P12345")


def assert_typed_keys(value: dict[str, object], typed: type) -> None:
    """`value` has every required key of the TypedDict `typed` and no key it lacks."""
    # From the hints: with postponed annotations, Python 3.11's __required_keys__ counts
    # NotRequired fields as required.
    hints = get_type_hints(typed, include_extras=True)
    required = {key for key, hint in hints.items() if get_origin(hint) is not NotRequired}
    assert required <= set(value), f"missing {required - set(value)}"
    assert set(value) <= set(hints), f"unknown {set(value) - set(hints)}"


async def test_is_a_backend(started_backend: Backend) -> None:
    """Each implementation satisfies the Backend protocol and names itself."""
    assert isinstance(started_backend, Backend)
    assert started_backend.name in {"simulator", "sqlite", "postgres"}


async def test_same_id_same_patient_as_the_simulator(started_backend: Backend) -> None:
    """A record from any backend equals synthetic_patient(id), field for field."""
    for patient_id in SAMPLE_IDS:
        assert await started_backend.get_patient(patient_id) == synthetic_patient(patient_id)


async def test_concurrent_queries_each_get_their_own_record(started_backend: Backend) -> None:
    """Queries running at once (more than the pool holds) all answer the id they asked for."""
    ids = [f"P{index:05d}" for index in range(0, 300, 7)]
    patients = await asyncio.gather(*(started_backend.get_patient(i) for i in ids))
    assert [patient.id for patient in patients] == ids
    assert list(patients) == [synthetic_patient(i) for i in ids]


async def test_health_and_stats_have_the_typed_keys(started_backend: Backend) -> None:
    """health() and stats() fill their TypedDicts and count the queries made."""
    before = started_backend.stats()["total_queries"]
    for patient_id in SAMPLE_IDS:
        await started_backend.get_patient(patient_id)
    health, stats = started_backend.health(), started_backend.stats()
    assert_typed_keys(dict(health), BackendHealth)
    assert_typed_keys(dict(stats), BackendStats)
    assert health["status"] == "healthy" and health["backend"] == started_backend.name
    assert stats["backend"] == started_backend.name
    assert stats["total_queries"] == before + len(SAMPLE_IDS)
    assert health["total_queries"] == stats["total_queries"]
    assert stats["total_errors"] == health["total_errors"] == 0


async def test_close_twice_is_harmless(started_backend: Backend) -> None:
    """The server's shutdown may close a backend the fixture closes again."""
    await started_backend.close()
    await started_backend.close()
    assert started_backend.health()["backend"] == started_backend.name


async def test_search_is_one_query_for_every_id_in_order(started_backend: Backend) -> None:
    """get_patients answers several ids with one query, in the order asked, each record equal
    to the simulator's; an id that is not there is left out (real databases only: the
    simulator has every valid id)."""
    ids = ["P00299", "P00000", "P12345", "P00042"]
    before = started_backend.stats()["total_queries"]
    patients = await started_backend.get_patients([*ids, "P99999"])
    assert started_backend.stats()["total_queries"] == before + 1
    found = ids if started_backend.name != "simulator" else [*ids, "P99999"]
    assert list(patients) == [synthetic_patient(i) for i in found]
    assert await started_backend.get_patients([]) == ()


async def test_clinical_record_is_one_query_equal_to_the_simulators(
    started_backend: Backend,
) -> None:
    """get_clinical_record gives the synthetic clinical record of the id (its patient, and
    each diagnosis, medication and allergy with its detail, in order) in one query."""
    for patient_id in SAMPLE_IDS:
        before = started_backend.stats()["total_queries"]
        record = await started_backend.get_clinical_record(patient_id)
        assert started_backend.stats()["total_queries"] == before + 1
        assert record == synthetic_clinical(patient_id)
    records = await asyncio.gather(
        *(started_backend.get_clinical_record(f"P{i:05d}") for i in range(0, 300, 13))
    )
    assert list(records) == [synthetic_clinical(f"P{i:05d}") for i in range(0, 300, 13)]


async def test_unknown_patient_has_no_clinical_record(started_backend: Backend) -> None:
    """A real database answers an id it does not hold with PatientNotFound, for the clinical
    record as for the patient; the simulator makes up a record for every valid id."""
    if started_backend.name == "simulator":
        assert await started_backend.get_clinical_record("P99999") == synthetic_clinical("P99999")
        return
    with pytest.raises(PatientNotFound):
        await started_backend.get_patient("P99999")
    with pytest.raises(PatientNotFound):
        await started_backend.get_clinical_record("P99999")
