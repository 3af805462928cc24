"""One backend server per connector family, started for a test that may kill it.

``start(kind, tmp)`` returns a ``Backend``: the server (``None`` for local),
the connector to run, the sidecar's environment, whether data survives a
server restart, and ``revive()`` to run after a restart (moto comes back
empty, so its bucket is recreated).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.harness.base import ServerProcess

KINDS = ("local", "s3", "gcs", "redis", "nats")
#: the connector each kind runs: CAS where the family has it
CONNECTOR = {"local": "local-buffered-cas", "s3": "s3-buffered-cas", "gcs": "gcs-buffered-cas",
             "redis": "redis-buffered-cas", "nats": "nats-kv-buffered-cas"}


@dataclass
class Backend:
    kind: str
    server: ServerProcess | None
    env: dict[str, str]
    persistent: bool = True
    revive: Callable[[], None] = field(default=lambda: None)
    s3: object | None = None  # a boto3 client for checks (S3 only)
    max_value: int | None = None  # the largest value the store takes (NATS KV), else None

    @property
    def connector(self) -> str:
        return CONNECTOR[self.kind]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def start(kind: str, tmp: str) -> Backend:
    """A fresh, private backend of ``kind`` (``tmp`` holds a local root)."""
    bucket = "faults-" + uuid.uuid4().hex[:12]
    if kind == "local":
        root = os.path.join(tmp, "root")
        os.makedirs(root, exist_ok=True)
        return Backend(kind, None, {"STATE_ROOT": root})
    if kind == "s3":
        from tests.harness import moto_s3
        server = moto_s3.MotoS3Server().start()
        moto_s3.create_bucket(server, bucket)
        return Backend(kind, server, moto_s3.sidecar_env(server, bucket), persistent=False,
                       revive=lambda: moto_s3.create_bucket(server, bucket),
                       s3=moto_s3.s3_client(server))
    if kind == "gcs":
        from tests.harness import fake_gcs
        server = fake_gcs.FakeGcsServer().start()
        fake_gcs.create_bucket(server, bucket)
        return Backend(kind, server, fake_gcs.sidecar_env(server, bucket))
    if kind == "redis":
        from tests.harness import redis_server
        server = redis_server.RedisServer().start()
        return Backend(kind, server, redis_server.sidecar_env(server))
    if kind == "nats":
        from tests.harness import nats_server
        server = nats_server.NatsServer().start()
        return Backend(kind, server, nats_server.sidecar_env(server, "faults"),
                       max_value=1 << 20)
    raise ValueError(f"unknown backend kind {kind!r}; known: {', '.join(KINDS)}")
