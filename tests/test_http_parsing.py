"""The sidecar worker's HTTP/1.1 parsing (``sidecars.http_request``, httptools).

What gunicorn's parser answered, the worker must answer too: request
smuggling refused (``Content-Length`` with ``Transfer-Encoding``, two
lengths, lengths that are not digits, codings that do not end in chunked),
gunicorn's limits with its status codes (414, 431), bad header names and
values, ``Expect``, pipelining and the connection closed after every parse
error. Each test talks raw HTTP/1.1 to a real sidecar on its Unix socket.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from tests.harness.sidecar import Sidecar

STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
HOST = b"Host: x\r\n"
HEALTH = b"GET /healthz HTTP/1.1\r\n" + HOST + b"\r\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    root = tempfile.mkdtemp(prefix="vfs-parse-")
    with Sidecar("local-buffered-cas", {"STATE_ROOT": root}, workers=1) as running:
        running.root = root
        yield running


@pytest.fixture(scope="module")
def small_limits() -> Iterator[Sidecar]:
    """gunicorn's limit settings, set small: the worker must read them."""
    root = tempfile.mkdtemp(prefix="vfs-limits-")
    with Sidecar("local-buffered-cas", {"STATE_ROOT": root}, workers=1,
                 extra_args=("--limit-request-line=100", "--limit-request-fields=5",
                             "--limit-request-field_size=200")) as running:
        yield running


