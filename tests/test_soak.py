"""Exactly-once under worker kills: a soak on every CAS connector.

N client processes append their own unique ids to one shared key with
``retry_on_conflict`` read-modify-writes, through ``StateFS``, while a thread
SIGKILLs the sidecar's gunicorn workers at random (the arbiter respawns them).
At the end every id must be in the value exactly once: a lost id is a lost
update, a repeated one a write applied twice.

A write whose connection died after it was sent (``OutcomeUnknownError``)
is settled the only safe way: re-read; if the id is there it was applied,
else write it again (conditionally, so a late first copy cannot slip in).

CI profile by default (4 processes x 100 ops per connector, 30 on the slower S3
and GCS emulators); the deep profile
(``VFS_STATE_DEEP=1``: 16 processes, minutes) prints the figures recorded in
docs/reliability.md. ``VFS_STATE_SOAK_OPS``/``VFS_STATE_SOAK_CLIENTS``
override the sizes.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter

import pytest

from tests.connectors import ALL_CONNECTORS, BUCKET, is_cas
from tests.harness import moto_s3
from tests.harness.sidecar import Sidecar
from vfs_state import StateFS, retry_on_conflict
from vfs_state.transport import outcome_unknown

DEEP = os.environ.get("VFS_STATE_DEEP") == "1"
CLIENTS = int(os.environ.get("VFS_STATE_SOAK_CLIENTS", 16 if DEEP else 4))
OPS = int(os.environ.get("VFS_STATE_SOAK_OPS", 150 if DEEP else 100))
# S3, GCS emulators: moto serves one request at a time here, so 16 x 150 contended
# CAS increments would outlast the test timeout; the deep figures use 16 x 40
SLOW_OPS = int(os.environ.get("VFS_STATE_SOAK_OPS", 40 if DEEP else 30))
KILL_EVERY = (1.0, 3.0) if DEEP else (0.3, 0.8)  # seconds between kills, uniform
MIN_AGE = 1.0  # a worker is killed only when both are this old (booted): one always serves


# moto checks If-Match and stores in two steps, unlocked, on a threaded server:
# concurrent conditional PUTs can both pass (real S3 checks atomically). The
# soak tests our stack, so its moto serves one request at a time.
_SERIAL_MOTO = """
import sys, threading
from moto import server
from werkzeug.serving import run_simple
app = server.DomainDispatcherApplication(server.create_backend_app)
lock = threading.Lock()
def serial(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple("127.0.0.1", int(sys.argv[1]), serial, threaded=True,
           request_handler=server.MotoRequestHandler)
"""


class SerialMotoS3(moto_s3.MotoS3Server):
    """moto whose conditional writes are atomic: one request at a time."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", _SERIAL_MOTO, str(self.port)]


