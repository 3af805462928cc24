"""Redis reads and stats as one transaction of plain commands (no Lua on the read path).

A read needs a consistent snapshot of the value, its length and its version,
but changes nothing, so no script is needed to check and apply: ``MULTI``,
``TYPE``, ``HMGET`` (version, mtime), ``STRLEN``, ``GETRANGE``, ``EXEC`` go
out in one write and come back in one reply, executed atomically by the
server. The checks the read script made (a value is there, ``If-Match``, the
version earlier chunks had, the range start) are made here on that snapshot.
A failed ``If-Match`` has fetched the bytes it did not need; a small read
costs little either way, and a large one is read in 1 MiB chunks. A stat is
the same transaction without ``GETRANGE``.

This is the hottest path of the Redis sidecar, so the transaction is encoded
here (the RESP framing is a few lines) and sent on a connection taken from
``Connections``, a plain stack, instead of redis-py's pool, whose
bookkeeping (locks, a readiness ``select`` and metrics on every checkout)
cost more than the exchange itself (docs/performance.md).
"""
from __future__ import annotations

from collections import deque
from typing import Any

import redis

from sidecars.errors import NotFound, PreconditionFailed, RangeNotSatisfiable

#: What a read returns: version, mtime (seconds as text, "" unknown), size, bytes.
Snapshot = tuple[str, str, int, bytes]


def read_snapshot(connections: Connections, key: str, meta: str, start: int, count: int,
                  if_match: str | None, pinned: str | None) -> Snapshot:
    """Bytes ``[start, start+count)`` of ``key`` with its version, checked.

    ``if_match``: the request's ``If-Match`` version; ``pinned``: the version
    the first chunk of this body had (a later chunk must see the same).
    ``count`` 0 reads no bytes (a stat). Redis errors propagate to the
    caller's translation.
    """
    encoded = key.encode()
    commands = [_MULTI, _command(b"TYPE", encoded), _command(b"HMGET", meta.encode(), b"v", b"t"),
                _command(b"STRLEN", encoded)]
    if count > 0:  # GETRANGE k 0 -1 would be the whole value
        commands.append(_command(b"GETRANGE", encoded, b"%d" % start,
                                 b"%d" % (start + count - 1)))
    commands.append(_EXEC)
    replies = connections.transaction(b"".join(commands), len(commands))
    if replies[0] != b"string":  # absent, or not a value of ours
        raise NotFound("no such key")
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    raw_version, raw_mtime = replies[1]
    version = raw_version.decode() if raw_version else "0"
    if if_match is not None and version != if_match:
        raise PreconditionFailed("stored version differs from If-Match")
    if pinned is not None and version != pinned:
        raise PreconditionFailed("changed while being read")
    size = replies[2]
    if 0 < start >= size:
        raise RangeNotSatisfiable(size)
    data = replies[3] if count > 0 else b""
    return version, raw_mtime.decode() if raw_mtime else "", size, data


def _command(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


_MULTI, _EXEC = _command(b"MULTI"), _command(b"EXEC")


class Connections:
    """Idle connections of one process, on a stack; made by redis-py's pool.

    ``deque.append`` and ``pop`` are atomic, so worker threads share the
    stack without a lock. A connection goes back only after a complete
    exchange; one that failed or answered out of turn is closed instead,
    so a connection on the stack never holds unread replies.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._idle: deque[Any] = deque()

    def transaction(self, packed: bytes, count: int) -> list[Any]:
        """Send ``count`` packed commands ending in ``EXEC`` in one write; ``EXEC``'s replies.

        A read is safe to send again, once, when the connection was lost
        (an idle socket the server closed).
        """
        for attempt in (0, 1):
            try:
                conn = self._idle.pop()
            except IndexError:
                conn = self._pool.make_connection()
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
            self._idle.append(conn)
            return list(replies)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        while self._idle:
            self._idle.pop().disconnect()
