"""Every connector of SPEC §7 as a real sidecar over real servers, started on demand.

``ConnectorPool.sidecar(name)`` starts the backend server a connector needs
(once per test session) and a gunicorn sidecar for the connector (once),
each connector under its own ``STATE_PREFIX`` so tests never collide.
"""
from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable

from tests.harness.base import ServerProcess
from tests.harness.sidecar import Sidecar

ALL_CONNECTORS = (
    "local-buffered-lww", "local-buffered-cas",
    "s3-buffered-lww", "s3-buffered-cas", "s3-passthrough",
    "gcs-buffered-lww", "gcs-buffered-cas",
    "redis-buffered-cas", "nats-kv-buffered-cas",
)
BUCKET = "vfs-state-tests"


def is_cas(connector: str) -> bool:
    return connector.endswith("-cas")


def write_mode(connector: str) -> str:
    return "passthrough" if connector.endswith("passthrough") else "buffered"


class ConnectorPool:
    """Backend servers and sidecars shared by a test session."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerProcess] = {}
        self.sidecars: dict[str, Sidecar] = {}
        self._dirs: list[str] = []

    def server(self, kind: str) -> ServerProcess:
        if kind not in self.servers:
            self.servers[kind] = _STARTERS[kind]()
        return self.servers[kind]

    def env(self, connector: str, prefix: str) -> dict[str, str]:
        """The environment a sidecar for ``connector`` needs, servers started."""
        kind = connector.split("-buffered")[0].split("-passthrough")[0]
        if kind == "local":
            root = tempfile.mkdtemp(prefix="vfs-local-")
            self._dirs.append(root)
            return {"STATE_ROOT": root, "STATE_PREFIX": prefix}
        if kind == "s3":
            from tests.harness import moto_s3
            return moto_s3.sidecar_env(self.server("s3"), BUCKET, prefix)
        if kind == "gcs":
            from tests.harness import fake_gcs
            return fake_gcs.sidecar_env(self.server("gcs"), BUCKET, prefix)
        if kind == "redis":
            from tests.harness import redis_server
            return redis_server.sidecar_env(self.server("redis"), prefix)
        if kind == "nats-kv":
            from tests.harness import nats_server
            return nats_server.sidecar_env(self.server("nats"), "state", prefix)
        raise ValueError(f"unknown connector {connector!r}")

    def sidecar(self, connector: str) -> Sidecar:
        if connector not in self.sidecars:
            env = self.env(connector, f"t-{connector}-{uuid.uuid4().hex[:8]}")
            self.sidecars[connector] = Sidecar(connector, env).start()
        return self.sidecars[connector]

    def close(self) -> None:
        for sidecar in self.sidecars.values():
            sidecar.close()
        for server in self.servers.values():
            server.close()
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)


def _s3() -> ServerProcess:
    from tests.harness import moto_s3
    server = moto_s3.MotoS3Server().start()
    moto_s3.create_bucket(server, BUCKET)
    return server


def _gcs() -> ServerProcess:
    from tests.harness import fake_gcs
    server = fake_gcs.FakeGcsServer(backend="memory").start()  # keeps markers
    fake_gcs.create_bucket(server, BUCKET)
    return server


def _redis() -> ServerProcess:
    from tests.harness import redis_server
    return redis_server.RedisServer().start()


def _nats() -> ServerProcess:
    from tests.harness import nats_server
    return nats_server.NatsServer().start()


_STARTERS: dict[str, Callable[[], ServerProcess]] = {
    "s3": _s3, "gcs": _gcs, "redis": _redis, "nats": _nats,
}