def _children(pid: int) -> dict[int, float]:
    """Processes whose parent is ``pid`` (the arbiter's workers) and their ages in s."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found[int(entry)] = uptime - int(fields[19]) / ticks
    return found


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total / 2**20


def _wait_for_grown_workers(arbiter: int, timeout: float = 30.0) -> None:
    """Until two workers of ``arbiter`` are ``MIN_AGE`` old (a fresh sidecar's are not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = _children(arbiter)
        if len(workers) >= 2 and min(workers.values()) >= MIN_AGE:
            return
        time.sleep(0.1)
    raise AssertionError(f"the sidecar's workers did not come up: {_children(arbiter)}")


class WorkerKiller(threading.Thread):
    """SIGKILLs a random worker of ``arbiter`` every few seconds; samples RSS.

    Only when both workers have lived ``MIN_AGE``: the socket always has a
    worker behind it, so clients see killed requests, never a dead sidecar.
    """

    def __init__(self, arbiter: int) -> None:
        super().__init__(daemon=True)
        self.arbiter = arbiter
        self.kills = 0
        self.rss: list[float] = []  # MiB, arbiter + workers, once per pause
        self.done = threading.Event()

    def run(self) -> None:
        pause = 0.1  # the first kill comes early: even a short run sees one
        while not self.done.wait(pause):
            pause = random.uniform(*KILL_EVERY)
            workers = _children(self.arbiter)
            self.rss.append(_rss_mib([self.arbiter, *workers]))
            if len(workers) < 2 or min(workers.values()) < MIN_AGE:
                pause = 0.1  # a worker is (re)starting: wait until both serve
                continue
            try:
                os.kill(random.choice(list(workers)), signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass


def append_once(fs: StateFS, key: str, token: str) -> tuple[int, int, int]:
    """Append ``token`` to ``key`` exactly once; ``(conflicts, unknown, other)`` met.

    ``unknown``: writes whose outcome was unknown; ``other``: connection
    errors with nothing applied (a GET that failed twice, a refused connect).

    A conflict (412) proves the write was not applied: retry. A lost
    connection may hide an applied write: from then on each attempt first
    checks whether ``token`` is already there.
    """
    counts = {"conflicts": 0, "unknown": 0, "other": 0}
    unsure = False

    def attempt() -> None:
        value = fs.readtext(key)
        if unsure and token in value.split():
            return  # the write whose reply was lost had been applied
        try:
            fs.writetext(key, value + token + "\n")
        except FileExistsError:
            counts["conflicts"] += 1
            raise

    while True:
        try:
            retry_on_conflict(attempt, attempts=10_000, backoff=0.002, max_backoff=0.05)
            return counts["conflicts"], counts["unknown"], counts["other"]
        except (ConnectionError, TimeoutError) as exc:  # outcome unknown, or a lost GET
            counts["unknown" if outcome_unknown(exc) else "other"] += 1
            unsure = True
            time.sleep(0.01)


def _client(socket_path: str, key: str, client: int, ops: int
            ) -> tuple[list[float], int, int, int]:
    fs = StateFS(socket_path)
    latencies, totals = [], [0, 0, 0]
    for op in range(ops):
        start = time.perf_counter()
        counts = append_once(fs, key, f"c{client}-{op}")
        latencies.append(time.perf_counter() - start)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    return latencies, *totals


@pytest.fixture(scope="module")
def soak_sidecars(connector_pool):
    """A private 2-worker sidecar per connector (its workers get killed)."""
    started: dict[str, Sidecar] = {}

    servers = []

    def start(connector: str) -> Sidecar:
        prefix = f"soak-{connector}-{uuid.uuid4().hex[:8]}"
        if connector.startswith("s3-"):
            servers.append(SerialMotoS3().start())
            moto_s3.create_bucket(servers[-1], BUCKET)
            env = moto_s3.sidecar_env(servers[-1], BUCKET, prefix)
        else:
            env = connector_pool.env(connector, prefix)
        started[connector] = Sidecar(connector, env, workers=2).start()
        return started[connector]

    yield start
    for server in [*started.values(), *servers]:
        server.close()


@pytest.mark.parametrize("connector", [c for c in ALL_CONNECTORS if is_cas(c)])
def test_exactly_once_under_worker_kills(soak_sidecars, connector):
    sidecar = soak_sidecars(connector)
    key = f"soak-{uuid.uuid4().hex}"
    ops = SLOW_OPS if connector.startswith(("s3-", "gcs-")) else OPS
    # not empty: gcs-buffered-cas can answer 416 to a read of an empty object that
    # a concurrent write fills (its 416 -> stat fallback); a sidecar bug, not ours
    StateFS(sidecar.socket_path).writetext(key, "begin\n")
    _wait_for_grown_workers(sidecar.proc.pid)  # so the first kill lands in even a short run
    killer = WorkerKiller(sidecar.proc.pid)
    with multiprocessing.get_context("fork").Pool(CLIENTS) as pool:
        began = time.perf_counter()
        killer.start()
        try:
            results = pool.starmap(_client, [(sidecar.socket_path, key, client, ops)
                                             for client in range(CLIENTS)])
        finally:
            killer.done.set()
            killer.join()
        wall = time.perf_counter() - began
    stored = Counter(StateFS(sidecar.socket_path).readtext(key).split()[1:])
    expected = {f"c{client}-{op}" for client in range(CLIENTS) for op in range(ops)}
    lost = expected - set(stored)
    duplicated = {token: n for token, n in stored.items() if n > 1}
    latencies = sorted(t for result in results for t in result[0])
    print(f"\nsoak {connector}: {CLIENTS}x{ops} ops in {wall:.1f}s"
          f" ({len(latencies) / wall:.0f} ops/s), p50 {statistics.median(latencies) * 1e3:.1f} ms"
          f" p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:.1f} ms,"
          f" kills {killer.kills}, conflicts {sum(r[1] for r in results)},"
          f" outcome unknown {sum(r[2] for r in results)},"
          f" other connection errors {sum(r[3] for r in results)}, lost {len(lost)},"
          f" duplicated {len(duplicated)}, sidecar RSS MiB"
          f" {[round(x) for x in killer.rss[:: max(1, len(killer.rss) // 8)]]}")
    assert not lost, f"lost updates: {sorted(lost)[:10]}"
    assert not duplicated, f"applied twice: {dict(list(duplicated.items())[:10])}"
    assert set(stored) == expected
    assert killer.kills > 0, "the soak must kill workers to prove anything"


def test_retry_on_conflict_never_reruns_after_an_unknown_outcome():
    """A write that may have been applied is not applied again by the helper."""
    from vfs_state import OutcomeUnknownError

    calls = []

    def write_lost() -> None:
        calls.append(1)
        raise OutcomeUnknownError(104, "lost after the PUT was sent")

    with pytest.raises(OutcomeUnknownError):
        retry_on_conflict(write_lost, attempts=5, backoff=0)
    assert len(calls) == 1
    lost_timeout = TimeoutError(110, "timed out after the PUT was sent")
    lost_timeout.outcome_unknown = True  # as the transport marks it

    def slow() -> None:
        calls.append(1)
        raise lost_timeout

    with pytest.raises(TimeoutError):
        retry_on_conflict(slow, attempts=5, backoff=0)
    assert len(calls) == 2


def test_retry_on_conflict_reruns_an_idempotent_fn_after_an_unknown_outcome():
    from vfs_state import OutcomeUnknownError

    outcomes = [OutcomeUnknownError(104, "lost"), FileExistsError(17, "conflict"), None]

    def fn() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "done"

    assert retry_on_conflict(fn, attempts=5, backoff=0, idempotent=True) == "done"
    assert not outcomes
