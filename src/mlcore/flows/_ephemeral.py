"""Prefect's ephemeral API server, bound to the process that starts it.

In ephemeral mode (no ``PREFECT_API_URL``) Prefect starts its API server as a subprocess and
stops it at exit. A killed run (SIGKILL, or Prefect's own re-raised SIGTERM) never reaches
that exit: the server was left running, re-parented to init, holding its SQLite database. Here
the server runs under :mod:`mlcore._parent_bound`, which ends it within a second of its
parent's death, whatever killed the parent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import prefect
from prefect.settings import get_current_settings

import mlcore

# The server's interpreter finds mlcore where this one did, even when it was put on sys.path
# by hand; appended, so it never shadows a module the interpreter would otherwise import.
_BOOT = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from mlcore._parent_bound import main; main(sys.argv[2:])"
)
_MLCORE_ROOT = str(Path(mlcore.__file__).resolve().parents[1])


def _server_command(self: Any) -> subprocess.Popen[Any]:
    # Prefect 3.8's own command (SubprocessASGIServer._run_uvicorn_command), run under the
    # parent watch: the same uvicorn arguments and environment.
    server_env = {
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    return subprocess.Popen(  # noqa: S603 (our own interpreter and fixed arguments)
        args=[
            sys.executable, "-c", _BOOT, _MLCORE_ROOT, str(os.getpid()), "uvicorn",
            "--app-dir", str(prefect.__module_path__.parent),
            "--factory", "prefect.server.api.server:create_app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "error", "--lifespan", "on",
        ],
        env={
            **os.environ,
            **server_env,
            **get_current_settings().to_environment_variables(exclude_unset=True),
        },
    )  # fmt: skip


def bind_ephemeral_server() -> None:
    """Make every ephemeral server Prefect starts in this process end with the process."""
    from prefect.server.api.server import SubprocessASGIServer  # seconds to import

    if not hasattr(SubprocessASGIServer, "_run_uvicorn_command"):
        raise RuntimeError(
            "prefect.server.api.server.SubprocessASGIServer has no _run_uvicorn_command: this "
            "Prefect release is not the one mlcore binds its ephemeral server for (3.8)"
        )
    SubprocessASGIServer._run_uvicorn_command = _server_command  # type: ignore[method-assign]
