"""An HTTP/1.1 proxy that counts what passes: requests, and bytes each way.

Placed in front of a real server (moto's S3 on TCP, or a sidecar's Unix
socket), it tells how many requests an operation cost and how many body
bytes came back, counted where the server sees them: no client library is
wrapped or mocked. Each request is forwarded on a keep-alive upstream
connection and its reply streamed back unchanged (``Content-Length`` or
chunked framing kept), so clients behave exactly as against the server.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import socketserver
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from vfs_state.transport import UnixHTTPConnection

CHUNK = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade"}


@dataclass
class Tally:
    """What went through since the last ``reset``: requests by method, bytes."""

    requests: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0   # request bodies, client to server
    bytes_out: int = 0  # response bodies, server to client
    lines: list[str] = field(default_factory=list)  # "METHOD path Range" per request

    @property
    def total(self) -> int:
        return sum(self.requests.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def _forward(self) -> None:
        body = self._request_body()
        proxy = self.server.proxy
        with proxy.lock:
            proxy.tally.requests[self.command] += 1
            proxy.tally.bytes_in += len(body)
            proxy.tally.lines.append(f"{self.command} {self.path} {self.headers.get('Range', '')}"
                                     .rstrip())
        upstream = proxy.upstream_for(self)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
        except OSError:
            pass  # the server may have answered early and closed: relay that answer
        try:
            reply = upstream.getresponse()
        except (OSError, http.client.HTTPException):
            upstream.close()
            self.close_connection = True
            self.send_error(502)
            return
        self._relay(reply)

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _relay(self, reply: http.client.HTTPResponse) -> None:
        self.send_response_only(reply.status, reply.reason)
        length = reply.getheader("Content-Length")
        for name, value in reply.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        no_body = self.command == "HEAD" or reply.status in (204, 304)
        if length is not None:
            self.send_header("Content-Length", length)
        elif not no_body:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while not no_body:
            data = reply.read(CHUNK)
            if not data:
                break
            with self.server.proxy.lock:  # counted as it goes: a reader may stop early
                self.server.proxy.tally.bytes_out += len(data)
            if length is None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        reply.read()  # a HEAD or 204 reply must be finished before the next request
        if length is None and not no_body:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815


class _Server(socketserver.ThreadingMixIn, socketserver.BaseServer):
    daemon_threads = True
    proxy: CountingProxy


class _TCPServer(_Server, socketserver.TCPServer):
    pass


class _UnixServer(_Server, socketserver.UnixStreamServer):
    def get_request(self):  # noqa: ANN201 - BaseHTTPRequestHandler wants a client address
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


class CountingProxy:
    """Forward to ``connect()``'s server; listen on TCP loopback or a Unix socket."""

    def __init__(self, connect: Callable[[], http.client.HTTPConnection], unix: bool) -> None:
        self.connect = connect
        self.tally = Tally()
        self.lock = threading.Lock()
        self._local = threading.local()
        if unix:
            self.socket_path = os.path.join(tempfile.mkdtemp(prefix="vfs-proxy-"), "proxy.sock")
            self._server: _Server = _UnixServer(self.socket_path, _Handler)
        else:
            self._server = _TCPServer(("127.0.0.1", 0), _Handler)
            self.port = self._server.server_address[1]
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @classmethod
    def tcp(cls, port: int) -> CountingProxy:
        """In front of an HTTP server on ``127.0.0.1:port``; see ``endpoint``."""
        return cls(lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=60), False)

    @classmethod
    def unix(cls, socket_path: str) -> CountingProxy:
        """In front of a sidecar's socket; clients use ``self.socket_path``."""
        return cls(lambda: UnixHTTPConnection(socket_path, timeout=60), True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstream_for(self, handler: _Handler) -> http.client.HTTPConnection:
        """One upstream connection per client connection (keep-alive both sides)."""
        conn = getattr(self._local, "conn", None)  # a handler thread serves one connection
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    def reset(self) -> Tally:
        """The tally so far, and start a new one."""
        with self.lock:
            tally, self.tally = self.tally, Tally()
        return tally

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if isinstance(self._server, _UnixServer):
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
