"""Redis reads: one transaction of plain commands, no Lua, the same answers.

The backend is driven in this process against a real redis-server, and the
server's ``MONITOR`` feed shows what each read sent.
"""
from __future__ import annotations

import io
import os
import signal
import time

import pytest
import redis

from sidecars.errors import BackendTimeout, NotFound, PreconditionFailed, RangeNotSatisfiable
from sidecars.redis import CHUNK, RedisBackend
from tests.harness.economy import RedisMonitor
from tests.harness.redis_server import RedisServer


@pytest.fixture(scope="module")
def server():
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def backend(server):
    b = RedisBackend(server.url)
    yield b
    b.close()


def _put(backend: RedisBackend, key: str, data: bytes) -> str:
    return backend.write(key, io.BytesIO(data), len(data)).version


def _read(backend: RedisBackend, key: str, start: int = 0, length: int | None = None,
          if_match: str | None = None) -> bytes:
    body = backend.read(key, start, length, if_match)
    return b"".join(body.chunks)


def test_a_small_read_is_one_transaction_without_a_script(server, backend):
    _put(backend, "r/a", b"x" * 1024)
    monitor, control = RedisMonitor(server.url), redis.Redis.from_url(server.url)
    try:
        monitor.take(control)
        assert _read(backend, "r/a") == b"x" * 1024
        sent = monitor.take(control)
    finally:
        monitor.close()
        control.close()
    assert len(sent) == 1 and sent[0].startswith("MULTI "), sent
    assert not any(word in sent[0].upper() for word in ("EVAL", "FCALL")), sent


def test_a_stat_is_one_transaction_without_a_script(server, backend):
    version = _put(backend, "r/s", b"x" * 10)
    monitor, control = RedisMonitor(server.url), redis.Redis.from_url(server.url)
    try:
        monitor.take(control)
        info = backend.stat("r/s")
        missing = backend.stat("r/no-such-key")
        sent = monitor.take(control)
    finally:
        monitor.close()
        control.close()
    assert info is not None and (info.size, info.version) == (10, version) and info.modified
    assert missing is None
    assert len(sent) == 2 and all(s.startswith("MULTI ") for s in sent), sent
    assert not any(word in s.upper() for s in sent for word in ("EVAL", "FCALL")), sent


def test_version_mtime_ranges_and_errors(server, backend):
    version = _put(backend, "r/b", b"0123456789")
    body = backend.read("r/b", 2, 3)
    assert body.info.version == version and body.info.size == 10 and body.info.modified
    assert b"".join(body.chunks) == b"234"
    assert _read(backend, "r/b", 8) == b"89"
    assert _read(backend, "r/b", if_match=version) == b"0123456789"
    with pytest.raises(PreconditionFailed):
        backend.read("r/b", if_match=str(int(version) + 1))
    with pytest.raises(RangeNotSatisfiable):
        backend.read("r/b", 10)
    with pytest.raises(NotFound):
        backend.read("r/missing")
    redis.Redis.from_url(server.url).hset("r/hash", "f", "1")
    with pytest.raises(NotFound):  # not a value of ours
        backend.read("r/hash")


def test_empty_value_and_zero_length(backend):
    _put(backend, "r/empty", b"")
    assert _read(backend, "r/empty") == b""
    _put(backend, "r/c", b"abc")
    assert _read(backend, "r/c", 0, 0) == b""


def test_a_value_replaced_between_chunks_fails(backend):
    data = bytes(range(256)) * (CHUNK // 256) * 2 + b"tail"
    _put(backend, "r/big", data)
    body = backend.read("r/big")
    chunks = iter(body.chunks)
    assert next(chunks) == data[:CHUNK]
    _put(backend, "r/big", b"new")
    with pytest.raises((PreconditionFailed, RangeNotSatisfiable)):
        list(chunks)


def test_a_dropped_connection_is_replaced(server, backend):
    _put(backend, "r/d", b"d")
    assert _read(backend, "r/d") == b"d"
    control = redis.Redis.from_url(server.url)
    control.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    control.close()
    assert _read(backend, "r/d") == b"d"
    assert backend.stat("r/d") is not None


def test_a_failed_exchange_never_returns_its_connection(server, backend):
    """A connection that raised mid-exchange is closed, so no later read sees its replies."""
    _put(backend, "r/e", b"e")
    _put(backend, "r/f", b"f")
    with pytest.raises(PreconditionFailed):  # raised after the whole reply was read
        backend.read("r/e", if_match="no-such-version")
    redis.Redis.from_url(server.url).hset("r/hash2", "f", "1")
    with pytest.raises(NotFound):
        backend.read("r/hash2")
    assert [_read(backend, k) for k in ("r/e", "r/f", "r/e")] == [b"e", b"f", b"e"]


def test_a_server_that_stops_answering_times_out_and_the_next_read_works():
    """The socket timeout (kept by the kernel on plain sockets) still bounds an exchange."""
    with RedisServer() as srv:
        backend = RedisBackend(srv.url, timeout=0.5)
        try:
            _put(backend, "t/a", b"a")
            assert _read(backend, "t/a") == b"a"  # a connection is now idle on the stack
            os.kill(srv.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(BackendTimeout):
                    _read(backend, "t/a")
                waited = time.monotonic() - started
            finally:
                os.kill(srv.proc.pid, signal.SIGCONT)
            assert 0.4 < waited < 5, waited
            assert _read(backend, "t/a") == b"a"
        finally:
            backend.close()
