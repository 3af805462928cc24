"""Per-layer profile: pyinstrument on the client, py-spy on the gunicorn workers.

Two workloads, each profiled on both sides at once:

* ``small``: 1 KiB read + write loops through the shim (``StateFS`` if the
  shim is absent) on the Redis and local sidecars;
* ``large read``: streaming one object (256 MiB; quick 64 MiB) through
  ``StateFS`` from the S3 sidecar.

Client time (pyinstrument, wall clock) and sidecar CPU samples (``py-spy
record --subprocesses`` on the gunicorn master, idle threads excluded) are
summed by layer (package of the frame; C calls count for their caller, socket
waits separately). Reports go to ``benchmarks/results/profile_*.txt``
(py-spy's collapsed stacks to the temp dir, path in the JSON),
plus one ``py-spy dump`` of a busy worker. Needs ``pyinstrument`` and
``py-spy`` (skipped with a note otherwise).
"""
from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    Context,
    KiB,
    MiB,
    log,
    seed_s3_object,
    shim_installed,
    sidecar_pids,
    table,
)

NAME = "profile"
LAYERS = (  # first match wins: (path fragment, layer)
    ("vfs_state/shim/", "vfs_state shim"), ("vfs_state/transport", "vfs_state transport"),
    ("vfs_state/", "vfs_state StateFS/client"), ("/fs/", "pyfilesystem2 (fs)"),
    ("http/client", "http.client"), ("gunicorn/", "gunicorn"), ("werkzeug/", "werkzeug"),
    ("flask/", "flask"), ("sidecars/app", "sidecar core"), ("sidecars/body", "sidecar core"),
    ("sidecars/keys", "sidecar core"), ("sidecars/", "backend adapter"),
    ("redis/", "redis-py"), ("botocore/", "boto3/botocore"), ("boto3/", "boto3/botocore"),
    ("s3transfer/", "boto3/botocore"), ("urllib3/", "urllib3"), ("json/", "json"),
    ("email/", "email (header dates)"), ("socket.py", "socket"), ("selectors", "socket"),
    ("threading", "threads/locks"), ("concurrent/", "threads/locks"), ("queue.py", "threads/locks"),
    ("logging/", "logging"), ("tempfile", "tempfile spool"))
WAITS = {"recv_into", "recv", "sendall", "send", "connect", "select", "poll", "accept"}


GENERIC = {"stdlib/other", "socket", "threads/locks", "json", "email (header dates)",
           "logging", "tempfile spool"}


def layer_of(path: str) -> str:
    path = path.replace("\\", "/")
    for fragment, layer in LAYERS:
        if fragment in path:
            return layer
    return "stdlib/other"


def charged(path: str, owner: str) -> str:
    """Stdlib frames are charged to the nearest component that called them."""
    layer = layer_of(path)
    return owner if layer in GENERIC and owner not in GENERIC else layer


def tools() -> str:
    """Empty when both profilers are there, else what is missing."""
    missing = []
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        missing.append("pyinstrument")
    if not (shutil.which("py-spy") or os.path.exists(os.path.join(os.path.dirname(
            sys.executable), "py-spy"))):
        missing.append("py-spy")
    return ", ".join(missing)


def py_spy() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.path.exists(beside) else "py-spy"


def client_layers(session: Any) -> dict[str, float]:
    """pyinstrument self time by layer; C calls count for their Python caller."""
    totals: collections.Counter[str] = collections.Counter()

    def walk(frame: Any, owner: str) -> None:
        path = frame.file_path or ""
        builtin = not path or path.startswith("<")
        if builtin and frame.function.rsplit(".", 1)[-1] in WAITS:
            layer = "socket wait (sidecar + backend)"
        elif builtin:  # [self] or a C function: counts for its caller
            layer = owner
        else:
            layer = charged(path, owner)
        if not frame.children:
            totals[layer] += frame.time
        else:
            totals[layer] += max(0.0, frame.time - sum(c.time for c in frame.children))
        for child in frame.children:
            walk(child, layer)
    walk(session.root_frame(), "stdlib/other")
    total = sum(totals.values()) or 1.0
    return {k: round(100 * v / total, 1) for k, v in totals.most_common()}


def sidecar_layers(raw_path: str) -> tuple[dict[str, float], list[tuple[str, int]], int]:
    """py-spy raw output: samples by charged layer, top leaf functions, total."""
    layers: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():  # not a "stack count" sample line
                continue
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            if not frames:  # no Python stack in this sample (native or detached thread)
                continue
            layer = "stdlib/other"
            for frame in frames:  # root to leaf: the innermost component is charged
                layer = charged(frame[frame.rfind("(") + 1:].rsplit(":", 1)[0], layer)
            layers[layer] += int(count)
            leaves[frames[-1]] += int(count)
    total = sum(layers.values()) or 1
    return ({k: round(100 * v / total, 1) for k, v in layers.most_common()},
            leaves.most_common(12), total)


