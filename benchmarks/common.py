"""Shared benchmark helpers: options, timing, statistics, RSS sampling, tables, JSON.

Every benchmark module exposes ``NAME`` and ``run(ctx) -> dict``. Timings
are wall-clock (``time.perf_counter``); a figure is a median over repeated
runs with its spread (p25/p75 and min/max). Variants compared in one table
are measured *interleaved* (one call of each in turn), so load from other
work on the machine hits all of them alike and ratios stay meaningful.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
KiB, MiB, GiB = 1024, 1024 ** 2, 1024 ** 3
NA = "n/a"


# -- run options and shared state -------------------------------------------------

@dataclass
class Options:
    """What the command line asked for; ``scale`` picks the quick or full number."""

    quick: bool = False
    large_size: int = GiB
    redis_unrelated: int = 1_000_000

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Context:
    """Options plus one lazily started ``ConnectorPool`` shared by the benchmarks."""

    options: Options
    notes: list[str] = field(default_factory=list)
    _pool: Any = None

    @property
    def quick(self) -> bool:
        return self.options.quick

    def scale(self, full: int, quick: int) -> int:
        return self.options.scale(full, quick)

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from tests.connectors import ConnectorPool
            self._pool = ConnectorPool()
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


# -- timing ---------------------------------------------------------------------------

def stats(samples: Iterable[float], scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    """Median, quartiles, min and max of ``samples`` times ``scale``."""
    values = sorted(s * scale for s in samples)
    if not values:
        return {"n": 0, "median": None}
    if len(values) >= 2:
        q = statistics.quantiles(values, n=4, method="inclusive")
        p25, p75 = q[0], q[2]
    else:
        p25 = p75 = values[0]
    r = lambda v: round(v, digits)  # noqa: E731
    return {"n": len(values), "median": r(statistics.median(values)), "p25": r(p25),
            "p75": r(p75), "min": r(values[0]), "max": r(values[-1])}


def interleaved(variants: Mapping[str, Callable[[], object] | None], rounds: int,
                warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each variant, calling them in turn ``rounds`` times.

    ``None`` variants (not available) are skipped and get no samples. The
    order rotates every round so no variant always runs right after another.
    """
    live = [(name, fn) for name, fn in variants.items() if fn is not None]
    for _ in range(warmup):
        for _, fn in live:
            fn()
    samples: dict[str, list[float]] = {name: [] for name, _ in live}
    clock = time.perf_counter
    for i in range(rounds):
        shift = i % len(live) if live else 0
        for name, fn in live[shift:] + live[:shift]:
            start = clock()
            fn()
            samples[name].append(clock() - start)
    return samples


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``fn`` averaged over a tight loop of ``calls``."""
    clock = time.perf_counter
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


# -- memory ---------------------------------------------------------------------------

class RssSampler:
    """Peak RSS of some processes, sampled in a thread (psutil).

    ``groups`` maps a label to a callable returning the pids to watch (asked
    again every sample, so gunicorn workers that appear later are caught).
    Results are peak RSS of the largest single process and of the group sum.
    """

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]],
                 interval: float = 0.02) -> None:
        import psutil
        self._psutil = psutil
        self.groups = dict(groups)
        self.interval = interval
        self.peak_process: dict[str, int] = {g: 0 for g in self.groups}
        self.peak_total: dict[str, int] = {g: 0 for g in self.groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _sample(self) -> None:
        for label, pids in self.groups.items():
            total = 0
            for pid in pids():
                try:
                    rss = self._psutil.Process(pid).memory_info().rss
                except (self._psutil.Error, OSError):
                    continue
                total += rss
                self.peak_process[label] = max(self.peak_process[label], rss)
            self.peak_total[label] = max(self.peak_total[label], total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def mib(self, label: str) -> dict[str, float]:
        return {"peak_process_mib": round(self.peak_process[label] / MiB, 1),
                "peak_total_mib": round(self.peak_total[label] / MiB, 1)}


def reset_peak_rss(pids: Iterable[int]) -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of ``pids`` (Linux; best effort)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def peak_rss_mib(pid: int) -> float | None:
    """``VmHWM``: the exact peak RSS since start or the last ``reset_peak_rss``."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a gunicorn master and its workers)."""
    import psutil
    try:
        proc = psutil.Process(pid)
        return [pid] + [child.pid for child in proc.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes ``pids`` (gone ones: 0)."""
    import psutil
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def cpu_per_call(call: Callable[[], object], n: int, sidecar: list[int],
                 backend: list[int]) -> dict[str, float]:
    """µs per call of ``call`` (``n`` times, after ``n/10`` warm-up calls):
    wall time and CPU of this process, the sidecar's and the backend server's."""
    for _ in range(max(1, n // 10)):
        call()
    s0, b0, c0 = cpu_seconds(sidecar), cpu_seconds(backend), time.process_time()
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    wall = time.perf_counter() - t0
    used = {"wall": wall, "client": time.process_time() - c0,
            "sidecar": cpu_seconds(sidecar) - s0, "backend": cpu_seconds(backend) - b0}
    return {k: v * 1e6 / n for k, v in used.items()}


def sidecar_pids(sidecar: Any) -> list[int]:
    return process_tree(sidecar.proc.pid) if sidecar.proc is not None else []


def worker_pids(sidecar: Any) -> list[int]:
    return sidecar_pids(sidecar)[1:]


# -- data -------------------------------------------------------------------------------

class GeneratedStream:
    """A readable file of ``size`` bytes made on the fly (never held in memory)."""

    def __init__(self, size: int, block: int = MiB) -> None:
        self.size = size
        self._pos = 0
        self._pattern = bytes(range(256)) * (block // 256)

    def read(self, n: int = -1) -> bytes:
        left = self.size - self._pos
        n = left if n is None or n < 0 else min(n, left)
        self._pos += n
        block = len(self._pattern)
        if n <= block:
            return self._pattern[:n]
        return self._pattern * (n // block) + self._pattern[:n % block]  # full reads

    def readable(self) -> bool:
        return True


@dataclass
class SeededObject:
    """A large object put in place by boto3 under the s3-buffered-lww sidecar's prefix."""

    sidecar: Any
    fs: Any      # StateFS on that sidecar
    s3: Any      # boto3 client on the same server
    bucket: str
    key: str     # the store key (prefix applied)

    def cleanup(self) -> None:
        self.fs.close()
        self.s3.delete_object(Bucket=self.bucket, Key=self.key)


def seed_s3_object(ctx: Context, path: str, size: int) -> SeededObject:
    """Put ``size`` generated bytes at mount ``path`` with the backend's own client,
    so reading it back measures only the read path."""
    from tests.connectors import BUCKET
    from tests.harness.moto_s3 import s3_client
    from vfs_state import StateFS
    sidecar = ctx.pool.sidecar("s3-buffered-lww")
    key = sidecar._env["STATE_PREFIX"].strip("/") + path
    s3 = s3_client(ctx.pool.server("s3"))
    s3.upload_fileobj(GeneratedStream(size), BUCKET, key)
    return SeededObject(sidecar, StateFS(sidecar.socket_path), s3, BUCKET, key)


def chunks(size: int, block: int = MiB) -> Iterator[bytes]:
    """``size`` bytes as ``block``-sized pieces from a generator."""
    stream = GeneratedStream(size, block)
    while piece := stream.read(block):
        yield piece


# -- shim -------------------------------------------------------------------------------

def shim_api() -> tuple[Any, str]:
    """``(module with install/uninstall, "")`` or ``(None, reason)`` when not there yet."""
    try:
        import vfs_state
        if hasattr(vfs_state, "install") and hasattr(vfs_state, "uninstall"):
            return vfs_state, ""
        import vfs_state.shim as shim
        if hasattr(shim, "install") and hasattr(shim, "uninstall"):
            return shim, ""
        return None, "vfs_state.shim has no install()"
    except Exception as exc:  # noqa: BLE001 - a shim under construction may fail anyhow
        return None, f"shim not importable: {type(exc).__name__}: {exc}"


@contextmanager
def shim_installed(mounts: list[Any]) -> Iterator[Any]:
    """Install the shim for ``mounts`` (``vfs_state.Mount``); yields None if absent."""
    api, _ = shim_api()
    if api is None:
        yield None
        return
    api.install(mounts)
    try:
        yield api
    finally:
        api.uninstall()


# -- output ------------------------------------------------------------------------------

def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def spread(s: Mapping[str, Any] | None, digits: int = 1) -> str:
    """``median [p25-p75]`` for a ``stats`` dict."""
    if not s or s.get("median") is None:
        return NA
    return (f"{s['median']:,.{digits}f} [{s['p25']:,.{digits}f}-"
            f"{s['p75']:,.{digits}f}]")


#: Tables printed since ``capture_tables()`` (for the Markdown summary).
_captured: list[str] | None = None


def capture_tables() -> list[str]:
    global _captured
    _captured = []
    return _captured


def table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    """Print a plain-text table (also valid Markdown); kept when capturing."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(  # noqa: E731
        v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"
    out = [f"\n### {title}\n", line(headers),
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    text = "\n".join(out)
    print(text, flush=True)
    if _captured is not None:
        _captured.append(text)
    return text


def machine() -> dict[str, Any]:
    import psutil
    load = os.getloadavg()
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
            "loadavg_at_start": [round(x, 2) for x in load],
            "processor": platform.processor() or platform.machine()}


def write_json(name: str, data: Mapping[str, Any]) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)  # insertion order: tables follow it
        f.write("\n")
    return path


def read_json(name: str) -> dict[str, Any] | None:
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
