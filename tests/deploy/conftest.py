"""Certificates for the image's health check against HTTPS servers (tests/tls's, made anew)."""

from __future__ import annotations

import pytest

from tests.tls.pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))
