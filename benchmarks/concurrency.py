"""Aggregate small-op throughput of 1, 2, 4 and 8 client processes on one sidecar.

Each client process (forked) alternates a 1 KiB write and a read of its own
key through ``StateFS`` (one round trip each, as through the shim) for a
fixed time after a common start barrier. Reported: aggregate ops/s (median
of repeats), the speed-up over one process, and where the CPU went (client
processes vs the sidecar's gunicorn processes, CPU ms per op), which says
what bounds the curve on a small machine.
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from typing import Any

from benchmarks.common import Context, KiB, cpu_seconds, log, process_tree, sidecar_pids, table

NAME = "concurrency"
CONNECTORS = ("local-buffered-cas", "redis-buffered-cas")
PROCESSES = (1, 2, 4, 8)
BUDGET_SPEEDUP_4 = 1.8


def _client(socket_path: str, index: int, seconds: float, barrier: Any, out: Any) -> None:
    from vfs_state import StateFS
    fs = StateFS(socket_path)
    path, data = f"/conc/p{index}", os.urandom(KiB)

    def write() -> None:
        with fs.openbin(path, "w", create_parents=True) as f:
            f.write(data)

    write()
    fs.readbytes(path)
    barrier.wait()
    cpu0, start, ops = time.process_time(), time.perf_counter(), 0
    deadline = start + seconds
    while time.perf_counter() < deadline:
        write()
        fs.readbytes(path)
        ops += 2
    out.put((ops, time.perf_counter() - start, time.process_time() - cpu0))
    fs.close()


def one_run(socket_path: str, pids: list[int], processes: int, seconds: float
            ) -> dict[str, float]:
    mp = multiprocessing.get_context("fork")
    barrier, out = mp.Barrier(processes + 1), mp.Queue()
    children = [mp.Process(target=_client, args=(socket_path, i, seconds, barrier, out))
                for i in range(processes)]
    for child in children:
        child.start()
    barrier.wait()
    sidecar_cpu0 = cpu_seconds(pids)
    results = [out.get(timeout=seconds + 60) for _ in children]
    sidecar_cpu = cpu_seconds(pids) - sidecar_cpu0
    for child in children:
        child.join(30)
    ops = sum(r[0] for r in results)
    return {"ops_per_s": sum(r[0] / r[1] for r in results), "ops": ops,
            "client_cpu_ms_per_op": 1000 * sum(r[2] for r in results) / ops,
            "sidecar_cpu_ms_per_op": 1000 * sidecar_cpu / ops}


def measure(ctx: Context, connector: str) -> dict[str, Any]:
    sidecar = ctx.pool.sidecar(connector)
    pids = sidecar_pids(sidecar)
    seconds, repeats = (2.0, 3) if not ctx.quick else (0.7, 1)
    rows: dict[str, Any] = {}
    for n in PROCESSES:
        runs = [one_run(sidecar.socket_path, pids, n, seconds) for _ in range(repeats)]
        rate = [r["ops_per_s"] for r in runs]
        rows[str(n)] = {
            "ops_per_s_median": round(statistics.median(rate), 1),
            "ops_per_s_min": round(min(rate), 1), "ops_per_s_max": round(max(rate), 1),
            "client_cpu_ms_per_op": round(statistics.median(
                r["client_cpu_ms_per_op"] for r in runs), 3),
            "sidecar_cpu_ms_per_op": round(statistics.median(
                r["sidecar_cpu_ms_per_op"] for r in runs), 3),
            "repeats": repeats, "seconds_each": seconds}
    one = rows["1"]["ops_per_s_median"]
    for n in PROCESSES:
        rows[str(n)]["speedup"] = round(rows[str(n)]["ops_per_s_median"] / one, 2)
    return {"sidecar_workers": sidecar.workers, "sidecar_pids": len(process_tree(
        sidecar.proc.pid)), "processes": rows}


def run(ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {"cpus": os.cpu_count(), "ops": "1 KiB write + read, alternating",
                               "connectors": {}}
    for connector in CONNECTORS:
        log(f"concurrency: {connector}")
        results["connectors"][connector] = measure(ctx, connector)
    results["budgets"] = [
        {"budget": f"4 processes / 1 process, {c}", "limit": f">= {BUDGET_SPEEDUP_4}x",
         "value": e["processes"]["4"]["speedup"],
         "met": e["processes"]["4"]["speedup"] >= BUDGET_SPEEDUP_4}
        for c, e in results["connectors"].items()]
    return results


def report(results: dict[str, Any]) -> None:
    rows = []
    for connector, entry in results["connectors"].items():
        for n, r in entry["processes"].items():
            rows.append([connector, n, f"{r['ops_per_s_median']:,.0f} "
                         f"[{r['ops_per_s_min']:,.0f}-{r['ops_per_s_max']:,.0f}]",
                         r["speedup"], r["client_cpu_ms_per_op"], r["sidecar_cpu_ms_per_op"]])
    table("Concurrency: aggregate small ops/s, median [min-max]",
          ["connector", "processes", "ops/s", "x one", "client CPU ms/op",
           "sidecar CPU ms/op"], rows)
