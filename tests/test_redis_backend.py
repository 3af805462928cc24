"""The ``redis-buffered-cas`` connector against a real redis-server, over HTTP.

One private redis-server and one gunicorn sidecar serve the module; each test
works in its own directory. Values are checked with a plain redis client too,
since other tools must be able to read them.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import redis

from tests.harness.redis_server import RedisServer, sidecar_env
from tests.harness.sidecar import Sidecar
from tests.rawhttp import RawClient

PREFIX = "pfx"
MAX_SIZE = 3 << 20


@pytest.fixture(scope="module")
def server():
    with RedisServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def sidecar(server):
    env = sidecar_env(server, prefix=PREFIX)
    env["REDIS_MAX_OBJECT_SIZE"] = str(MAX_SIZE)
    with Sidecar("redis-buffered-cas", env) as sc:
        yield sc


@pytest.fixture
def client(sidecar) -> RawClient:
    return RawClient(sidecar.socket_path)


@pytest.fixture
def raw(server):
    r = redis.Redis.from_url(server.url)
    yield r
    r.close()


@pytest.fixture
def d() -> str:
    """A fresh directory name for one test."""
    return f"t-{uuid.uuid4().hex[:8]}"


def test_put_get_head_delete_and_plain_redis_get(client, raw, d):
    key = f"{d}/sub dir/ü#?.json"
    status, headers, _ = client.put(key, b'{"a": 1}')
    assert status == 204
    etag = headers["ETag"]
    status, headers, body = client.get(key)
    assert (status, body, headers["ETag"]) == (200, b'{"a": 1}', etag)
    status, headers, body = client.head(key)
    assert status == 200 and body == b""
    assert headers["Content-Length"] == "8" and headers["X-Is-File"] == "true"
    assert headers["ETag"] == etag and "GMT" in headers["Last-Modified"]
    assert raw.get(f"{PREFIX}/{key}") == b'{"a": 1}'  # a plain string for other clients
    assert client.head(f"{d}/sub dir")[1]["X-Is-File"] == "false"
    assert client.delete(key)[0] == 204
    assert client.get(key)[0] == 404
    assert client.delete(key)[0] == 404
    assert client.head(f"{d}/sub dir")[0] == 404  # the now empty directory is gone
    assert raw.exists(f"{PREFIX}/{key}") == 0


def test_versions_change_on_every_write(client, d):
    tags = {client.put(f"{d}/k", b"same")[1]["ETag"] for _ in range(3)}
    assert len(tags) == 3


def test_ranges_and_empty_value(client, d):
    client.put(f"{d}/r", b"0123456789")
    status, headers, body = client.get(f"{d}/r", Range="bytes=2-5")
    assert (status, body, headers["Content-Range"]) == (206, b"2345", "bytes 2-5/10")
    assert client.get(f"{d}/r", Range="bytes=7-")[2] == b"789"
    assert client.get(f"{d}/r", Range="bytes=-3")[2] == b"789"
    assert client.get(f"{d}/r", Range="bytes=8-100")[2] == b"89"
    assert client.get(f"{d}/r", Range="bytes=10-")[0] == 416
    client.put(f"{d}/empty", b"")
    status, headers, body = client.get(f"{d}/empty")
    assert (status, body, headers["Content-Length"]) == (200, b"", "0")
    assert client.get(f"{d}/empty", Range="bytes=0-")[:3:2] == (200, b"")
    assert client.get(f"{d}/empty", Range="bytes=1-")[0] == 416


def test_large_value_is_staged_and_read_in_chunks(client, raw, d):
    data = bytes(range(256)) * (10 * 1024 + 3)  # ~2.5 MiB: several 1 MiB chunks

    def chunked():
        for i in range(0, len(data), 300_000):
            yield data[i:i + 300_000]

    status, headers, _ = client.request("PUT", f"/keys/{d}/big", chunked())
    assert status == 204
    assert client.get(f"{d}/big")[2] == data
    status, _, body = client.get(f"{d}/big", Range=f"bytes={(1 << 20) - 5}-{(2 << 20) + 5}")
    assert status == 206 and body == data[(1 << 20) - 5:(2 << 20) + 6]
    assert raw.get(f"{PREFIX}/{d}/big") == data
    assert raw.ttl(f"{PREFIX}/{d}/big") == -1  # not the staging key's safety TTL
    assert not raw.keys(".vfs-state:tmp:*")  # the staging key was renamed into place


def test_cas_stale_if_match_fails_and_keeps_value(client, raw, d):
    v1 = client.put(f"{d}/c", b"one")[1]["ETag"]
    v2 = client.put(f"{d}/c", b"two", If_Match=v1)[1]["ETag"]
    status, _, body = client.put(f"{d}/c", b"three", If_Match=v1)
    assert status == 412 and json.loads(body)["error"] == "precondition_failed"
    assert client.get(f"{d}/c")[2] == b"two" and raw.get(f"{PREFIX}/{d}/c") == b"two"
    assert client.get(f"{d}/c", If_Match=v1)[0] == 412
    assert client.put(f"{d}/c", b"three", If_Match=v2)[0] == 204
    assert client.put(f"{d}/absent", b"x", If_Match=v2)[0] == 412


def test_create_race_has_one_winner(client, d):
    results: list[int] = []

    def create(i: int) -> None:
        results.append(client.put(f"{d}/race", f"writer {i}".encode(), If_None_Match="*")[0])

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [204] + [412] * 7
    assert client.get(f"{d}/race")[2].startswith(b"writer ")


def test_conditional_delete(client, d):
    old = client.put(f"{d}/x", b"1")[1]["ETag"]
    new = client.put(f"{d}/x", b"2")[1]["ETag"]
    assert client.delete(f"{d}/x", If_Match=old)[0] == 412
    assert client.get(f"{d}/x")[2] == b"2"
    assert client.delete(f"{d}/x", If_Match=new)[0] == 204
    assert client.get(f"{d}/x")[0] == 404


def test_listing_delimiter_paging_prefixes_and_markers(client, raw, d):
    for name in ("a", "b", "c.txt", "sub/x", "sub/deep/y", "subway"):
        assert client.put(f"{d}/{name}", b"v")[0] == 204
    assert client.put(f"{d}/empty/", b"")[0] == 204  # a marker
    client.put(f"{d}-sibling/z", b"v")              # outside, but sorts right after
    client.put(f"{d}a", b"v")
    raw.set(f"{PREFIX}/{d}/foreign", b"not indexed")  # written around the sidecar
    expected_keys = [f"{d}/a", f"{d}/b", f"{d}/c.txt", f"{d}/subway"]
    expected_prefixes = [f"{d}/empty/", f"{d}/sub/"]
    data = client.list(f"{d}/")
    assert (data["keys"], data["prefixes"]) == (expected_keys, expected_prefixes)
    assert "next" not in data
    assert client.list_all(f"{d}/", max_keys=2)[:2] == (expected_keys, expected_prefixes)
    assert client.list_all(f"{d}/su", max_keys=1)[:2] == ([f"{d}/subway"], [f"{d}/sub/"])
    keys, prefixes, _ = client.list_all(f"{d}/", delimiter=None, max_keys=3)
    assert prefixes == [] and keys == [f"{d}/a", f"{d}/b", f"{d}/c.txt", f"{d}/empty/",
                                       f"{d}/sub/deep/y", f"{d}/sub/x", f"{d}/subway"]
    assert client.list(f"{d}/empty/") == {"keys": [], "prefixes": []}
    assert client.head(f"{d}/empty/")[1]["X-Is-File"] == "false"
    assert client.delete(f"{d}/sub/")[0] == 409  # not empty
    assert client.delete(f"{d}/empty/")[0] == 204
    assert client.head(f"{d}/empty/")[0] == 404


def test_listings_drop_gone_entries_across_batches(client, raw, d):
    """More entries than one script batch; some values deleted or expired behind the
    sidecar's back, a directory whose only child went: both listing formats skip
    them and prune the index, and pages still join up."""
    names = [f"k{i:04d}" for i in range(2300)]
    for name in names:
        assert client.put(f"{d}/{name}", b"v")[0] == 204
    for sub in ("k0999m/", "k1000s/x"):  # a marked directory, one without marker
        assert client.put(f"{d}/{sub}", b"")[0] == 204
    gone = {"k0000", "k0500", "k0999", "k1000", "k2299"}
    for name in gone:
        raw.delete(f"{PREFIX}/{d}/{name}")
    raw.pexpire(f"{PREFIX}/{d}/k1500", 1)
    raw.delete(f"{PREFIX}/{d}/k1000s/x")
    time.sleep(0.05)
    gone.add("k1500")
    live = [n for n in names if n not in gone]
    for max_keys in (10000, 999, 1000):
        files, dirs, cursor = [], [], None
        while True:
            query = f"/keys/?prefix={d}/&delimiter=/&names=1&max_keys={max_keys}"
            status, _, body = client.request("GET", query + (f"&start_after={cursor}"
                                                              if cursor else ""))
            assert status == 200
            page = json.loads(body)
            files += page["files"]
            dirs += page["dirs"]
            cursor = page.get("next")
            if not cursor:
                break
        assert (files, dirs) == (live, ["k0999m"]), max_keys
    keys, prefixes, _ = client.list_all(f"{d}/", max_keys=1000)
    assert keys == [f"{d}/{n}" for n in live] and prefixes == [f"{d}/k0999m/"]
    indexed = {n.decode() for n in raw.zrange(f".vfs-state:d:{PREFIX}/{d}/", 0, -1)}
    assert indexed == set(live) | {"k0999m/"}


def test_directory_file_clashes_are_conflicts(client, raw, d):
    client.put(f"{d}/f", b"v")
    assert client.put(f"{d}/f/child", b"v")[0] == 409
    assert client.put(f"{d}/f/", b"")[0] == 409
    client.put(f"{d}/dir/child", b"v")
    assert client.put(f"{d}/dir", b"v")[0] == 409
    raw.set(PREFIX, b"someone else's key named like STATE_PREFIX")
    try:
        assert client.put(f"{d}/ok", b"v")[0] == 204
    finally:
        raw.delete(PREFIX)


def test_ttl_xattr_expires_key_and_hides_it_from_listings(client, raw, d):
    client.put(f"{d}/keep", b"v")
    client.put(f"{d}/gone", b"v")
    client.put(f"{d}/only/child", b"v")
    for key in (f"{d}/gone", f"{d}/only/child"):
        status, _, _ = client.request("PUT", f"/meta/{key}?attr=user.vfs.ttl", b"1")
        assert status == 204
    status, _, body = client.request("GET", f"/meta/{d}/gone?attr=ttl")
    assert status == 200 and json.loads(body)["value"] == "1"
    assert 0 < raw.pttl(f"{PREFIX}/{d}/gone") <= 1000
    assert 0 < raw.pttl(f".vfs-state:m:{PREFIX}/{d}/gone") <= 1000
    client.put(f"{d}/gone", b"rewritten")  # a rewrite keeps the TTL
    assert 0 < raw.pttl(f"{PREFIX}/{d}/gone") <= 1000
    assert client.list(f"{d}/")["keys"] == [f"{d}/gone", f"{d}/keep"]
    time.sleep(1.1)
    assert client.get(f"{d}/gone")[0] == 404
    assert raw.exists(f"{PREFIX}/{d}/gone", f".vfs-state:m:{PREFIX}/{d}/gone") == 0
    assert client.list(f"{d}/") == {"keys": [f"{d}/keep"], "prefixes": []}
    assert client.head(f"{d}/only")[0] == 404
    assert raw.zrange(f".vfs-state:d:{PREFIX}/{d}/", 0, -1) == [b"keep"]  # pruned
    def ttl() -> str:
        return json.loads(client.request("GET", f"/meta/{d}/keep?attr=ttl")[2])["value"]

    client.request("PUT", f"/meta/{d}/keep?attr=ttl", b"100")
    assert ttl() in ("99", "100")
    client.request("PUT", f"/meta/{d}/keep?attr=ttl", b"-1")
    assert ttl() == "-1"
    assert raw.ttl(f"{PREFIX}/{d}/keep") == -1
    assert client.request("PUT", f"/meta/{d}/keep?attr=ttl", b"soon")[0] == 400
    assert client.request("PUT", f"/meta/{d}/keep?attr=version", b"1")[0] == 403
    assert client.request("PUT", f"/meta/{d}/nope?attr=ttl", b"5")[0] == 404


def _early_response(socket_path: str, head: bytes, body_parts) -> bytes:  # noqa: ANN001
    """Send a request whose body the sidecar refuses part-way; return the answer.

    gunicorn answers 413 and then closes without draining a large body, so
    a sender sees a broken pipe; read the response regardless.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(socket_path)
    try:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:
                break
        response = b""
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
        return response
    finally:
        sock.close()


