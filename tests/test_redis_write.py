"""Redis writes and scripts on the sidecar's own connection stack: applied once, errors mapped.

The backend is driven in this process against a real redis-server. The
server's global ``seq`` counter goes up by one per applied write, so it
tells a write applied once from one applied twice; ``MONITOR`` shows what
was sent; ``CLIENT KILL``, ``CLIENT PAUSE`` and ``SCRIPT FLUSH`` make the
failures.
"""
from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from sidecars import redis_conn
from sidecars.errors import BackendUnavailable, Conflict, NotFound, PreconditionFailed
from sidecars.redis import CHUNK, META, SEQ, RedisBackend
from tests.harness.economy import RedisMonitor
from tests.harness.redis_server import RedisServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture(params=["hiredis", "redis-py parser"])
def backend(request: pytest.FixtureRequest, server: RedisServer,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisBackend]:
    """Replies parsed by the stack's own hiredis reader, or by redis-py's (no hiredis)."""
    if request.param != "hiredis":
        monkeypatch.setattr(redis_conn, "hiredis", None)
    b = RedisBackend(server.url)
    yield b
    b.close()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(server.url)
    yield r
    r.close()


def _put(backend: RedisBackend, key: str, data: bytes, if_match: str | None = None,
         if_none_match: bool = False) -> str:
    return backend.write(key, io.BytesIO(data), len(data), if_match, if_none_match).version


def _seq(raw: redis.Redis) -> int:
    return int(raw.get(SEQ) or 0)


def _kill_others(raw: redis.Redis) -> None:
    raw.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


def test_reads_and_stats_on_either_parser(backend, raw):
    version = _put(backend, "p/k", b"0123456789")
    body = backend.read("p/k", 2, 3)
    assert b"".join(body.chunks) == b"234" and body.info.version == version
    assert backend.stat("p/k").size == 10  # type: ignore[union-attr]
    assert backend.stat("p/missing") is None
    with pytest.raises(PreconditionFailed):
        backend.read("p/k", if_match="no-such-version")
    raw.hset("p/hash", "f", "1")
    with pytest.raises(NotFound):
        backend.read("p/hash")
    assert backend.list_page("p/", "/", None, 10).keys == ["p/k"]


def test_a_write_is_one_evalsha(server, backend, raw):
    _put(backend, "w/one", b"a")
    monitor = RedisMonitor(server.url)
    try:
        monitor.take(raw)
        _put(backend, "w/one", b"b")
        sent = monitor.take(raw)
    finally:
        monitor.close()
    assert len(sent) == 1 and sent[0].upper().startswith("EVALSHA "), sent


def test_a_connection_the_server_closed_while_idle_is_replaced(backend, raw):
    _put(backend, "w/idle", b"1")
    before = _seq(raw)
    _kill_others(raw)  # the backend's idle connection is gone
    version = _put(backend, "w/idle", b"2")
    assert _seq(raw) == before + 1 == int(version)  # applied once
    assert raw.get("w/idle") == b"2"
    _kill_others(raw)
    backend.delete("w/idle", if_match=version)
    assert raw.exists("w/idle") == 0


def test_a_write_lost_after_sending_is_unavailable_and_not_sent_again(backend, raw):
    """The server took the command but the connection died: 503, never a second try."""
    version = _put(backend, "w/lost", b"old")
    before = _seq(raw)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            _put(backend, "w/lost", b"new")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    raw.client_pause(10_000, all=False)  # write commands wait; the connection stays up
    thread = threading.Thread(target=write)
    try:
        thread.start()
        deadline = time.monotonic() + 5
        while raw.info("clients")["blocked_clients"] < 1:  # the write is on the server
            assert time.monotonic() < deadline, "the write never reached the server"
            time.sleep(0.01)
        _kill_others(raw)
        thread.join(3)  # a resend would wait for the pause to end
        assert not thread.is_alive(), "the write was sent again"
    finally:
        raw.client_unpause()
        thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], BackendUnavailable), errors
    assert "may or may not have run" in str(errors[0])
    time.sleep(0.1)
    assert raw.get("w/lost") == b"old" and _seq(raw) == before
    assert backend.stat("w/lost").version == version  # type: ignore[union-attr]
    _put(backend, "w/lost", b"next")  # the stack recovers
    assert _seq(raw) == before + 1


