"""NATS JetStream KV backend (``nats-kv-buffered-cas``).

nats-py is asyncio-only and the sidecar is a threaded WSGI app, so every
worker process runs one event loop on a daemon thread (started lazily and
again after a fork) and the request threads submit coroutines to it with
``run_coroutine_threadsafe``, each waiting a bounded time. The connection
reconnects forever, so a restarted server is picked up without restarting
the sidecar; while it is away, calls fail fast with 503.

A version is the KV revision (the stream sequence), so CAS maps onto the
server's own ``Nats-Expected-Last-Subject-Sequence`` check and holds across
workers and sidecars. Keys are encoded by ``sidecars.nats_keys``; listings
read one subject subtree through a short-lived headers-only pull consumer,
with nats-py's public JetStream calls only.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from flask import Flask
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    Header,
    KeyValueConfig,
    RawStreamMsg,
)
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE, KeyValue

from sidecars import settings
from sidecars.app import app_from_env
from sidecars.backend import Backend, ListPage, ObjectBody, ObjectInfo, served_length
from sidecars.errors import (
    BackendTimeout,
    BackendUnavailable,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    SidecarError,
)
from sidecars.nats_keys import decode_key, encode_key, paginate, subtree_filter
from sidecars.per_process import PerProcess
from sidecars.settings import NatsSettings
from sidecars.streams import Readable, read_at_most

log = logging.getLogger("vfs_state.sidecar.nats_kv")

T = TypeVar("T")

#: Bytes kept free for the headers we send: the server counts them against
#: both ``max_payload`` and the bucket's ``max_value_size``, and a message
#: over ``max_payload`` makes the server drop the whole connection.
HEADER_ROOM = 128
RECONNECT_WAIT = 0.5           # seconds between reconnect attempts
CONSUMER_IDLE_CLEANUP = 5.0    # seconds before the server drops an abandoned listing consumer
SCAN_BATCH = 1000              # messages per fetch while listing
WRONG_LAST_SEQUENCE = (10071, 10164)
MESSAGE_TOO_LARGE = 10054
STREAM_NAME_IN_USE = 10058


@dataclass(frozen=True)
class _Bucket:
    """A bound bucket: the clients and the names needed to address it."""

    js: JetStreamContext
    kv: KeyValue
    stream: str
    subject_prefix: str   # "$KV.<bucket>."
    direct: bool
    limit: int            # largest value accepted, bytes
    timeout: float
    compact: bool         # history 1: purge tombstones, nothing else is lost


class _Session:
    """One process's event loop thread, NATS connection and bound bucket."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever,
                                        name="nats-kv-loop", daemon=True)
        self._thread.start()
        self._nc: NATS | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._bucket: _Bucket | None = None
        self._bind_lock: asyncio.Lock | None = None
        self._closing = False

    def run(self, coro: Coroutine[Any, Any, T], budget: float) -> T:
        """Run ``coro`` on the loop; translate failures; give up after ``budget`` s."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(budget)
        except SidecarError:
            raise
        except Exception as exc:
            if not future.done():  # our budget ran out, not a call inside
                future.cancel()
                raise BackendTimeout(f"NATS did not answer within {budget:g}s") from exc
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def known_limit(self) -> int | None:
        """The bound bucket's value limit without a trip to the loop (None before binding)."""
        bucket = self._bucket
        return None if bucket is None else bucket.limit

    async def connection(self) -> NATS:
        """The live connection; connects in the background, never blocks past the timeout."""
        if self._connecting is None or _failed(self._connecting):
            self._nc = NATS()
            self._connecting = asyncio.ensure_future(self._nc.connect(
                servers=[url.strip() for url in self.settings.url.split(",")],
                name="vfs-state-sidecar",
                allow_reconnect=True, max_reconnect_attempts=-1,  # forever
                reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
                connect_timeout=min(2.0, self.settings.timeout),  # type: ignore[arg-type]
                ping_interval=20, error_cb=self._on_error,
                disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect))
        if not self._connecting.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._connecting), self.settings.timeout)
            except TimeoutError:
                raise BackendUnavailable(
                    f"cannot connect to NATS at {self.settings.url} (still trying)") from None
        self._connecting.result()
        assert self._nc is not None
        if not self._nc.is_connected:
            raise BackendUnavailable(f"lost the connection to NATS at {self.settings.url};"
                                     " reconnecting")
        return self._nc

    async def bucket(self) -> _Bucket:
        """The bucket, bound (and created if missing) on first use."""
        nc = await self.connection()
        if self._bucket is None:
            self._bind_lock = self._bind_lock or asyncio.Lock()
            async with self._bind_lock:
                if self._bucket is None:
                    self._bucket = await self._bind(nc)
        return self._bucket

    async def _bind(self, nc: NATS) -> _Bucket:
        """Find or create the bucket; settings only apply when it is created."""
        s = self.settings
        js = nc.jetstream(timeout=s.timeout)
        try:
            kv = await js.key_value(s.bucket)
        except nats.js.errors.BucketNotFoundError:
            msg_size = min(s.max_value_size + HEADER_ROOM, nc.max_payload) \
                if s.max_value_size else nc.max_payload
            cfg = KeyValueConfig(bucket=s.bucket, history=s.history,
                                 max_value_size=msg_size, direct=True)
            try:
                kv = await js.create_key_value(cfg)
                log.info("created NATS KV bucket %s (history=%d, max message %d bytes)",
                         s.bucket, s.history, msg_size)
            except nats.js.errors.APIError as exc:
                if exc.err_code != STREAM_NAME_IN_USE:
                    raise
                kv = await js.key_value(s.bucket)  # another worker won the race
        stream = f"KV_{s.bucket}"
        info = await js.stream_info(stream)
        caps = [nc.max_payload - HEADER_ROOM]
        if info.config.max_msg_size and info.config.max_msg_size > 0:
            caps.append(info.config.max_msg_size - HEADER_ROOM)
        if s.max_value_size:
            caps.append(s.max_value_size)
        return _Bucket(js, kv, stream, f"$KV.{s.bucket}.", bool(info.config.allow_direct),
                       max(0, min(caps)), s.timeout, info.config.max_msgs_per_subject == 1)

    async def close(self) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats: %s: %s", type(exc).__name__, exc)

    async def _on_disconnect(self) -> None:
        if not self._closing:
            log.warning("disconnected from NATS at %s; reconnecting", self.settings.url)

    async def _on_reconnect(self) -> None:
        log.warning("reconnected to NATS at %s", self.settings.url)


