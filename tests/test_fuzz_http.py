"""Hostile raw HTTP against every connector: never a 5xx, never a dead worker.

Hypothesis builds requests no client would send (bad methods, keys with
``..``/NUL/overlong segments/invalid UTF-8, odd percent-encoding, conflicting
preconditions, broken ``Range``, ``Content-Length`` lies, malformed chunked
bodies, smuggling framings (two lengths, length and chunked, codings that do
not end in chunked, an upgrade with a body), oversized, folded or
underscored header fields, ``/meta`` bodies, hostile listing parameters,
early disconnects) and
writes them straight to the sidecar's Unix socket. After every batch the
invariants are checked: no reply is a 5xx, the gunicorn workers are the same
processes (none died and was replaced), and a sentinel key outside the fuzzed
prefix keeps its value and version.

Profiles: the CI profile sends a few hundred requests in total; the deep one
(``HYPOTHESIS_PROFILE=deep`` or ``VFS_STATE_DEEP=1``) sends 10,000+ per
connector and prints the count.
"""
from __future__ import annotations

import os
import re
import socket
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.connectors import ALL_CONNECTORS
from tests.harness.sidecar import healthy
from tests.profiles import DEEP
from tests.rawhttp import RawClient

EXAMPLES = int(os.environ.get("VFS_STATE_FUZZ_EXAMPLES", 2500 if DEEP else 25))
SENTINEL = "sentinel/value.bin"
SENTINEL_DATA = b"do not touch \x00\xff"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")

# -- request parts -------------------------------------------------------------

