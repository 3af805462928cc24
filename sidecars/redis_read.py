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
here and sent on a connection taken from ``redis_conn.Connections``, a
plain stack, instead of redis-py's pool, whose bookkeeping (locks, a
readiness ``select`` and metrics on every checkout) cost more than the
exchange itself (docs/performance.md).
"""
from __future__ import annotations

from sidecars.errors import NotFound, PreconditionFailed, RangeNotSatisfiable
from sidecars.redis_conn import Connections
from sidecars.redis_conn import command as _command

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
    k, m = key.encode(), meta.encode()
    if count > 0:  # GETRANGE k 0 -1 would be the whole value
        first, last = b"%d" % start, b"%d" % (start + count - 1)
        packed = _READ % (len(k), k, len(m), m, len(k), k, len(k), k,
                          len(first), first, len(last), last)
        replies = connections.transaction(packed, 6)
    else:
        replies = connections.transaction(_STAT % (len(k), k, len(m), m, len(k), k), 5)
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


# MULTI, TYPE k, HMGET meta v t, STRLEN k, [GETRANGE k first last,] EXEC in RESP, one
# format each: building them command by command cost more than the rest of a read
_MULTI, _EXEC = _command(b"MULTI"), _command(b"EXEC")
_HEAD = (_MULTI + b"*2\r\n$4\r\nTYPE\r\n$%d\r\n%s\r\n"
         b"*4\r\n$5\r\nHMGET\r\n$%d\r\n%s\r\n$1\r\nv\r\n$1\r\nt\r\n"
         b"*2\r\n$6\r\nSTRLEN\r\n$%d\r\n%s\r\n")
_STAT = _HEAD + _EXEC
_READ = _HEAD + b"*4\r\n$8\r\nGETRANGE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" + _EXEC
