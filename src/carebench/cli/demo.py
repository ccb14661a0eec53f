"""`carebench demo`: start a server per pattern, send a few requests, show what came back."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from carebench.patterns.base import pattern_names
from carebench.server.process import ServerProcess

DEMO_IDS = ("P12345", "P12345", "P00042", "bad id!")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="a short self-demo: each pattern answers a few requests over HTTP"
    )
    parser.set_defaults(run=run)


def fetch(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as failure:
        return failure.code, json.loads(failure.read())


def run(args: argparse.Namespace) -> int:
    for name in pattern_names():
        with ServerProcess(["--pattern", name, "--quiet", "--seed", "1"]) as server:
            print(f"== {name} at {server.url}")
            for patient_id in DEMO_IDS:
                query = urllib.parse.quote(patient_id)
                status, body = fetch(f"{server.url}/api/v1/patients?id={query}")
                patient = body.get("patient") or {}
                detail = (
                    f"{patient.get('first_name')} {patient.get('last_name')}, "
                    f"MRN {patient.get('medical_record_number')}"
                    if patient
                    else body.get("error")
                )
                print(f"  GET id={patient_id!r:10} -> {status} {detail}")
            _, metrics = fetch(f"{server.url}/metrics")
            print(
                f"  /metrics: {metrics['total_requests']} requests, "
                f"{metrics['success_requests']} ok, p50 {metrics['latency_ms']['median']} ms"
            )
    return 0
