"""Redis backend (``redis-buffered-cas``).

A value is a plain Redis string at its store key, readable with ``GET`` by
any client. Bookkeeping lives beside it in the reserved ``.vfs-state:``
namespace, which no store key can enter: ``m:<key>`` hashes hold the version
(from the global ``seq`` counter, so it never repeats: no ABA) and mtime;
``d:<dir>`` sorted sets (score 0, ordered by name) index each directory's
entries (``name``, ``name/`` for subdirectories), so listings page with
``ZRANGEBYLEX`` instead of scanning the keyspace. Every operation that
changes or lists is one Lua script: checked and applied atomically in one
round trip; a read is one ``MULTI``/``EXEC`` of plain commands
(``redis_read``). Expiry (xattr
``ttl``) bypasses the index, so scripts treat entries as hints and drop
stale ones atomically. Scripts compute the keys they touch: no Redis Cluster.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from sidecars import config, settings
from sidecars.app import app_from_env
from sidecars.backend import Backend, ListPage, NamePage, ObjectBody, ObjectInfo
from sidecars.errors import (
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RangeNotSatisfiable,
    SidecarError,
)
from sidecars.keys import RESERVED_PREFIX, normalise_prefix
from sidecars.per_process import PerProcess
from sidecars.redis_conn import Connections, Script
from sidecars.redis_read import Snapshot, read_snapshot
from sidecars.streams import Readable, iter_stream, read_up_to

NS = RESERVED_PREFIX + ":"
META, INDEX, SEQ, STAGING = NS + "m:", NS + "d:", NS + "seq", NS + "tmp:"
CHUNK = 1 << 20
LIST_BATCH = 1000  # index entries a listing script takes per ZRANGEBYLEX (unpack: < 8000)
STAGING_TTL_MS = 3600 * 1000  # an abandoned upload vanishes on its own
DEFAULT_MAX_OBJECT_SIZE = settings.DEFAULT_REDIS_MAX_OBJECT_SIZE

# Helpers shared by every script. ``split`` gives (parent dir, entry name):
# "a/b/c" -> "a/b/", "c"; the marker "a/b/" -> "a/", "b/".
_LIB = """
local IDX, META, SEQ = '@INDEX@', '@META@', '@SEQ@'
local function fail(code, msg) return redis.error_reply('VFS_' .. code .. ' ' .. msg) end
local function split(key) return string.match(key, '^(.-)([^/]+/?)$') end
local function version(meta) return redis.call('HGET', meta, 'v') or '0' end
local has_children
local function alive(dir)
  return redis.call('EXISTS', dir) == 1 or has_children(dir)
end
local function entry_kind(dir, name)  -- 'f' value, 'm' marked dir, 'd' dir, nil stale
  if string.sub(name, -1) ~= '/' then
    if redis.call('EXISTS', dir .. name) == 1 then return 'f' end
  elseif redis.call('EXISTS', dir .. name) == 1 then return 'm'
  elseif has_children(dir .. name) then return 'd' end
  return nil
end
has_children = function(dir)  -- drops stale entries until a live one shows up
  local idx = IDX .. dir
  while true do
    local batch = redis.call('ZRANGE', idx, 0, 31)
    if #batch == 0 then return false end
    for _, name in ipairs(batch) do
      if entry_kind(dir, name) then return true end
      redis.call('ZREM', idx, name)
    end
  end
