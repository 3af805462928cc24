"""HTTP/1.1 requests read off a client connection with httptools (llhttp, in C).

``sidecars.worker`` parses with this instead of gunicorn's pure-Python
parser, which was the largest single cost of a small request
(docs/performance.md). llhttp checks the syntax (request line, header
tokens and characters, ``Content-Length``, chunked framing, the
``Content-Length`` + ``Transfer-Encoding`` smuggling cases); the rest of
what gunicorn checks is checked here, with gunicorn's limits and its
exception classes, so the worker's ``handle_error`` answers bad input as
gunicorn would (400, 414, 417, 431, 501). Differences: docs/sidecars.md.

A body reaches the app as a stream (``Body``, the ``wsgi.input``): bytes are
read from the socket as the app asks for them, never a whole body at once.
llhttp parses whatever it is fed, so bytes of pipelined requests that arrive
with a body are parsed at once: their heads wait in a queue (at most
``MAX_PIPELINED``) and their body bytes in their own buffers, nothing lost.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httptools
from gunicorn.http.errors import (
    ExpectationFailed,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidRequestLine,
    InvalidRequestMethod,
    LimitRequestHeaders,
    LimitRequestLine,
    NoMoreData,
    ParseException,
    UnsupportedTransferCoding,
)
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.util import split_request_uri

#: One recv while a head arrives; a body is read in pieces of up to MAX_RECV.
HEAD_RECV = 64 * 1024
MAX_RECV = 1024 * 1024
#: Heads of pipelined requests parsed ahead of the one being served.
MAX_PIPELINED = 1000
#: Unread body bytes discarded after a reply before the connection is given up
#: (gunicorn's ``finish_body`` cap).
DRAIN_LIMIT = 64 * 1024

_VERSIONS = {"1.1": (1, 1), "1.0": (1, 0)}
_SINGLETONS = frozenset(("HOST", "CONTENT-TYPE"))  # RFC 9110 5.3, as gunicorn
_FORBIDDEN_TRAILERS = frozenset((b"HOST", b"CONTENT-LENGTH", b"TRANSFER-ENCODING", b"TRAILER",
                                 b"AUTHORIZATION", b"TE"))


class Source(Protocol):
    """The client connection as the reader uses it (``worker._Connection``)."""

    def recv(self, size: int) -> bytes: ...

    def settimeout(self, value: float | None) -> None: ...


@dataclass(frozen=True)
class Limits:
    """gunicorn's ``limit_request_*`` settings, normalised as gunicorn does."""

    request_line: int
    fields: int
    field_size: int

    @classmethod
    def from_config(cls, cfg: Any) -> Limits:
        line = cfg.limit_request_line
        if line < 0 or line >= MAX_REQUEST_LINE:
            line = MAX_REQUEST_LINE
        elif line == 0:  # "unlimited": gunicorn's C parser path uses 1 MiB too
            line = 1024 * 1024
        fields = cfg.limit_request_fields
        if fields <= 0 or fields > MAX_HEADERS:
            fields = MAX_HEADERS
        size = cfg.limit_request_field_size
        if size <= 0:
            size = DEFAULT_MAX_HEADERFIELD_SIZE
        return cls(line, fields, size)

    @property
    def head_bytes(self) -> int:
        """Most bytes fed while a head (or a trailer section) makes no progress."""
        return self.fields * (self.field_size + 2) + 4 + self.request_line


