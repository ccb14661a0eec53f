"""The HTTP servers `serve --server NAME` can run the app on, chosen by name.

Kept free of heavy imports so ServerConfig can check `--server` against it: a runner module
(and uvicorn or granian with it) is imported only when its server is chosen.
"""

from __future__ import annotations

from carebench.registry import Registry

#: name -> "module:function"; every function has the signature of `runner.ServeFunction`.
SERVERS = Registry(
    "--server",
    "server",
    {
        "uvicorn": "carebench.server.uvicorn_runner:serve_uvicorn",
        "granian": "carebench.server.granian_runner:serve_granian",
    },
)
