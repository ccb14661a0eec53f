"""The app factory granian imports in its worker process (configs arrive as JSON in the
environment, because granian starts its workers itself)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from carebench.backends.simulator import SimulatorConfig
from carebench.patterns.base import PatternConfig
from carebench.resilience.config import ResilienceConfig
from carebench.server.app import CareBenchApp
from carebench.server.config import ServerConfig

CONFIG_VARIABLE = "CAREBENCH_GRANIAN_APP"


def encode_configs(
    pattern: str,
    server: ServerConfig,
    patterns: PatternConfig,
    database: SimulatorConfig,
    resilience: ResilienceConfig,
) -> str:
    """The JSON the worker rebuilds the app from."""
    from dataclasses import asdict

    return json.dumps(
        {
            "pattern": pattern,
            "server": asdict(server),
            "patterns": asdict(patterns),
            "database": asdict(database),
            "resilience": asdict(resilience),
        }
    )


def create_app() -> CareBenchApp:
    """Build the app from CAREBENCH_GRANIAN_APP; final stats print when the worker stops."""
    from carebench.server.runner import build_app, final_stats

    configs: dict[str, Any] = json.loads(os.environ[CONFIG_VARIABLE])
    app = build_app(
        configs["pattern"],
        ServerConfig(**configs["server"]),
        PatternConfig(**configs["patterns"]),
        SimulatorConfig(**configs["database"]),
        ResilienceConfig(**configs["resilience"]),
    )
    app.on_shutdown = lambda: print(final_stats(app), file=sys.stdout, flush=True)
    return app
