"""The S3 connector end to end: raw HTTP on a gunicorn sidecar, moto's S3 behind it.

Every check that matters is made twice where it can be: through the sidecar
and directly in the bucket (boto3 on the same moto server), so a test cannot
pass on what the sidecar merely claims.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from sidecars import errors
from sidecars.s3 import LAST_CHAR, S3Backend, translate
from tests.harness.base import free_port
from tests.harness.moto_s3 import MotoS3Server, create_bucket, s3_client, sidecar_env
from tests.harness.sidecar import Sidecar
from tests.rawhttp import RawClient, header_names, key_url

MiB = 1 << 20
BUCKET = "vfs-state-s3-tests"
CAS_PREFIX = "mnt/"


# -- servers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3Server]:
    with MotoS3Server() as server:
        create_bucket(server, BUCKET)
        yield server


@pytest.fixture(scope="module")
def s3(moto: MotoS3Server) -> Any:
    return s3_client(moto)


@pytest.fixture(scope="module")
def cas(moto: MotoS3Server) -> Iterator[str]:
    with Sidecar("s3-buffered-cas", sidecar_env(moto, BUCKET, prefix=CAS_PREFIX)) as sidecar:
        yield sidecar.socket_path


@pytest.fixture(scope="module")
def lww(moto: MotoS3Server) -> Iterator[str]:
    with Sidecar("s3-buffered-lww", sidecar_env(moto, BUCKET, prefix="lww")) as sidecar:
        yield sidecar.socket_path


# -- raw HTTP over the unix socket ----------------------------------------------

class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(sock: str, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    chunked = body is not None and not isinstance(body, bytes)
    return Reply(*RawClient(sock).request(method, path, body, headers, chunked=chunked))


def put(sock: str, key: str, data: bytes | Iterable[bytes], **headers: str) -> Reply:
    if not isinstance(data, bytes):
        headers["Transfer-Encoding"] = "chunked"
    return call(sock, "PUT", key_url(key), data, header_names(headers))


def get(sock: str, key: str, **headers: str) -> Reply:
    return call(sock, "GET", key_url(key), headers=header_names(headers))


def unique(name: str = "k") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return (block * (size // len(block) + 1))[:size]


def chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def stored(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def uploads(s3: Any, key: str) -> list[dict[str, Any]]:
    return s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- objects ------------------------------------------------------------------

def test_put_get_head_delete(cas: str, s3: Any) -> None:
    key = unique("dir with space/ünï #1?")
    reply = put(cas, key, b"hello world")
    assert reply.status == 204
    etag = reply.headers["ETag"]
    assert etag == s3.head_object(Bucket=BUCKET, Key=CAS_PREFIX + key)["ETag"]
    assert stored(s3, CAS_PREFIX + key) == b"hello world"

    reply = get(cas, key)
    assert (reply.status, reply.body, reply.headers["ETag"]) == (200, b"hello world", etag)
    head = call(cas, "HEAD", key_url(key))
    assert head.status == 200
    assert head.headers["Content-Length"] == "11"
    assert head.headers["X-Is-File"] == "true"
    assert head.headers["ETag"] == etag
    assert head.headers["Last-Modified"]

    assert call(cas, "DELETE", key_url(key)).status == 204
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=CAS_PREFIX + key).get("KeyCount") == 0
    missing = get(cas, key)
    assert missing.status == 404 and missing.json()["error"] == "not_found"
    assert call(cas, "DELETE", key_url(key)).status == 404
    assert call(cas, "HEAD", key_url(key)).status == 404


def test_ranged_reads(cas: str) -> None:
    key = unique()
    data = pattern(100)
    put(cas, key, data)
    reply = get(cas, key, Range="bytes=10-19")
    assert reply.status == 206
    assert reply.headers["Content-Range"] == "bytes 10-19/100"
    assert reply.body == data[10:20]
    tail = get(cas, key, Range="bytes=90-500")
    assert (tail.status, tail.body, tail.headers["Content-Range"]) == (206, data[90:],
                                                                       "bytes 90-99/100")
    assert get(cas, key, Range="bytes=-5").body == data[-5:]
    assert get(cas, key, Range="bytes=100-").status == 416
    assert get(cas, key, Range="bytes=5000-5010").status == 416


def test_empty_object(cas: str, s3: Any) -> None:
    key = unique("empty")
    assert put(cas, key, b"").status == 204
    assert s3.head_object(Bucket=BUCKET, Key=CAS_PREFIX + key)["ContentLength"] == 0
    for headers in ({}, {"Range": "bytes=0-"}, {"Range": "bytes=0-99"}):
        reply = get(cas, key, **headers)
        assert (reply.status, reply.body) == (200, b""), headers
        assert reply.headers["ETag"]
    assert get(cas, key, Range="bytes=1-").status == 416


# -- CAS ------------------------------------------------------------------------

def test_stale_if_match_is_refused(cas: str, s3: Any) -> None:
    key = unique()
    first = put(cas, key, b"v1").headers["ETag"]
    second = put(cas, key, b"v2", If_Match=first)
    assert second.status == 204 and second.headers["ETag"] != first
    stale = put(cas, key, b"v3", If_Match=first)
    assert stale.status == 412 and stale.json()["error"] == "precondition_failed"
    assert stored(s3, CAS_PREFIX + key) == b"v2"
    assert get(cas, key, If_Match=first).status == 412
    assert get(cas, key, If_Match=second.headers["ETag"]).body == b"v2"
    assert put(cas, unique("gone"), b"x", If_Match=first).status == 412


def test_if_none_match_create_race(cas: str, s3: Any) -> None:
    key = unique()  # both writers saw the key absent
    assert put(cas, key, b"writer one", If_None_Match="*").status == 204
    assert put(cas, key, b"writer two", If_None_Match="*").status == 412
    assert stored(s3, CAS_PREFIX + key) == b"writer one"


def test_conditional_delete(cas: str, s3: Any) -> None:
    key = unique()
    old = put(cas, key, b"v1").headers["ETag"]
    new = put(cas, key, b"v2").headers["ETag"]
    assert call(cas, "DELETE", key_url(key), headers={"If-Match": old}).status == 412
    assert stored(s3, CAS_PREFIX + key) == b"v2"
    assert call(cas, "DELETE", key_url(key), headers={"If-Match": new}).status == 204
    assert call(cas, "DELETE", key_url(key), headers={"If-Match": new}).status == 404


def test_lww_ignores_preconditions(lww: str, s3: Any) -> None:
    key = unique()
    put(lww, key, b"v1")
    assert put(lww, key, b"v2", If_Match='"not-the-etag"').status == 204
    assert put(lww, key, b"v3", If_None_Match="*").status == 204
    assert stored(s3, "lww/" + key) == b"v3"
    assert call(lww, "DELETE", key_url(key), headers={"If-Match": '"nope"'}).status == 204


# -- streaming writes -------------------------------------------------------------

def test_chunked_put_streams_through_multipart(cas: str, s3: Any) -> None:
    key = unique("big")
    data = pattern(20 * MiB + 12345, seed=1)
    reply = put(cas, key, chunks(data))
    assert reply.status == 204
    head = s3.head_object(Bucket=BUCKET, Key=CAS_PREFIX + key)
    assert head["ETag"].endswith('-3"')  # 8 + 8 + 4 MiB parts
    assert reply.headers["ETag"] == head["ETag"]
    assert hashlib.sha256(stored(s3, CAS_PREFIX + key)).digest() == hashlib.sha256(data).digest()
    assert get(cas, key, Range=f"bytes={16 * MiB}-{16 * MiB + 9}").body == data[16 * MiB:][:10]
    assert uploads(s3, CAS_PREFIX + key) == []


def test_body_size_picks_put_or_multipart(cas: str, s3: Any) -> None:
    small, exact, sized = unique("small"), unique("exact"), unique("sized")
    assert put(cas, small, chunks(b"x" * 1000, 100)).status == 204   # chunked but small
    assert put(cas, exact, pattern(8 * MiB)).status == 204           # one part exactly
    assert put(cas, sized, pattern(9 * MiB)).status == 204           # Content-Length > part
    etags = {k: s3.head_object(Bucket=BUCKET, Key=CAS_PREFIX + k)["ETag"]
             for k in (small, exact, sized)}
    assert "-" not in etags[small] and "-" not in etags[exact]
    assert etags[sized].endswith('-2"')
    assert stored(s3, CAS_PREFIX + sized) == pattern(9 * MiB)


def _crc32(s3: Any, key: str) -> str | None:
    return s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED").get("ChecksumCRC32")


def test_uploads_carry_checksums_unless_turned_off(moto: MotoS3Server, cas: str,
                                                   s3: Any) -> None:
    """Default: S3 gets (and keeps) a CRC32 of every upload, single or multipart."""
    small, big = unique("crc-small"), unique("crc-big")
    assert put(cas, small, b"checked").status == 204
    assert put(cas, big, chunks(pattern(9 * MiB))).status == 204
    assert _crc32(s3, CAS_PREFIX + small) and _crc32(s3, CAS_PREFIX + big)
    env = sidecar_env(moto, BUCKET, prefix="plain/")
    env["S3_REQUEST_CHECKSUMS"] = "when_required"
    with Sidecar("s3-buffered-lww", env, workers=1) as plain:
        assert put(plain.socket_path, small, b"unchecked").status == 204
        assert put(plain.socket_path, big, chunks(pattern(9 * MiB))).status == 204
    assert _crc32(s3, "plain/" + small) is None and _crc32(s3, "plain/" + big) is None
    assert stored(s3, "plain/" + big) == pattern(9 * MiB)


def test_multipart_preconditions(cas: str, s3: Any) -> None:
    key = unique("mp-cas")
    old = put(cas, key, b"original").headers["ETag"]
    put(cas, key, b"newer")
    data = pattern(9 * MiB, seed=2)
    assert put(cas, key, chunks(data), If_Match=old).status == 412
    assert put(cas, key, chunks(data), If_None_Match="*").status == 412
    assert stored(s3, CAS_PREFIX + key) == b"newer"
    assert uploads(s3, CAS_PREFIX + key) == []
    current = get(cas, key).headers["ETag"]
    assert put(cas, key, chunks(data), If_Match=current).status == 204
    assert stored(s3, CAS_PREFIX + key) == data


def _start_chunked_put(sock_path: str, key: str, size: int) -> socket.socket:
    """Send headers and ``size`` bytes of a chunked body, leaving it unfinished."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(sock_path)
    sock.sendall((f"PUT {key_url(key)} HTTP/1.1\r\nHost: localhost\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n").encode())
    for chunk in chunks(pattern(size, seed=3)):
        sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
    return sock