def test_oversize_body_is_413_and_stores_nothing(client, raw, sidecar, d):
    head = (f"PUT /keys/{d}/huge HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {MAX_SIZE + 1}\r\n\r\n").encode()
    answer = _early_response(sidecar.socket_path, head, [b"x" * (MAX_SIZE + 1)])
    assert answer.startswith(b"HTTP/1.1 413")
    head = (f"PUT /keys/{d}/huge HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"100000\r\n" + b"y" * (1 << 20) + b"\r\n"  # 1 MiB chunks, no length up front
    answer = _early_response(sidecar.socket_path, head, [chunk] * 4 + [b"0\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 413")
    assert client.get(f"{d}/huge")[0] == 404
    assert not raw.keys(".vfs-state:tmp:*")  # the staged part was discarded
    assert client.put(f"{d}/fine", b"x" * MAX_SIZE)[0] == 204


def test_sidecar_answers_503_while_redis_is_down(client, server, d):
    client.put(f"{d}/durable", b"kept")
    server.stop()
    try:
        assert client.get(f"{d}/durable")[0] == 503
        assert client.put(f"{d}/other", b"x")[0] == 503
        assert client.request("GET", "/readyz")[0] == 503
        assert client.request("GET", "/healthz")[0] == 200
    finally:
        server.start()
    assert client.request("GET", "/readyz")[0] == 200
    assert client.get(f"{d}/durable")[2] == b"kept"  # AOF brought it back
    assert client.put(f"{d}/other", b"x")[0] == 204
