"""HTTP/1.1 over a Unix socket, one keep-alive connection per thread.

Every state access is one request, so the client's share of it matters.
``requests-unixsocket`` and ``http.client`` (which parses each header
block with ``email.parser``) both cost measurably more per small GET than
this module (figures: docs/performance.md). The protocol we speak is
small and fixed (our own sidecar, Content-Length or chunked bodies), so the
request is written in one ``sendall`` and the reply parsed by hand
(``vfs_state.connection``, the wire; this module pools connections and
decides what may be sent again). Connections are pooled per thread and
dropped after ``fork``, so a child never shares a socket with its parent.
Passthrough uploads stream their chunks on the same pooled connections
(``start_upload``/``finish_upload``); ``UnixHTTPConnection``
(``http.client``) remains for the CLI's probes and test helpers.

A request is never sent twice if it may have changed state: an idle
connection is checked for a close (or stray bytes) *before* it is reused,
and only GET/HEAD are retried when a connection dies with no reply. A PUT or
DELETE whose connection dies after sending raises ``OutcomeUnknownError``:
resending could apply it twice (docs/reliability.md).
"""
from __future__ import annotations

import errno
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from vfs_state._types import Readable
from vfs_state.connection import (  # noqa: F401 - SEND_BLOCK, SMALL_BODY: names used by others
    SEND_BLOCK,
    SMALL_BODY,
    Closed,
    Connection,
    ProtocolError,
)
from vfs_state.connection import connect as _connect  # noqa: F401 - _unixhttp's
from vfs_state.errors import error_for_status, unreachable

if TYPE_CHECKING:
    from vfs_state._unixhttp import UnixHTTPConnection  # noqa: F401 - the lazy name below

#: Requests that cannot change state: the only ones ever sent a second time.
SAFE_METHODS = frozenset({"GET", "HEAD"})

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


class Reply:
    """A finished response: status, headers (lower-cased names) and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def etag(self) -> str | None:
        return etag_of(self.headers)


def etag_of(headers: Mapping[str, str]) -> str | None:
    """The version an ``ETag`` header carries (quotes and a weak ``W/`` dropped)."""
    raw = headers.get("etag")
    if raw is None:
        return None
    raw = raw[2:] if raw.startswith("W/") else raw
    return raw.strip('"')


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

    def _exchange(self, method: str, head: bytes, body: bytes | Readable | None,
                  whole: bool) -> tuple[Connection, int, dict[str, str], bytes, bool]:
        """Send a request, read the reply: ``(conn, status, headers, body, must_close)``.

        ``whole``: the reply's body too (else ``b""``: the caller streams it).
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
                if whole:
                    status, fields, data, must_close = conn.reply(method == "HEAD")
                else:
                    (status, fields, must_close), data = conn.read_head(), b""
            except Closed as exc:
                conn.close()
                if method in SAFE_METHODS and attempt == 0:
                    continue
                raise self._failure(method, ConnectionResetError("connection closed")) from exc
            except (OSError, ProtocolError) as exc:
                conn.close()
                raise self._failure(method, exc) from exc
            return conn, status, fields, data, must_close or broken
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
        conn, status, fields, data, must_close = self._exchange(
            method, _request_head(method, path, headers, body), body, True)
        if must_close or conn.at_eof:
            conn.close()
        else:
            self._release(conn)
        self.bytes_received += len(data)
        if status >= 400 and status not in ok:
            raise error_for_status(status, data, key, self.where, fields.get("x-error", ""))
        return Reply(status, fields, data)

    def stream(self, path: str, headers: Mapping[str, str], key: str = "") -> BodyStream:
        """GET whose body is read as the caller goes (large sequential reads).

        The connection belongs to the returned stream until it is closed:
        back to the pool when the body was read to the end, dropped otherwise.
        """
        conn, status, fields, _, must_close = self._exchange(
            "GET", _request_head("GET", path, headers, None), None, False)
        length = fields.get("content-length", "")
        if status >= 400 or not (length.isascii() and length.isdigit()):
            try:
                body = conn.read_body(status, fields, False)
            finally:
                conn.close()
            if status >= 400:
                raise error_for_status(status, body, key, self.where, fields.get("x-error", ""))
            raise ProtocolError("a streamed reply needs a Content-Length")
        return BodyStream(self, conn, int(length), must_close, fields)

    def start_upload(self, path: str, headers: Mapping[str, str]) -> Connection:
        """A pooled connection with a chunked ``PUT``'s head sent; the caller sends the chunks.

        A new connection per upload cost the sidecar a connection thread (about
        0.5 ms of its CPU on the benchmark machine, docs/performance.md). No
        byte of the body has gone out here, so a connection found dead while
        the head is sent is replaced once: the sidecar applies no upload
        without its last chunk.
        """
        head = _request_head("PUT", path, {"Transfer-Encoding": "chunked", **headers}, None)
        for attempt in (0, 1):
            conn = self._checkout()
            try:
                conn.send(head, None)
                return conn
            except OSError as exc:
                conn.close()
                if attempt:
                    raise self._failure("", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def finish_upload(self, conn: Connection, complete: bool) -> tuple[int, dict[str, str], bytes]:
        """The reply to ``start_upload``'s request: ``(status, headers, body)``.

        The connection goes back to the pool only after a complete upload
        answered without an error and without ``Connection: close``; a
        refusal may have come before the sidecar read the whole body.
        Failures (``Closed``, ``OSError``) propagate; the connection is closed.
        """
        try:
            status, fields, data, must_close = conn.reply(False)
        except BaseException:
            conn.close()
            raise
        if complete and status < 400 and not must_close and not conn.at_eof:
            self._release(conn)
        else:
            conn.close()
        return status, fields, data

    def _release(self, conn: Connection) -> None:
        self._idle().append(conn)

    def close(self) -> None:
        for conn in self._idle():
            conn.close()
        self._local = threading.local()


class BodyStream:
    """The body of a ``Transport.stream`` reply, read incrementally."""

    def __init__(self, transport: Transport, conn: Connection, length: int,
                 must_close: bool, headers: dict[str, str]) -> None:
        self._transport = transport
        self.headers = headers  # the reply's (lower-cased names)
        self._conn: Connection | None = conn
        self.remaining = length
        self._must_close = must_close

    def readinto(self, view: memoryview) -> int:
        """Fill up to ``len(view)`` bytes; 0 only at the end of the body."""
        if self._conn is None or self.remaining == 0:
            return 0
        count = self._conn.readinto(view[:min(len(view), self.remaining)])
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
