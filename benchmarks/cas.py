"""CAS under contention: N processes x M ``retry_on_conflict`` increments of one key.

Every process runs ``retry_on_conflict(increment)`` M times, where
``increment`` reads the counter and writes it back plus one (the write
carries ``If-Match`` of the version read). Reported: lost updates (final
value short of N x M; must be 0), conflicts (attempts that got 412 and were
retried), attempts that gave up, and increments/s over the whole run.
"""
from __future__ import annotations

import multiprocessing
import time
from typing import Any

from benchmarks.common import Context, log, table

NAME = "cas"
CONNECTORS = ("local-buffered-cas", "redis-buffered-cas")
KEY = "/cas/counter"


def _worker(socket_path: str, increments: int, barrier: Any, out: Any) -> None:
    from vfs_state import StateFS, retry_on_conflict
    fs = StateFS(socket_path)
    calls = 0

    def increment() -> None:
        nonlocal calls
        calls += 1
        value = int(fs.readtext(KEY))
        fs.writetext(KEY, str(value + 1))

    barrier.wait()
    done = gave_up = 0
    for _ in range(increments):
        try:
            retry_on_conflict(increment, attempts=200, backoff=0.002, max_backoff=0.05)
            done += 1
        except FileExistsError:
            gave_up += 1
    out.put({"done": done, "gave_up": gave_up, "calls": calls})
    fs.close()


def measure(socket_path: str, processes: int, increments: int) -> dict[str, Any]:
    from vfs_state import StateFS
    fs = StateFS(socket_path)
    fs.makedirs("/cas", recreate=True)
    fs.writetext(KEY, "0")
    mp = multiprocessing.get_context("fork")
    barrier, out = mp.Barrier(processes + 1), mp.Queue()
    children = [mp.Process(target=_worker, args=(socket_path, increments, barrier, out))
                for _ in range(processes)]
    for child in children:
        child.start()
    barrier.wait()
    start = time.perf_counter()
    results = [out.get(timeout=600) for _ in children]
    seconds = time.perf_counter() - start
    for child in children:
        child.join(30)
    final = int(fs.readtext(KEY))
    fs.close()
    done = sum(r["done"] for r in results)
    calls = sum(r["calls"] for r in results)
    return {"processes": processes, "increments_each": increments,
            "expected": processes * increments, "final": final,
            "lost_updates": done - final, "gave_up": sum(r["gave_up"] for r in results),
            "conflicts": calls - done, "attempts": calls,
            "conflicts_per_increment": round((calls - done) / max(done, 1), 2),
            "seconds": round(seconds, 2), "increments_per_s": round(done / seconds, 1)}


def run(ctx: Context) -> dict[str, Any]:
    processes, increments = (8, 200) if not ctx.quick else (4, 25)
    results: dict[str, Any] = {"connectors": {}}
    for connector in CONNECTORS:
        log(f"cas: {connector}, {processes} x {increments}")
        sidecar = ctx.pool.sidecar(connector)
        results["connectors"][connector] = measure(sidecar.socket_path, processes, increments)
    results["budgets"] = [
        {"budget": f"CAS lost updates, {c}", "limit": "== 0", "value": r["lost_updates"],
         "met": r["lost_updates"] == 0} for c, r in results["connectors"].items()]
    return results


def report(results: dict[str, Any]) -> None:
    rows = [[c, f"{r['processes']} x {r['increments_each']}", r["final"], r["lost_updates"],
             r["conflicts"], r["conflicts_per_increment"], r["gave_up"], r["increments_per_s"]]
            for c, r in results["connectors"].items()]
    table("CAS contention: one counter, retry_on_conflict increments",
          ["connector", "procs x incs", "final", "lost", "conflicts", "conflicts/inc",
           "gave up", "incs/s"], rows)
