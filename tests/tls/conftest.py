"""The session's certificates (see pki.py), made once for every TLS test."""

from __future__ import annotations

import pytest

from tests.tls.pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One set of certificates for every TLS test of the session."""
    return make_pki(tmp_path_factory.mktemp("pki"))