@pytest.mark.parametrize("how", ["disconnect", "malformed"])
def test_broken_chunked_upload_keeps_old_object(cas: str, s3: Any, how: str) -> None:
    key = unique(how)
    put(cas, key, b"precious")
    sock = _start_chunked_put(cas, key, 12 * MiB)
    try:  # the first part is uploaded, so an upload really is in flight
        assert wait_until(lambda: uploads(s3, CAS_PREFIX + key) != [])
        if how == "malformed":
            sock.sendall(b"zz-not-hex\r\nrubbish\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 400
            assert json.loads(response.read())["error"] == "bad_body"
    finally:
        sock.close()
    assert wait_until(lambda: uploads(s3, CAS_PREFIX + key) == [])
    assert stored(s3, CAS_PREFIX + key) == b"precious"
    assert get(cas, key).body == b"precious"


# -- listing and directories ---------------------------------------------------------

def test_listing_with_delimiter_and_paging(cas: str) -> None:
    root = unique("tree") + "/"
    for name in ("a", "b", "sub/c", "sub/d", "z"):
        assert put(cas, root + name, b"x").status == 204
    assert call(cas, "PUT", key_url(root + "sub2/"), b"").status == 204  # marker

    listing = call(cas, "GET", f"/keys/?prefix={quote(root)}&delimiter=/").json()
    assert listing["keys"] == [root + "a", root + "b", root + "z"]
    assert listing["prefixes"] == [root + "sub/", root + "sub2/"]
    assert "next" not in listing

    first = call(cas, "GET", f"/keys/?prefix={quote(root)}&delimiter=/&max_keys=3").json()
    assert (first["keys"], first["prefixes"]) == ([root + "a", root + "b"], [root + "sub/"])
    assert first["next"] == root + "sub/"
    second = call(cas, "GET", f"/keys/?prefix={quote(root)}&delimiter=/&max_keys=3"
                              f"&start_after={quote(first['next'])}").json()
    assert (second["keys"], second["prefixes"]) == ([root + "z"], [root + "sub2/"])
    assert "next" not in second

    seen, cursor = [], None
    while True:
        query = f"/keys/?prefix={quote(root)}&max_keys=2"
        page = call(cas, "GET", query + (f"&start_after={quote(cursor)}" if cursor else "")).json()
        assert len(page["keys"]) <= 2 and page["prefixes"] == []
        seen += page["keys"]
        cursor = page.get("next")
        if cursor is None:
            break
    assert seen == [root + n for n in ("a", "b", "sub/c", "sub/d", "sub2/", "z")]


def test_directories(cas: str, s3: Any) -> None:
    root = unique("dirs") + "/"
    put(cas, root + "implicit/file", b"x")
    assert call(cas, "PUT", key_url(root + "marker/"), b"").status == 204
    assert s3.head_object(Bucket=BUCKET, Key=CAS_PREFIX + root + "marker/")["ContentLength"] == 0
    for name in (root + "implicit", root + "marker", root + "implicit/", root.rstrip("/")):
        head = call(cas, "HEAD", key_url(name))
        assert (head.status, head.headers["X-Is-File"]) == (200, "false"), name
    assert call(cas, "HEAD", key_url(root + "nothing")).status == 404
    assert call(cas, "DELETE", key_url(root + "implicit/")).status == 409
    assert call(cas, "DELETE", key_url(root + "nothing/")).status == 404
    assert call(cas, "DELETE", key_url(root + "marker/")).status == 204
    assert call(cas, "HEAD", key_url(root + "marker")).status == 404


# -- xattrs, health, failures --------------------------------------------------------------

def test_xattrs(cas: str, s3: Any) -> None:
    key = unique("attrs")
    etag = put(cas, key, b"<p>hi</p>").headers["ETag"]
    attrs = call(cas, "GET", "/meta/" + quote(key)).json()["values"]
    assert attrs["url"] == f"s3://{BUCKET}/{CAS_PREFIX}{key}"
    assert attrs["etag"] == etag
    assert attrs["version"] == "null"  # the bucket is not versioned
    assert attrs["storage_class"] == "STANDARD"
    assert attrs["size"] == "9"
    with urllib.request.urlopen(attrs["presigned_url"], timeout=10) as response:
        assert response.read() == b"<p>hi</p>"
    one = call(cas, "GET", f"/meta/{quote(key)}?attr=user.vfs.size").json()
    assert one == {"attr": "size", "value": "9"}

    reply = call(cas, "PUT", f"/meta/{quote(key)}?attr=user.vfs.content_type", b"text/html")
    assert reply.status == 204
    assert s3.head_object(Bucket=BUCKET, Key=CAS_PREFIX + key)["ContentType"] == "text/html"
    head = call(cas, "HEAD", key_url(key))
    assert head.headers["Content-Type"] == "text/html"
    assert head.headers["ETag"] == etag  # same bytes: versions clients hold stay valid
    assert get(cas, key).body == b"<p>hi</p>"
    assert put(cas, key, b"next", If_Match=etag).status == 204

    assert call(cas, "PUT", f"/meta/{quote(key)}?attr=user.asya.version", b"x").status == 403
    assert call(cas, "GET", f"/meta/{quote(key)}?attr=nope").status == 404
    assert call(cas, "GET", "/meta/" + quote(unique("missing"))).status == 404


def test_readyz(cas: str) -> None:
    assert call(cas, "GET", "/readyz").json() == {"status": "ready"}


def test_unreachable_backend_is_503(moto: MotoS3Server) -> None:
    env = sidecar_env(moto, BUCKET)
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nobody listens
    with Sidecar("s3-buffered-cas", env, workers=1) as sidecar:
        started = time.monotonic()
        assert call(sidecar.socket_path, "GET", "/readyz").status == 503
        reply = get(sidecar.socket_path, "k")
        assert reply.status == 503 and reply.json()["error"] == "backend_unavailable"
        assert time.monotonic() - started < 15  # bounded retries, not a hang


def test_missing_bucket_config_fails_clearly() -> None:
    env = {k: v for k, v in os.environ.items() if k != "STATE_BUCKET"}
    env["CONNECTOR_SOCKET"] = "/tmp/unused-vfs-state.sock"
    done = subprocess.run([sys.executable, "-m", "sidecars.cli", "s3-buffered-cas"],
                          env=env, capture_output=True, text=True, timeout=30,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 2
    assert "STATE_BUCKET" in done.stderr


def test_bad_checksum_setting_fails_clearly(moto: MotoS3Server) -> None:
    env = dict(os.environ, **sidecar_env(moto, BUCKET), S3_REQUEST_CHECKSUMS="always")
    env["CONNECTOR_SOCKET"] = f"/tmp/unused-vfs-state-{uuid.uuid4().hex[:8]}.sock"
    done = subprocess.run([sys.executable, "-m", "sidecars.cli", "s3-buffered-cas"],
                          env=env, capture_output=True, text=True, timeout=30,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 2
    assert "S3_REQUEST_CHECKSUMS must be one of when_supported, when_required" in done.stderr


# -- the backend in-process (same moto server, no sidecar) -------------------------------

def test_list_cursor_on_a_prefix_skips_its_subtree(moto: MotoS3Server, s3: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS would roll ``sub/x`` up into ``sub/`` again after ``StartAfter=sub/``."""
    for name, value in sidecar_env(moto, BUCKET).items():
        monkeypatch.setenv(name, value)
    backend = S3Backend(BUCKET, endpoint_url=moto.endpoint)
    sent: list[dict[str, Any]] = []
    backend._s3().meta.events.register("before-parameter-build.s3.ListObjectsV2",
                                       lambda params, **_: sent.append(dict(params)))
    root = unique("cursor") + "/"
    for name in ("a", "sub/x", "z"):
        s3.put_object(Bucket=BUCKET, Key=root + name, Body=b"")
    page = backend.list_page(root, "/", root + "sub/", 10)
    assert (page.keys, page.prefixes, page.next) == ([root + "z"], [], None)
    assert sent[-1]["StartAfter"] == root + "sub/" + LAST_CHAR
    flat = backend.list_page(root, None, root + "sub/", 10)  # no delimiter: a marker, no subtree
    assert sent[-1]["StartAfter"] == root + "sub/"
    assert flat.keys == [root + "sub/x", root + "z"]
    backend.close()


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize("code,status,expected", [
    ("NoSuchKey", 404, errors.NotFound), ("404", 404, errors.NotFound),
    ("AccessDenied", 403, errors.Forbidden),
    ("PreconditionFailed", 412, errors.PreconditionFailed),
    ("ConditionalRequestConflict", 409, errors.PreconditionFailed),
    ("InvalidRange", 416, errors.RangeNotSatisfiable),
    ("EntityTooLarge", 400, errors.PayloadTooLarge),
    ("SlowDown", 503, errors.BackendUnavailable),
    ("InternalError", 500, errors.BackendUnavailable),
    ("NoSuchBucket", 404, errors.BackendUnavailable),
    ("RequestTimeout", 400, errors.BackendTimeout),
    ("KeyTooLongError", 400, errors.BadRequest),
])
def test_error_mapping(code: str, status: int, expected: type) -> None:
    assert type(translate(_client_error(code, status), "op")) is expected


@pytest.mark.parametrize("workarounds", [False, True])
def test_multipart_if_match_sends_no_pre_check_unless_configured(
        moto: MotoS3Server, s3: Any, monkeypatch: pytest.MonkeyPatch, workarounds: bool) -> None:
    """Real S3 checks If-Match on CompleteMultipartUpload itself: by default the
    sidecar sends no HeadObject first; S3_EMULATOR_WORKAROUNDS (moto) adds one."""
    for name, value in sidecar_env(moto, BUCKET).items():
        monkeypatch.setenv(name, value)
    backend = S3Backend(BUCKET, endpoint_url=moto.endpoint, emulator_workarounds=workarounds)
    calls: list[str] = []
    backend._s3().meta.events.register("before-call.s3", lambda model, **_: calls.append(
        model.name))
    key = unique("precheck")
    version = backend.write(key, io.BytesIO(b"old"), 3).version
    calls.clear()
    body = b"n" * (9 * MiB)  # more than one part: a multipart upload
    backend.write(key, io.BytesIO(body), len(body), if_match=version)
    assert calls.count("HeadObject") == (1 if workarounds else 0), calls
    assert calls[-1] == "CompleteMultipartUpload"
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(body)
    backend.close()
