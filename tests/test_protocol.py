"""The wire protocol of SPEC §6, spoken raw to a real gunicorn sidecar (local backend)."""
from __future__ import annotations

import json
import tempfile

import pytest

from tests.connectors import ALL_CONNECTORS
from tests.harness.sidecar import Sidecar
from tests.rawhttp import RawClient, error_code, key_url, request, send_raw, status_of


@pytest.fixture()
def sock(local_sidecar) -> str:
    return local_sidecar.socket_path


@pytest.fixture()
def key(request_id) -> str:
    return f"proto-{request_id}/obj.bin"


@pytest.fixture()
def request_id(request) -> str:
    return request.node.name.replace("[", "-").replace("]", "")


def put(sock: str, key: str, body: bytes, **headers: str) -> tuple[int, dict, bytes]:
    return request(sock, "PUT", key_url(key), body, {k.replace("_", "-"): v
                                                     for k, v in headers.items()})


def get(sock: str, key: str) -> bytes:
    status, _, body = request(sock, "GET", key_url(key))
    assert status == 200
    return body


def test_health_and_readiness(sock):
    assert request(sock, "GET", "/healthz")[0] == 200
    status, _, body = request(sock, "GET", "/readyz")
    assert status == 200 and json.loads(body) == {"status": "ready"}


def test_put_get_head_delete(sock, key):
    status, headers, _ = put(sock, key, b"hello world")
    assert status in (200, 201, 204) and headers["etag"].startswith('"')
    status, got, body = request(sock, "GET", key_url(key))
    assert (status, body) == (200, b"hello world")
    assert got["etag"] == headers["etag"] and got["content-length"] == "11"
    assert "last-modified" in got
    status, head, body = request(sock, "HEAD", key_url(key))
    assert (status, body) == (200, b"")
    assert head["content-length"] == "11" and head["x-is-file"] == "true"
    assert head["etag"] == headers["etag"]
    assert request(sock, "DELETE", key_url(key))[0] == 204
    status, _, body = request(sock, "DELETE", key_url(key))
    assert status == 404 and error_code(body) == "not_found"
    assert request(sock, "GET", key_url(key))[0] == 404
    assert request(sock, "HEAD", key_url(key))[0] == 404


def test_head_of_directory_prefix(sock, key):
    put(sock, key, b"x")
    status, headers, _ = request(sock, "HEAD", key_url(key.split("/")[0]))
    assert status == 200 and headers["x-is-file"] == "false"


@pytest.mark.parametrize("header, status, body, content_range", [
    ("bytes=2-5", 206, b"2345", "bytes 2-5/10"),
    ("bytes=7-", 206, b"789", "bytes 7-9/10"),
    ("bytes=-3", 206, b"789", "bytes 7-9/10"),
    ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
])
def test_range_reads(sock, key, header, status, body, content_range):
    put(sock, key, b"0123456789")
    got_status, headers, got = request(sock, "GET", key_url(key), headers={"Range": header})
    assert (got_status, got) == (status, body)
    assert headers["content-range"] == content_range


@pytest.mark.parametrize("header, status", [
    ("bytes=10-", 416), ("bytes=50-60", 416), ("bytes=x-1", 400), ("items=0-1", 400),
    ("bytes=5-2", 400), ("bytes=0-1,3-4", 400),
])
def test_bad_ranges_are_4xx(sock, key, header, status):
    put(sock, key, b"0123456789")
    got, _, body = request(sock, "GET", key_url(key), headers={"Range": header})
    assert got == status and "error" in json.loads(body)


def test_range_on_empty_object_from_zero_reads_empty(sock, key):
    put(sock, key, b"")
    status, _, body = request(sock, "GET", key_url(key), headers={"Range": "bytes=0-65535"})
    assert status in (200, 206) and body == b""


def test_stale_if_match_is_412_and_value_unchanged(sock, key):
    _, first, _ = put(sock, key, b"v1")
    put(sock, key, b"v2")
    status, _, body = put(sock, key, b"v3", If_Match=first["etag"])
    assert status == 412 and error_code(body) == "precondition_failed"
    assert get(sock, key) == b"v2"


def test_matching_if_match_writes(sock, key):
    _, first, _ = put(sock, key, b"v1")
    status, second, _ = put(sock, key, b"v2", If_Match=first["etag"])
    assert status == 204 and second["etag"] != first["etag"]
    assert get(sock, key) == b"v2"


def test_create_only_race(sock, key):
    assert put(sock, key, b"first", If_None_Match="*")[0] == 204
    status, _, _ = put(sock, key, b"second", If_None_Match="*")
    assert status == 412
    assert get(sock, key) == b"first"


