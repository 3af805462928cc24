"""The request body as a plain stream, with the size limit and framing errors.

Backends call ``read(n)`` and never see WSGI: this wrapper counts bytes,
turns an oversize body into 413 and a broken one (bad chunking, short body,
client gone) into 400, so a backend can abort its upload and store nothing.
"""
from __future__ import annotations

from flask import Request
from werkzeug.sansio.utils import get_content_length

from sidecars.errors import BadRequest, PayloadTooLarge, SidecarError


class RequestBody:
    """A ``read(n)`` stream over ``request.stream`` that enforces ``limit``."""

    def __init__(self, request: Request, limit: int | None) -> None:
        environ = request.environ
        encoding = environ.get("HTTP_TRANSFER_ENCODING")
        #: the announced length, as ``request.content_length`` reads it (None: streamed)
        self.length = length = get_content_length(environ.get("CONTENT_LENGTH"), encoding)
        chunked = encoding is not None and "chunked" in encoding.lower()
        if length is None and not chunked and request.method == "PUT":
            length = 0  # no framing at all means an empty body
        if limit is not None and length is not None and length > limit:
            raise PayloadTooLarge(f"body of {length} bytes exceeds the limit of {limit}")
        # A server that ends the body stream itself (``wsgi.input_terminated``: the
        # sidecar's worker, gunicorn's) is read directly: every read here is bounded
        # by the length already, and werkzeug's ``request.stream`` wrapper and
        # cached properties cost about 8 µs a PUT.
        terminated = environ.get("wsgi.input_terminated")
        self._stream = environ["wsgi.input"] if terminated else request.stream
        self._limit = limit
        self._expected = length
        self._seen = 0
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all remaining if negative); ``b""`` at the end."""
        if self._eof:
            return b""
        if self._expected is not None:
            remaining = self._expected - self._seen
            size = remaining if size < 0 else min(size, remaining)
            if size == 0:
                self._eof = True
                return b""
        try:
            data = self._stream.read(size if size >= 0 else -1)
        except SidecarError:
            raise
        except Exception as exc:  # framing errors surface from the server's reader
            raise BadRequest(f"malformed request body: {type(exc).__name__}: {exc}",
                             code="bad_body") from None
        if not data:
            self._eof = True
            if self._expected is not None and self._seen < self._expected:
                raise BadRequest(f"body ended after {self._seen} of {self._expected} bytes",
                                 code="bad_body")
            return b""
        self._seen += len(data)
        if self._limit is not None and self._seen > self._limit:
            raise PayloadTooLarge(f"body exceeds the limit of {self._limit} bytes")
        return data

    def check_complete(self) -> None:
        """After a write: a backend that stopped early must not hide a bad body."""
        if not self._eof and self.read(1):
            raise BadRequest("backend did not consume the whole body", code="bad_body")
