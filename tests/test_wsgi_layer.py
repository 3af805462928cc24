"""The worker's WSGI layer against gunicorn's own, on the same bytes.

``sidecars.http_request`` (parser and ``wsgi.input``), ``sidecars.wsgi_environ``
and ``sidecars.http_response`` replace gunicorn's parser, ``wsgi.create`` and
``wsgi.Response`` in the sidecar worker. Each request here goes through both
over a real socket pair, and what the app would see (the environ, the body
read in odd pieces) and what the client would get (the reply bytes, ``Date``
aside) must be the same.
"""
from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn import http
from gunicorn.config import Config
from gunicorn.http import wsgi

from sidecars.http_request import Limits, RequestReader
from sidecars.http_response import Response
from sidecars.wsgi_environ import connection_environ, request_environ, worker_environ

SERVER = "/run/sidecar.sock"  # a Unix socket's name, as the worker passes it
# Keys that hold objects (streams, sockets, callables) or the worker's own choice.
NOT_COMPARED = {"wsgi.input", "wsgi.errors", "gunicorn.socket", "wsgi.file_wrapper",
                "wsgi.early_hints", "wsgi.multithread", "wsgi.multiprocess"}

REQUESTS = [
    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /keys/a%20b/%C3%A9?prefix=x&y=%2F HTTP/1.1\r\nHost: h:8080\r\nX-A: 1\r\n"
    b"X-A: 2 \r\nContent-Type: text/plain \r\nContent-Length: 0\r\n\r\n",
    b"PUT /keys/k HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    b"GET http://example/p?q=1#f HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET //double/slash?x HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a#frag?notquery HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /x? HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\nACCEPT:c\r\n\r\n",
    b"GET /x HTTP/1.1\r\nX_Dropped: 1\r\nX-Kept:\t tabbed \t\r\nX-Empty:\r\n\r\n",
    b"GET /%2e%2e/%2F/%zz/%ff HTTP/1.1\r\nHost: h\r\nIf-Match: \"v\"\r\nRange: bytes=0-1\r\n\r\n",
    b"PUT /keys/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
    b"\r\n3\r\nabc\r\n0\r\n\r\n",
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = _pair()
    yield client, server
    client.close()
    server.close()


class Source:
    """The server end of a socket pair, as ``worker._Connection`` offers it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def settimeout(self, value: float | None) -> None:
        self.sock.settimeout(value)


def _pair() -> tuple[socket.socket, socket.socket]:
    client, server = socket.socketpair()
    client.settimeout(10)  # a test that waits for bytes never sent fails, not hangs
    server.settimeout(10)
    return client, server


def gunicorn_environ(raw: bytes) -> tuple[dict[str, Any], Any]:
    client, server = _pair()
    with client, server:
        client.sendall(raw)
        client.shutdown(socket.SHUT_WR)
        req = next(http.RequestParser(Config(), server, ""))
        _, environ = wsgi.create(req, server, "", SERVER, Config())
        return environ, environ["wsgi.input"].read()


def our_environ(raw: bytes) -> tuple[dict[str, Any], Any]:
    client, server = _pair()
    with client, server:
        client.sendall(raw)
        client.shutdown(socket.SHUT_WR)
        req = RequestReader(Source(server), Limits.from_config(Config())).next_request()
        assert req is not None
        conn = connection_environ(worker_environ(Config()), server, "")
        environ = request_environ(req, conn, SERVER)
        return environ, environ["wsgi.input"].read()


@pytest.mark.parametrize("raw", REQUESTS)
def test_the_environ_is_gunicorns(raw):
    theirs, their_body = gunicorn_environ(raw)
    ours, our_body = our_environ(raw)
    assert {k: v for k, v in ours.items() if k not in NOT_COMPARED} == \
        {k: v for k, v in theirs.items() if k not in NOT_COMPARED}
    assert our_body == their_body
    assert ours["wsgi.multithread"] is True


BODIES = {
    "length": b"Content-Length: 100000\r\n\r\n" + bytes(range(256)) * 390 + b"x" * 160,
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (n, b"\n" * (n // 3) + b"y" * (n - n // 3))
                          for n in (1, 7, 4096, 65536, 3, 30000)) + b"0\r\nT: v\r\n\r\n",
    "lines": b"Content-Length: 40\r\n\r\n" + b"one\ntwo\n\nthree\n" + b"f" * 25,
}


def _read_in_pieces(stream: Any) -> list[bytes]:
    pieces = [stream.read(0), stream.read(1), stream.readline(), stream.readline(5),
              stream.read(10000), stream.readline()]
    pieces.extend(stream.read(size) for size in (3, 70000, 1, 1 << 20))
    pieces.append(stream.read())
    pieces.append(stream.read(5))
    return pieces


@pytest.mark.parametrize("framing", list(BODIES.values()), ids=list(BODIES))
def test_the_body_reads_as_gunicorns_in_odd_pieces(framing):
    raw = b"PUT /keys/k HTTP/1.1\r\nHost: h\r\n" + framing
    client, server = _pair()
    with client, server:
        client.sendall(raw)
        req = next(http.RequestParser(Config(), server, ""))
        theirs = _read_in_pieces(req.body)
    client, server = _pair()
    with client, server:
        client.sendall(raw)
        ours_req = RequestReader(Source(server), Limits.from_config(Config())).next_request()
        assert ours_req is not None
        ours = _read_in_pieces(ours_req.body)
    assert ours == theirs
    assert sum(len(p) for p in ours) > 0


REPLIES = [  # (request method, version (and headers), status, headers, body pieces)
    (b"GET", b"1.1", "200 OK", [("Content-Type", "application/json"),
                                ("Content-Length", "5")], [b"hello"]),
    (b"GET", b"1.1", "200 OK", [("Content-Length", "3")], [b"toolong", b"more"]),
    (b"GET", b"1.1", "200 OK", [("X-Streamed", "yes")], [b"a" * 70000, b"", b"bc"]),
    (b"GET", b"1.0", "200 OK", [("X-Streamed", "yes")], [b"abc"]),
    (b"HEAD", b"1.1", "200 OK", [("Content-Length", "9")], [b"body here"]),
    (b"GET", b"1.1", "204 No Content", [("Content-Length", "4"), ("ETag", '"v"')], [b"nope"]),
    (b"GET", b"1.1", "304 Not Modified", [("Content-Length", "4")], []),
    (b"GET", b"1.1", "404 NOT FOUND", [("Connection", "keep-alive"), ("Keep-Alive", "5"),
                                       ("Transfer-Encoding", "chunked"),
                                       ("Content-Length", " 2 ")], [b"no"]),
    (b"DELETE", b"1.1", "412 Precondition Failed", [("Content-Length", "0")], []),
    # HTTP/1.0 keep-alive, but a reply with no length can only end by closing
    (b"GET", b"1.0\r\nConnection: keep-alive", "200 OK", [], [b"abc"]),
    (b"GET", b"1.0\r\nConnection: keep-alive", "200 OK", [("Content-Length", "3")], [b"abc"]),
]


def _reply(make: Any, method: bytes, version: bytes, status: str,
           headers: list[tuple[str, str]], pieces: list[bytes]) -> bytes:
    client, server = _pair()
    received: list[bytes] = []

    def read_all() -> None:  # the client reads while the reply is written
        while data := client.recv(1 << 20):
            received.append(data)

    with client, server:
        client.sendall(method + b" /x HTTP/" + version + b"\r\nHost: h\r\n\r\n")
        resp = make(server)
        reader = threading.Thread(target=read_all)
        reader.start()
        resp.start_response(status, list(headers))
        for piece in pieces:
            resp.write(piece)
        resp.close()
        server.shutdown(socket.SHUT_WR)
        reader.join()
    return re.sub(rb"\r\nDate: [^\r]*", b"", b"".join(received))


@pytest.mark.parametrize("case", REPLIES, ids=[f"{c[0].decode()}-{c[2]}" for c in REPLIES])
def test_the_reply_bytes_are_gunicorns(case):
    def theirs(sock: socket.socket) -> Any:
        req = next(http.RequestParser(Config(), sock, ""))
        return wsgi.Response(req, sock, Config())

    def ours(sock: socket.socket) -> Any:
        req = RequestReader(Source(sock), Limits.from_config(Config())).next_request()
        return Response(req, sock)  # type: ignore[arg-type]

    assert _reply(ours, *case) == _reply(theirs, *case)


@pytest.mark.parametrize("headers", [[("X-Bad", "a\r\nInjected: 1")], [("Bad Name", "v")],
                                     [("X", 1)]])
def test_a_bad_reply_header_is_refused_like_gunicorn(pair, headers):
    client, server = pair
    client.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    req = RequestReader(Source(server), Limits.from_config(Config())).next_request()
    assert req is not None
    with pytest.raises(Exception) as ours:
        Response(req, server).start_response("200 OK", headers)
    with pytest.raises(Exception) as theirs:
        wsgi.Response(req, server, Config()).start_response("200 OK", headers)
    assert type(ours.value) is type(theirs.value)


def test_heads_parsed_ahead_are_capped():
    """Bytes of pipelined requests are parsed as they arrive: at most
    ``MAX_PIPELINED`` heads wait, the next one is refused (431) after them."""
    from gunicorn.http.errors import LimitRequestHeaders

    from sidecars.http_request import MAX_PIPELINED
    client, server = _pair()
    with client, server:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n" * (MAX_PIPELINED + 1))  # in the buffer now
        reader = RequestReader(Source(server), Limits.from_config(Config()))
        for _ in range(MAX_PIPELINED):
            req = reader.next_request()
            assert req is not None and req.path == "/"
        with pytest.raises(LimitRequestHeaders):
            reader.next_request()