def exchange(path: str, raw: bytes) -> tuple[list[int], bytes]:
    """Send ``raw`` without closing our side; the statuses until the server closes.

    The server must close (after ``Connection: close`` or an error): the
    socket timeout only turns a connection left open into a failure. A server
    that closes with our bytes unread resets the connection; Linux still
    hands over what it sent before that.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(path)
    reply = b""
    try:
        sock.sendall(raw)
        while data := sock.recv(65536):
            reply += data
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return [int(code) for code in STATUS.findall(reply)], reply


def put_key(sidecar: Sidecar, key: str) -> str:
    return os.path.join(sidecar.root, key)


# -- request smuggling: ambiguous framing is refused, the connection closed ----

SMUGGLING = {
    "length and chunked": b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
    "chunked and length": b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
    "two equal lengths": b"Content-Length: 3\r\nContent-Length: 3\r\n",
    "two lengths": b"Content-Length: 3\r\nContent-Length: 30\r\n",
    "a list of lengths": b"Content-Length: 3, 3\r\n",
    "signed length": b"Content-Length: +3\r\n",
    "negative length": b"Content-Length: -3\r\n",
    "hex length": b"Content-Length: 0x3\r\n",
    "empty length": b"Content-Length:\r\n",
    "overflowing length": b"Content-Length: 99999999999999999999999\r\n",
    "chunked twice in one header": b"Transfer-Encoding: chunked, chunked\r\n",
    "chunked in two headers": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "chunked not last": b"Transfer-Encoding: chunked, gzip\r\n",
    "only gzip": b"Transfer-Encoding: gzip\r\n",
    "only identity": b"Transfer-Encoding: identity\r\n",
}


@pytest.mark.parametrize("framing", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_ambiguous_framing_is_refused_and_the_connection_closed(sidecar, framing):
    body = b"3\r\nabc\r\n0\r\n\r\n"
    raw = b"PUT /keys/smuggled HTTP/1.1\r\n" + HOST + framing + b"\r\n" + body + HEALTH
    statuses, _ = exchange(sidecar.socket_path, raw)
    assert statuses == [400]  # the pipelined /healthz is never read
    assert not os.path.exists(put_key(sidecar, "smuggled"))


@pytest.mark.parametrize("coding", [b"foo", b"x-chunked", b"gzip, foo"])
def test_an_unknown_transfer_coding_gets_501(sidecar, coding):
    raw = b"PUT /keys/coded HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: " + coding + b"\r\n\r\n"
    assert exchange(sidecar.socket_path, raw)[0] == [501]


def test_chunked_over_http_1_0_is_refused(sidecar):
    raw = (b"PUT /keys/old HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n")
    assert exchange(sidecar.socket_path, raw)[0] == [400]
    assert not os.path.exists(put_key(sidecar, "old"))


@pytest.mark.parametrize("body", [
    b"zz\r\nabc\r\n0\r\n\r\n",                      # a size that is not hex
    b"3\r\nabcX\r\n0\r\n\r\n",                      # no CRLF after the data
    b"3 \r\nabc\r\n0\r\n\r\n",                      # space after the size
    b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n",  # a framing field as a trailer
    b"3\r\nabc\r\n0\r\nHost: y\r\n\r\n",            # a routing field as a trailer
])
def test_a_broken_chunked_body_stores_nothing_and_closes(sidecar, body):
    raw = b"PUT /keys/broken HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + body
    statuses, _ = exchange(sidecar.socket_path, raw + HEALTH)
    assert statuses == [400]
    assert not os.path.exists(put_key(sidecar, "broken"))


# -- limits ---------------------------------------------------------------------

def test_the_default_request_line_limit_is_gunicorns(sidecar):
    def line(length: int) -> bytes:  # "GET /aaa HTTP/1.1" of ``length`` bytes
        return (b"GET /" + b"a" * (length - 14) + b" HTTP/1.1\r\n" + HOST
                + b"Connection: close\r\n\r\n")
    assert exchange(sidecar.socket_path, line(4094))[0] == [404]  # a key route, not found
    assert exchange(sidecar.socket_path, line(4095))[0] == [414]
    assert exchange(sidecar.socket_path, line(100_000))[0] == [414]


def test_the_default_header_limits_are_gunicorns(sidecar):
    def fields(count: int) -> bytes:
        return (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(count))
                + b"Connection: close\r\n\r\n")
    assert exchange(sidecar.socket_path, fields(99))[0] == [200]
    assert exchange(sidecar.socket_path, fields(100))[0] == [431]

    def field(size: int) -> bytes:  # "X: vvv" of ``size`` bytes with its CRLF
        return (b"GET /healthz HTTP/1.1\r\nConnection: close\r\nX: " + b"v" * (size - 5)
                + b"\r\n\r\n")
    assert exchange(sidecar.socket_path, field(8190))[0] == [200]
    assert exchange(sidecar.socket_path, field(8191))[0] == [431]


def test_the_limit_settings_are_read_from_gunicorn(small_limits):
    path = small_limits.socket_path
    close = b"Connection: close\r\n"
    assert exchange(path, b"GET /healthz HTTP/1.1\r\n" + close + b"\r\n")[0] == [200]
    assert exchange(path, b"GET /healthz?" + b"q" * 90 + b" HTTP/1.1\r\n" + close
                    + b"\r\n")[0] == [414]
    assert exchange(path, b"GET /healthz HTTP/1.1\r\n" + close
                    + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n")[0] == [431]
    assert exchange(path, b"GET /healthz HTTP/1.1\r\n" + close + b"X: " + b"v" * 200
                    + b"\r\n\r\n")[0] == [431]


def endless(path: str, start: bytes, filler: bytes = b"v") -> bytes:
    """Send ``start`` then 4 MiB of ``filler`` with no line end; what came back."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(path)
    reply = b""
    try:
        sock.sendall(start)
        try:
            for _ in range(64):
                sock.sendall(filler * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before all of it was sent
        while data := sock.recv(65536):
            reply += data
    except ConnectionResetError:
        pass  # closed with our bytes unread (see ``exchange``)
    finally:
        sock.close()
    return reply


def test_a_head_that_never_ends_is_refused_without_being_buffered(small_limits):
    """A header line with no end: 431 once the head outgrows every limit together."""
    reply = endless(small_limits.socket_path, b"GET /healthz HTTP/1.1\r\nX: ")
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_a_request_line_that_never_ends_gets_414(sidecar):
    assert endless(sidecar.socket_path, b"GET /", b"a").startswith(b"HTTP/1.1 414 ")


def test_a_trailer_section_that_never_ends_fails_the_upload(sidecar):
    reply = endless(sidecar.socket_path, b"PUT /keys/trailing HTTP/1.1\r\n" + HOST
                    + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: ")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert not os.path.exists(put_key(sidecar, "trailing"))


# -- header names and values --------------------------------------------------

@pytest.mark.parametrize("header", [
    b"X: a\x00b", b"X: a\x0bb", b"X: a\x1fb", b"X: a\x7fb", b"X: a\rb",  # control bytes
    b"X Y: v", b"X : v", b": v", b"X(: v", b"X\xff: v",                  # not a token
    b"X: a\r\n folded",                                                  # obsolete folding
    b"X: a\nY: b",                                                       # a bare LF
])
def test_bad_header_fields_get_400_and_close(sidecar, header):
    raw = b"GET /healthz HTTP/1.1\r\n" + HOST + header + b"\r\n\r\n" + HEALTH
    assert exchange(sidecar.socket_path, raw)[0] == [400]


@pytest.mark.parametrize("name", [b"Host", b"Content-Type"])
def test_a_repeated_singleton_field_gets_400(sidecar, name):
    raw = b"GET /healthz HTTP/1.1\r\n" + name + b": a\r\n" + name + b": b\r\n\r\n"
    assert exchange(sidecar.socket_path, raw)[0] == [400]


def test_a_header_name_with_an_underscore_is_dropped(sidecar):
    """gunicorn's ``header_map = drop``: ``If_Match`` must not pass for ``If-Match``."""
    first = (b"PUT /keys/under HTTP/1.1\r\n" + HOST + b"Content-Length: 1\r\n\r\na")
    second = (b"PUT /keys/under HTTP/1.1\r\n" + HOST + b'If_Match: "no-such-version"\r\n'
              b"Content-Length: 1\r\nConnection: close\r\n\r\nb")
    statuses, _ = exchange(sidecar.socket_path, first + second)
    assert statuses == [204, 204]  # a real If-Match would have got 412
    with open(put_key(sidecar, "under"), "rb") as f:
        assert f.read() == b"b"


def test_forwarding_headers_from_the_client_are_dropped(sidecar):
    """gunicorn trusted ``SCRIPT_NAME``/``PATH_INFO`` headers on a Unix socket:
    a ``SCRIPT_NAME`` the path did not start with was a 500."""
    raw = (b"GET /healthz HTTP/1.1\r\n" + HOST + b"SCRIPT_NAME: /elsewhere\r\n"
           b"PATH_INFO: /keys/x\r\nConnection: close\r\n\r\n")
    statuses, reply = exchange(sidecar.socket_path, raw)
    assert statuses == [200] and reply.endswith(b'{"status":"ready"}\n')


@pytest.mark.parametrize("request_line", [
    b"BREW /healthz HTTP/1.1", b"get /healthz HTTP/1.1", b"G\x00T /healthz HTTP/1.1",
    b"GET healthz HTTP/1.1", b"GET * HTTP/1.1", b"GET /a\xffb HTTP/1.1", b"GET /a\x7fb HTTP/1.1",
    b"GET /healthz HTTP/1.2", b"GET /healthz HTTP/2.0", b"GET /healthz HTTP/0.9",
    b"GET /healthz", b"CONNECT x:1 HTTP/1.1",
])
def test_bad_request_lines_get_400(sidecar, request_line):
    raw = request_line + b"\r\n" + HOST + b"\r\n" + HEALTH
    assert exchange(sidecar.socket_path, raw)[0] == [400]


# -- what must keep working -------------------------------------------------------

def test_pipelined_requests_with_bodies_are_all_served_in_order(sidecar):
    raw = (b"PUT /keys/pipe/a HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n\r\nabc"
           b"PUT /keys/pipe/b HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
           b"2\r\nde\r\n1\r\nf\r\n0\r\nT: trailer\r\n\r\n"
           + HEALTH * 50
           + b"GET /keys/pipe/a HTTP/1.1\r\n" + HOST + b"\r\n"
           + b"GET /keys/pipe/b HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    statuses, reply = exchange(sidecar.socket_path, raw)
    assert statuses == [204, 204] + [200] * 52
    assert reply.endswith(b"\r\n\r\ndef") and b"\r\n\r\nabcHTTP/1.1 200" in reply


def test_expect_100_continue(sidecar):
    raw = (b"PUT /keys/expect HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\n"
           b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert exchange(sidecar.socket_path, raw)[0] == [100, 204]
    raw = (b"PUT /keys/expect HTTP/1.0\r\n" + HOST + b"Expect: 100-continue\r\n"  # ignored
           b"Content-Length: 3\r\n\r\nxyz")
    assert exchange(sidecar.socket_path, raw)[0] == [204]
    raw = (b"PUT /keys/expect HTTP/1.1\r\n" + HOST + b"Expect: something\r\n"
           b"Content-Length: 3\r\n\r\nabc")
    assert exchange(sidecar.socket_path, raw)[0] == [417]
    with open(put_key(sidecar, "expect"), "rb") as f:
        assert f.read() == b"xyz"


def test_head_and_http_1_0(sidecar):
    raw = (b"HEAD /healthz HTTP/1.1\r\n" + HOST + b"\r\n"
           b"GET /healthz HTTP/1.0\r\n\r\n")
    statuses, reply = exchange(sidecar.socket_path, raw)
    assert statuses == [200, 200]
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert b"content-length: 19" in head.lower() and rest.startswith(b"HTTP/1.0 200 ")
    assert b"connection: close" in rest.lower()


def test_an_upgrade_is_ignored_without_a_body_and_refused_with_one(sidecar):
    upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n"
    raw = b"GET /healthz HTTP/1.1\r\n" + HOST + upgrade + b"\r\n" + HEALTH
    statuses, reply = exchange(sidecar.socket_path, raw + b"GET /healthz HTTP/1.1\r\n" + HOST
                               + b"Connection: close\r\n\r\n")
    assert statuses == [200, 200, 200]
    raw = (b"PUT /keys/upgraded HTTP/1.1\r\n" + HOST + upgrade + b"Content-Length: 3\r\n\r\nabc")
    assert exchange(sidecar.socket_path, raw)[0] == [400]
    assert not os.path.exists(put_key(sidecar, "upgraded"))


def test_a_percent_encoded_path_and_query_reach_the_views(sidecar):
    raw = (b"PUT /keys/enc/e%20f HTTP/1.1\r\n" + HOST + b"Content-Length: 1\r\n\r\nx"
           b"GET /keys/?prefix=enc/&delimiter=/ HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    statuses, reply = exchange(sidecar.socket_path, raw)
    assert statuses == [204, 200]
    assert b'"enc/e f"' in reply
    assert os.path.exists(os.path.join(sidecar.root, "enc", "e f"))


# -- httptools missing ------------------------------------------------------------

HIDE_HTTPTOOLS = ("import sys\n"
                  "class _Hide:\n"
                  "    def find_spec(self, name, path=None, target=None):\n"
                  "        if name == 'httptools':\n"
                  "            raise ModuleNotFoundError(name)\n"
                  "sys.meta_path.insert(0, _Hide())\n")


def _without_httptools(tmp_path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(HIDE_HTTPTOOLS)
    env = dict(os.environ, STATE_ROOT=str(tmp_path), CONNECTOR_SOCKET=str(tmp_path / "s.sock"),
               PYTHONPATH=f"{tmp_path}:{ROOT}")
    return env


def test_the_cli_refuses_to_start_without_httptools(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sidecars.cli", "local-buffered-cas"],
                            env=_without_httptools(tmp_path), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'httptools'" in lines[0], result.stderr
    assert "pip install 'vfs-state[local]'" in lines[0]


def test_gunicorn_started_by_hand_refuses_to_start_without_httptools(tmp_path):
    command = [sys.executable, "-m", "gunicorn", "-c", "python:sidecars.gunicorn_conf",
               "sidecars.local:create_app()"]
    result = subprocess.run(command, env=_without_httptools(tmp_path), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vfs-state-sidecar: ") and "pip install 'vfs-state[sidecar]'" \
        in lines[0]
