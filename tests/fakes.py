"""A backend whose timing and failures the test controls, for pattern and server tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.records import synthetic_clinical, synthetic_patient
from carebench.errors import BackendError, PatientNotFound
from carebench.models import Answer, ClinicalRecord, Patient


def id_of(answer: Answer) -> str:
    """The id of a patient lookup's answer, which must be the Patient itself."""
    assert isinstance(answer, Patient), answer
    return answer.id


class PatientLookups:
    """The FHIR lookups of the Backend protocol for a fake that only defines `get_patient`:
    each runs through it (its gate, timing and failures), a search once per id."""

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        raise NotImplementedError

    async def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[Patient, ...]:
        found = []
        for patient_id in patient_ids:
            try:
                found.append(await self.get_patient(patient_id, deadline))
            except PatientNotFound:
                continue
        return tuple(found)

    async def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> ClinicalRecord:
        await self.get_patient(patient_id, deadline)
        return synthetic_clinical(patient_id)


class GatedBackend(PatientLookups):
    """Holds every query until `release()` (or answers at once when open); records calls."""

    name = "gated"

    def __init__(self, open_gate: bool = False) -> None:
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.calls: list[str] = []
        self.active = 0
        self.peak_active = 0
        self.fail_ids: set[str] = set()

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.calls.append(patient_id)
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            await self.gate.wait()
        finally:
            self.active -= 1
        if patient_id in self.fail_ids:
            raise BackendError(f"injected failure for {patient_id}")
        return synthetic_patient(patient_id)

    def release(self) -> None:
        self.gate.set()

    async def wait_active(self, count: int) -> None:
        """Yield to the loop until `count` queries are inside the backend."""
        for _ in range(10_000):
            if self.active >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"only {self.active} of {count} queries reached the backend")

    def health(self) -> BackendHealth:
        return {
            "status": "healthy",
            "backend": self.name,
            "total_queries": len(self.calls),
            "total_errors": 0,
        }

    def stats(self) -> BackendStats:
        return {
            "backend": self.name,
            "total_queries": len(self.calls),
            "total_errors": 0,
            "active_queries": 0,
        }

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        self.release()
