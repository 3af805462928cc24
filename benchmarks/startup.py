"""Process start with and without ``VFS_STATE_MOUNTS``: what the start-up hook costs.

``python -c pass`` is started ``--runs`` times each way, interleaved, from
this interpreter (the project's venv, so the ``.pth`` hook is there). The
figures are the median and p25-p75 of the wall time and of the child's CPU
time (``os.wait4``; on a shared machine CPU time is the steadier one), and
the difference of the medians is the hook's cost. Bytecode is written on
the first run (as an installed package has it), so source compilation is not
counted. The mount's sidecar need not run: activation checks the mounts and
patches, it sends no request.

``python -m benchmarks.startup [--runs 40]``; part of ``python -m benchmarks``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.common import ROOT, Context, log, table

NAME = "startup"
VARIANTS = ("without mounts", "with VFS_STATE_MOUNTS")
BUDGET_MS = 60


def one_start(env: dict[str, str]) -> tuple[float, float]:
    """(wall, child CPU) seconds of one ``python -c pass``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "pass"], env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"python -c pass exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(runs: int) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("VFS_STATE_MOUNTS", "ASYA_STATE_PROXY_MOUNTS", "VFS_STATE_ON_ERROR",
                         "PYTHONDONTWRITEBYTECODE")}
    base["PYTHONPATH"] = ROOT  # this checkout's code, as the rest of the suite
    where = tempfile.mkdtemp(prefix="vfs-startup-")
    mounts = f"bench:{where}/mnt:socket={where}/sidecar.sock"
    envs = {VARIANTS[0]: base, VARIANTS[1]: {**base, "VFS_STATE_MOUNTS": mounts}}
    samples: dict[str, dict[str, list[float]]] = {v: {"wall": [], "cpu": []} for v in VARIANTS}
    for name in VARIANTS:  # warm the page cache and write .pyc files, as an install has
        one_start(envs[name])
    for i in range(runs):
        for name in (VARIANTS if i % 2 == 0 else VARIANTS[::-1]):
            wall, cpu = one_start(envs[name])
            samples[name]["wall"].append(wall * 1e3)
            samples[name]["cpu"].append(cpu * 1e3)
    out: dict[str, Any] = {"runs": runs, "ms": {}}
    for name, kinds in samples.items():
        out["ms"][name] = {}
        for kind, values in kinds.items():
            q = statistics.quantiles(values, n=4, method="inclusive")
            out["ms"][name][kind] = {"median": round(statistics.median(values), 1),
                                     "p25": round(q[0], 1), "p75": round(q[2], 1)}
    out["extra_ms"] = {kind: round(out["ms"][VARIANTS[1]][kind]["median"]
                                   - out["ms"][VARIANTS[0]][kind]["median"], 1)
                       for kind in ("wall", "cpu")}
    return out


def run(ctx: Context) -> dict[str, Any]:
    log("startup: python -c pass with and without VFS_STATE_MOUNTS")
    results = measure(ctx.scale(40, 10))
    extra = results["extra_ms"]["cpu"]
    results["budgets"] = [{"budget": "process start with VFS_STATE_MOUNTS, extra CPU",
                           "limit": f"<= {BUDGET_MS} ms", "value": extra,
                           "met": extra <= BUDGET_MS}]
    return results


def report(results: dict[str, Any]) -> None:
    def cell(v: dict[str, float]) -> str:
        return f"{v['median']:.1f} [{v['p25']:.1f}-{v['p75']:.1f}]"

    rows = [[name, cell(results["ms"][name]["wall"]), cell(results["ms"][name]["cpu"])]
            for name in VARIANTS]
    rows.append(["extra with mounts", results["extra_ms"]["wall"], results["extra_ms"]["cpu"]])
    table(f"Process start, python -c pass, {results['runs']} runs each: ms, median [p25-p75]",
          ["variant", "wall", "CPU"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    report(measure(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