def profiled(name: str, sidecar: Any, work: Callable[[], int], seconds: float) -> dict[str, Any]:
    """Run ``work`` in a loop for ``seconds`` under pyinstrument while py-spy records."""
    from pyinstrument import Profiler
    # collapsed stacks (flamegraph.pl input) stay out of the results dir: they are large
    raw = os.path.join(tempfile.gettempdir(), f"vfs-bench-profile_{name}_sidecar.raw")
    spy = subprocess.Popen([py_spy(), "record", "--pid", str(sidecar.proc.pid),
                            "--subprocesses", "--duration", str(int(seconds) + 1), "--rate", "250",
                            "--format", "raw", "-o", raw, "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # let py-spy attach
    dump: list[str] = []
    timer = threading.Timer(seconds / 2, lambda: dump.append(_dump(sidecar)))
    timer.start()
    profiler = Profiler(interval=0.0005)
    ops, deadline = 0, time.perf_counter() + seconds
    profiler.start()
    while time.perf_counter() < deadline:
        ops += work()
    profiler.stop()
    timer.join()
    _, err = spy.communicate(timeout=60)
    with open(os.path.join(RESULTS_DIR, f"profile_{name}_client.txt"), "w") as f:
        f.write(profiler.output_text(unicode=True, color=False, show_all=False))
    with open(os.path.join(RESULTS_DIR, f"profile_{name}_sidecar_dump.txt"), "w") as f:
        f.write("".join(dump))
    result: dict[str, Any] = {"ops": ops, "seconds": seconds, "sidecar_raw": raw,
                              "client_layers_pct": client_layers(profiler.last_session)}
    if os.path.exists(raw):
        layers, leaves, samples = sidecar_layers(raw)
        result.update(sidecar_layers_pct=layers, sidecar_top_leaves=leaves,
                      sidecar_samples=samples)
    else:
        result["sidecar_error"] = err.decode()[-500:]
    return result


def _dump(sidecar: Any) -> str:
    out = []
    for pid in sidecar_pids(sidecar)[1:]:
        done = subprocess.run([py_spy(), "dump", "--pid", str(pid), "--nonblocking"],
                              capture_output=True, text=True, timeout=30)
        out.append(done.stdout + done.stderr)
    return "\n".join(out)


def small_work(ctx: Context, connector: str) -> tuple[Any, Callable[[], int], Any]:
    from vfs_state import StateFS
    from vfs_state.mounts import Mount
    sidecar = ctx.pool.sidecar(connector)
    mount = Mount(name="prof", path="/vfs-bench-prof", socket=sidecar.socket_path)
    data, fs = os.urandom(KiB), StateFS(sidecar.socket_path)
    installed = shim_installed([mount])
    shim = installed.__enter__()
    path = "/vfs-bench-prof/prof/k"

    def via_shim() -> int:
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            f.read()
        return 2

    def via_statefs() -> int:
        with fs.openbin("/prof/k", "w", create_parents=True) as f:
            f.write(data)
        fs.readbytes("/prof/k")
        return 2
    work = via_shim if shim is not None else via_statefs
    work()
    return sidecar, work, lambda: (installed.__exit__(None, None, None), fs.close())


def large_work(ctx: Context, size: int) -> tuple[Any, Callable[[], int], Any]:
    seeded = seed_s3_object(ctx, "/prof/large", size)

    def read() -> int:
        with seeded.fs.openbin("/prof/large") as f:
            while f.read(MiB):
                pass
        return 1
    return seeded.sidecar, read, seeded.cleanup


def run(ctx: Context) -> dict[str, Any]:
    missing = tools()
    if missing:
        log(f"profile: skipped, missing {missing}")
        return {"skipped": f"missing {missing} (pip install pyinstrument py-spy)"}
    seconds = 8.0 if not ctx.quick else 3.0
    results: dict[str, Any] = {"workloads": {}}
    jobs = [(f"small_{c.split('-')[0]}", lambda c=c: small_work(ctx, c))
            for c in ("redis-buffered-cas", "local-buffered-lww")]
    jobs.append(("large_read_s3", lambda: large_work(ctx, ctx.scale(256 * MiB, 64 * MiB))))
    for name, setup in jobs:
        log(f"profile: {name}")
        sidecar, work, cleanup = setup()
        try:
            results["workloads"][name] = profiled(name, sidecar, work, seconds)
        finally:
            cleanup()
    return results


def report(results: dict[str, Any]) -> None:
    if "skipped" in results:
        print(f"profile skipped: {results['skipped']}")
        return
    for name, r in results["workloads"].items():
        side = r.get("sidecar_layers_pct", {})
        keys = sorted(set(r["client_layers_pct"]) | set(side),
                      key=lambda k: -(r["client_layers_pct"].get(k, 0) + side.get(k, 0)))
        table(f"Profile {name}: share of client wall time / sidecar CPU samples, %",
              ["layer", "client %", "sidecar %"],
              [[k, r["client_layers_pct"].get(k, ""), side.get(k, "")] for k in keys])