def test_noscript_after_script_flush_loads_the_script_and_applies_once(backend, raw):
    _put(backend, "f/flush", b"1")
    raw.script_flush()
    before = _seq(raw)
    assert _put(backend, "f/flush", b"2") == str(before + 1)
    assert _seq(raw) == before + 1 and raw.get("f/flush") == b"2"
    raw.script_flush()
    with pytest.raises(PreconditionFailed):  # a failing script after a flush: mapped too
        _put(backend, "f/flush", b"3", if_match="1")
    raw.script_flush()
    assert [k for k in backend.list_page("f/", "/", None, 100).keys] == ["f/flush"]
    assert raw.get("f/flush") == b"2" and _seq(raw) == before + 1


def test_error_replies_are_mapped_and_keep_the_connection(backend, raw):
    version = _put(backend, "w/e/k", b"v")
    with pytest.raises(PreconditionFailed):
        _put(backend, "w/e/k", b"x", if_match=str(int(version) + 1000))
    with pytest.raises(PreconditionFailed):
        _put(backend, "w/e/k", b"x", if_none_match=True)
    raw.hset("w/e/hash", "f", "1")
    with pytest.raises(Conflict) as clash:
        _put(backend, "w/e/hash", b"x")
    assert clash.value.code == "conflict"
    with pytest.raises(Conflict) as is_dir:
        _put(backend, "w/e", b"x")
    assert is_dir.value.code == "is_a_directory"
    with pytest.raises(Conflict):  # a parent is a value
        _put(backend, "w/e/k/child", b"x")
    with pytest.raises(NotFound):
        backend.delete("w/e/missing")
    with pytest.raises(Conflict) as not_empty:
        backend.delete("w/e/")
    assert not_empty.value.code == "directory_not_empty"
    with pytest.raises(PreconditionFailed):
        backend.delete("w/e/k", if_match=str(int(version) + 1000))
    clients = len(raw.client_list())
    assert _put(backend, "w/e/k", b"y", if_match=version)
    assert len(raw.client_list()) == clients  # error replies left the connection usable
    assert raw.get("w/e/k") == b"y"


def test_redis_refusals_are_unavailable(backend, raw):
    _put(backend, "w/ro", b"1")
    raw.config_set("maxmemory", "1")
    try:
        with pytest.raises(BackendUnavailable):
            _put(backend, "w/ro", b"2")
    finally:
        raw.config_set("maxmemory", "0")
    assert raw.get("w/ro") == b"1"


def test_overwrites_stay_listed_and_foreign_values_get_linked(backend, raw):
    _put(backend, "l/l/a", b"1")
    _put(backend, "l/l/a", b"2")  # existed: no new index entries needed
    raw.set("l/l/b", b"foreign")  # a value another tool wrote: no metadata yet
    _put(backend, "l/l/b", b"ours")
    raw.delete("l/l/c")
    _put(backend, "l/l/c", b"3")
    backend.set_attr("l/l/c", "ttl", "0.05")
    time.sleep(0.2)  # expired with its metadata; the index entry stays as a hint
    _put(backend, "l/l/c", b"again")
    page = backend.list_page("l/l/", "/", None, 100)
    assert page.keys == ["l/l/a", "l/l/b", "l/l/c"]
    assert backend.list_page("l/", "/", None, 100).prefixes == ["l/l/"]


def test_rewrites_keep_or_drop_the_ttl_small_and_staged(backend, raw):
    big = b"b" * (CHUNK + 10)  # staged in a temporary key with a TTL of its own
    for data in (b"small", big):
        _put(backend, "t/plain", data)
        assert raw.pttl("t/plain") == -1 and raw.pttl(META + "t/plain") == -1
        _put(backend, "t/plain", data)
        assert raw.pttl("t/plain") == -1 and raw.pttl(META + "t/plain") == -1
        backend.set_attr("t/plain", "ttl", "100")
        _put(backend, "t/plain", data)
        assert 0 < raw.pttl("t/plain") <= 100_000 and 0 < raw.pttl(META + "t/plain") <= 100_000
        backend.set_attr("t/plain", "ttl", "-1")
        assert raw.get("t/plain") == data


def test_a_restarted_server_gets_the_scripts_again_and_each_write_once():
    """Idle connections to the old process are dropped unsent; its script cache is empty."""
    with RedisServer() as srv:
        backend = RedisBackend(srv.url)
        try:
            _put(backend, "r/k", b"1")
            backend.delete("r/k")
            _put(backend, "r/k", b"2")
            srv.restart()  # same port, data back from the append-only file
            raw = redis.Redis.from_url(srv.url)
            before = _seq(raw)
            assert _put(backend, "r/k", b"3") == str(before + 1)
            assert _seq(raw) == before + 1 and raw.get("r/k") == b"3"
            raw.close()
        finally:
            backend.close()