class Request:
    """One request: what gunicorn's ``Request`` offers the worker, its hooks and logger."""

    __slots__ = ("reader", "url", "raw_headers", "method", "uri", "path", "query", "fragment",
                 "version", "headers", "must_close", "keep_alive", "expect_continue",
                 "length", "received", "complete", "chunks", "offset", "buffered", "head_done")
    scheme = "http"

    def __init__(self, reader: RequestReader) -> None:
        self.reader = reader
        self.url = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.method = self.uri = self.path = self.query = self.fragment = ""
        self.version = (1, 1)
        self.headers: list[tuple[str, str]] = []  # (NAME upper-cased, value stripped)
        self.must_close = False
        self.keep_alive = True
        self.expect_continue = False
        self.length: int | None = None  # Content-Length; None when chunked or absent
        self.received = 0
        self.complete = False
        self.chunks: deque[bytes] = deque()
        self.offset = 0  # into chunks[0]
        self.buffered = 0
        self.head_done = False

    @property
    def body(self) -> Body:
        """The body stream (``wsgi.input``); every one reads the same buffer."""
        return Body(self.reader, self)

    def should_close(self) -> bool:
        return self.must_close or not self.keep_alive

    def force_close(self) -> None:
        self.must_close = True

    # -- the body buffer ------------------------------------------------------
    def take(self, size: int) -> bytes:
        """Up to ``size`` buffered body bytes."""
        if size >= self.buffered:
            return self.take_all()
        chunks, parts, need = self.chunks, [], size
        while need:
            first, start = chunks[0], self.offset
            available = len(first) - start
            if available <= need:
                parts.append(first[start:] if start else first)
                chunks.popleft()
                self.offset = 0
                need -= available
            else:
                parts.append(first[start:start + need])
                self.offset = start + need
                need = 0
        self.buffered -= size
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def take_all(self) -> bytes:
        chunks = self.chunks
        if not chunks:
            return b""
        if self.offset:
            chunks[0] = chunks[0][self.offset:]
            self.offset = 0
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        return data