def translate(exc: BaseException) -> BaseException:
    """A nats-py failure as the ``SidecarError`` the client should see."""
    if isinstance(exc, SidecarError):
        return exc
    code = getattr(exc, "err_code", None)
    if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError) or code in WRONG_LAST_SEQUENCE:
        return PreconditionFailed("stored revision differs from If-Match")
    if isinstance(exc, nats.errors.MaxPayloadError) or code == MESSAGE_TOO_LARGE:
        return PayloadTooLarge(f"value too large for the NATS KV bucket: {exc}")
    if isinstance(exc, TimeoutError):  # asyncio's and nats-py's are subclasses
        return BackendTimeout(f"NATS timed out: {type(exc).__name__}")
    if isinstance(exc, (nats.errors.Error, OSError)):
        # no responders, connection closed/reconnecting, JetStream errors
        return BackendUnavailable(f"NATS: {type(exc).__name__}: {exc}")
    return exc


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _is_tombstone(msg: RawStreamMsg | Msg) -> bool:
    headers = msg.headers or {}
    return headers.get(KV_OP) in (KV_DEL, KV_PURGE) or KV_MARKER_REASON in headers


def _revision(if_match: str) -> int:
    """The revision an ``If-Match`` names; one that cannot exist fails the check."""
    revision = int(if_match) if if_match.isascii() and if_match.isdigit() else 0
    if revision <= 0:
        raise PreconditionFailed(f"no revision {if_match!r} in NATS KV")
    return revision


def _info(msg: RawStreamMsg) -> ObjectInfo:
    modified = msg.time.timestamp() if isinstance(msg.time, datetime) else None
    return ObjectInfo(size=len(msg.data or b""), version=str(msg.seq), modified=modified)


