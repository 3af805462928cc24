"""HTTP/1.1 over a Unix socket, one keep-alive connection per thread.

Every state access is one request, so the client's share of it matters.
``requests-unixsocket`` and ``http.client`` (which parses each header
block with ``email.parser``) both cost measurably more per small GET than
this module (figures: docs/performance.md). The protocol we speak is
small and fixed (our own sidecar, Content-Length or chunked bodies), so the
request is written in one ``sendall`` and the reply parsed by hand.
Connections are pooled per thread and dropped after ``fork``, so a child never
shares a socket with its parent. ``UnixHTTPConnection`` (``http.client``)
remains for the long-lived streaming upload of passthrough mode.

A request is never sent twice if it may have changed state: an idle
connection is checked for a close (or stray bytes) *before* it is reused,
and only GET/HEAD are retried when a connection dies with no reply. A PUT or
DELETE whose connection dies after sending raises ``OutcomeUnknownError``:
resending could apply it twice (docs/reliability.md).
"""
from __future__ import annotations

import errno
import io
import os
import select
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from vfs_state._types import Readable
from vfs_state.errors import error_for_status, unreachable

if TYPE_CHECKING:
    from vfs_state._unixhttp import UnixHTTPConnection  # noqa: F401 - the lazy name below

SEND_BLOCK = 1 << 20
SMALL_BODY = 64 * 1024
MAX_LINE = 65536
MAX_HEADERS = 100
#: Requests that cannot change state: the only ones ever sent a second time.
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: A reply head larger than this is refused (the sidecar's are a few hundred bytes).
MAX_HEAD = MAX_LINE * 4
_KEEP_ALIVE = frozenset({"keep-alive", "Keep-Alive"})

#: Bumped in a forked child: connections pooled before it belong to the parent.
#: (``os.getpid()`` per request is a system call; this is a global read.)
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class OutcomeUnknownError(ConnectionError):
    """A request that may change state was sent and its reply never came.

    The sidecar may or may not have applied it. It is not sent again (that
    could apply it twice); re-read the key to learn which happened.
    """

    outcome_unknown = True


class OutcomeUnknownTimeout(TimeoutError):
    """A request that may change state was sent and timed out: maybe applied.

    A ``TimeoutError`` (callers catch it as one) that says, by its class, what
    ``OutcomeUnknownError`` says for a lost connection.
    """

    outcome_unknown = True


def outcome_unknown(exc: BaseException) -> bool:
    """True for a failure after which a write may or may not have been applied."""
    return bool(getattr(exc, "outcome_unknown", False))


_QUOTED: dict[tuple[str, str], str] = {}


def key_path(route: str, key: str) -> str:
    """``/keys/`` + the URL-encoded key (``/`` kept, everything else escaped).

    Remembered for the keys last used: a handler touches the same few keys
    again and again, and ``quote`` costs more than the lookup.
    """
    path = _QUOTED.get((route, key))
    if path is None:
        if len(_QUOTED) >= 4096:
            _QUOTED.clear()
        path = _QUOTED[(route, key)] = route + quote(key, safe="/")
    return path


def __getattr__(name: str) -> Any:
    """``UnixHTTPConnection``, loaded on first use: ``http.client`` costs ~10 ms to import,
    and a process with mounts set should not pay that at start (docs/performance.md)."""
    if name == "UnixHTTPConnection":
        from vfs_state._unixhttp import UnixHTTPConnection  # noqa: F401 - the lazy name below
        return UnixHTTPConnection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _connect(socket_path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except OSError:
        sock.close()
        raise
    return sock


def _kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Make ``sock`` blocking, its ``timeout`` kept by the kernel (``SO_RCVTIMEO``).

    A Python socket with a timeout calls ``poll`` before every ``recv`` and
    ``send``: two or three extra system calls per request, a quarter of a
    small request's client CPU. A blocking socket whose timeouts the kernel
    keeps needs none; a timed-out call then fails with ``EAGAIN``, which
    ``_SocketRaw`` and ``Connection.send`` report as the ``TimeoutError`` it is.
    """
    if not timeout or timeout <= 0 or not hasattr(socket, "SO_RCVTIMEO"):
        return  # no timeout, or a platform without them: Python's own polling
    import struct  # a C module, loaded here rather than at start-up

    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


def _timed_out(exc: BlockingIOError) -> TimeoutError:
    return TimeoutError(errno.ETIMEDOUT, f"timed out ({exc.strerror})")


class Reply:
    """A finished response: status, headers (lower-cased names) and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def etag(self) -> str | None:
        raw = self.headers.get("etag")
        if raw is None:
            return None
        raw = raw[2:] if raw.startswith("W/") else raw
        return raw.strip('"')


class _Closed(Exception):
    """The peer closed the connection before a reply began (a stale keep-alive)."""


class ProtocolError(OSError):
    """The sidecar's reply was not valid HTTP/1.1."""


class _SocketRaw(io.RawIOBase):
    """The socket as the raw stream under a ``BufferedReader``.

    While ``probing``, a read reports "nothing yet" without a system call, so
    ``peek`` shows what the buffer already holds and never waits (cheaper
    than a non-blocking ``recv`` that fails).
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.probing = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int | None:  # type: ignore[override]
        if self.probing:
            return None
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError as exc:  # SO_RCVTIMEO ran out
            raise _timed_out(exc) from None


class Connection:
    """One keep-alive connection: write a request, read its reply."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.sock = _connect(socket_path, timeout)
        try:
            _kernel_timeouts(self.sock, timeout)
        except OSError:
            self.sock.close()
            raise
        self.timeout = timeout
        self._raw = _SocketRaw(self.sock)
        self.reader = io.BufferedReader(self._raw, 256 * 1024)
        #: True once a reply was read to the connection's end (close-delimited).
        self.at_eof = False
        #: Bytes known to wait in ``reader``'s buffer after the last reply; -1: unknown.
        self.left = 0
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)

    def dropped(self) -> bool:
        """True when this idle connection must not be reused.

        The peer closed it (EOF), reset it, or sent bytes nobody asked for:
        a request written now could be lost after the sidecar received it.
        Checked without blocking, before each reuse (as urllib3 does).
        """
        if self._poll.poll(0):
            return True  # EOF, a reset, or bytes nobody asked for
        if self.left >= 0:  # what came with the last reply is known
            return self.left > 0
        self._raw.probing = True  # or bytes that came with the last reply
        try:
            return bool(self.reader.peek(1))
        finally:
            self._raw.probing = False

    def send(self, head: bytes, body: bytes | Readable | None) -> None:
        try:
            if body is None or (isinstance(body, bytes) and len(body) <= SMALL_BODY):
                self.sock.sendall(head + body if body else head)
                return
            self.sock.sendall(head)
            if isinstance(body, (bytes, bytearray, memoryview)):
                self.sock.sendall(body)
                return
            while block := body.read(SEND_BLOCK):
                self.sock.sendall(block)
        except BlockingIOError as exc:  # SO_SNDTIMEO ran out
            raise _timed_out(exc) from None

    def read_head(self) -> tuple[int, dict[str, str], bool]:
        """``(status, headers, must_close)``: the final reply up to its body.

        Interim 1xx replies (100 Continue, 103 Early Hints) are skipped.
        Raises ``_Closed`` only when not one byte of a reply arrived.
        """
        first = True
        while True:
            lines = self._head_lines(first)
            first = False
            status, old = _STATUS_LINES.get(lines[0]) or _status_line(lines[0])
            headers = _fields(lines)
            if status >= 200:
                break
            if status == 101:
                raise ProtocolError("the sidecar switched protocols (101)")
        connection = headers.get("connection")
        if connection is None or connection in _KEEP_ALIVE:
            return status, headers, old
        tokens = {token.strip().lower() for token in connection.split(",")}
        return status, headers, "close" in tokens or old

    def _head_lines(self, first: bool) -> list[str]:
        """The lines of one reply head (status line first), consumed up to its blank line.

        What the buffer holds is searched for the blank line in one go (a
        small reply arrives whole in one ``recv``), so the head costs one
        ``find`` and one ``splitlines``, not a ``readline`` per field.
        """
        reader = self.reader
        taken: list[bytes] = []
        tail = b""  # the last bytes taken: a blank line may straddle two reads
        size = 0
        while True:
            try:
                data = reader.peek(1)  # all that is buffered, or one recv
            except ConnectionResetError:
                data = b""
            if not data:
                if first and not size:
                    raise _Closed()
                raise ConnectionResetError("reply head ended early")
            end = _blank_line(tail + data if tail else data)
            if end >= 0:
                end -= len(tail)
                self.left = len(data) - end
                if not taken:
                    head = reader.read(end)
                else:
                    taken.append(reader.read(end))
                    head = b"".join(taken)
                # one decode, one split; a bare "\n" ends a line too, as it did,
                # and the "\r" left on a line is stripped with its value
                return head.rstrip(b"\r\n").decode("latin-1").split("\n")
            taken.append(reader.read(len(data)))
            tail = (tail + data)[-2:]
            size += len(data)
            if size > MAX_HEAD:
                raise ProtocolError("reply head too long")

    def read_body(self, status: int, headers: dict[str, str], head_only: bool) -> bytes:
        """The whole body of a reply whose head was read (empty where none is sent)."""
        if head_only or status in _NO_BODY or status < 200:
            return b""
        length = headers.get("content-length")
        encoding = headers.get("transfer-encoding")
        if encoding is not None and "chunked" in encoding.lower():
            self.left = -1
            return self._chunked()
        if length is None:  # framed by the server closing the connection
            self.at_eof = True
            self.left = -1
            return self.reader.read()
        if not (length.isascii() and length.isdigit()):
            raise ProtocolError(f"bad Content-Length {length!r}")
        size = int(length)
        data = self.reader.read(size)
        if len(data) != size:
            raise ConnectionResetError("reply body ended early")
        # the buffer may have been refilled past this reply: then unknown
        self.left = self.left - size if size <= self.left else -1
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self.reader.readline(MAX_LINE).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                while self.reader.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            chunk = self.reader.read(size)
            if len(chunk) != size:
                raise ConnectionResetError("reply chunk ended early")
            parts.append(chunk)
            self.reader.readline(MAX_LINE)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


_NO_BODY = frozenset({204, 304})
#: status line -> (status, HTTP/1.0?): the few a sidecar sends, each checked once
_STATUS_LINES: dict[str, tuple[int, bool]] = {}


def _status_line(line: str) -> tuple[int, bool]:
    parts = line.split(None, 2)
    if (len(parts) < 2 or not parts[0].startswith("HTTP/1.")
            or not (parts[1].isascii() and parts[1].isdigit()) or len(parts[1]) != 3):
        raise ProtocolError(f"bad status line {line[:80].encode('latin-1')!r}")
    parsed = (int(parts[1]), parts[0] == "HTTP/1.0")
    if len(_STATUS_LINES) < 256:
        _STATUS_LINES[line] = parsed
    return parsed


def _blank_line(data: bytes) -> int:
    """Index just past the first empty line (``\\r\\n`` or a bare ``\\n``), or -1."""
    crlf = data.find(b"\n\r\n")
    lf = data.find(b"\n\n", 0, None if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


#: header line -> (lower-case name, value): a sidecar repeats most of its lines
#: (``Server``, ``Connection``, a content type, a length, the same date for a
#: second, a version until the next write), and a lookup is cheaper than a parse.
_LINES: dict[str, tuple[str, str]] = {}


def _field(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon:
        raise ProtocolError(f"bad header line {line[:80].encode('latin-1')!r}")
    if len(_LINES) >= 2048:
        _LINES.clear()
    pair = _LINES[line] = (name.strip().lower(), value.strip())
    return pair


def _fields(lines: list[str]) -> dict[str, str]:
    """Header lines (after the status line; a trailing ``\\r`` is fine) as a dict
    with lower-case names. A repeated field becomes one comma-separated list
    (RFC 9110 5.3)."""
    if len(lines) > MAX_HEADERS + 1:
        raise ProtocolError("too many reply headers")
    del lines[0]
    pairs = list(map(_LINES.get, lines))
    if None in pairs:
        pairs = [pair or _field(line) for pair, line in zip(pairs, lines, strict=True)]
    headers = dict(pairs)  # type: ignore[arg-type]
    if len(headers) == len(pairs):
        return headers
    headers = {}
    for name, value in pairs:  # type: ignore[misc]
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _request_head(method: str, path: str, headers: Mapping[str, str] | None,
                  body: bytes | Readable | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
    if body is not None and (headers is None or "Content-Length" not in headers):
        if not isinstance(body, bytes):
            raise ValueError("a streamed body needs a Content-Length header")
        head += f"Content-Length: {len(body)}\r\n"
    if headers:
        for name, value in headers.items():
            head += f"{name}: {value}\r\n"
    return (head + "\r\n").encode("latin-1")


class Transport:
    """Requests to one sidecar; safe to share between threads and forks."""

    def __init__(self, socket_path: str, timeout: float = 60.0, where: str | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.where = where or socket_path
        self._forks = _forks
        self._local = threading.local()
        #: Response body bytes received (for tests and benchmarks of ranged reads).
        self.bytes_received = 0

    def _idle(self) -> list[Connection]:
        if self._forks != _forks:  # forked: forget the parent's sockets
            self._forks = _forks
            self._local = threading.local()
        try:
            return self._local.idle  # type: ignore[no-any-return]
        except AttributeError:
            idle: list[Connection] = []
            self._local.idle = idle
            return idle

    def _checkout(self) -> Connection:
        """An idle connection still fit for a request, else a new one."""
        idle = self._idle()
        while idle:
            conn = idle.pop()
            if not conn.dropped():
                return conn
            conn.close()
        try:
            return Connection(self.socket_path, self.timeout)
        except OSError as exc:  # nothing was sent: safe to report as unreachable
            raise self._failure("", exc) from exc

    def _begin(self, method: str, head: bytes, body: bytes | Readable | None
               ) -> tuple[Connection, int, dict[str, str], bool]:
        """Send a request and read the reply's head: ``(conn, status, headers, must_close)``.

        Only GET/HEAD are sent a second time, once, and only when the
        connection died before one byte of the reply came; any other request
        that lost its connection raises ``OutcomeUnknownError``. A sidecar that
        answers before reading the whole body (413) is still heard.
        """
        for attempt in (0, 1):
            conn = self._checkout()
            try:
                try:
                    conn.send(head, body)
                    broken = False
                except (BrokenPipeError, ConnectionResetError):
                    broken = True  # the reply may still explain why (e.g. 413)
                status, fields, must_close = conn.read_head()
            except _Closed as exc:
                conn.close()
                if method in SAFE_METHODS and attempt == 0:
                    continue
                raise self._failure(method, ConnectionResetError("connection closed")) from exc
            except (OSError, ProtocolError) as exc:
                conn.close()
                raise self._failure(method, exc) from exc
            return conn, status, fields, must_close or broken
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(self, method: str, exc: BaseException) -> OSError:
        """The error for a request that failed without a (complete) reply.

        ``method`` is "" when nothing was sent. After a state-changing
        request went out, the message and ``outcome_unknown`` say that it
        may have been applied.
        """
        if isinstance(exc, ProtocolError):
            return exc
        unknown = bool(method) and method not in SAFE_METHODS
        if isinstance(exc, TimeoutError):
            if unknown:
                return OutcomeUnknownTimeout(
                    errno.ETIMEDOUT, f"sidecar timed out [{self.where}];"
                    f" the {method} may or may not have been applied")
            return TimeoutError(errno.ETIMEDOUT, f"sidecar timed out [{self.where}]")
        if unknown:
            return OutcomeUnknownError(
                errno.ECONNRESET, f"connection to the sidecar lost after the {method} was sent;"
                f" it may or may not have been applied, and was not sent again"
                f" [{self.where}]: {exc}")
        return unreachable(self.where, exc)

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes | Readable | None = None, key: str = "",
                ok: tuple[int, ...] = ()) -> Reply:
        """Send one request and read the whole reply; errors become exceptions.

        A reply with status >= 400 raises unless listed in ``ok``.
        """
        head = _request_head(method, path, headers, body)
        conn, status, fields, must_close = self._begin(method, head, body)
        try:
            data = conn.read_body(status, fields, method == "HEAD")
        except (OSError, ProtocolError) as exc:
            conn.close()
            raise self._failure(method, exc) from exc
        if must_close or conn.at_eof:
            conn.close()
        else:
            self._release(conn)
        self.bytes_received += len(data)
        if status >= 400 and status not in ok:
            raise error_for_status(status, data, key, self.where)
        return Reply(status, fields, data)

    def stream(self, path: str, headers: Mapping[str, str], key: str = "") -> BodyStream:
        """GET whose body is read as the caller goes (large sequential reads).

        The connection belongs to the returned stream until it is closed:
        back to the pool when the body was read to the end, dropped otherwise.
        """
        conn, status, fields, must_close = self._begin(
            "GET", _request_head("GET", path, headers, None), None)
        length = fields.get("content-length", "")
        if status >= 400 or not (length.isascii() and length.isdigit()):
            try:
                body = conn.read_body(status, fields, False)
            finally:
                conn.close()
            if status >= 400:
                raise error_for_status(status, body, key, self.where)
            raise ProtocolError("a streamed reply needs a Content-Length")
        conn.left = -1  # the stream reads on: what stays buffered is unknown
        return BodyStream(self, conn, int(length), must_close)

    def _release(self, conn: Connection) -> None:
        self._idle().append(conn)

    def close(self) -> None:
        for conn in self._idle():
            conn.close()
        self._local = threading.local()


class BodyStream:
    """The body of a ``Transport.stream`` reply, read incrementally."""

    def __init__(self, transport: Transport, conn: Connection, length: int,
                 must_close: bool) -> None:
        self._transport = transport
        self._conn: Connection | None = conn
        self.remaining = length
        self._must_close = must_close

    def readinto(self, view: memoryview) -> int:
        """Fill up to ``len(view)`` bytes; 0 only at the end of the body."""
        if self._conn is None or self.remaining == 0:
            return 0
        count = self._conn.reader.readinto(view[:min(len(view), self.remaining)])
        if not count:
            self.close()
            raise ConnectionResetError("reply body ended early")
        self.remaining -= count
        self._transport.bytes_received += count
        if self.remaining == 0:
            self.close()
        return count

    def close(self) -> None:
        """Return the connection if the body is done, else drop it mid-body."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.remaining == 0 and not self._must_close:
            self._transport._release(conn)
        else:
            conn.close()