class Body:
    """``wsgi.input``: the request body, read from the socket as the app asks."""

    __slots__ = ("_reader", "_req")

    def __init__(self, reader: RequestReader, req: Request) -> None:
        self._reader = reader
        self._req = req

    def read(self, size: int | None = -1) -> bytes:
        req = self._req
        if size is None or size < 0:
            while not req.complete:
                self._reader.pull(req, MAX_RECV)
            return req.take_all()
        while req.buffered < size and not req.complete:
            self._reader.pull(req, size - req.buffered)
        return req.take(size)

    def readline(self, size: int | None = -1) -> bytes:
        req = self._req
        limit = sys.maxsize if size is None or size < 0 else size
        while True:
            data = req.take_all()
            end = data.find(b"\n", 0, limit)
            if end >= 0 or len(data) >= limit or req.complete:
                cut = end + 1 if end >= 0 else min(limit, len(data))
                if cut < len(data):
                    req.chunks.appendleft(data[cut:])
                    req.buffered = len(data) - cut
                return data[:cut]
            if data:
                req.chunks.append(data)
                req.buffered = len(data)
            self._reader.pull(req, HEAD_RECV)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class RequestReader:
    """The requests of one connection, in order; also the llhttp callbacks' target."""

    def __init__(self, source: Source, limits: Limits) -> None:
        self._source = source
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._ready: deque[Request] = deque()  # heads complete, not yet served
        self._parsing: Request | None = None  # the message llhttp is in
        self._failed: BaseException | None = None  # the byte stream broke here; no more feeding
        self._progress = False
        self._stalled = 0  # bytes fed since the parser last made progress
        self.count = 0  # requests handed out

    # -- what the worker calls ------------------------------------------------
    def next_request(self) -> Request | None:
        """The next request's head; None if the client closed between requests.

        Raises gunicorn's parse errors for bad input and ``NoMoreData`` if the
        connection ends inside a head.
        """
        while not self._ready:
            if self._failed is not None:
                raise self._failed
            data = self._source.recv(HEAD_RECV)
            if not data:
                if self._parsing is not None:
                    raise NoMoreData(b"")
                return None
            self._feed(data)
        self.count += 1
        return self._ready.popleft()

    def has_pending(self) -> bool:
        """Whether bytes of a next request (or a parse error) are already here."""
        return bool(self._ready) or self._parsing is not None or self._failed is not None

    def finish_body(self, req: Request, deadline: float) -> bool:
        """Discard what the app left of ``req``'s body; False if the connection must close.

        At most ``DRAIN_LIMIT`` bytes, until ``deadline`` (``time.monotonic``).
        """
        req.take_all()
        drained = 0
        while not req.complete:
            remaining = deadline - time.monotonic()
            if self._failed is not None or remaining <= 0 or drained >= DRAIN_LIMIT:
                return False
            self._source.settimeout(remaining)
            try:
                data = self._source.recv(HEAD_RECV)
            except OSError:  # timeout or reset
                return False
            if not data:
                return False
            drained += len(data)
            self._feed(data)
            req.take_all()
        return True

    def pull(self, req: Request, want: int) -> None:
        """One socket read for ``req``'s body, which is not complete yet."""
        if self._failed is not None:
            raise self._failed
        if req.length is not None:  # never read past a body of known length
            size = min(req.length - req.received, MAX_RECV)
        else:
            size = min(max(want, HEAD_RECV), MAX_RECV)
        data = self._source.recv(max(size, 1))
        if not data:
            self._failed = NoMoreData(b"")
            raise self._failed
        self._feed(data)
        if not req.complete and self._failed is not None:
            raise self._failed

    # -- feeding llhttp -------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._progress = False
        view: bytes | memoryview = data
        while True:
            try:
                self._parser.feed_data(view)
                break
            except httptools.HttpParserUpgrade as upgrade:
                # an upgrade without a body (checked in on_headers_complete)
                # is served as a plain request: parse on after its head
                view = memoryview(view)[upgrade.args[0]:]
            except httptools.HttpParserError as exc:
                self._failed = _parse_error(exc)
                return
        if self._progress:
            self._stalled = 0
        else:
            self._stalled += len(data)
            if self._stalled > self._limits.head_bytes:
                self._failed = LimitRequestHeaders("max buffer headers")

    # -- llhttp callbacks (exceptions raised here stop the parser) -----------
    def on_message_begin(self) -> None:
        self._parsing = Request(self)

    def on_url(self, part: bytes) -> None:
        req = self._parsing
        assert req is not None
        req.url += part
        if len(req.url) > self._limits.request_line:
            raise LimitRequestLine(len(req.url), self._limits.request_line)

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self._parsing
        assert req is not None
        if req.head_done:  # a trailer: checked, not kept (gunicorn's app never sees them)
            if name.upper() in _FORBIDDEN_TRAILERS:
                raise InvalidHeaderName(name.decode("latin-1"))
            return
        if len(req.raw_headers) >= self._limits.fields:
            raise LimitRequestHeaders("limit request headers fields")
        if len(name) + len(value) + 4 > self._limits.field_size:
            raise LimitRequestHeaders("limit request headers fields size")
        req.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = self._parsing
        assert req is not None
        if len(self._ready) >= MAX_PIPELINED:
            raise LimitRequestHeaders("too many pipelined requests")
        _finish_head(req, self._parser, self._limits)
        req.head_done = True
        self._progress = True
        self._ready.append(req)

    def on_body(self, data: bytes) -> None:
        req = self._parsing
        assert req is not None
        req.chunks.append(data)
        req.buffered += len(data)
        req.received += len(data)
        self._progress = True

    def on_message_complete(self) -> None:
        req = self._parsing
        assert req is not None
        req.complete = True
        self._parsing = None
        self._progress = True


