"""A backend that goes away fails fast as ConnectionError/TimeoutError, and comes back."""
from __future__ import annotations

import time

import pytest

from tests.harness.sidecar import Sidecar
from vfs_state import StateFS

BOUND = 15.0  # seconds an operation may take to fail while the backend is down


def _nats():
    from tests.harness import nats_server
    server = nats_server.NatsServer().start()
    return server, "nats-kv-buffered-cas", nats_server.sidecar_env(server, "outage")


def _gcs():
    from tests.harness import fake_gcs
    server = fake_gcs.FakeGcsServer().start()
    fake_gcs.create_bucket(server, "outage")
    return server, "gcs-buffered-cas", fake_gcs.sidecar_env(server, "outage")


def _redis():
    from tests.harness import redis_server
    server = redis_server.RedisServer().start()
    return server, "redis-buffered-cas", redis_server.sidecar_env(server)


@pytest.mark.parametrize("start", [_nats, _gcs, _redis], ids=["nats", "gcs", "redis"])
def test_outage_and_recovery_without_sidecar_restart(start):
    server, connector, env = start()
    try:
        with Sidecar(connector, env, workers=1) as sidecar:
            fs = StateFS(sidecar.socket_path)
            fs.writebytes("k", b"before")
            server.stop()
            for operation in (lambda: fs.readbytes("k"), lambda: fs.writebytes("k", b"x"),
                              lambda: fs.listdir("/")):
                began = time.monotonic()
                with pytest.raises((ConnectionError, TimeoutError)):
                    operation()
                assert time.monotonic() - began < BOUND
            server.start()
            deadline = time.monotonic() + 30
            while True:
                try:
                    fs.writebytes("k", b"after")
                    break
                except (ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert fs.readbytes("k") == b"after"
            assert sidecar.proc is not None and sidecar.proc.poll() is None
    finally:
        server.close()
