"""A WSGI response written to the client socket: gunicorn's ``wsgi.Response``, leaner.

Same wire behaviour as gunicorn's: status line, ``Server``, ``Date``,
``Connection`` and the app's headers (checked with gunicorn's patterns, so a
bad one is the app's fault: 500); hop-by-hop headers dropped; no body for
HEAD, 1xx, 204 and 304 (and no ``Content-Length`` on 1xx and 204); never more
than ``Content-Length`` bytes; chunked when an HTTP/1.1 reply has no length.
What is leaner: the ``Date`` is formatted once a second, and the head leaves
with the first piece of a small body in one ``sendall``.
"""
from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

from gunicorn import SERVER
from gunicorn.http.errors import InvalidResponseHeader, InvalidResponseHeaderName
from gunicorn.http.message import TOKEN_RE
from gunicorn.http.wsgi import HEADER_VALUE_RE, STATUS_RE

from sidecars.http_request import Request

_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailers", "transfer-encoding", "upgrade"))
#: A body piece up to this size is sent in one ``sendall`` with the head.
JOIN_WITH_HEAD = 64 * 1024
_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` value, formatted once per second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


class Response:
    """``start_response`` and the writing of one reply (attribute names as gunicorn's)."""

    __slots__ = ("req", "sock", "status", "status_code", "headers", "headers_sent",
                 "response_length", "sent", "chunked", "must_close", "omits_body")

    def __init__(self, req: Request, sock: Any) -> None:
        self.req = req
        self.sock = sock
        self.status: str | None = None
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.response_length: int | None = None
        self.sent = 0
        self.chunked = False
        self.must_close = False
        self.omits_body = False

    def force_close(self) -> None:
        self.must_close = True

    def should_close(self) -> bool:
        if self.must_close or self.req.should_close():
            return True
        if self.response_length is not None or self.chunked or self.req.method == "HEAD":
            return False
        code = self.status_code
        return not (code < 200 or code in (204, 304))

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        if exc_info:
            try:
                if self.status and self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("Response headers already set!")
        if not isinstance(status, str):
            raise TypeError(f"{status!r} is not a string")
        if not STATUS_RE.fullmatch(status):
            raise ValueError(f"Invalid status {status!r}")
        self.status = status
        code = self.status_code = int(status[:3])
        self.response_length = None
        kept = self.headers = []
        for name, value in headers:
            if not isinstance(name, str):
                raise TypeError(f"{name!r} is not a string")
            if not TOKEN_RE.fullmatch(name):
                raise InvalidResponseHeaderName(repr(name))
            if not isinstance(value, str):
                raise TypeError(f"{value!r} is not a string")
            if not HEADER_VALUE_RE.fullmatch(value):
                raise InvalidResponseHeader(repr(name))  # the name only: values may be secret
            value = value.strip(" \t")
            lname = name.lower()
            if lname == "content-length":
                self.response_length = int(value)
            elif lname in _HOP_BY_HOP:
                continue
            kept.append((name, value))
        no_length = code == 204 or 100 <= code < 200  # RFC 9110 6.4.2
        self.omits_body = no_length or code == 304 or self.req.method == "HEAD"
        if no_length and self.response_length is not None:
            self.headers = [(k, v) for k, v in kept if k.lower() != "content-length"]
            self.response_length = None
        self.chunked = (self.response_length is None and self.req.version >= (1, 1)
                        and not self.omits_body)
        return self.write

    def _head(self) -> bytes:
        self.headers_sent = True
        version = self.req.version
        lines = [f"HTTP/{version[0]}.{version[1]} {self.status}\r\nServer: {SERVER}\r\n"
                 f"Date: {http_date()}\r\n"
                 f"Connection: {'close' if self.should_close() else 'keep-alive'}\r\n"]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        lines.extend([f"{name}: {value}\r\n" for name, value in self.headers])
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"{data!r} is not a byte")
        head = b"" if self.headers_sent else self._head()
        size = len(data)
        if self.omits_body:
            size = 0
        elif self.response_length is not None:
            size = min(size, self.response_length - self.sent)
            if size < len(data):
                data = data[:max(size, 0)]
        if size <= 0:  # nothing to send but, the first time, the head
            if head:
                self.sock.sendall(head)
            return
        self.sent += size
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (size, data)
        if head and size <= JOIN_WITH_HEAD:
            self.sock.sendall(head + data)
            return
        if head:
            self.sock.sendall(head)
        self.sock.sendall(data)

    def close(self) -> None:
        """The end of the reply: the head if nothing was written, the last chunk."""
        end = b"0\r\n\r\n" if self.chunked else b""
        if not self.headers_sent:
            self.sock.sendall(self._head() + end)
        elif end:
            self.sock.sendall(end)