def _finish_head(req: Request, parser: httptools.HttpRequestParser, limits: Limits) -> None:
    """Decode and check a parsed head the way gunicorn's parser does (what llhttp leaves)."""
    method = req.method = parser.get_method().decode("latin-1")
    version = _VERSIONS.get(parser.get_http_version())
    if version is None:
        raise InvalidHTTPVersion(parser.get_http_version())
    req.version = version
    url = req.url
    if len(method) + len(url) + 10 > limits.request_line:  # "METHOD URL HTTP/1.1"
        raise LimitRequestLine(len(method) + len(url) + 10, limits.request_line)
    uri = req.uri = url.decode("latin-1")  # llhttp let only printable ASCII through
    if uri.startswith("/"):  # origin-form: what urlsplit gives, without it
        path, _, fragment = uri.partition("#")
        path, _, query = path.partition("?")
        req.path, req.query, req.fragment = path, query, fragment
    elif uri == "*" and method == "OPTIONS" or "://" in uri:
        try:
            parts = split_request_uri(uri)
        except ValueError:
            raise InvalidRequestLine(uri) from None
        req.path, req.query, req.fragment = parts.path or "", parts.query or "", \
            parts.fragment or ""
    else:  # authority-form (CONNECT only) or a bare "*"
        raise InvalidRequestLine(uri)

    headers = req.headers
    seen: set[str] = set()
    length = None
    chunked = coded = False
    for raw_name, raw_value in req.raw_headers:
        if b"_" in raw_name:  # gunicorn's header_map="drop": X_Y and X-Y are both HTTP_X_Y
            continue
        name = raw_name.decode("latin-1").upper()
        value = raw_value.decode("latin-1").strip(" \t")
        if name in _SINGLETONS:
            if name in seen:
                raise InvalidHeader(name)
            seen.add(name)
        elif name == "CONTENT-LENGTH":
            if length is not None:
                raise InvalidHeader(name)
            length = value
        elif name == "TRANSFER-ENCODING":
            coded = True
            chunked = _transfer_coding(req, value, chunked)
        elif name == "EXPECT":
            if value.lower() != "100-continue":
                raise ExpectationFailed(value)
            req.expect_continue = version >= (1, 1)  # HTTP/1.0: ignored
        headers.append((name, value))
    req.raw_headers = []

    if coded and not chunked:  # RFC 9112 6.3: no length can be determined
        raise InvalidHeader("TRANSFER-ENCODING")
    if chunked:
        if version < (1, 1):
            raise InvalidHeader("TRANSFER-ENCODING")
        if length is not None:
            raise InvalidHeader("CONTENT-LENGTH")
    elif length is not None:
        if not (length.isascii() and length.isdigit()):
            raise InvalidHeader("CONTENT-LENGTH")
        req.length = int(length)
    # llhttp's reading of Connection (a "close" token anywhere closes; HTTP/1.0
    # needs "keep-alive"): it refuses bytes after a request it read as the last
    req.keep_alive = parser.should_keep_alive()
    if parser.should_upgrade():
        # llhttp stops at the end of an upgrade (or CONNECT) head: the rest
        # is another protocol to it. Without a body, the request is served
        # and the upgrade ignored, as gunicorn does; with one, the body's
        # end could not be found, so it is refused.
        if method == "CONNECT":
            raise InvalidRequestMethod(method)
        if chunked or req.length:
            raise InvalidHeader("UPGRADE")


def _transfer_coding(req: Request, value: str, chunked: bool) -> bool:
    """gunicorn's checks of one Transfer-Encoding header; True once chunked is seen."""
    for coding in value.split(","):
        coding = coding.strip(" \t").lower()
        if coding == "chunked":
            if chunked:  # stacked chunking is never meant
                raise InvalidHeader("TRANSFER-ENCODING")
            chunked = True
        elif coding == "identity":
            if chunked:
                raise InvalidHeader("TRANSFER-ENCODING")
        elif coding in ("compress", "deflate", "gzip"):
            if chunked:  # chunked must come last
                raise InvalidHeader("TRANSFER-ENCODING")
            req.must_close = True
        else:
            raise UnsupportedTransferCoding(value)
    return chunked


def _parse_error(exc: httptools.HttpParserError) -> BaseException:
    """The gunicorn exception for an llhttp error (ours, if a callback raised one)."""
    cause = exc.__context__
    if isinstance(exc, httptools.HttpParserCallbackError) and cause is not None:
        return cause if isinstance(cause, ParseException) else exc
    reason = str(exc)
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return InvalidRequestMethod(reason)
    if isinstance(exc, httptools.HttpParserInvalidURLError):
        return InvalidRequestLine(reason)
    if "version" in reason.lower():
        return InvalidHTTPVersion(reason)
    return InvalidHeader(reason)