end
-- entry_kind of each name of a batch (false: stale), or true when all are live values:
-- one EXISTS for all the values, per-entry calls only for directories or when some have gone.
local function live_kinds(dir, batch, joined)
  local values, kinds, files_live = {}, {}, false
  if not string.find(joined, '/', 1, true) then
    for i, name in ipairs(batch) do values[i] = dir .. name end
    if redis.call('EXISTS', unpack(values)) == #values then return true end
  else
    for _, name in ipairs(batch) do
      if string.byte(name, -1) ~= 47 then values[#values + 1] = dir .. name end
    end
    files_live = #values == 0 or redis.call('EXISTS', unpack(values)) == #values
  end
  for i, name in ipairs(batch) do
    if files_live and string.byte(name, -1) ~= 47 then kinds[i] = 'f'
    else kinds[i] = entry_kind(dir, name) or false end
  end
  return kinds
end
local function link(key)
  repeat
    local parent, name = split(key)
    redis.call('ZADD', IDX .. parent, 0, name)
    key = parent
  until key == ''
end
local function unlink(key)  -- and every directory the removal leaves empty
  repeat
    local parent, name = split(key)
    redis.call('ZREM', IDX .. parent, name)
    if parent == '' or redis.call('EXISTS', parent) == 1 then return end
    if redis.call('ZCARD', IDX .. parent) > 0 then return end
    key = parent
  until key == ''
end
"""

_WRITE = """
local key, meta, staged = KEYS[1], KEYS[2], KEYS[3]
local function abort(code, msg)
  if staged then redis.call('DEL', staged) end
  return fail(code, msg)
end
local kind = redis.call('TYPE', key).ok
if kind ~= 'none' and kind ~= 'string' then
  return abort('CONFLICT', 'key holds a Redis ' .. kind)
end
if ARGV[2] == '1' and kind ~= 'none' then return abort('PRECONDITION', 'key exists') end
-- a value with a version is ours: its first write checked the tree and linked it, and
-- every script keeps that true (no directory of its name, no value at a parent)
local stored = kind == 'string' and redis.call('HGET', meta, 'v')
if ARGV[1] ~= '' and (kind == 'none' or (stored or '0') ~= ARGV[1]) then
  return abort('PRECONDITION', 'stored version differs from If-Match')
end
if not stored then
  if string.sub(key, -1) == '/' then
    if redis.call('EXISTS', string.sub(key, 1, -2)) == 1 then
      return abort('CONFLICT', 'a value has this name')
    end
  elseif alive(key .. '/') then
    return abort('ISDIR', 'a directory has this name')
  end
  local parent = split(key)
  while #parent > #ARGV[4] do  -- STATE_PREFIX's own parents are not ours to police
    if redis.call('EXISTS', string.sub(parent, 1, -2)) == 1 then
      return abort('CONFLICT', 'a parent is a value: ' .. string.sub(parent, 1, -2))
    end
    parent = split(parent)
  end
end
local pttl = redis.call('PTTL', key)  -- a rewrite keeps the key's TTL
if staged then redis.call('RENAME', staged, key) else redis.call('SET', key, ARGV[3]) end
local v = redis.call('INCR', SEQ)
local now = redis.call('TIME')
local mtime = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
redis.call('HSET', meta, 'v', v, 't', mtime)
if pttl > 0 then
  redis.call('PEXPIRE', key, pttl); redis.call('PEXPIRE', meta, pttl)
else
  if staged then redis.call('PERSIST', key) end  -- SET drops a TTL; RENAME keeps the staging one
  redis.call('PERSIST', meta)
end
if not stored then link(key) end
return {v, mtime, redis.call('STRLEN', key)}
"""

_DELETE = """
local key, meta = KEYS[1], KEYS[2]
local kind = redis.call('TYPE', key).ok
if string.sub(key, -1) == '/' and has_children(key) then
  return fail('NOTEMPTY', 'directory not empty')
end
if kind == 'none' then return fail('NOTFOUND', 'no such key') end
if kind ~= 'string' then return fail('CONFLICT', 'key holds a Redis ' .. kind) end
if ARGV[1] ~= '' and version(meta) ~= ARGV[1] then
  return fail('PRECONDITION', 'stored version differs from If-Match')
end
redis.call('DEL', key, meta)
unlink(key)
return 1
"""

_STAT = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'string' then return {kind} end
local m = redis.call('HMGET', KEYS[2], 'v', 't')
return {kind, redis.call('STRLEN', KEYS[1]), m[1] or '0', m[2] or '', redis.call('PTTL', KEYS[1])}
"""

# ARGV: dir, min, max, limit, details ('1': a value's kind is 'f:size:version:mtime').
# Returns name, kind pairs of live entries. Batches stay under Lua's unpack limit (8000).
_LIST = """
local dir, lo, hi, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local function detailed(name, kind)
  if kind ~= 'f' or ARGV[5] ~= '1' then return kind end
  local m = redis.call('HMGET', META .. dir .. name, 'v', 't')
  return 'f:' .. redis.call('STRLEN', dir .. name) .. ':' .. (m[1] or '0') .. ':' .. (m[2] or '')
end
local idx, out = IDX .. dir, {}
while #out < 2 * limit do
  local batch = redis.call('ZRANGEBYLEX', idx, lo, hi, 'LIMIT', 0,
                           math.min(limit - #out / 2, @BATCH@))
  if #batch == 0 then break end
  local kinds = live_kinds(dir, batch, table.concat(batch, '\\0'))
  for i, name in ipairs(batch) do
    local kind = kinds == true and 'f' or kinds[i]
    if kind then
      out[#out + 1] = name; out[#out + 1] = detailed(name, kind)
    else
      redis.call('ZREM', idx, name)
    end
  end
  lo = '(' .. batch[#batch]
end
return out
"""

# ARGV: dir, min, max, limit. The names of live entries (a directory's ends in '/')
# joined by NUL, which no key holds: one reply string, split in one call.
_NAMES = """
local dir, lo, hi, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local idx, out, n = IDX .. dir, {}, 0
while n < limit do
  local batch = redis.call('ZRANGEBYLEX', idx, lo, hi, 'LIMIT', 0, math.min(limit - n, @BATCH@))
  if #batch == 0 then break end
  local joined = table.concat(batch, '\\0')
  local kinds = live_kinds(dir, batch, joined)
  if kinds == true then
    out[#out + 1] = joined; n = n + #batch
  else
    for i, name in ipairs(batch) do
      if kinds[i] then out[#out + 1] = name; n = n + 1 else redis.call('ZREM', idx, name) end
    end
  end
  lo = '(' .. batch[#batch]
end
return table.concat(out, '\\0')
"""

_IS_DIR = "return alive(ARGV[1]) and 1 or 0"

# ARGV: milliseconds; 0 or less removes the TTL.
_TTL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return fail('NOTFOUND', 'no such key') end
local ms = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  if ms > 0 then redis.call('PEXPIRE', k, ms) else redis.call('PERSIST', k) end
end
return 1
"""

_LIST = _LIST.replace("@BATCH@", str(LIST_BATCH))
_NAMES = _NAMES.replace("@BATCH@", str(LIST_BATCH))
_LIB = _LIB.replace("@INDEX@", INDEX).replace("@META@", META).replace("@SEQ@", SEQ)
_SCRIPTS = {"write": _WRITE, "delete": _DELETE, "stat": _STAT,
            "list": _LIST, "names": _NAMES, "is_dir": _IS_DIR, "ttl": _TTL}
#: scripts that change nothing but stale index entries: safe to send again
_READ_ONLY = frozenset({"stat", "list", "names", "is_dir"})


class _IsADirectory(Conflict):
    """The write script found a directory of the key's name."""

    code = "is_a_directory"


_SCRIPT_ERRORS: dict[str, type[SidecarError]] = {
    "VFS_PRECONDITION": PreconditionFailed, "VFS_NOTFOUND": NotFound, "VFS_CONFLICT": Conflict,
    "VFS_ISDIR": _IsADirectory}


class _Translated:
    """``with _TRANSLATED:`` turns Redis client errors into the statuses the core
    answers with (``_translation``). A class, not ``@contextmanager``: it sits on
    every read and write, and a generator-based manager costs a few µs each time.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: Any) -> None:
        if isinstance(exc, redis.exceptions.RedisError):
            error = _translation(exc)
            if error is not exc:
                raise error from None


_TRANSLATED = _Translated()


def _translation(exc: redis.exceptions.RedisError) -> Exception:
    """The ``SidecarError`` for a Redis client error; ``exc`` itself when none fits."""
    if isinstance(exc, redis.exceptions.TimeoutError):
        return BackendTimeout(f"redis timed out: {exc}")
    if isinstance(exc, redis.exceptions.ConnectionError):  # includes LOADING
        return BackendUnavailable(f"redis unavailable: {exc}")
    if isinstance(exc, (redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError)):
        return BackendUnavailable(f"redis refused the write: {exc}")
    if isinstance(exc, redis.exceptions.ResponseError):
        code, _, text = str(exc).partition(" ")
        if code == "VFS_RANGE":
            return RangeNotSatisfiable(int(text))
        if code == "VFS_NOTEMPTY":
            return Conflict(text, code="directory_not_empty")
        if code in _SCRIPT_ERRORS:
            return _SCRIPT_ERRORS[code](text)
        if "maximum allowed size" in str(exc):
            return PayloadTooLarge(f"redis: {exc}")
    return exc


MAX_TTL_SECONDS = 100 * 365 * 86400  # Redis refuses expiry times past ~2**63 ms


@dataclass(frozen=True)
class _Connection:
    """One process's client (a connection pool), its connection stack and the scripts."""

    client: redis.Redis  # staging of large values, ping
    scripts: dict[str, Script]
    reads: Connections  # reads, stats and scripts, without the pool's per-call bookkeeping


class RedisBackend(Backend):
    """Values as Redis strings, versions and directory indexes beside them."""

    def __init__(self, url: str, max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE,
                 timeout: float = 5.0, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix  # the store prefix, e.g. "app/"
        self.max_object_size = max_object_size
        self.timeout = timeout
        self._connection = PerProcess(self._connect)
        self._connection.get()  # checks the URL now; connects lazily

    @classmethod
    def from_settings(cls, s: settings.RedisSettings, prefix: str) -> RedisBackend:
        return cls(s.url, s.max_object_size, s.timeout, normalise_prefix(prefix))

    # -- connection ---------------------------------------------------------

    def _connect(self) -> _Connection:
        """A pool for this process (sockets must not be shared across fork).

        Nothing is sent twice by redis-py: no ``Retry`` (an ``APPEND``
        resent after a lost reply would stage its bytes twice); the pool
        checks an idle connection for a close before using it, and
        ``Connections`` decides what its exchanges may resend (``redis_conn``).
        """
        pool = redis.ConnectionPool.from_url(
            self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0))
        client = redis.Redis(connection_pool=pool)
        scripts = {name: Script(_LIB + src, name in _READ_ONLY) for name, src in _SCRIPTS.items()}
        return _Connection(client, scripts, Connections(pool))

    def _redis(self) -> redis.Redis:
        return self._connection.get().client

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        connection = self._connection.get()
        with _TRANSLATED:
            return connection.scripts[script](connection.reads, keys, args)

    # -- Backend ------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            version, mtime, size, _ = self._read([key, META + key], 0, 0, None, None)
        except NotFound:
            return None
        return ObjectInfo(size, version, float(mtime) if mtime else None)

    refuses_dir_clash = True  # the write script checks, atomically
    exact_mtime = True  # the one stored time (TIME, in µs) on every path

    def is_dir(self, key: str) -> bool:
        return bool(self._run("is_dir", [], [key.rstrip("/") + "/"]))

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        keys = [key, META + key]
        want = CHUNK if length is None else min(length, CHUNK)
        version, mtime, size, data = self._read(keys, start, want, if_match, None)
        total = max(0, size - start if length is None else min(length, size - start))
        info = ObjectInfo(size=size, version=version, modified=float(mtime) if mtime else None)
        return ObjectBody(info, start, total, self._chunks(keys, version, start, total, data))

    def _read(self, keys: list[str], start: int, count: int, if_match: str | None,
              pinned: str | None) -> Snapshot:
        """One transaction of plain commands, no script (``redis_read``)."""
        reads = self._connection.get().reads
        with _TRANSLATED:
            return read_snapshot(reads, keys[0], keys[1], start, count, if_match, pinned)

    def _chunks(self, keys: list[str], version: str, start: int, total: int,
                first: bytes) -> Iterator[bytes]:
        """The rest of a large value; each chunk checks the version is unchanged."""
        if first:
            yield first
        position, end = start + len(first), start + total
        while position < end:
            data = self._read(keys, position, min(CHUNK, end - position), None, version)[3]
            if not data:
                return
            yield data
            position += len(data)

    def write(self, key: str, body: Readable, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        keys = [key, META + key]
        args = [if_match or "", "1" if if_none_match else "0"]
        head, rest = _read_head(body)
        if rest:  # large: stream into a staging key the script renames into place
            staging = f"{STAGING}{uuid.uuid4().hex}"
            try:
                self._stage(staging, head, rest, body)
            except BaseException:
                with suppress(redis.exceptions.RedisError):  # else its TTL removes it
                    self._redis().delete(staging)
                raise
            keys.append(staging)
        version, mtime, size = self._run("write", keys,
                                         args + [b"" if rest else head, self.prefix])
        return ObjectInfo(size=size, version=str(version), modified=float(mtime))

    def _stage(self, staging: str, head: bytes, rest: bytes, body: Readable) -> None:
        """Stream a large body into a staging key; the write script renames it."""
        client = self._redis()
        with _TRANSLATED:
            pipe = client.pipeline(transaction=False)
            pipe.append(staging, head)
            pipe.pexpire(staging, STAGING_TTL_MS)
            pipe.append(staging, rest)
            pipe.execute()
            for chunk in iter_stream(body, CHUNK):
                client.append(staging, chunk)

    def delete(self, key: str, if_match: str | None = None) -> None:
        self._run("delete", [key, META + key], [if_match or ""])

    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
        recursive = delimiter is None
        base, low, high = _range(prefix, start_after, recursive)
        if low is None:
            return ListPage()
        if recursive:
            batch = min(max_keys + 1, 1000)
            items = [(k, False) for k in islice(
                self._walk(base, low, high, start_after, batch), max_keys + 1)]
        else:
            items = [(base + name, name.endswith("/"))
                     for name, _ in self._entries(base, low, high, max_keys + 1)]
        page = ListPage()
        for full, is_prefix in items[:max_keys]:
            (page.prefixes if is_prefix else page.keys).append(full)
        if len(items) > max_keys:
            page.next = items[max_keys - 1][0]
        return page

    def list_details(self, prefix: str, delimiter: str | None, start_after: str | None,
                     max_keys: int) -> ListPage:
        """One listing script that also reads each value's length, version and time."""
        if delimiter is None:
            return super().list_details(prefix, delimiter, start_after, max_keys)
        base, low, high = _range(prefix, start_after, False)
        if low is None:
            return ListPage()
        entries = self._entries(base, low, high, max_keys + 1, details=True)
        page = ListPage()
        for name, kind in entries[:max_keys]:
            full = base + name
            if name.endswith("/"):
                page.prefixes.append(full)
                continue
            page.keys.append(full)
            if kind.startswith("f:"):
                _, size, version, mtime = kind.split(":", 3)
                page.infos[full] = ObjectInfo(int(size), version,
                                              float(mtime) if mtime else None)
        if len(entries) > max_keys:
            page.next = base + entries[max_keys - 1][0]
        return page

    def list_names(self, prefix: str, start_after: str | None, max_keys: int,
                   details: bool = False) -> NamePage:
        """One script whose reply is one string: the names, split in one call."""
        if details:
            return super().list_names(prefix, start_after, max_keys, details)
        base, low, high = _range(prefix, start_after, False)
        if low is None:
            return NamePage()
        raw = self._run("names", [], [base, low, high, max_keys + 1])
        names = raw.decode().split("\0") if raw else []
        page = NamePage(files=names)
        if len(names) > max_keys:
            del names[max_keys:]
            page.next = base + names[-1]
        if b"/" in raw:  # subdirectories: the only names with a '/', at the end
            page.files = [name for name in names if not name.endswith("/")]
            page.dirs = [name[:-1] for name in names if name.endswith("/")]
        return page

    def _entries(self, base: str, low: bytes, high: bytes, limit: int,
                 details: bool = False) -> list[tuple[str, str]]:
        flat = self._run("list", [], [base, low, high, limit, "1" if details else "0"])
        return [(flat[i].decode(), flat[i + 1].decode()) for i in range(0, len(flat), 2)]

    def _walk(self, base: str, low: bytes, high: bytes, start_after: str | None,
              batch: int) -> Iterator[str]:
        """Keys under ``base`` in order, depth first; markers come as keys."""
        while True:
            entries = self._entries(base, low, high, batch)
            for name, kind in entries:
                full = base + name
                if kind == "f":
                    yield full
                    continue
                if kind == "m" and (start_after is None or full > start_after):
                    yield full
                sub_low = _lower_bound(full, "", start_after, True)
                if sub_low is not None:
                    yield from self._walk(full, sub_low, b"+", start_after, batch)
            if len(entries) < batch:
                return
            low = b"(" + entries[-1][0].encode()

    def get_attrs(self, key: str) -> dict[str, str]:
        result = self._run("stat", [key, META + key], [])
        if result[0] != b"string":
            raise NotFound(f"no such key: {key}")
        _, size, version, mtime, pttl = result
        ttl = str(math.ceil(pttl / 1000)) if pttl >= 0 else "-1"
        return {"version": version.decode(), "size": str(size), "mtime": mtime.decode(),
                "ttl": ttl}

    def set_attr(self, key: str, name: str, value: str) -> None:
        """``ttl``: seconds until the value expires; ``0`` or ``-1`` keeps it forever."""
        if name != "ttl":
            raise Forbidden(f"attribute {name!r} is not writable on redis (only 'ttl')")
        try:
            seconds = float(value.strip())
        except ValueError:
            raise BadRequest(f"ttl must be a number of seconds, not {value!r}") from None
        if not math.isfinite(seconds) or seconds > MAX_TTL_SECONDS:
            raise BadRequest(f"ttl must be a number of seconds up to {MAX_TTL_SECONDS}, "
                             f"not {value!r}")
        millis = max(1, round(seconds * 1000)) if seconds > 0 else -1
        self._run("ttl", [key, META + key], [millis])

    def ping(self) -> None:
        client = self._redis()
        with _TRANSLATED:
            client.ping()

    def close(self) -> None:
        for connection in self._connection.pop_all():
            connection.reads.close()
            connection.client.connection_pool.disconnect()


def _read_head(body: Readable) -> tuple[bytes, bytes]:
    """The first ``CHUNK`` bytes and, if the body goes on, the next chunk."""
    head = bytes(read_up_to(body, CHUNK))
    return head, body.read(CHUNK) if len(head) == CHUNK else b""


def _range(prefix: str, start_after: str | None,
           recursive: bool) -> tuple[str, bytes | None, bytes]:
    """``(directory, ZRANGEBYLEX min, max)`` for a listing of ``prefix``; min None: empty.

    ``prefix`` is a directory (``a/``) plus the start of a name (``a/x``).
    """
    base = prefix[:prefix.rfind("/") + 1]
    name_start = prefix[len(base):]
    high = b"[" + name_start.encode() + b"\xff" if name_start else b"+"
    return base, _lower_bound(base, name_start, start_after, recursive), high


def _lower_bound(base: str, name_start: str, start_after: str | None,
                 recursive: bool) -> bytes | None:
    """The ``ZRANGEBYLEX`` min for entries of ``base`` after ``start_after``.

    None when ``start_after`` lies past the whole directory. Recursively, a
    cursor inside subdirectory ``x/`` must still visit ``x/`` itself.
    """
    floor = b"[" + name_start.encode() if name_start else b"-"
    if start_after is None or start_after < base:
        return floor
    if not start_after.startswith(base):
        return None
    rest = start_after[len(base):]
    if not rest or rest < name_start:
        return floor
    if recursive and "/" in rest:
        return b"[" + rest[:rest.index("/") + 1].encode()
    return b"(" + rest.encode()


def create_app(consistency: str | None = None) -> Flask:
    """WSGI factory: ``gunicorn 'sidecars.redis:create_app()'``."""
    s = settings.redis()
    try:
        backend = RedisBackend.from_settings(s, settings.common().prefix)
    except ValueError as exc:
        raise config.ConfigError(f"REDIS_URL is malformed: {exc}") from None
    return app_from_env(backend, consistency, "vfs-state-redis")
