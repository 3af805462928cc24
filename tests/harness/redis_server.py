"""A private ``redis-server`` on a free loopback port, for tests and benchmarks.

The append-only file lives in the server's private directory, so ``restart()``
brings the data back (tests of a sidecar surviving a backend outage rely on it).
"""
from __future__ import annotations

import socket
from collections.abc import Sequence

from tests.harness.base import ServerProcess


class RedisServer(ServerProcess):
    """``redis-server`` with AOF persistence and no RDB snapshots."""

    name = "redis"

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        super().__init__()
        self.extra_args = tuple(extra_args)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly", "yes", *self.extra_args]

    def ready(self) -> bool:
        """PONG, not just an open port: while loading the AOF Redis answers LOADING."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")


def sidecar_env(server: RedisServer, prefix: str = "") -> dict[str, str]:
    """The environment a ``redis-buffered-cas`` sidecar needs for ``server``."""
    return {"REDIS_URL": server.url, "STATE_PREFIX": prefix}
