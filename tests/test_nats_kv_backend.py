"""``nats-kv-buffered-cas`` end to end: a private nats-server, a gunicorn sidecar, raw HTTP.

Everything goes through the wire protocol (SPEC §6) so the tests see what a
client sees: statuses, ETags, ranges, listings. The fault test at the end
stops the server under the running sidecar and expects it to recover alone.
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecars.nats_keys import decode_key, encode_key, subtree_filter
from tests.harness.nats_server import NatsServer, sidecar_env
from tests.harness.sidecar import Sidecar
from tests.rawhttp import RawClient, key_url

CONNECTOR = "nats-kv-buffered-cas"
NATS_KEY_RE = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def nats_server():
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="module")
def sidecar(nats_server):
    env = sidecar_env(nats_server, bucket="state", prefix="mnt")
    env["NATS_TIMEOUT"] = "2"
    with Sidecar(CONNECTOR, env, workers=2) as running:
        yield running


@pytest.fixture()
def client(sidecar) -> RawClient:
    return RawClient(sidecar.socket_path)


# -- key codec ------------------------------------------------------------------

SEGMENT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
SEGMENTS = st.text(SEGMENT_CHARS, min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..") and not s.startswith(".vfs-state"))
TRICKY = st.sampled_from(["a b", "#", "?", "%", "%20", ".hidden", "end.", "..x", "a..b",
                          "=", "=D", "=2E", "ü", "日本", "*", ">", "x.y", "-_", "e\u0301"])
KEYS = st.lists(st.one_of(SEGMENTS, TRICKY), min_size=1, max_size=4).map("/".join)
# The app core's routes use werkzeug's ``path`` converter, whose ``.`` stops at
# a line feed, so a key holding "\n" is a 404 before it reaches the backend
# (a core bug, reported); the codec itself is tested with it above.
WIRE_KEYS = KEYS.filter(lambda key: "\n" not in key)


@given(key=KEYS, marker=st.booleans())
def test_codec_round_trips_and_stays_in_the_nats_alphabet(key: str, marker: bool) -> None:
    key = key + "/" if marker else key
    encoded = encode_key(key)
    assert NATS_KEY_RE.match(encoded)
    assert "" not in encoded.split(".")
    assert decode_key(encoded) == key


def test_codec_examples_and_foreign_keys() -> None:
    assert encode_key("a/b c") == "a.b=20c"
    assert encode_key("a.b/=") == "a=2Eb.=3D"
    assert encode_key("dir/") == "dir.=D"
    assert encode_key("€") == "=E2=82=AC"
    assert subtree_filter("") == ">"
    assert subtree_filter("a b/c/") == "a=20b.c.>"
    assert decode_key("config.app") == "config/app"
    for foreign in ["a/b", "a=2", "a=2e", "=41", "=D", "a..b", "=FF"]:
        with pytest.raises(ValueError):
            decode_key(foreign)


# -- objects ------------------------------------------------------------------

def test_put_get_head_delete(client: RawClient) -> None:
    key = _unique("basic") + "/obj.json"
    status, headers, _ = client.put(key, b'{"a": 1}')
    assert status == 204
    etag = headers["ETag"]
    assert re.fullmatch(r'"\d+"', etag)

    status, headers, body = client.get(key)
    assert (status, body, headers["ETag"]) == (200, b'{"a": 1}', etag)

    status, headers, _ = client.head(key)
    assert status == 200
    assert headers["Content-Length"] == "8"
    assert headers["X-Is-File"] == "true"
    assert headers["ETag"] == etag
    assert headers["Last-Modified"].endswith("GMT")

    status, headers, _ = client.put(key, b"v2")
    assert int(headers["ETag"].strip('"')) > int(etag.strip('"'))

    assert client.delete(key)[0] == 204
    assert client.get(key)[0] == 404
    assert client.head(key)[0] == 404
    assert client.delete(key)[0] == 404


def test_longest_keys_fit_in_a_nats_subject(client: RawClient) -> None:
    key = _unique("long") + "/" + "€" * 330 + "/" + "é." * 4   # ~1010 UTF-8 bytes
    assert len(key.encode()) <= 1024
    assert client.put(key, b"long")[0] == 204
    assert client.get(key)[2] == b"long"
    assert client.list(key.rsplit("/", 1)[0] + "/")["keys"] == [key]


def test_attributes(client: RawClient) -> None:
    key = _unique("attrs")
    _, headers, _ = client.put(key, b"12345")
    status, _, body = client.request("GET", "/meta/" + key)
    attrs = json.loads(body)["values"]
    assert status == 200
    assert attrs["revision"] == headers["ETag"].strip('"')
    assert attrs["size"] == "5" and attrs["bucket"] == "state"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", attrs["created"])
    status, _, body = client.request("GET", f"/meta/{key}?attr=user.vfs.size")
    assert json.loads(body)["value"] == "5"
    assert client.request("PUT", f"/meta/{key}?attr=size", b"9")[0] == 403


def test_ranges(client: RawClient) -> None:
    key = _unique("range")
    client.put(key, b"0123456789")
    status, headers, body = client.get(key, Range="bytes=2-5")
    assert (status, body, headers["Content-Range"]) == (206, b"2345", "bytes 2-5/10")
    assert client.get(key, Range="bytes=8-")[2] == b"89"
    assert client.get(key, Range="bytes=-3")[2] == b"789"
    assert client.get(key, Range="bytes=7-100")[2] == b"789"
    assert client.get(key, Range="bytes=10-")[0] == 416
    assert client.get(key, Range="bytes=10-20")[0] == 416


def test_empty_value(client: RawClient) -> None:
    key = _unique("empty")
    assert client.put(key, b"")[0] == 204
    status, _, body = client.get(key)
    assert (status, body) == (200, b"")
    assert client.head(key)[1]["Content-Length"] == "0"
    assert client.get(key, Range="bytes=0-")[:3:2] == (200, b"")


# -- CAS ------------------------------------------------------------------------

def test_stale_if_match_is_412_and_keeps_the_value(client: RawClient) -> None:
    key = _unique("cas")
    etag1 = client.put(key, b"one")[1]["ETag"]
    status, headers, _ = client.put(key, b"two", If_Match=etag1)
    assert status == 204
    etag2 = headers["ETag"]
    assert client.put(key, b"three", If_Match=etag1)[0] == 412
    assert client.put(key, b"three", If_Match='"not-a-revision"')[0] == 412
    assert client.put(key, b"three", If_Match='"0"')[0] == 412
    status, headers, body = client.get(key)
    assert (body, headers["ETag"]) == (b"two", etag2)
    assert client.get(key, If_Match=etag1)[0] == 412
    assert client.put(_unique("never"), b"x", If_Match=etag2)[0] == 412


def test_create_race_has_one_winner(client: RawClient) -> None:
    key = _unique("race")
    results: list[int] = []

    def create(value: bytes) -> None:
        results.append(client.put(key, value, If_None_Match="*")[0])

    threads = [threading.Thread(target=create, args=(f"w{i}".encode(),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [204] + [412] * 7
    winner = client.get(key)[2]
    assert client.put(key, b"late", If_None_Match="*")[0] == 412
    assert client.get(key)[2] == winner
    # a deleted key counts as absent again (its tombstone is not a value)
    assert client.delete(key)[0] == 204
    assert client.put(key, b"reborn", If_None_Match="*")[0] == 204
    assert client.get(key)[2] == b"reborn"


def test_if_match_race_has_one_winner(client: RawClient) -> None:
    key = _unique("swap")
    etag = client.put(key, b"base")[1]["ETag"]
    results: list[int] = []

    def swap(value: bytes) -> None:
        results.append(client.put(key, value, If_Match=etag)[0])

    threads = [threading.Thread(target=swap, args=(f"s{i}".encode(),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [204] + [412] * 7
    assert client.get(key)[2] in {f"s{i}".encode() for i in range(8)}


def test_conditional_delete(client: RawClient) -> None:
    key = _unique("cdel")
    etag1 = client.put(key, b"one")[1]["ETag"]
    etag2 = client.put(key, b"two")[1]["ETag"]
    assert client.delete(key, If_Match=etag1)[0] == 412
    assert client.get(key)[2] == b"two"
    assert client.delete(key, If_Match=etag2)[0] == 204
    assert client.get(key)[0] == 404
    assert client.delete(key, If_Match=etag2)[0] == 404
    # a write after the delete is not undone by the tombstone clean-up
    etag3 = client.put(key, b"three")[1]["ETag"]
    assert client.get(key)[1]["ETag"] == etag3


# -- keys through the sidecar ---------------------------------------------------

@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=WIRE_KEYS)
def test_arbitrary_keys_round_trip_through_the_sidecar(client: RawClient, key: str) -> None:
    base = _unique("keys")
    full = f"{base}/{key}"
    data = key.encode("utf-8")
    assert client.put(full, data)[0] == 204
    status, _, body = client.get(full)
    assert (status, body) == (200, data)
    assert client.head(full)[1]["X-Is-File"] == "true"
    keys, _, _ = client.list_all(base + "/", delimiter=None)
    assert keys == [full]
    parent = full.rsplit("/", 1)[0] + "/"
    assert full in client.list(parent)["keys"]
    assert client.delete(full)[0] == 204
    assert client.list_all(base + "/", delimiter=None)[0] == []


# -- listings --------------------------------------------------------------------

def test_listing_with_delimiter_paging_markers_and_deletes(client: RawClient) -> None:
    d = _unique("list") + "/"
    for name in ["a", "b/c", "b/e", "x.y", "z", "gone", "q/gone2", "b2", "a b"]:
        assert client.put(d + name, name.encode())[0] == 204
    assert client.put(d + "m/", b"")[0] == 204           # explicit empty directory
    assert client.delete(d + "gone")[0] == 204
    assert client.delete(d + "q/gone2")[0] == 204

    page = client.list(d)
    assert page["keys"] == [d + "a", d + "a b", d + "b2", d + "x.y", d + "z"]
    assert page["prefixes"] == [d + "b/", d + "m/"]
    assert "next" not in page

    keys, prefixes, pages = client.list_all(d, max_keys=2)
    assert pages == 4
    assert keys == page["keys"] and prefixes == page["prefixes"]

    keys, prefixes, _ = client.list_all(d, delimiter=None, max_keys=3)
    assert prefixes == []
    assert keys == sorted(d + n for n in ["a", "a b", "b/c", "b/e", "b2", "m/", "x.y", "z"])

    assert client.list(d + "b")["prefixes"] == [d + "b/"]      # partial last segment
    assert client.list(d + "b")["keys"] == [d + "b2"]
    assert client.list(d + "m/") == {"keys": [], "prefixes": []}

    assert client.head(d + "b")[1]["X-Is-File"] == "false"
    assert client.head(d + "m")[1]["X-Is-File"] == "false"    # marker only
    assert client.head(d + "q")[0] == 404                     # its only key was deleted
    assert client.delete(d + "m/")[0] == 204
    assert client.head(d + "m")[0] == 404


def test_listing_details_come_from_the_listing(client: RawClient) -> None:
    """Sizes, revisions and times of ``details=1`` are those a HEAD reports, after changes."""
    d = _unique("details") + "/"
    for name, value in [("a", b"1"), ("b", b"22"), ("sub/c", b"333")]:
        assert client.put(d + name, value)[0] == 204
    assert client.put(d + "a", b"4444")[0] == 204        # a newer revision
    assert client.put(d + "m/", b"")[0] == 204
    page = client.list(d, details=1)
    assert page["keys"] == [d + "a", d + "b"] and page["prefixes"] == [d + "m/", d + "sub/"]
    for key, size in [(d + "a", 4), (d + "b", 2)]:
        headers = client.head(key)[1]
        listed = page["details"][key]
        assert listed["size"] == size and f'"{listed["version"]}"' == headers["ETag"]
        assert listed["modified"] == parsedate_to_datetime(headers["Last-Modified"]).timestamp()
    flat = client.list(d, delimiter=None, details=1)
    assert sorted(flat["details"]) == [d + "a", d + "b", d + "sub/c"]  # no marker


def test_directory_checks_see_past_tombstones(nats_server) -> None:
    """With history kept, the newest message under a directory may be a tombstone."""
    env = sidecar_env(nats_server, bucket="kept")
    env["NATS_KV_HISTORY"] = "5"
    kept = Sidecar(CONNECTOR, env, workers=1)
    with kept:
        c = RawClient(kept.socket_path)
        assert c.put("d/x", b"1")[0] == 204
        assert c.put("d/y", b"2")[0] == 204
        assert c.delete("d/y")[0] == 204                  # newest under d/: a tombstone
        status, _, body = c.put("d", b"clobber")
        assert status == 409 and json.loads(body)["error"] == "is_a_directory", body
        assert c.head("d")[1]["X-Is-File"] == "false"
        assert c.delete("d/x")[0] == 204                  # nothing live under d/ now
        assert c.head("d")[0] == 404
        assert c.put("d", b"file")[0] == 204
        assert c.put("e/", b"")[0] == 204                 # a marker alone is a directory
        assert c.put("e", b"clobber")[0] == 409


# -- limits ------------------------------------------------------------------------

def test_oversize_values_get_413_and_the_sidecar_keeps_serving(client: RawClient) -> None:
    key = _unique("big")
    assert client.put(key, b"s" * 512 * 1024)[0] == 204
    assert client.put(key, b"x" * (1024 * 1024 + 1))[0] == 413
    chunks = iter([b"y" * 65536] * 20)  # 1.25 MiB, chunked: no Content-Length up front
    assert client.request("PUT", key_url(key), chunks, chunked=True)[0] == 413
    status, _, body = client.get(key)
    assert (status, len(body)) == (200, 512 * 1024)
    assert client.put(key + "-after", b"ok")[0] == 204


def test_configured_value_size_is_exact(nats_server) -> None:
    env = sidecar_env(nats_server, bucket="small")
    env["NATS_KV_MAX_VALUE_SIZE"] = "1000"
    with Sidecar(CONNECTOR, env, workers=1) as small:
        c = RawClient(small.socket_path)
        assert c.put("k", b"a" * 1000)[0] == 204
        assert c.put("k", b"b" * 1001)[0] == 413
        etag = c.head("k")[1]["ETag"]
        assert c.put("k", b"c" * 1000, If_Match=etag)[0] == 204
        assert c.get("k")[2] == b"c" * 1000


# -- faults (last: stops the shared server) ------------------------------------------

def test_sidecar_started_before_the_server_connects_when_it_appears() -> None:
    server = NatsServer()  # a port and a store, not started yet
    env = sidecar_env(server, bucket="late")
    env["NATS_TIMEOUT"] = "1"
    try:
        with Sidecar(CONNECTOR, env, workers=1) as early:
            c = RawClient(early.socket_path)
            started = time.monotonic()
            assert c.put("k", b"v")[0] == 503
            assert time.monotonic() - started < 5
            server.start()
            deadline = time.monotonic() + 15
            while (status := c.put("k", b"v")[0]) != 204:
                assert status in (503, 504)
                assert time.monotonic() < deadline, "never connected"
                time.sleep(0.2)
            assert c.get("k")[2] == b"v"
    finally:
        server.close()


def test_frozen_server_times_out_with_504(nats_server, client: RawClient) -> None:
    key = _unique("frozen")
    client.put(key, b"v")
    os.kill(nats_server.proc.pid, signal.SIGSTOP)  # connection open, nobody answers
    try:
        started = time.monotonic()
        assert client.get(key)[0] == 504
        assert client.put(key, b"w", If_None_Match="*")[0] == 504
        assert time.monotonic() - started < 15
    finally:
        os.kill(nats_server.proc.pid, signal.SIGCONT)
    assert client.get(key)[:3:2] == (200, b"v")


def test_server_restart_fails_fast_then_recovers(nats_server, sidecar, client: RawClient) -> None:
    key = _unique("restart")
    client.put(key, b"survives")
    assert client.request("GET", "/readyz")[0] == 200
    pid = sidecar.proc.pid

    nats_server.stop()
    try:
        for _ in range(4):
            started = time.monotonic()
            status = client.get(key)[0]
            assert status in (503, 504)
            assert time.monotonic() - started < 15
        assert client.request("GET", "/readyz")[0] in (503, 504)
        assert client.put(key, b"lost")[0] in (503, 504)
    finally:
        nats_server.start()

    deadline = time.monotonic() + 20
    while client.get(key)[0] != 200:
        assert time.monotonic() < deadline, "sidecar did not recover after the restart"
        time.sleep(0.2)
    assert sidecar.proc.pid == pid
    for _ in range(6):  # both workers, several threads
        status, _, body = client.get(key)
        assert (status, body) == (200, b"survives")
    assert client.put(key, b"after")[0] == 204
    assert client.request("GET", "/readyz")[0] == 200
