"""Distributed load with Locust: a shipped locustfile, its options and the merge of its results.

`locustfile.py` imports locust (and gevent's monkey-patching with it), so nothing in carebench
imports it: Locust loads it by path (`carebench locustfile` prints the path). Its options
(`options.py`) and the worker reports and their merge (`reports.py`) import no locust, so the
CLI and the tests use them directly.
"""

from __future__ import annotations

from pathlib import Path

#: The file to pass to `locust -f`.
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
