"""The Redis sidecar's connections: a lock-free stack, and the exchanges sent on it.

Every request the sidecar makes to Redis is one small exchange, and
redis-py's pool bookkeeping (locks, a readiness ``select``, metrics and
events on every checkout, a ``Retry`` wrapper) cost more Python than the
exchange itself (docs/performance.md). So the commands are encoded here
(RESP framing is a few lines) and sent on a connection taken from
``Connections``, a plain stack. redis-py still makes each connection (URL,
auth, database, TLS, its handshake); replies are parsed by a hiredis reader
of the connection's own, with redis-py's error classes (redis-py's parser
when hiredis is absent).

What may be sent again is decided here. A read (``transaction``, or a
read-only script) is resent once when its connection turns out dead. A
change never is once its bytes may have reached the server: an idle
connection is checked for a close or stray bytes *before* a change goes
out on it (a non-blocking ``poll``), and a connection error after sending
propagates, so the caller answers "unavailable" and the change was applied
once or not at all.
"""
from __future__ import annotations

import hashlib
import select
import socket
from collections import deque
from typing import Any

import redis

from vfs_state.connection import kernel_timeouts

try:
    import hiredis
except ImportError:  # pragma: no cover - the ``redis`` extra installs it
    hiredis = None  # type: ignore[assignment]

_RECV_SIZE = 1 << 16


def command(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class Script:
    """A Lua script sent by ``EVALSHA``; loaded on the server when it answers ``NOSCRIPT``."""

    __slots__ = ("source", "sha", "_head", "_resend")

    def __init__(self, source: str, read_only: bool = False) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()  # noqa: S324 - Redis's id
        self._head = b"$7\r\nEVALSHA\r\n$40\r\n" + self.sha + b"\r\n"
        self._resend = read_only

    def __call__(self, connections: Connections, keys: list[str], args: list[Any]) -> Any:
        """The script's reply; a ``VFS_*`` error reply raises ``ResponseError``.

        ``NOSCRIPT`` (a restarted or flushed server) means nothing ran, so
        the script is loaded and the same call sent once more.
        """
        parts = [b"%d" % len(keys), *[key.encode() for key in keys],
                 *[arg if type(arg) is bytes else str(arg).encode() for arg in args]]
        packed = b"".join([b"*%d\r\n" % (len(parts) + 2), self._head,
                           *[b"$%d\r\n%s\r\n" % (len(p), p) for p in parts]])
        try:
            return connections.call(packed, self._resend)
        except redis.exceptions.NoScriptError:
            connections.call(command(b"SCRIPT", b"LOAD", self.source), True)
            return connections.call(packed, self._resend)


#: error replies redis-py gives their own classes, and that this module or the
#: caller's translation tells apart; any other is a ``ResponseError``
_ERRORS: dict[str, type[redis.exceptions.RedisError]] = {
    "NOSCRIPT": redis.exceptions.NoScriptError, "READONLY": redis.exceptions.ReadOnlyError,
    "OOM": redis.exceptions.OutOfMemoryError, "LOADING": redis.exceptions.BusyLoadingError,
    "EXECABORT": redis.exceptions.ExecAbortError}


def _reply_error(text: str) -> Exception:
    error = _ERRORS.get(text.partition(" ")[0], redis.exceptions.ResponseError)
    return error(text)


class _Link:
    """A connection made by redis-py's pool (URL, auth, database, TLS, handshake),
    then spoken to directly: one ``sendall``, replies parsed by a hiredis reader
    of its own (redis-py's ``read_response`` costs more per reply than the parse).
    """

    __slots__ = ("conn", "sock", "poll", "reader")

    def __init__(self, conn: Any) -> None:
        conn.connect()
        self.conn = conn
        self.sock = conn._sock
        self.poll = select.poll()
        self.poll.register(self.sock, select.POLLIN)
        self.reader = None if hiredis is None else hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse, replyError=_reply_error)
        if self.reader is not None:
            _kernel_timeouts(self.sock)

    def exchange(self, packed: bytes, count: int) -> list[Any]:
        """Send ``packed``; its ``count`` replies, an error reply as an exception object.

        A lost connection raises redis-py's ``ConnectionError``, a slow one its
        ``TimeoutError``; the caller closes the connection.
        """
        reader = self.reader
        if reader is None:
            return self._exchange_by_redis_py(packed, count)
        sock = self.sock
        replies: list[Any] = []
        try:
            sock.sendall(packed)
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(_RECV_SIZE)
                    if not data:
                        raise redis.exceptions.ConnectionError("connection closed by the server")
                    reader.feed(data)
                elif type(reply) is not _PUSH:  # RESP3 pushes answer nothing we sent
                    replies.append(reply)
        except (TimeoutError, BlockingIOError):  # the socket's timeout, Python's or the kernel's
            raise redis.exceptions.TimeoutError("timed out talking to redis") from None
        except OSError as exc:
            raise redis.exceptions.ConnectionError(f"lost the connection to redis: {exc}") from None
        return replies

    def _exchange_by_redis_py(self, packed: bytes, count: int) -> list[Any]:
        """``exchange`` without hiredis: redis-py's own parser."""
        conn = self.conn
        conn.send_packed_command([packed], check_health=False)
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(conn.read_response(disconnect_on_error=False))
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
        return replies


