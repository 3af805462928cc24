"""A backend that goes away fails fast as ConnectionError/TimeoutError, and comes back.

Every connector with a server (S3, GCS, Redis, NATS): read, write, list and
delete while the backend is stopped each fail within ``BOUND`` seconds (a
bound on a hang, not a speed check), and the same sidecar serves again once
the backend is back. Faults *during* an operation are in tests/test_faults.py.
"""
from __future__ import annotations

import time

import pytest

from tests.harness import backends
from tests.harness.sidecar import Sidecar
from vfs_state import StateFS

BOUND = 15.0  # seconds an operation may take to fail while the backend is down
OUTAGE_ERRORS = (ConnectionError, TimeoutError, OSError)


KINDS = ["nats", "gcs", "redis", "s3"]


def fails_within_bound(operation) -> OSError:  # noqa: ANN001
    """``operation`` raises an outage error (not a hang, not a wrong answer)."""
    began = time.monotonic()
    with pytest.raises(OUTAGE_ERRORS) as raised:
        operation()
    assert time.monotonic() - began < BOUND
    assert not isinstance(raised.value, (FileNotFoundError, FileExistsError, PermissionError))
    return raised.value


def write_until_back(fs: StateFS, key: str, data: bytes, limit: float = 30) -> None:
    """Retry a write while the backend comes back; the sidecar is never restarted."""
    deadline = time.monotonic() + limit
    while True:
        try:
            fs.writebytes(key, data)
            return
        except OUTAGE_ERRORS:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("kind", KINDS)
def test_outage_and_recovery_without_sidecar_restart(kind, tmp_path):
    backend = backends.start(kind, str(tmp_path))
    server = backend.server
    assert server is not None
    try:
        with Sidecar(backend.connector, backend.env, workers=1) as sidecar:
            fs = StateFS(sidecar.socket_path)
            fs.writebytes("k", b"before")
            fs.writebytes("gone", b"x")
            server.stop()
            for operation in (lambda: fs.readbytes("k"), lambda: fs.writebytes("k", b"x"),
                              lambda: fs.listdir("/"), lambda: fs.remove("gone")):
                fails_within_bound(operation)
            server.start()
            backend.revive()
            write_until_back(fs, "new", b"after")
            assert fs.readbytes("new") == b"after"
            if backend.persistent:  # a backend that keeps its data: nothing was lost or changed
                assert fs.readbytes("k") == b"before"
                assert sorted(fs.listdir("/")) == ["gone", "k", "new"]
            fs.remove("new")
            assert not fs.exists("new")
            assert sidecar.proc is not None and sidecar.proc.poll() is None
    finally:
        server.close()
