"""The Redis sidecar's connections: a lock-free stack, and the exchanges sent on it.

Every request the sidecar makes to Redis is one small exchange, and
redis-py's pool bookkeeping (locks, a readiness ``select``, metrics and
events on every checkout, a ``Retry`` wrapper) cost more Python than the
exchange itself (docs/performance.md). So the commands are encoded here
(RESP framing is a few lines) and sent on a connection taken from
``Connections``, a plain stack; redis-py still makes each connection (URL,
auth, database, TLS) and parses replies (its hiredis reader, its error
classes).

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
from collections import deque
from typing import Any

import redis


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


class _Link:
    """A connection made by redis-py's pool, and a poll set on its socket."""

    __slots__ = ("conn", "poll")

    def __init__(self, conn: Any) -> None:
        conn.connect()
        self.conn = conn
        self.poll = select.poll()
        self.poll.register(conn._sock, select.POLLIN)


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
        (an idle socket the server closed).
        """
        for attempt in (0, 1):
            link = self._take()
            conn = link.conn
            try:
                conn.send_packed_command([packed], check_health=False)
                for _ in range(count - 1):
                    conn.read_response()  # OK, then QUEUED for each command
                replies = conn.read_response()
            except redis.exceptions.ConnectionError:
                conn.disconnect()
                if attempt:
                    raise
                continue
            except BaseException:
                conn.disconnect()
                raise
            self._idle.append(link)
            return list(replies)
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, packed: bytes, resend: bool = False) -> Any:
        """Send one packed command, return its reply (an error reply raises).

        ``resend``: the command changes nothing, so it is sent once more
        when the connection dies; otherwise a connection error after
        sending propagates (the command may have run).
        """
        link = self._take() if resend else self._take_checked()
        conn = link.conn
        try:
            conn.send_packed_command([packed], check_health=False)
            reply = conn.read_response()
        except redis.exceptions.ResponseError:
            self._idle.append(link)  # a whole error reply was read
            raise
        except redis.exceptions.ConnectionError as exc:
            conn.disconnect()
            if resend:
                return self.call(packed, False)
            if isinstance(exc, redis.exceptions.BusyLoadingError):
                raise  # an answer: the server is loading, nothing ran
            raise redis.exceptions.ConnectionError(
                f"{exc} (the command was sent: it may or may not have run; not sent again)"
            ) from exc
        except BaseException:
            conn.disconnect()
            raise
        self._idle.append(link)
        return reply

    def close(self) -> None:
        while self._idle:
            self._idle.pop().conn.disconnect()