_PUSH = getattr(hiredis, "PushNotification", None)


def _kernel_timeouts(sock: Any) -> None:
    """The client's ``kernel_timeouts`` on plain sockets: one system call per send or receive.

    A timed-out call fails with ``EAGAIN`` (``BlockingIOError``), which
    ``exchange`` reports as redis-py's ``TimeoutError``. TLS sockets keep
    Python's timeout (their reads would fail as ``SSLWantReadError``).
    """
    if type(sock) is socket.socket:
        kernel_timeouts(sock, sock.gettimeout())


class Connections:
    """Idle connections of one process, on a stack; made by redis-py's pool.

    ``deque.append`` and ``pop`` are atomic, so worker threads share the
    stack without a lock. A connection goes back only after a complete
    exchange (an error reply is one); one that failed or answered out of
    turn is closed instead, so a connection on the stack never holds
    unread replies.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._idle: deque[_Link] = deque()

    def _take(self) -> _Link:
        try:
            return self._idle.pop()
        except IndexError:
            return _Link(self._pool.make_connection())

    def _take_checked(self) -> _Link:
        """An idle connection with nothing to read (the server did not close it), or a new one.

        Checked without blocking before a change is sent on it: once sent,
        a change is never sent again (module docstring).
        """
        while True:
            try:
                link = self._idle.pop()
            except IndexError:
                return _Link(self._pool.make_connection())
            if not link.poll.poll(0):
                return link
            link.conn.disconnect()

    def transaction(self, packed: bytes, count: int) -> list[Any]:
        """Send ``count`` packed commands ending in ``EXEC`` in one write; ``EXEC``'s replies.

        A read is safe to send again, once, when the connection was lost
        (an idle socket the server closed); the second try skips the other
        idle connections the server closed too (a restart closes them all).
        """
        for attempt in (0, 1):
            link = self._take_checked() if attempt else self._take()
            try:
                replies = link.exchange(packed, count)  # OK, QUEUED for each command, EXEC's
            except redis.exceptions.ConnectionError:
                link.conn.disconnect()
                if attempt:
                    raise
                continue
            except BaseException:
                link.conn.disconnect()
                raise
            self._idle.append(link)  # every reply was read, errors too
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return list(replies[-1])
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, packed: bytes, resend: bool = False) -> Any:
        """Send one packed command, return its reply (an error reply raises).

        ``resend``: the command changes nothing, so it is sent once more
        when the connection dies; otherwise a connection error after
        sending propagates (the command may have run).
        """
        link = self._take() if resend else self._take_checked()
        try:
            reply = link.exchange(packed, 1)[0]
        except redis.exceptions.ConnectionError as exc:
            link.conn.disconnect()
            if resend:
                return self.call(packed, False)
            if isinstance(exc, redis.exceptions.BusyLoadingError):
                raise  # an answer: the server is loading, nothing ran
            raise redis.exceptions.ConnectionError(
                f"{exc} (the command was sent: it may or may not have run; not sent again)"
            ) from exc
        except BaseException:
            link.conn.disconnect()
            raise
        self._idle.append(link)  # the whole reply was read, an error reply too
        if isinstance(reply, Exception):
            raise reply
        return reply

    def close(self) -> None:
        while self._idle:
            self._idle.pop().conn.disconnect()