VALID_SEGMENTS = st.sampled_from(["a", "b.txt", "k", "d", "e f", "%C3%A9"])
SEGMENTS = st.one_of(
    VALID_SEGMENTS, VALID_SEGMENTS, VALID_SEGMENTS,
    st.sampled_from(["a", "b.txt", "..", ".", "", "%2e%2e", "%2E.", "%00", "a%00b", "%ff",
                     "%ed%a0%80", "%c0%af", "sentinel", "value.bin", ".vfs-state-tmp-x",
                     "%2f", "%5c..%5c", "~", "é", "%", "%zz", "a b", "x" * 300, "\\..\\"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
    .map(lambda s: quote(s, safe="")),
    st.binary(max_size=8).map(lambda b: quote(b, safe="")),
)
KEY_PATHS = st.lists(SEGMENTS, min_size=1, max_size=4).map(lambda parts: "fz/" + "/".join(parts))
TAGS = st.sampled_from(['""', 'W/"1"', "*", "garbage", '"1"', '"a", "b"', '"x', "\x7f",
                        '"' + "9" * 40 + '"', "W/", ""])
RANGES = st.sampled_from(["bytes=0-0", "bytes=-1", "bytes=5-1", "bytes=0-", "bytes=-0",
                          "bytes=a-b", "bytes=0-1,2-3", "items=0-1", "bytes=99999999999999999999-",
                          "bytes=-99999999999999999999", "bytes=", "bytes=1-1-1"])
QUERY_VALUES = st.sampled_from(["", "%00", "a%00", "%01%1f", "%ff", "%ed%a0%80", "-1", "0",
                                "99999999999999999999", "1e3", "fz/", "fz/..", "../", "/",
                                "x" * 2000, "%2e%2e", "ttl", "user.vfs.ttl", "size"])
ATTRS = st.sampled_from(["ttl", "user.vfs.ttl", "user.asya.ttl", "size", "version", "colour"])
QUERY_NAMES = st.sampled_from(["prefix", "start_after", "max_keys", "delimiter", "attr", "x"])
META_BODIES = st.sampled_from([b"", b"60", b'{"value": "60"}', b'{"value": 1e999}',
                               b'{"value": null}', b"\xff\xfe", b"99999999999999999999",
                               b'{"value": "99999999999999999999"}', b"[", b'"x"', b"nan",
                               b"-5", b"\x00"])


@st.composite
def hostile_request(draw) -> tuple[bytes, bool]:
    """One raw request, and whether to hang up without reading the reply."""
    # Each part is well-formed about half the time, so a request that is
    # hostile in one or two ways still reaches the views and the backend.
    method = draw(st.one_of(st.sampled_from(["GET", "PUT", "DELETE", "HEAD"]),
                            st.sampled_from(["POST", "OPTIONS", "G\x00T", "BREW", "put"])))
    route = draw(st.one_of(st.sampled_from(["/keys/", "/meta/", "/keys/?"]),
                           st.sampled_from(["/keys?", "/", "//keys/", "/keys/../", "/healthz/"])))
    key = draw(st.one_of(st.lists(VALID_SEGMENTS, min_size=1, max_size=3).map(
        lambda parts: "fz/" + "/".join(parts)), KEY_PATHS))
    if route.endswith("?"):
        params = draw(st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=4))
        target = route + "&".join(f"{n}={v}" for n, v in params)
    else:
        target = route + key
        if route == "/meta/":
            target += "?attr=" + draw(st.one_of(ATTRS, QUERY_VALUES))
        elif draw(st.booleans()):
            target += f"?{draw(QUERY_NAMES)}={draw(QUERY_VALUES)}"
    headers = [("Host", "fuzz")]
    for name, value in draw(st.lists(st.one_of(
            st.tuples(st.just("If-Match"), TAGS), st.tuples(st.just("If-None-Match"), TAGS),
            st.tuples(st.just("Range"), RANGES),
            st.tuples(st.just("Content-Type"), st.sampled_from(["application/json",
                                                                "text/plain", "\xff"])),
            st.tuples(st.just("Expect"), st.just("100-continue")),
            st.tuples(st.just("Connection"), st.sampled_from(["close", "keep-alive, x"])),
            st.tuples(st.sampled_from(["X_Under", "If_Match", "X-Big", "X-Fold", "Host"]),
                      st.sampled_from(["1", "v" * 9000, "a\r\n b", "a\nb", "a\x00b", '"x"'])),
    ), max_size=2)):
        headers.append((name, value))
    body = draw(META_BODIES if route == "/meta/" else st.one_of(META_BODIES,
                                                                 st.binary(max_size=256)))
    framing = draw(st.one_of(st.sampled_from(["length", "chunked"]),
                             st.sampled_from(["short", "long", "bad-chunked", "both", "none",
                                              "negative", "two-lengths", "gzip",
                                              "chunked-twice", "upgrade", "http/1.0"])))
    head_extra, payload = _frame(framing, body)
    version = "HTTP/1.0" if framing == "http/1.0" else "HTTP/1.1"
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    raw = head.encode("utf-8", "surrogateescape") + head_extra + b"\r\n" + payload
    return raw, draw(st.booleans()) and draw(st.booleans())


def _frame(framing: str, body: bytes) -> tuple[bytes, bytes]:
    """Headers and payload for one framing, honest or lying."""
    if framing == "length":
        return f"Content-Length: {len(body)}\r\n".encode(), body
    if framing == "short":  # promises more than it sends
        return f"Content-Length: {len(body) + 10}\r\n".encode(), body
    if framing == "long":  # sends more than it promises (the rest is a "next request")
        return f"Content-Length: {max(0, len(body) - 3)}\r\n".encode(), body
    if framing == "chunked":
        return b"Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    if framing == "bad-chunked":
        return b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + body + b"\r\n5\r\nab"
    if framing == "both":
        return (f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n".encode(),
                body)
    if framing == "negative":
        return b"Content-Length: -1\r\n", body
    if framing == "two-lengths":  # request smuggling: which one counts?
        return f"Content-Length: {len(body)}\r\nContent-Length: 0\r\n".encode(), body
    if framing == "gzip":  # a coding that does not end in chunked: no length
        return b"Transfer-Encoding: gzip\r\n", body
    if framing == "chunked-twice":
        return (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    if framing == "upgrade":  # llhttp stops at an upgrade's head
        return (f"Connection: upgrade\r\nUpgrade: h2c\r\nContent-Length: {len(body)}"
                "\r\n").encode(), body
    if framing == "http/1.0":
        return f"Content-Length: {len(body)}\r\n".encode(), body
    return b"", body


# -- invariants ---------------------------------------------------------------------

def _descendants(pid: int) -> set[int]:
    """The sidecar's process tree: a worker that died is replaced by a new pid."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                children = [int(x) for x in f.read().split()]
        except OSError:
            continue
        found.update(children)
        todo.extend(children)
    return found


def _send(socket_path: str, raw: bytes, hang_up: bool) -> list[int]:
    """Send ``raw``; return the status of every reply on the connection.

    Interim ``100 Continue`` lines are included; a lying ``Content-Length``
    can make the rest of the bytes a second (pipelined) request.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(socket_path)
        try:
            sock.sendall(raw)
            if hang_up:
                return []
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered early and closed; the answer may still be readable
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            reply += chunk
        return [int(code) for code in STATUS_LINE.findall(reply)]
    finally:
        sock.close()


class Counter:
    requests = 0


@pytest.mark.parametrize("connector", ALL_CONNECTORS)
def test_hostile_requests_never_5xx(connector_pool, connector):
    sidecar = connector_pool.sidecar(connector)
    sock = sidecar.socket_path
    client = RawClient(sock)
    status, headers, _ = client.put(SENTINEL, SENTINEL_DATA)
    assert status == 204
    etag = headers["ETag"]
    workers = _descendants(sidecar.proc.pid)
    assert workers, "no gunicorn workers found"
    counter = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(hostile_request(), min_size=1, max_size=8))
    def fuzz(batch: list[tuple[bytes, bool]]) -> None:
        for raw, hang_up in batch:
            counter.requests += 1
            statuses = _send(sock, raw, hang_up)
            assert all(s < 500 for s in statuses), f"{statuses} for {raw[:300]!r}"
        assert healthy(sock), f"sidecar not healthy after {batch!r}"[:2000]
        assert _descendants(sidecar.proc.pid) == workers, f"a worker died during {batch!r}"
        got, got_headers, body = client.get(SENTINEL)
        assert (got, body, got_headers["ETag"]) == (200, SENTINEL_DATA, etag)

    fuzz()
    if DEEP:
        print(f"\n{connector}: {counter.requests} hostile requests, no 5xx, workers intact")
