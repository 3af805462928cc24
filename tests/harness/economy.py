"""Sidecars whose requests are counted where they land: at the sidecar and at the backend.

``CountedMount`` starts a sidecar behind a ``CountingProxy`` (every HTTP
request the client sends, and the bytes it gets back) and counts the
backend side at the server: Redis by its own ``MONITOR`` feed (a
private server, so nothing else talks to it), S3 by a second proxy between
the sidecar and moto, NATS by the messages the server received on the
sidecar's connection (``/connz``; a request, a publish and a fetch are one
message each). The local backend has no server; its figure is the
sidecar's. Used by tests/test_request_economy.py and
benchmarks/request_economy.py.
"""
from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from tests.harness import moto_s3
from tests.harness.counting_proxy import CountingProxy, Tally
from tests.harness.nats_server import NatsServer
from tests.harness.nats_server import sidecar_env as nats_env
from tests.harness.redis_server import RedisServer
from tests.harness.sidecar import Sidecar

IGNORED_REDIS = {"info", "config", "client", "hello", "ping", "echo"}
SIDECAR_NATS_NAME = "vfs-state-sidecar"  # the connection name sidecars.nats_kv gives


@dataclass
class Counts:
    """One operation's cost: sidecar requests, backend requests and bytes."""

    sidecar_requests: int = 0
    sidecar_bytes: int = 0
    backend_requests: int = 0
    backend_bytes: int = 0
    detail: list[str] = field(default_factory=list)


def _transactions(commands: list[str]) -> list[str]:
    """Each ``MULTI`` ... ``EXEC`` block as one entry naming the commands inside."""
    out: list[str] = []
    block: list[str] | None = None
    for command in commands:
        word = command.split(" ")[0].strip('"').upper()
        if word == "MULTI":
            block = []
        elif block is not None and word in ("EXEC", "DISCARD"):
            out.append("MULTI " + " | ".join(block) + " " + word)
            block = None
        elif block is not None:
            block.append(command)
        else:
            out.append(command)
    return out + (["MULTI " + " | ".join(block)] if block is not None else [])


class RedisMonitor:
    """The commands clients send to a Redis server, from its ``MONITOR`` feed.

    Commands a Lua script runs inside the server are left out: a script is
    one request, whatever it does. So is a ``MULTI`` ... ``EXEC`` block,
    sent in one write and answered in one reply. ``take`` returns what came since the
    last call, after a marker command proves the feed has caught up.
    """

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self._seen: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                command = self._monitor.next_command()
                if command.get("client_type") == "lua":
                    continue
                with self._cond:
                    self._seen.append(str(command.get("command", "")))
                    self._cond.notify_all()
        except (redis.RedisError, OSError, ValueError):
            return

    def take(self, control: redis.Redis) -> list[str]:
        marker = f"ECHO economy-{uuid.uuid4().hex}"
        control.echo(marker[5:])
        with self._cond:
            self._cond.wait_for(lambda: marker in self._seen, timeout=10)
            seen, self._seen = self._seen, []
        cut = seen.index(marker) if marker in seen else len(seen)
        return _transactions([c for c in seen[:cut] if c.split(" ")[0].lower() not in IGNORED_REDIS
                              and not c.startswith("ECHO economy-")])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._monitor.connection.disconnect()


class NatsTally:
    """Messages the sidecar's NATS connections sent, as the server counts them.

    Reads ``in_msgs`` of the connections named like the sidecar's from the
    server's ``/connz``: every JetStream API request, direct get, publish
    and pull fetch is one message; pings and subscriptions are not messages.
    The server adds a message to the count as it processes it, so ``total``
    reads until two reads agree.
    """

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self._base = 0

    def _read(self) -> int:
        return sum(c.get("in_msgs", 0) for c in self.server.connections()
                   if c.get("name") == SIDECAR_NATS_NAME)

    def total(self) -> int:
        last = self._read()
        for _ in range(50):
            time.sleep(0.02)
            now = self._read()
            if now == last:
                return now
            last = now
        return last

    def reset(self) -> int:
        """Messages since the last reset."""
        now = self.total()
        taken, self._base = now - self._base, now
        return taken