class NatsKvBackend(Backend):
    """Objects as values in one JetStream KV bucket."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        # The core checks this before reading a body; with no setting the real
        # limit comes from the server (max_payload) and ``write`` enforces it.
        self.max_object_size = settings.max_value_size
        self._session = PerProcess(lambda: _Session(settings))

    # -- bridge -------------------------------------------------------------

    def _current(self) -> _Session:
        """This process's session; a forked child starts its own loop and connection."""
        return self._session.get()

    def _run(self, work: Callable[..., Awaitable[T]], *args: Any,
             budget: float | None = None) -> T:
        """Call ``work(bucket, *args)`` on the loop, bounded by ``budget`` seconds."""
        session = self._current()

        async def call() -> T:
            return await work(await session.bucket(), *args)

        return session.run(call(), budget or 2 * self.settings.timeout + 1)

    # -- Backend ------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        msg = self._run(_live, encode_key(key))
        return None if msg is None else _info(msg)

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        msg = self._run(_live, encode_key(key))
        if msg is None:
            raise NotFound(f"no such key: {key}")
        info = _info(msg)
        length = served_length(info, start, length, if_match)
        data = msg.data or b""
        return ObjectBody(info, start, length, [data[start:start + length]])

    def write(self, key: str, body: Readable, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        # The early check may use the limit seen at binding: _write checks it again.
        limit = self._current().known_limit() or self._run(_limit)
        if length is not None and length > limit:
            raise PayloadTooLarge(f"value of {length} bytes exceeds the NATS KV limit of {limit}")
        data = read_at_most(body, limit, "value for the NATS KV bucket")
        revision = self._run(_write, encode_key(key), data,
                             None if if_match is None else _revision(if_match), if_none_match)
        return ObjectInfo(size=len(data), version=str(revision))

    def delete(self, key: str, if_match: str | None = None) -> None:
        try:
            expected = None if if_match is None else _revision(if_match)
        except PreconditionFailed:
            if self.stat(key) is None:
                raise NotFound(f"no such key: {key}") from None
            raise
        self._run(_delete, encode_key(key), expected)

    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
        return self._listing(prefix, delimiter, start_after, max_keys, False)

    def list_details(self, prefix: str, delimiter: str | None, start_after: str | None,
                     max_keys: int) -> ListPage:
        """The same scan: its messages carry each key's size, revision and time."""
        return self._listing(prefix, delimiter, start_after, max_keys, True)

    def _listing(self, prefix: str, delimiter: str | None, start_after: str | None,
                 max_keys: int, details: bool) -> ListPage:
        directory = prefix[: prefix.rfind("/") + 1]
        found = self._run(_scan, directory, False, details, budget=6 * self.settings.timeout)
        page = paginate(list(found), prefix, delimiter, start_after, max_keys)
        if details:
            page.infos = {key: info for key in page.keys if (info := found[key]) is not None}
        return page

    def is_dir(self, key: str) -> bool:
        return self._run(_has_live_key_under, key.rstrip("/") + "/")

    def get_attrs(self, key: str) -> dict[str, str]:
        msg = self._run(_live, encode_key(key))
        if msg is None:
            raise NotFound(f"no such key: {key}")
        attrs = {"version": str(msg.seq), "revision": str(msg.seq),
                 "size": str(len(msg.data or b"")), "bucket": self.settings.bucket}
        if isinstance(msg.time, datetime):
            attrs["created"] = msg.time.isoformat().replace("+00:00", "Z")
        return attrs

    def ping(self) -> None:
        self._run(_status)

    def close(self) -> None:
        """Close the connection (bounded: the worker is exiting) and stop the loop."""
        for session in self._session.pop_all():
            try:
                session.run(session.close(), min(1.0, self.settings.timeout))
            except Exception:  # noqa: BLE001 - shutting down anyway
                log.debug("closing the NATS connection failed", exc_info=True)
            session.loop.call_soon_threadsafe(session.loop.stop)


# -- coroutines run on the session loop ---------------------------------------

async def _limit(b: _Bucket) -> int:
    return b.limit


async def _status(b: _Bucket) -> None:
    await b.kv.status()


async def _last(b: _Bucket, nkey: str) -> RawStreamMsg | None:
    """The newest message for ``nkey``, tombstones included."""
    try:
        return await b.js.get_msg(b.stream, subject=b.subject_prefix + nkey, direct=b.direct)
    except nats.js.errors.NotFoundError:
        return None


async def _live(b: _Bucket, nkey: str) -> RawStreamMsg | None:
    msg = await _last(b, nkey)
    return None if msg is None or _is_tombstone(msg) else msg


async def _write(b: _Bucket, nkey: str, data: bytes, expected: int | None,
                 create: bool) -> int:
    if len(data) > b.limit:  # a reconnect may have rebound to a smaller bucket
        raise PayloadTooLarge(f"value of {len(data)} bytes exceeds the limit of {b.limit}")
    if create:
        return await _create(b, nkey, data)
    if expected is not None:
        return await b.kv.update(nkey, data, last=expected)
    return await b.kv.put(nkey, data)


async def _create(b: _Bucket, nkey: str, data: bytes) -> int:
    """Write only if no live value exists; a tombstone counts as absent."""
    last = 0
    for _ in range(5):
        try:
            return await b.kv.update(nkey, data, last=last)
        except nats.js.errors.KeyWrongLastSequenceError:
            current = await _last(b, nkey)
            if current is not None and not _is_tombstone(current):
                raise PreconditionFailed("key exists (If-None-Match: *)") from None
            last = 0 if current is None else current.seq or 0  # retry over the tombstone
    raise PreconditionFailed("key kept changing while it was being created")


async def _delete(b: _Bucket, nkey: str, expected: int | None) -> None:
    """Tombstone the key atomically against ``expected`` (or its current revision).

    An unconditional delete still pins the revision it read, so a 404 means
    the key really was absent. With history 1 the tombstone is then purged
    (only sequences up to it: a newer write survives), so deleted keys cost
    nothing in later listings.
    """
    subject = b.subject_prefix + nkey
    for _ in range(5):
        revision = expected
        if revision is None:
            current = await _live(b, nkey)
            if current is None:
                raise NotFound(f"no such key: {decode_key(nkey)}")
            revision = current.seq
        headers = {KV_OP: KV_DEL, Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)}
        try:
            ack = await b.js.publish(subject, b"", headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:
                raise
            if expected is None:
                continue  # changed under us: read again
            if await _live(b, nkey) is None:
                raise NotFound(f"no such key: {decode_key(nkey)}") from None
            raise PreconditionFailed("stored revision differs from If-Match") from None
        if b.compact:
            try:
                await b.js.purge_stream(b.stream, seq=ack.seq + 1, subject=subject)
            except (TimeoutError, nats.errors.Error) as exc:
                log.debug("could not purge the tombstone of %s: %s", nkey, exc)
        return
    raise PreconditionFailed("key kept changing while it was being deleted")


async def _has_live_key_under(b: _Bucket, directory: str) -> bool:
    """Whether a marker or any live key lies under ``directory``, mostly in one request.

    Asks for the newest message of the whole subtree (a ``last_by_subj``
    get with a wildcard subject, through the JetStream API: the direct-get
    form puts the subject in the request's own subject, where a wildcard
    has no place). No message: the subtree is empty. A live value there is the
    newest of its key, so the directory exists. Only a tombstone or a key
    of another scheme leaves the answer open; then the subtree is scanned.
    """
    try:
        newest = await b.js.get_last_msg(b.stream, b.subject_prefix + subtree_filter(directory))
    except nats.js.errors.NotFoundError:
        return False
    except nats.js.errors.APIError as exc:  # a server that refuses a wildcard here
        log.debug("last message under %r: %s; scanning instead", directory, exc)
    else:
        if not _is_tombstone(newest) and _decodes((newest.subject or "")[len(b.subject_prefix):]):
            return True
    return bool(await _scan(b, directory, True))


def _decodes(nkey: str) -> bool:
    try:
        decode_key(nkey)
    except ValueError:
        return False
    return True


def _listed_info(msg: Msg) -> ObjectInfo:
    """A key's info from the headers-only message a listing consumer delivers.

    ``Nats-Msg-Size`` is the value's length, the stream sequence its
    revision. The time comes from the delivery metadata, rounded to the
    microsecond, where a get truncates: the two differ only when a write
    lands within half a microsecond of a whole second.
    """
    size = int((msg.headers or {}).get("Nats-Msg-Size") or 0)
    meta = msg.metadata
    return ObjectInfo(size=size, version=str(meta.sequence.stream),
                      modified=meta.timestamp.timestamp())


async def _scan(b: _Bucket, directory: str, first_only: bool,
                details: bool = False) -> dict[str, ObjectInfo | None]:
    """Live keys under ``directory`` (with ``details``, their info), through one consumer.

    The server filters by subject and sends the last message per key, so the
    cost follows the size of the subtree, not of the bucket. The consumer's
    ``num_pending`` at creation, then each message's, says how many are
    left, so every fetch asks only for messages that exist and returns at
    once. Keys that do not decode (another tool's scheme) are skipped.
    Markers get no info, and a plain listing builds none: parsing it is most
    of a detailed listing's extra time ([performance](docs/performance.md)).
    """
    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                         ack_policy=AckPolicy.NONE, headers_only=True, mem_storage=True,
                         filter_subject=b.subject_prefix + subtree_filter(directory),
                         inactive_threshold=CONSUMER_IDLE_CLEANUP, num_replicas=1)
    info = await b.js.add_consumer(b.stream, cfg)
    sub = await b.js.pull_subscribe_bind(consumer=info.name, stream=b.stream)
    keys: dict[str, ObjectInfo | None] = {}
    try:
        pending = info.num_pending or 0
        while pending > 0:
            try:
                msgs = await sub.fetch(min(SCAN_BATCH, pending), timeout=b.timeout)
            except TimeoutError:
                if not (await sub.consumer_info()).num_pending:
                    break  # the rest was deleted and purged while we listed
                raise
            for msg in msgs:
                if not _is_tombstone(msg):
                    with contextlib.suppress(ValueError):
                        key = decode_key(msg.subject[len(b.subject_prefix):])
                        keys[key] = _listed_info(msg) if details and key[-1] != "/" else None
                        if first_only:
                            return keys
            pending = msgs[-1].metadata.num_pending if msgs else 0
        return keys
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):  # else it expires on its own
            await b.js.delete_consumer(b.stream, info.name)


# -- helpers --------------------------------------------------------------------

def create_app(consistency: str | None = None) -> Flask:
    """WSGI factory: ``gunicorn 'sidecars.nats_kv:create_app()'``."""
    return app_from_env(NatsKvBackend(settings.nats()), consistency, "vfs-state-nats-kv")
