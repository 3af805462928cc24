"""The client transport against a scripted Unix-socket server.

Each connection the server accepts follows its own script of canned byte
replies, so the cases a real sidecar produces only by chance (a close right
after a request arrived, a close between requests, interim 1xx replies,
stray bytes, a server that stalls) happen every run. The server records
each request it received, so "sent once" is checked where it matters: at the
receiving end.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator

import pytest

from vfs_state._types import FileContext
from vfs_state.client import SidecarClient
from vfs_state.connection import JOIN_LIMIT, RECV_SIZE
from vfs_state.transport import (
    OutcomeUnknownError,
    OutcomeUnknownTimeout,
    ProtocolError,
    Transport,
    outcome_unknown,
)
from vfs_state.writers import ChunkedUpload


def reply(status: int = 200, body: bytes = b"", *headers: str, length: bool = True) -> bytes:
    """A canned HTTP/1.1 reply (``Content-Length`` framing unless told otherwise)."""
    lines = [f"HTTP/1.1 {status} X", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


OK = reply(200, b"ok")


def _read_request(reader) -> tuple[str, str] | None:  # noqa: ANN001
    """One request (head and body) from ``reader``; None when the client closed."""
    line = reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while (raw := reader.readline()) not in (b"\r\n", b""):
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        reader.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while (size := int(reader.readline().strip(), 16)) != 0:
            reader.read(size + 2)
        reader.readline()
    return method, path


class ScriptedServer:
    """Serves connection ``i`` with ``scripts[i]``, a list of steps.

    Steps: ``("reply", bytes)`` read a request, send bytes; ``("pieces",
    [bytes, ...])`` read a request, send the pieces with a pause between
    them (so the client most likely reads each on its own); ``("drop",)`` read
    a request, close without a reply; ``("stall",)`` read a request, never
    answer; ``("send", bytes)`` send bytes nobody asked for; ``("close",)``
    close. A connection closes when its script ends.
    """

    def __init__(self, *scripts: list[tuple]) -> None:
        self.scripts = list(scripts)
        self.dir = tempfile.mkdtemp(prefix="vfs-scripted-")
        self.path = os.path.join(self.dir, "s.sock")
        self.arrivals: list[tuple[int, str, str]] = []  # (connection, method, path)
        self.closed = [threading.Event() for _ in range(16)]
        self.stop = threading.Event()
        self.sent = threading.Event()  # a "send" step is done
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        index = 0
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            steps = self.scripts[index] if index < len(self.scripts) else []
            threading.Thread(target=self._serve, args=(index, sock, steps), daemon=True).start()
            index += 1

    def _serve(self, index: int, sock: socket.socket, steps: list[tuple]) -> None:
        reader = sock.makefile("rb")
        try:
            for kind, *args in steps:
                if kind == "close":
                    break
                if kind == "send":
                    sock.sendall(args[0])
                    self.sent.set()
                    continue
                request = _read_request(reader)
                if request is None:
                    break
                self.arrivals.append((index, *request))
                if kind == "reply":
                    sock.sendall(args[0])
                elif kind == "pieces":
                    for piece in args[0]:
                        sock.sendall(piece)
                        self.stop.wait(0.02)
                elif kind == "stall":
                    self.stop.wait(30)
                    break
                else:  # drop
                    break
        except OSError:
            pass
        finally:
            reader.close()
            sock.close()
            self.closed[index].set()

    def count(self, method: str) -> int:
        return sum(1 for _, m, _ in self.arrivals if m == method)

    def close(self) -> None:
        self.stop.set()
        self._listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def serve() -> Iterator:
    servers: list[ScriptedServer] = []

    def start(*scripts: list[tuple]) -> ScriptedServer:
        servers.append(ScriptedServer(*scripts))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# -- framing ---------------------------------------------------------------------


def test_content_length_bodies_keep_the_connection(serve):
    server = serve([("reply", reply(200, b"first")), ("reply", reply(200, b"second!"))])
    transport = Transport(server.path, timeout=5)
    assert transport.request("GET", "/keys/a").body == b"first"
    assert transport.request("GET", "/keys/b").body == b"second!"
    assert [conn for conn, _, _ in server.arrivals] == [0, 0]


def test_chunked_body_with_extensions_and_trailers(serve):
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    server = serve([("reply", chunked), ("reply", OK)])
    transport = Transport(server.path, timeout=5)
    assert transport.request("GET", "/keys/a").body == b"hello world"
    assert transport.request("GET", "/keys/b").body == b"ok"
    assert [conn for conn, _, _ in server.arrivals] == [0, 0]


def test_close_delimited_body_then_a_fresh_connection(serve):
    server = serve([("reply", reply(200, b"until the end", length=False))],
                   [("reply", reply(204))])
    transport = Transport(server.path, timeout=5)
    assert transport.request("GET", "/keys/a").body == b"until the end"
    transport.request("PUT", "/keys/b", {}, b"v")
    assert server.arrivals == [(0, "GET", "/keys/a"), (1, "PUT", "/keys/b")]


def test_interim_1xx_replies_are_skipped(serve):
    interim = (b"HTTP/1.1 100 Continue\r\n\r\n"
               b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
    server = serve([("reply", interim + reply(201, b"one")), ("reply", reply(200, b"two"))])
    transport = Transport(server.path, timeout=5)
    first = transport.request("PUT", "/keys/a", {}, b"v")
    assert (first.status, first.body) == (201, b"one")
    assert transport.request("GET", "/keys/a").body == b"two"


def test_a_reply_in_pieces_is_one_reply(serve):
    """Head split mid-line and mid-blank-line, body split: read as if it came whole."""
    whole = reply(200, b"0123456789", 'ETag: "v1"')
    cut = whole.index(b"\r\n\r\n") + 3  # between the blank line's "\r" and "\n"
    server = serve([("pieces", [whole[:7], whole[7:cut], whole[cut:cut + 5], whole[cut + 5:]]),
                    ("reply", reply(200, b"next"))])
    transport = Transport(server.path, timeout=5)
    answer = transport.request("GET", "/keys/a")
    assert (answer.status, answer.body, answer.etag()) == (200, b"0123456789", "v1")
    assert transport.request("GET", "/keys/b").body == b"next"
    assert [conn for conn, _, _ in server.arrivals] == [0, 0]


@pytest.mark.parametrize("size", [RECV_SIZE + 1, JOIN_LIMIT + RECV_SIZE * 3 + 7],
                         ids=["joined", "in-place"])
def test_a_body_larger_than_one_receive_arrives_whole(serve, size):
    body = random.Random(size).randbytes(size)
    server = serve([("reply", reply(200, body)), ("reply", reply(200, b"after"))])
    transport = Transport(server.path, timeout=5)
    assert transport.request("GET", "/keys/big").body == body
    assert transport.request("GET", "/keys/b").body == b"after"  # nothing read past the body
    assert transport.bytes_received == size + 5


def test_a_streamed_body_after_its_head(serve):
    body = bytes(range(256)) * 1000
    server = serve([("pieces", [reply(200, body)[:300], reply(200, body)[300:]]),
                    ("reply", reply(200, b"after"))])
    transport = Transport(server.path, timeout=5)
    stream = transport.stream("/keys/big", {})
    view, got = memoryview(bytearray(7000)), bytearray()
    while count := stream.readinto(view):
        got += view[:count]
    assert bytes(got) == body
    assert transport.request("GET", "/keys/b").body == b"after"


def test_bare_newlines_and_repeated_fields(serve):
    lf_only = (b"HTTP/1.1 200 OK\nX-Multi: a\nContent-Length: 2\nX-Multi:  b \n\nok")
    server = serve([("reply", lf_only)])
    answer = Transport(server.path, timeout=5).request("GET", "/keys/a")
    assert (answer.body, answer.headers["x-multi"]) == (b"ok", "a, b")


@pytest.mark.parametrize("bad", [b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                 b"HTTP/1.1 2x0 OK\r\n\r\n", b"ICY 200 OK\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nok"],
                         ids=["header", "status", "protocol", "length"])
def test_malformed_replies_are_protocol_errors(serve, bad):
    server = serve([("reply", bad)])
    with pytest.raises(ProtocolError):
        Transport(server.path, timeout=5).request("GET", "/keys/a")


@pytest.mark.parametrize("value", ["keep-alive, close", "Keep-Alive,Close", "close, te"])
def test_connection_close_as_one_token_of_a_list(serve, value):
    server = serve([("reply", reply(200, b"a", f"Connection: {value}")),
                    ("reply", reply(200, b"wrong connection"))],
                   [("reply", reply(200, b"b"))])
    transport = Transport(server.path, timeout=5)
    assert transport.request("GET", "/keys/a").body == b"a"
    assert transport.request("GET", "/keys/b").body == b"b"
    assert [conn for conn, _, _ in server.arrivals] == [0, 1]


# -- a close right after the request arrived ---------------------------------------


def test_put_lost_after_arrival_raises_and_is_not_resent(serve):
    """Kept-alive connection closed after the PUT arrived: never sent again.

    The old transport re-sent it on a new connection; the first copy was
    stored, so the copy met 412 and the caller saw FileExistsError for its
    own write.
    """
    server = serve([("reply", OK), ("drop",)], [("reply", reply(412))])
    transport = Transport(server.path, timeout=5)
    transport.request("GET", "/keys/k")
    with pytest.raises(OutcomeUnknownError, match="may or may not have been applied") as info:
        transport.request("PUT", "/keys/k", {"If-None-Match": "*"}, b"v", key="k")
    assert isinstance(info.value, ConnectionError) and outcome_unknown(info.value)
    assert server.count("PUT") == 1


def test_delete_lost_after_arrival_raises_and_is_not_resent(serve):
    server = serve([("reply", OK), ("drop",)], [("reply", reply(404))])
    transport = Transport(server.path, timeout=5)
    transport.request("GET", "/keys/k")
    with pytest.raises(OutcomeUnknownError):
        transport.request("DELETE", "/keys/k", key="k")
    assert server.count("DELETE") == 1


def test_put_on_a_fresh_connection_lost_after_arrival_raises(serve):
    server = serve([("drop",)], [("reply", reply(412))])
    with pytest.raises(OutcomeUnknownError):
        Transport(server.path, timeout=5).request("PUT", "/keys/k", {}, b"v", key="k")
    assert server.count("PUT") == 1


def test_get_lost_after_arrival_is_retried_once(serve):
    server = serve([("reply", OK), ("drop",)], [("reply", reply(200, b"again"))])
    transport = Transport(server.path, timeout=5)
    transport.request("GET", "/keys/k")
    assert transport.request("GET", "/keys/k").body == b"again"
    assert server.count("GET") == 3


def test_get_lost_twice_gives_up(serve):
    server = serve([("drop",)], [("drop",)], [("reply", OK)])
    with pytest.raises(ConnectionError) as info:
        Transport(server.path, timeout=5).request("GET", "/keys/k")
    assert not outcome_unknown(info.value)
    assert server.count("GET") == 2


def test_get_not_retried_once_part_of_the_reply_came(serve):
    server = serve([("reply", OK), ("reply", b"HTTP/1.1 200 OK\r\nContent-Len")],
                   [("reply", OK)])
    transport = Transport(server.path, timeout=5)
    transport.request("GET", "/keys/k")
    with pytest.raises(ConnectionError):
        transport.request("GET", "/keys/k")
    assert server.count("GET") == 2


def test_passthrough_upload_lost_after_the_last_chunk_raises(serve):
    """The streaming upload is never re-sent either."""
    server = serve([("drop",)], [("reply", reply(412))])
    upload = ChunkedUpload(SidecarClient(server.path, timeout=5), "k", {},
                           context=FileContext("/m/k", "wb", "test"))
    upload.write(b"data")
    with pytest.raises(OutcomeUnknownError):
        upload.close()
    assert server.count("PUT") == 1


def _upload(client: SidecarClient, data: bytes = b"data") -> None:
    upload = ChunkedUpload(client, "k", {}, context=FileContext("/m/k", "wb", "test"))
    upload.write(data)
    upload.close()


def test_passthrough_uploads_go_out_on_the_pooled_connection(serve):
    """No new connection (a sidecar thread) per streamed upload; the chunks arrive whole."""
    done = reply(204, b"", 'ETag: "1"')
    server = serve([("reply", OK), ("reply", done), ("reply", done), ("reply", OK)])
    client = SidecarClient(server.path, timeout=5)
    client.transport.request("GET", "/keys/a")
    _upload(client, b"small")
    _upload(client, os.urandom(200_000))  # a chunk over SMALL_CHUNK: its own sends
    client.transport.request("GET", "/keys/a")
    assert server.arrivals == [(0, "GET", "/keys/a"), (0, "PUT", "/keys/k"),
                               (0, "PUT", "/keys/k"), (0, "GET", "/keys/a")]


def test_a_refused_passthrough_upload_does_not_give_its_connection_back(serve):
    """A refusal may come before the sidecar read the whole body: that connection is done."""
    server = serve([("reply", reply(412, b'{"error": "precondition_failed"}'))],
                   [("reply", OK)])
    client = SidecarClient(server.path, timeout=5)
    with pytest.raises(OSError):
        _upload(client)
    client.transport.request("GET", "/keys/a")
    assert server.arrivals == [(0, "PUT", "/keys/k"), (1, "GET", "/keys/a")]


def test_a_passthrough_upload_skips_an_idle_connection_the_sidecar_closed(serve):
    server = serve([("reply", OK)], [("reply", reply(204, b"", 'ETag: "1"'))])
    client = SidecarClient(server.path, timeout=5)
    client.transport.request("GET", "/keys/a")
    assert server.closed[0].wait(5)
    _upload(client)
    assert server.arrivals == [(0, "GET", "/keys/a"), (1, "PUT", "/keys/k")]


# -- a close (or stray bytes) between requests ------------------------------------------


def test_stale_keep_alive_detected_before_reuse(serve):
    server = serve([("reply", OK)], [("reply", reply(204))])
    transport = Transport(server.path, timeout=5)
    transport.request("GET", "/keys/k")
    assert server.closed[0].wait(5)  # the server closed the idle connection
    transport.request("PUT", "/keys/k", {}, b"v", key="k")
    assert server.arrivals == [(0, "GET", "/keys/k"), (1, "PUT", "/keys/k")]


@pytest.mark.parametrize("late", [False, True], ids=["with-the-reply", "later"])
def test_stray_bytes_on_an_idle_connection_are_not_taken_as_a_reply(serve, late):
    """Bytes nobody asked for make a connection unusable, wherever they wait."""
    stray = reply(204, b"", "X-Stray: 1")
    first = [("reply", OK), ("send", stray)] if late else [("reply", OK + stray)]
    server = serve(first + [("reply", reply(412))], [("reply", reply(201, b"fresh"))])
    transport = Transport(server.path, timeout=5)
    transport.request("GET", "/keys/k")
    if late:
        assert server.sent.wait(5)  # in the client's socket buffer once sendall returned
    answer = transport.request("PUT", "/keys/k", {}, b"v", key="k")
    assert (answer.status, answer.body) == (201, b"fresh")
    assert server.arrivals == [(0, "GET", "/keys/k"), (1, "PUT", "/keys/k")]


# -- a slow server ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_slow_server_surfaces_as_timeout(serve, method):
    server = serve([("stall",)], [("reply", OK)])
    transport = Transport(server.path, timeout=0.3)
    with pytest.raises(TimeoutError) as info:
        transport.request(method, "/keys/k", {}, b"v" if method == "PUT" else None, key="k")
    assert outcome_unknown(info.value) == (method == "PUT")
    # the verdict is the error's class, not an attribute set on a plain TimeoutError
    assert isinstance(info.value, OutcomeUnknownTimeout) == (method == "PUT")
    assert "outcome_unknown" not in vars(info.value)
    assert server.count(method) == 1
