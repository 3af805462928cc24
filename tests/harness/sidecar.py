"""A real sidecar: ``vfs-state-sidecar CONNECTOR`` under gunicorn on a Unix socket."""
from __future__ import annotations

import os
import sys
import tempfile

from tests.harness.base import ServerProcess
from vfs_state.transport import UnixHTTPConnection


def healthy(socket_path: str) -> bool:
    conn = UnixHTTPConnection(socket_path, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    finally:
        conn.close()


class Sidecar(ServerProcess):
    """One connector with its env; ``socket_path`` is where clients connect."""

    name = "sidecar"

    def __init__(self, connector: str, env: dict[str, str], workers: int | None = 2,
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.connector = connector
        self.socket_path = os.path.join(tempfile.mkdtemp(prefix="vfs-sock-"), "sidecar.sock")
        self._env = env
        self.workers = workers
        self.extra_args = extra_args

    def command(self) -> list[str]:
        workers = [] if self.workers is None else [f"--workers={self.workers}"]
        return [sys.executable, "-m", "sidecars.cli", self.connector, "--", *workers,
                *self.extra_args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._env)
        env["CONNECTOR_SOCKET"] = self.socket_path
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def ready(self) -> bool:
        return os.path.exists(self.socket_path) and healthy(self.socket_path)
