"""The GCS connector end to end: fake-gcs-server, a gunicorn sidecar, raw HTTP.

Nothing is mocked: requests go over the sidecar's Unix socket, the sidecar
talks to a real fake-gcs-server. The main server uses fake-gcs's memory
backend, because its filesystem backend turns keys into directories (markers
vanish, ``a`` and ``a/b`` cannot coexist); the outage test uses the
filesystem backend, whose data survives a restart.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from sidecars.errors import BadRequest
from sidecars.gcs import GcsBackend
from tests.harness.counting_proxy import CountingProxy
from tests.harness.fake_gcs import FakeGcsServer, create_bucket, sidecar_env
from tests.harness.sidecar import Sidecar
from tests.rawhttp import RawClient, key_url

BUCKET = "vfs-state-test"
FAST_FAILURE = {"GCS_RETRY_DEADLINE": "1.5", "GCS_TIMEOUT": "3"}
MiB = 1 << 20


class Http(RawClient):
    """``RawClient`` plus the shorthands these tests use: ``(status, headers, body)``."""

    def __call__(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                 headers: dict[str, str] | None = None):  # noqa: ANN204
        chunked = body is not None and not isinstance(body, bytes)
        return self.request(method, path, body, headers, chunked=chunked)

    def etag(self, key: str) -> str:
        status, headers, _ = self.head(key)
        assert status == 200, status
        return headers["ETag"]

    def listing(self, **params: str) -> dict:
        status, _, body = self("GET", "/keys/?" + urllib.parse.urlencode(params))
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGcsServer]:
    with FakeGcsServer(backend="memory") as server:
        create_bucket(server, BUCKET)
        yield server


@pytest.fixture(scope="module")
def cas(fake: FakeGcsServer) -> Iterator[Http]:
    env = {**sidecar_env(fake, BUCKET, prefix="cas-mount"), **FAST_FAILURE}
    with Sidecar("gcs-buffered-cas", env) as sidecar:
        yield Http(sidecar.socket_path)


@pytest.fixture(scope="module")
def lww(fake: FakeGcsServer) -> Iterator[Http]:
    with Sidecar("gcs-buffered-lww", sidecar_env(fake, BUCKET, prefix="lww-mount")) as sidecar:
        yield Http(sidecar.socket_path)


@pytest.fixture(scope="module")
def gcs(fake: FakeGcsServer) -> storage.Bucket:
    """Direct access to the bucket, to check what the sidecar really stored."""
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": fake.url})
    return client.bucket(BUCKET)


def test_put_get_head_delete(cas: Http, gcs: storage.Bucket) -> None:
    status, headers, _ = cas.put("basic/a.txt", b"hello world")
    assert status == 204
    etag = headers["ETag"]
    blob = gcs.get_blob("cas-mount/basic/a.txt")
    assert blob is not None and etag == f'"{blob.generation}"'  # STATE_PREFIX applied

    status, headers, body = cas.get("basic/a.txt")
    assert (status, body, headers["ETag"]) == (200, b"hello world", etag)
    status, headers, body = cas("HEAD", key_url("basic/a.txt"))
    assert status == 200 and body == b""
    assert headers["Content-Length"] == "11" and headers["X-Is-File"] == "true"
    assert headers["ETag"] == etag and headers["Last-Modified"].endswith("GMT")
    status, headers, _ = cas("HEAD", key_url("basic"))
    assert (status, headers["X-Is-File"]) == (200, "false")

    assert cas("DELETE", key_url("basic/a.txt"))[0] == 204
    assert cas.get("basic/a.txt")[0] == 404
    assert cas("HEAD", key_url("basic/a.txt"))[0] == 404
    status, _, body = cas("DELETE", key_url("basic/a.txt"))
    assert status == 404 and json.loads(body)["error"] == "not_found"


def test_awkward_key_names_round_trip(cas: Http) -> None:
    key = "odd/with space #hash ?q=1 ünï€ode.bin"
    assert cas.put(key, b"x")[0] == 204
    assert cas.get(key)[2] == b"x"
    assert cas.listing(prefix="odd/")["keys"] == [key]


def test_ranges(cas: Http) -> None:
    data = bytes(range(256)) * 40
    cas.put("range/r.bin", data)
    status, headers, body = cas.get("range/r.bin", Range="bytes=10-19")
    assert (status, body) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert cas.get("range/r.bin", Range="bytes=10000-")[2] == data[10000:]
    assert cas.get("range/r.bin", Range="bytes=-5")[2] == data[-5:]
    status, headers, body = cas.get("range/r.bin", Range="bytes=10230-99999")  # clamped
    assert (status, body) == (206, data[10230:])
    assert cas.get("range/r.bin", Range=f"bytes={len(data)}-")[0] == 416
    assert cas.get("range/r.bin", Range="bytes=99999-100000")[0] == 416
    assert cas.get("range/missing", Range="bytes=0-1")[0] == 404


def test_empty_object(cas: Http) -> None:
    status, headers, _ = cas.put("empty/e", b"")
    assert status == 204
    status, _, body = cas.get("empty/e")
    assert (status, body) == (200, b"")
    status, headers, body = cas.get("empty/e", Range="bytes=0-")
    assert (status, body, headers["Content-Length"]) == (200, b"", "0")
    assert cas.get("empty/e", Range="bytes=0-99")[2] == b""
    assert cas.get("empty/e", Range="bytes=1-")[0] == 416


def test_cas_stale_if_match_is_refused(cas: Http) -> None:
    first = cas.put("cas/v", b"one")[1]["ETag"]
    status, headers, _ = cas.put("cas/v", b"two", If_Match=first)
    assert status == 204
    second = headers["ETag"]
    assert second != first
    status, _, body = cas.put("cas/v", b"three", If_Match=first)
    assert status == 412 and json.loads(body)["error"] == "precondition_failed"
    assert cas.get("cas/v")[2] == b"two"
    assert cas.etag("cas/v") == second
    assert cas.put("cas/v", b"junk", If_Match='"not-a-generation"')[0] == 412
    assert cas.put("cas/absent", b"x", If_Match=second)[0] == 412
    assert cas.get("cas/absent")[0] == 404


def test_cas_read_with_stale_if_match(cas: Http) -> None:
    old = cas.put("cas/read", b"old")[1]["ETag"]
    new = cas.put("cas/read", b"new")[1]["ETag"]
    assert cas.get("cas/read", If_Match=old)[0] == 412
    assert cas.get("cas/read", If_Match=new)[2] == b"new"


def test_create_only_race(cas: Http) -> None:
    assert cas.put("cas/created", b"first", If_None_Match="*")[0] == 204
    assert cas.put("cas/created", b"second", If_None_Match="*")[0] == 412
    assert cas.get("cas/created")[2] == b"first"
    # Eight clients, both workers, one new key at once: exactly one create wins.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: cas.put("cas/raced", b"%d" % i, If_None_Match="*")[0], range(8)))
    assert sorted(results) == [204] + [412] * 7
    assert cas.get("cas/raced")[2] == b"%d" % results.index(204)
    etag = cas.etag("cas/raced")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: cas.put("cas/raced", b"u%d" % i, If_Match=etag)[0], range(8)))
    assert sorted(results) == [204] + [412] * 7
    assert cas.get("cas/raced")[2] == b"u%d" % results.index(204)


def test_conditional_delete(cas: Http) -> None:
    old = cas.put("cas/del", b"1")[1]["ETag"]
    new = cas.put("cas/del", b"2")[1]["ETag"]
    assert cas("DELETE", key_url("cas/del"), headers={"If-Match": old})[0] == 412
    assert cas.get("cas/del")[2] == b"2"
    assert cas("DELETE", key_url("cas/del"), headers={"If-Match": new})[0] == 204
    assert cas.get("cas/del")[0] == 404
    assert cas("DELETE", key_url("cas/del"), headers={"If-Match": new})[0] == 404


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset:offset + size]


def test_large_chunked_put_lands_intact(cas: Http) -> None:
    data = os.urandom(20 * MiB + 12345)
    status, headers, _ = cas("PUT", key_url("big/chunked.bin"), _pieces(data, 300_001))
    assert status == 204
    status, got_headers, body = cas.get("big/chunked.bin")
    assert status == 200 and got_headers["ETag"] == headers["ETag"]
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    # A known length above one part goes through the resumable path too, with CAS.
    stale = headers["ETag"]
    known = data[:9 * MiB]
    status, headers, _ = cas.put("big/chunked.bin", known, If_Match=stale)
    assert status == 204
    assert cas.get("big/chunked.bin", Range=f"bytes={9 * MiB - 4}-")[2] == known[-4:]
    assert cas("PUT", key_url("big/chunked.bin"), _pieces(data, MiB), {"If-Match": stale})[0] == 412
    assert cas.etag("big/chunked.bin") == headers["ETag"]
    assert cas("PUT", key_url("big/exact.bin"), _pieces(data[:8 * MiB], MiB))[0] == 204
    assert cas.get("big/exact.bin")[2] == data[:8 * MiB]


def _raw_chunked_put(socket_path: str, key: str, pieces: Iterable[bytes], tail: bytes) -> bytes:
    """Send a chunked PUT by hand, end it with ``tail`` (broken framing) and return the reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(socket_path)
    try:
        sock.sendall(f"PUT {key_url(key)} HTTP/1.1\r\nHost: localhost\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        for piece in pieces:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(tail)
        if not tail:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply:
                break
        return reply
    except OSError:
        return b""
    finally:
        sock.close()


def test_interrupted_chunked_upload_keeps_old_object(cas: Http, gcs: storage.Bucket) -> None:
    cas.put("big/victim", b"the old value")
    etag = cas.etag("big/victim")
    pieces = list(_pieces(os.urandom(10 * MiB), MiB))  # past one part: a resumable session
    reply = _raw_chunked_put(cas.socket_path, "big/victim", pieces, b"zz-not-hex\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    _raw_chunked_put(cas.socket_path, "big/victim", pieces, b"")  # client vanishes mid-body
    time.sleep(0.3)  # let the worker notice
    assert cas.get("big/victim")[2] == b"the old value"
    assert cas.etag("big/victim") == etag
    assert [b.name for b in gcs.list_blobs(prefix="cas-mount/big/victim")] == [
        "cas-mount/big/victim"]
    assert cas("GET", "/healthz")[0] == 200


def test_listing_delimiter_paging_prefixes_markers(cas: Http) -> None:
    for key in ("ls/a", "ls/b/x", "ls/b/y/z", "ls/c", "ls/d-e", "ls/e/"):
        assert cas.put(key, b"" if key.endswith("/") else key.encode())[0] == 204
    top = cas.listing(prefix="ls/", delimiter="/")
    assert top == {"keys": ["ls/a", "ls/c", "ls/d-e"], "prefixes": ["ls/b/", "ls/e/"]}

    seen, cursor = [], None
    while True:
        params = {"prefix": "ls/", "delimiter": "/", "max_keys": "2"}
        if cursor:
            params["start_after"] = cursor
        page = cas.listing(**params)
        seen += page["keys"] + page["prefixes"]
        assert len(page["keys"]) + len(page["prefixes"]) <= 2
        cursor = page.get("next")
        if cursor is None:
            break
    assert seen == ["ls/a", "ls/b/", "ls/c", "ls/d-e", "ls/e/"]

    assert cas.listing(prefix="ls/", delimiter="/", start_after="ls/b/")["keys"][0] == "ls/c"
    flat = cas.listing(prefix="ls/")
    assert flat["keys"] == ["ls/a", "ls/b/x", "ls/b/y/z", "ls/c", "ls/d-e", "ls/e/"]
    assert cas.listing(prefix="ls/e/")["keys"] == []  # the marker itself is not a child
    status, headers, _ = cas("HEAD", key_url("ls/e/"))
    assert (status, headers["X-Is-File"]) == (200, "false")
    assert cas("HEAD", key_url("ls/nothing/"))[0] == 404
    assert cas("DELETE", key_url("ls/e/"))[0] == 204
    assert cas("HEAD", key_url("ls/e/"))[0] == 404
    many = [f"many/k{i:03d}" for i in range(25)]
    for key in many:
        cas.put(key, b"")
    page = cas.listing(prefix="many/", max_keys="10", start_after="many/k004")
    assert page["keys"] == many[5:15] and page["next"] == "many/k014"


def _expected(keys: list[str], prefix: str, delimiter: bool) -> list[str]:
    """What a listing must return, computed from the key set."""
    entries = set()
    for key in keys:
        if not key.startswith(prefix) or key == prefix:
            continue
        rest = key[len(prefix):]
        cut = rest.find("/")
        entries.add(prefix + rest[:cut + 1] if delimiter and 0 <= cut < len(rest) - 1 else key)
    return sorted(entries)


@pytest.mark.parametrize("max_keys", [1, 2, 3, 7, 1000])
def test_paging_matches_a_model(cas: Http, max_keys: int) -> None:
    # no file "pg/b" beside "pg/b/": a file and a directory never share a name
    keys = ["pg/", "pg/a", "pg/b-x", "pg/b/", "pg/b/y", "pg/b/z/w", "pg/b0",
            "pg/ba/c", "pg/c/", "pg/d/e/f", "pg/é", "pgz"]
    if max_keys == 1:
        for key in keys:
            assert cas.put(key, b"" if key.endswith("/") else b"v")[0] == 204
    for delimiter in (True, False):
        seen, cursor = [], None
        while True:
            params = {"prefix": "pg/", "max_keys": str(max_keys)}
            if delimiter:
                params["delimiter"] = "/"
            if cursor:
                params["start_after"] = cursor
            page = cas.listing(**params)
            assert len(page["keys"]) + len(page["prefixes"]) <= max_keys
            seen += sorted(page["keys"] + page["prefixes"])
            cursor = page.get("next")
            if cursor is None:
                break
        assert seen == _expected(keys, "pg/", delimiter), (delimiter, max_keys)


def test_broken_body_abandons_the_upload(fake: FakeGcsServer) -> None:
    """In process, against the same server: the old object survives a body that fails."""

    class Failing(io.RawIOBase):
        def __init__(self, good: int) -> None:
            self.left = good

        def read(self, size: int = -1) -> bytes:
            if self.left <= 0:
                raise BadRequest("client went away")
            size = min(size, self.left)
            self.left -= size
            return b"x" * size

    backend = GcsBackend(BUCKET, project="test", emulator_host=fake.url)
    before = backend.write("direct/victim", io.BytesIO(b"old"), 3)
    for length in (None, 20 * MiB):  # chunked, and a Content-Length the body never reaches
        with pytest.raises(BadRequest):
            backend.write("direct/victim", Failing(9 * MiB), length)
        assert backend.stat("direct/victim") == before
    assert b"".join(backend.read("direct/victim").chunks) == b"old"
    backend.close()


def test_xattrs(cas: Http) -> None:
    etag = cas.put("meta/m.json", b"{}")[1]["ETag"]
    status, _, body = cas("GET", "/meta/meta/m.json")
    attrs = json.loads(body)["values"]
    assert status == 200
    assert attrs["url"] == f"gs://{BUCKET}/cas-mount/meta/m.json"
    assert f'"{attrs["generation"]}"' == etag and attrs["version"] == attrs["generation"]
    assert attrs["size"] == "2" and attrs["metageneration"] == "1"
    assert attrs["content_type"] == "application/octet-stream"
    assert attrs["storage_class"] == "STANDARD"
    assert "signed_url" not in attrs  # anonymous emulator credentials cannot sign

    status, _, _ = cas("PUT", "/meta/meta/m.json?attr=user.vfs.content_type", b"application/json")
    assert status == 204
    status, _, body = cas("GET", "/meta/meta/m.json?attr=user.asya.content_type")
    assert json.loads(body)["value"] == "application/json"
    assert cas.get("meta/m.json")[1]["Content-Type"] == "application/json"
    assert cas("PUT", "/meta/meta/m.json?attr=size", b"1")[0] == 403
    assert cas("GET", "/meta/meta/nope")[0] == 404
    assert cas("GET", "/meta/meta/m.json?attr=nope")[0] == 404


def test_lww_ignores_preconditions(lww: Http) -> None:
    first = lww.put("w/k", b"one")[1]["ETag"]
    lww.put("w/k", b"two")
    assert lww.put("w/k", b"three", If_Match=first)[0] == 204
    assert lww.put("w/k", b"four", If_None_Match="*")[0] == 204
    assert lww.get("w/k")[2] == b"four"
    assert lww("DELETE", key_url("w/k"), headers={"If-Match": first})[0] == 204


def test_readyz(cas: Http) -> None:
    assert cas("GET", "/readyz")[0] == 200


def test_outage_fails_fast_and_recovers_after_restart() -> None:
    with FakeGcsServer(backend="filesystem") as server:
        create_bucket(server, BUCKET)
        env = {**sidecar_env(server, BUCKET), **FAST_FAILURE}
        with Sidecar("gcs-buffered-cas", env) as sidecar:
            http = Http(sidecar.socket_path)
            assert http.put("survivor", b"still here")[0] == 204
            server.stop()
            for method, key, body in (("GET", "survivor", None), ("PUT", "new", b"x"),
                                      ("HEAD", "survivor", None)):
                started = time.monotonic()
                status, _, _ = http(method, key_url(key), body)
                assert status in (503, 504), (method, status)
                assert time.monotonic() - started < 10
            assert http("GET", "/readyz")[0] == 503
            assert http("GET", "/healthz")[0] == 200  # liveness does not depend on GCS
            server.start()
            assert http.get("survivor")[2] == b"still here"
            assert http.put("new", b"x")[0] == 204
            assert http("GET", "/readyz")[0] == 200


def test_ranged_read_of_an_empty_object_filled_meanwhile(fake) -> None:
    """GCS answers 416 to a ranged read of an empty object; a write that lands
    before the size re-check must give its bytes, not a 416."""

    class FilledOnStat(GcsBackend):
        fill = True

        def stat(self, key):  # the concurrent write lands between 416 and re-check
            if self.fill:
                self.fill = False
                self.write(key, io.BytesIO(b"filled"), 6)
            return super().stat(key)

    backend = FilledOnStat(BUCKET, project="test", emulator_host=fake.url)
    backend.fill = False
    backend.write("direct/racy-empty", io.BytesIO(b""), 0)
    backend.fill = True
    body = backend.read("direct/racy-empty", 0, 4)
    assert (body.info.size, b"".join(body.chunks)) == (6, b"fill")
    backend.fill = False  # no concurrent write: an empty object reads as empty
    backend.write("direct/racy-empty-2", io.BytesIO(b""), 0)
    empty = backend.read("direct/racy-empty-2", 0, 4)
    assert (empty.info.size, b"".join(empty.chunks)) == (0, b"")
    backend.close()


@pytest.mark.parametrize("workarounds", [False, True])
def test_preconditions_send_no_pre_check_unless_configured(fake, workarounds: bool) -> None:
    """GCS checks ifGenerationMatch itself: by default a conditional delete and
    a conditional resumable upload read nothing first; GCS_EMULATOR_WORKAROUNDS
    (fake-gcs-server) adds one stat before each."""

    class Counting(GcsBackend):
        stats = 0

        def stat(self, key):
            self.stats += 1
            return super().stat(key)

    backend = Counting(BUCKET, project="test", emulator_host=fake.url,
                       emulator_workarounds=workarounds)
    version = backend.write("direct/precheck", io.BytesIO(b"old"), 3).version
    body = b"r" * (9 * MiB)  # more than one part: a resumable upload
    version = backend.write("direct/precheck", io.BytesIO(body), len(body),
                            if_match=version).version
    backend.delete("direct/precheck", if_match=version)
    assert backend.stats == (2 if workarounds else 0)
    assert backend.stat("direct/precheck") is None
    backend.close()


@pytest.mark.parametrize("bypass", [False, True])
def test_proxy_variables_are_read_once_when_the_clients_are_made(fake, monkeypatch,
                                                                 bypass: bool) -> None:
    """``HTTP_PROXY`` and ``NO_PROXY`` are honoured, resolved for the endpoint
    when a thread's clients are made (``sidecars.http_environment``); requests
    do not walk the environment again, so a later change is not seen."""
    proxy = CountingProxy.tcp(fake.port)
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
    if bypass:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    backend = GcsBackend(BUCKET, project="test", emulator_host=fake.url)
    try:
        backend.write("direct/proxied", io.BytesIO(b"via"), 3)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # discard port: nothing answers
        assert b"".join(backend.read("direct/proxied").chunks) == b"via"
        assert backend.stat("direct/proxied") is not None
        counted = proxy.reset().total  # a write, a read (metadata and media), a stat
        assert counted == 0 if bypass else counted >= 3
    finally:
        backend.close()
        proxy.close()