def test_conditional_delete(sock, key):
    _, first, _ = put(sock, key, b"v1")
    put(sock, key, b"v2")
    assert request(sock, "DELETE", key_url(key), headers={"If-Match": first["etag"]})[0] == 412
    assert get(sock, key) == b"v2"
    _, head, _ = request(sock, "HEAD", key_url(key))
    assert request(sock, "DELETE", key_url(key), headers={"If-Match": head["etag"]})[0] == 204


def test_lww_ignores_preconditions(tmp_path):
    with Sidecar("local-buffered-lww", {"STATE_ROOT": str(tmp_path)}, workers=1) as lww:
        _, first, _ = put(lww.socket_path, "k", b"v1")
        put(lww.socket_path, "k", b"v2")
        assert put(lww.socket_path, "k", b"v3", If_Match=first["etag"])[0] == 204
        assert get(lww.socket_path, "k") == b"v3"


def test_chunked_upload(sock, key):
    payload = bytes(range(256)) * 4096 * 3  # 3 MiB
    chunks = [payload[i:i + 100_000] for i in range(0, len(payload), 100_000)]
    body = b"".join(b"%X\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = (f"PUT {key_url(key)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    assert status_of(send_raw(sock, head + body)) == 204
    assert get(sock, key) == payload


@pytest.mark.parametrize("body", [
    b"5\r\nhello\r\nZZ\r\nbad\r\n0\r\n\r\n",      # not a hex size
    b"5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n",        # missing CRLF after data
    b"A\r\nshort",                                 # connection ends mid-chunk
])
def test_malformed_chunking_keeps_old_value_and_server(sock, key, body):
    put(sock, key, b"old")
    head = (f"PUT {key_url(key)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    reply = send_raw(sock, head + body)
    assert status_of(reply) in (0, 400), reply[:200]  # 0: server dropped a truncated request
    assert get(sock, key) == b"old"
    assert request(sock, "GET", "/healthz")[0] == 200


def test_short_content_length_body_keeps_old_value(sock, key):
    put(sock, key, b"old")
    head = (f"PUT {key_url(key)} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").encode()
    reply = send_raw(sock, head + b"only ten b")
    assert status_of(reply) in (0, 400)
    assert get(sock, key) == b"old"
    assert request(sock, "GET", "/healthz")[0] == 200


@pytest.mark.parametrize("path", ["a//b", "a/../b", "./a", "a/./b", ".vfs-state.lock",
                                  "a/.vfs-state-tmp-x"])
def test_bad_keys_are_400(sock, path):
    status, _, body = request(sock, "PUT", "/keys/" + path, b"x")
    assert status == 400, body
    assert request(sock, "GET", "/keys/" + path)[0] in (400, 404)


@pytest.mark.parametrize("key", ["k" * 1025, "d/" + "s" * 256],
                         ids=["key-over-1024-bytes", "local-segment-over-255-bytes"])
def test_long_keys_are_name_too_long_and_head_says_so_in_a_header(sock, key):
    for method, body in (("PUT", b"x"), ("GET", None), ("DELETE", None)):
        status, headers, reply = request(sock, method, key_url(key), body)
        assert (status, error_code(reply), headers["x-error"]) == (400, "name_too_long",
                                                                   "name_too_long")
    status, headers, reply = request(sock, "HEAD", key_url(key))
    assert (status, reply, headers["x-error"]) == (400, b"", "name_too_long")


@pytest.mark.parametrize("headers, status", [
    ({"If-Match": 'no"quotes'}, 412),  # a malformed tag never matches
    ({"If-None-Match": '"v1"'}, 400),
    ({"If-Match": '"a"', "If-None-Match": "*"}, 400)])
def test_bad_precondition_headers_are_4xx(sock, key, headers, status):
    assert request(sock, "PUT", key_url(key), b"x", headers)[0] == status


def test_oversize_body_is_413(tmp_path):
    env = {"STATE_ROOT": str(tmp_path), "STATE_MAX_OBJECT_SIZE": "1000"}
    with Sidecar("local-buffered-cas", env, workers=1) as small:
        assert put(small.socket_path, "k", b"x" * 1000)[0] == 204
        status, _, body = put(small.socket_path, "k", b"y" * 1001)
        assert status == 413 and error_code(body) == "payload_too_large"
        chunked = (b"PUT /keys/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n" + b"3E8\r\n" + b"z" * 1000 + b"\r\n"
                   b"3E8\r\n" + b"z" * 1000 + b"\r\n0\r\n\r\n")
        assert status_of(send_raw(small.socket_path, chunked)) == 413
        assert get(small.socket_path, "k") == b"x" * 1000
        assert request(small.socket_path, "GET", "/healthz")[0] == 200


def test_unknown_route_and_method_are_json_4xx(sock):
    status, _, body = request(sock, "GET", "/nope")
    assert status == 404 and "error" in json.loads(body)
    status, _, body = request(sock, "POST", "/keys/x", b"")
    assert status == 405 and "error" in json.loads(body)


def test_keys_with_special_characters_round_trip(sock, request_id):
    names = ["with space.txt", "hash#tag", "what?.json", "100%", "ünïcødé-名前", "a..b"]
    for name in names:
        key = f"{request_id}/{name}"
        assert put(sock, key, name.encode())[0] == 204
        assert get(sock, key) == name.encode()
    status, _, body = request(sock, "GET", f"/keys/?prefix={request_id}/&delimiter=/")
    listed = sorted(k.split("/", 1)[1] for k in json.loads(body)["keys"])
    assert listed == sorted(names)


def test_listing_with_delimiter_and_paging(sock, request_id):
    base = f"{request_id}/"
    for i in range(7):
        put(sock, f"{base}f{i}", b"x")
    put(sock, f"{base}sub/deep/x", b"x")
    put(sock, f"{base}marker/", b"")
    seen_keys, seen_prefixes, cursor, pages = [], [], None, 0
    while True:
        query = f"/keys/?prefix={base}&delimiter=/&max_keys=3"
        if cursor:
            query += f"&start_after={cursor}"
        status, _, body = request(sock, "GET", query)
        assert status == 200
        data = json.loads(body)
        assert len(data["keys"]) + len(data["prefixes"]) <= 3
        seen_keys += data["keys"]
        seen_prefixes += data["prefixes"]
        pages += 1
        cursor = data.get("next")
        if not cursor:
            break
    assert pages == 3
    assert seen_keys == [f"{base}f{i}" for i in range(7)]
    assert seen_prefixes == [f"{base}marker/", f"{base}sub/"]
    status, _, body = request(sock, "GET", f"/keys/?prefix={base}sub/")
    assert json.loads(body)["keys"] == [f"{base}sub/deep/", f"{base}sub/deep/x"]


@pytest.mark.parametrize("query", ["max_keys=abc", "max_keys=0", "delimiter=%7C",
                                   "prefix=a//b", "prefix=../x"])
def test_bad_listing_queries_are_400(sock, query):
    assert request(sock, "GET", f"/keys/?{query}")[0] == 400


def test_meta_route(sock, key):
    put(sock, key, b"12345")
    status, _, body = request(sock, "GET", "/meta/" + key)
    attrs = json.loads(body)["values"]
    assert status == 200 and attrs["size"] == "5" and attrs["version"]
    status, _, body = request(sock, "GET", f"/meta/{key}?attr=user.vfs.size")
    assert json.loads(body) == {"attr": "size", "value": "5"}
    status, _, body = request(sock, "GET", f"/meta/{key}?attr=user.asya.size")
    assert json.loads(body)["value"] == "5"
    status, _, body = request(sock, "GET", f"/meta/{key}?attr=nothing")
    assert status == 404 and error_code(body) == "no_such_attr"
    assert request(sock, "PUT", f"/meta/{key}?attr=size", b"9")[0] == 403
    assert request(sock, "GET", "/meta/missing-key")[0] == 404


def test_sidecar_keeps_serving_after_bad_requests(sock, key):
    for raw in (b"GARBAGE\r\n\r\n", b"GET /keys/x HTTP/1.1\r\nHost: x\r\nRange: \xff\r\n\r\n",
                b"PUT /keys/x HTTP/1.1\r\nContent-Length: -5\r\n\r\n"):
        reply = send_raw(sock, raw)
        assert status_of(reply) in (0, 400, 404), reply[:100]
    put(sock, key, b"still fine")
    assert get(sock, key) == b"still fine"


def test_missing_config_is_one_clear_line(tmp_path):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"PATH": "/usr/bin:/bin", "CONNECTOR_SOCKET": str(tmp_path / "s.sock"),
           "PYTHONPATH": root}
    proc = subprocess.run([sys.executable, "-m", "sidecars.cli", "s3-buffered-cas"], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("vfs-state-sidecar: missing required environment variable "
                                   "STATE_BUCKET")


def test_paging_never_ends_on_the_directory_marker(sock, request_id):
    """A one-item page must not return the listed directory's own marker as cursor."""
    base = f"{request_id}/"
    put(sock, base, b"")                      # the directory's marker
    put(sock, f"{base}a", b"x")
    put(sock, f"{base}b", b"x")
    names, cursor = [], None
    for _ in range(10):
        query = f"/keys/?prefix={base}&delimiter=/&max_keys=1"
        if cursor:
            query += f"&start_after={cursor}"
        data = json.loads(request(sock, "GET", query)[2])
        names += data["keys"] + data["prefixes"]
        cursor = data.get("next")
        if not cursor:
            break
    assert names == [f"{base}a", f"{base}b"]


# -- CAS edge cases on every CAS connector -------------------------------------

CAS_CONNECTORS = ("local-buffered-cas", "s3-buffered-cas", "gcs-buffered-cas",
                  "redis-buffered-cas", "nats-kv-buffered-cas")
# Tags no store version can equal: empty, weak, unquoted, malformed, lists, and
# versions in the format of another connector (S3 MD5, GCS generation, big revision).
NEVER_MATCHING_TAGS = ('""', 'W/""', "garbage", '"a"b"', '"x", "y"', '"sp ace"',
                       '"0123456789abcdef0123456789abcdef"', '"1700000000000000"',
                       '"999999999999"', '"0"', '"-1"', '"1-2-3"')


@pytest.fixture(params=CAS_CONNECTORS)
def cas_client(request, connector_pool) -> RawClient:
    return RawClient(connector_pool.sidecar(request.param).socket_path)


def _value_and_etag(client: RawClient, key: str) -> tuple[int, bytes, str | None]:
    status, headers, body = client.get(key)
    return status, body, headers.get("ETag")


def test_if_match_that_cannot_match_is_412_and_changes_nothing(cas_client, request_id):
    key = f"cas-edge-{request_id}/k"
    etag = cas_client.put(key, b"original")[1]["ETag"]
    tags = NEVER_MATCHING_TAGS + (f"W/{etag}",)
    for tag in tags:
        status, _, body = cas_client.put(key, b"clobbered", If_Match=tag)
        assert status == 412, (tag, status, body)
        status, _, body = cas_client.delete(key, If_Match=tag)
        assert status == 412, (tag, status, body)
        status, _, _ = cas_client.get(key, If_Match=tag)
        assert status == 412, (tag, status)
        assert _value_and_etag(cas_client, key) == (200, b"original", etag), tag


def test_after_delete_old_tag_fails_and_create_only_succeeds(cas_client, request_id):
    key = f"cas-gone-{request_id}/k"
    etag = cas_client.put(key, b"first")[1]["ETag"]
    assert cas_client.delete(key, If_Match=etag)[0] == 204
    assert cas_client.put(key, b"stale", If_Match=etag)[0] == 412
    assert cas_client.get(key)[0] == 404
    assert cas_client.delete(key, If_Match=etag)[0] in (404, 412)
    status, headers, _ = cas_client.put(key, b"second", If_None_Match="*")
    assert status == 204
    assert cas_client.put(key, b"again", If_None_Match="*")[0] == 412
    assert _value_and_etag(cas_client, key)[1] == b"second"


# -- asya xattr compatibility: the asya client's requests, byte for byte ---------

def _asya(socket_path: str, method: str, path: str, body: bytes = b"",
          json_body: bool = False) -> tuple[int, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
    if json_body:
        head += "Content-Type: application/json\r\n"
    if method == "PUT":
        head += f"Content-Length: {len(body)}\r\n"
    reply = send_raw(socket_path, (head + "Connection: close\r\n\r\n").encode() + body)
    return status_of(reply), reply.partition(b"\r\n\r\n")[2]


def test_asya_xattr_requests_on_redis(connector_pool, request_id):
    sock = connector_pool.sidecar("redis-buffered-cas").socket_path
    key = f"asya-{request_id}/state.json"
    RawClient(sock).put(key, b"{}")
    path = "/meta/" + key
    status, _ = _asya(sock, "PUT", path + "?attr=ttl", b'{"value": "3600"}', json_body=True)
    assert status == 204
    status, body = _asya(sock, "GET", path + "?attr=ttl")
    assert status == 200 and json.loads(body)["value"] in ("3600", "3599")
    status, body = _asya(sock, "GET", path)
    assert status == 200 and "ttl" in json.loads(body)["attrs"]
    assert isinstance(json.loads(body)["attrs"], list)
    # read-only is 403, an attribute the backend does not have is 400
    assert _asya(sock, "PUT", path + "?attr=size", b'{"value": "1"}', json_body=True)[0] == 403
    assert _asya(sock, "PUT", path + "?attr=colour", b'{"value": "red"}', json_body=True)[0] == 400
    # vfs-state's own client sends the raw UTF-8 value: still accepted
    from vfs_state.client import SidecarClient
    client = SidecarClient(sock)
    client.set_attr(key, "user.vfs.ttl", "120")
    assert client.get_attrs(key)["ttl"] in ("120", "119")
    client.close()


@pytest.mark.parametrize("body", [b'{"value": 5', b'["3600"]', b'{"other": "x"}',
                                  b'{"value": null}', b"\xff\xfe"])
def test_asya_xattr_bad_json_is_400(connector_pool, request_id, body):
    sock = connector_pool.sidecar("redis-buffered-cas").socket_path
    key = f"asya-bad-{request_id}/k"
    RawClient(sock).put(key, b"x")
    assert _asya(sock, "PUT", f"/meta/{key}?attr=ttl", body, json_body=True)[0] == 400


# -- bad input is 4xx on every connector ------------------------------------------

@pytest.mark.parametrize("connector", ALL_CONNECTORS)
def test_bad_input_is_4xx_on_every_connector(connector_pool, connector, request_id):
    client = RawClient(connector_pool.sidecar(connector).socket_path)
    key = f"bad-{request_id}/k"
    assert client.put(key, b"x")[0] == 204
    for attr in ("ttl", "user.vfs.ttl", "anything"):
        status = client.request("PUT", f"/meta/{key}?attr={attr}", b"\xff\xfe\x00")[0]
        assert 400 <= status < 500, (attr, status)
    for query in ("start_after=a%00b", "start_after=%00", "prefix=bad-%00", "max_keys=5%00",
                  "start_after=%01%1f", "prefix=%ed%a0%80", "start_after=%ed%a0%80"):
        status, _, body = client.request("GET", "/keys/?" + query)
        assert status < 500, (query, status, body)
    assert client.get(key)[2] == b"x"


def test_huge_redis_ttl_is_400(connector_pool, request_id):
    client = RawClient(connector_pool.sidecar("redis-buffered-cas").socket_path)
    key = f"ttl-{request_id}/k"
    client.put(key, b"x")
    for value in (b"99999999999999999999", b"1e300", b"inf", b"nan"):
        status = client.request("PUT", f"/meta/{key}?attr=ttl", value)[0]
        assert status == 400, (value, status)
    assert client.get(key)[2] == b"x"


def test_a_500_never_echoes_the_exception(caplog):
    """The generic handler answers a fixed message; the details go to the log."""
    from sidecars.app import build_app
    from sidecars.backend import Backend

    def boom(self, *args, **kwargs):
        raise RuntimeError("open /srv/secret/root/k: password=hunter2")

    class Exploding(Backend):
        stat = read = write = delete = list_page = boom

    app = build_app(Exploding())
    with caplog.at_level("ERROR", logger="vfs_state.sidecar"):
        reply = app.test_client().head("/keys/k")
        reply_get = app.test_client().get("/keys/?prefix=x")
    assert reply.status_code == 500 and reply_get.status_code == 500
    body = reply_get.get_data()
    assert b"secret" not in body and b"hunter2" not in body and b"RuntimeError" not in body
    assert json.loads(body)["error"] == "internal"
    assert "hunter2" in caplog.text  # the operator still sees what happened


# -- files and directories never share a name, on every connector --------------

@pytest.mark.parametrize("connector", ALL_CONNECTORS)
def test_file_and_directory_never_share_a_name(connector_pool, connector, request_id):
    client = RawClient(connector_pool.sidecar(connector).socket_path)
    base = f"fd-{request_id}"
    assert client.put(f"{base}/d/x", b"1")[0] == 204
    status, _, body = client.put(f"{base}/d", b"clobber")
    assert status == 409 and error_code(body) == "is_a_directory", (status, body)
    assert client.request("PUT", key_url(f"{base}/e/"), b"")[0] == 204
    status, _, body = client.put(f"{base}/e", b"clobber")
    assert status == 409 and error_code(body) == "is_a_directory", (status, body)
    assert client.put(f"{base}/f", b"file")[0] == 204
    assert client.request("PUT", key_url(f"{base}/f/"), b"")[0] == 409
    assert client.get(f"{base}/d")[0] == 404 and client.get(f"{base}/e")[0] == 404
    assert client.get(f"{base}/d/x")[2] == b"1" and client.get(f"{base}/f")[2] == b"file"
    assert client.head(f"{base}/e")[1]["X-Is-File"] == "false"
    keys, prefixes, _ = client.list_all(base + "/")
    assert keys == [f"{base}/f"] and prefixes == [f"{base}/d/", f"{base}/e/"]