class CountedMount:
    """One connector's sidecar with counters on both of its sides."""

    def __init__(self, kind: str, tmpdir: str, consistency: str = "cas") -> None:
        self.kind = kind
        self._closers: list = []
        self._redis: redis.Redis | None = None
        self._backend_proxy: CountingProxy | None = None
        self._nats: NatsTally | None = None
        env = self._backend_env(kind, tmpdir)
        connector = {"local": "local-buffered-", "s3": "s3-buffered-",
                     "redis": "redis-buffered-", "nats": "nats-kv-buffered-"}[kind] + consistency
        self.sidecar = Sidecar(connector, env, workers=1).start()
        self._closers.append(self.sidecar.close)
        self.proxy = CountingProxy.unix(self.sidecar.socket_path)
        self._closers.append(self.proxy.close)

    @property
    def socket_path(self) -> str:
        """Where clients connect: the counting proxy."""
        return self.proxy.socket_path

    def _backend_env(self, kind: str, tmpdir: str) -> dict[str, str]:
        prefix = f"economy-{uuid.uuid4().hex[:8]}"
        if kind == "local":
            return {"STATE_ROOT": tmpdir}
        if kind == "redis":
            # No AOF: its fsyncs can stall a loaded CI machine for seconds, and this
            # suite counts commands, not durability.
            server = RedisServer(("--appendonly", "no")).start()
            self._closers.append(server.close)
            self._redis = redis.Redis.from_url(server.url)
            self._monitor = RedisMonitor(server.url)
            self._closers.append(self._monitor.close)
            # MONITOR echoes every 1 MiB chunk of the large files to this process:
            # a generous backend timeout, so a loaded machine is not a failure.
            return {"REDIS_URL": server.url, "STATE_PREFIX": prefix, "REDIS_TIMEOUT": "30"}
        if kind == "s3":
            server = moto_s3.MotoS3Server().start()
            self._closers.append(server.close)
            moto_s3.create_bucket(server, "economy")
            self._backend_proxy = CountingProxy.tcp(server.port)
            self._closers.append(self._backend_proxy.close)
            env = moto_s3.sidecar_env(server, "economy", prefix)
            env["AWS_ENDPOINT_URL"] = self._backend_proxy.endpoint
            return env
        if kind == "nats":
            nats = NatsServer(monitor=True)
            nats.start()
            self._closers.append(nats.close)
            self._nats = NatsTally(nats)
            return nats_env(nats, "economy", prefix)
        raise ValueError(kind)

    def _reset_backend(self) -> None:
        if self._redis is not None:
            self._monitor.take(self._redis)
        if self._backend_proxy is not None:
            self._backend_proxy.reset()
        if self._nats is not None:
            self._nats.reset()

    def _backend_counts(self, counts: Counts) -> None:
        if self._redis is not None:
            commands = self._monitor.take(self._redis)
            counts.backend_requests = len(commands)
            counts.detail.extend(f"redis {c}" for c in commands)
        elif self._backend_proxy is not None:
            tally = self._backend_proxy.reset()
            counts.backend_requests = tally.total
            counts.backend_bytes = tally.bytes_out
            counts.detail.extend(f"s3 {line}" for line in tally.lines)
        elif self._nats is not None:
            counts.backend_requests = self._nats.reset()
            counts.detail.append(f"nats: {counts.backend_requests} messages from the sidecar")

    @contextmanager
    def counting(self) -> Iterator[Counts]:
        """Counts of what the body of the ``with`` sent, filled in when it ends."""
        counts = Counts()
        self.proxy.reset()
        self._reset_backend()
        yield counts
        tally: Tally = self.proxy.reset()
        counts.sidecar_requests = tally.total
        counts.sidecar_bytes = tally.bytes_out
        counts.detail.extend(f"sidecar {line}" for line in tally.lines)
        self._backend_counts(counts)
        if self.kind == "local":  # no server to count at: the sidecar's figures stand in
            counts.backend_requests = counts.sidecar_requests
            counts.backend_bytes = counts.sidecar_bytes

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
