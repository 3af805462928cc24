"""Sidecar CPU per request of two source trees side by side: before and after a change.

Two sidecars of one connector run at once on the same backend server, one
from this tree and one from ``--old`` (another checkout, such as the main
branch). The same calls go to each in turn: a loop of ``--calls`` per call
and sidecar, for ``--rounds`` rounds, the order flipped every round. Each
sidecar's CPU per call comes from its gunicorn processes (``cpu_per_call``).
Both run in the same minutes, so load from other work on the machine hits
them alike, and the ratio new/old within a round holds up when the absolute
figures drift (CPU per call grows with the machine's load).

``python -m benchmarks.sidecar_ab --old /path/to/checkout [--calls 2000] [--rounds 4]``;
not part of ``python -m benchmarks`` (it needs the second tree).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.common import Context, KiB, Options, cpu_per_call, log, process_tree, table

CONNECTOR = "redis-buffered-cas"
KEY = "ab/k"
CALLS = ("raw socket GET /healthz", "raw socket GET /keys/k", "StateFS.readbytes")


def old_sidecar(root: str, env: dict[str, str]) -> Any:
    """A sidecar whose code comes from the tree at ``root``."""
    from tests.harness.sidecar import Sidecar

    class OldSidecar(Sidecar):
        def env(self) -> dict[str, str]:
            environ = super().env()
            environ["PYTHONPATH"] = os.path.abspath(root)
            return environ

    return OldSidecar(CONNECTOR, env).start()


def calls_for(sidecar: Any) -> tuple[dict[str, Callable[[], object]], list[Callable[[], None]]]:
    from benchmarks.transport_layers import RawHttp
    from vfs_state import StateFS
    fs = StateFS(sidecar.socket_path)
    with fs.openbin("/" + KEY, "w", create_parents=True) as f:
        f.write(os.urandom(KiB))
    health, raw = RawHttp(sidecar.socket_path, "/healthz"), RawHttp(sidecar.socket_path,
                                                                     "/keys/" + KEY)
    calls = {"raw socket GET /healthz": health.get, "raw socket GET /keys/k": raw.get,
             "StateFS.readbytes": lambda: fs.readbytes("/" + KEY)}
    return calls, [health.close, raw.close, fs.close]


def measure(ctx: Context, old_root: str, n: int, rounds: int) -> dict[str, Any]:
    from benchmarks.common import sidecar_pids
    from tests.harness.sidecar import Sidecar
    backend = process_tree(ctx.pool.server("redis").proc.pid)
    new = Sidecar(CONNECTOR, ctx.pool.env(CONNECTOR, "ab-new")).start()
    old = old_sidecar(old_root, ctx.pool.env(CONNECTOR, "ab-old"))
    sides = {"old": old, "new": new}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {"old": {}, "new": {}}
    closers: list[Callable[[], None]] = []
    try:
        calls = {}
        for side, sidecar in sides.items():
            calls[side], close = calls_for(sidecar)
            closers.extend(close)
        for r in range(rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for name in CALLS:
                for side in order:
                    used = cpu_per_call(calls[side][name], n, sidecar_pids(sides[side]), backend)
                    samples[side].setdefault(name, []).append(used)
            log(f"sidecar_ab: round {r + 1} of {rounds}")
    finally:
        for close in closers:
            close()
        old.close()
        new.close()
    return {"calls_per_loop": n, "rounds": rounds, "old_tree": os.path.abspath(old_root),
            "samples": samples}


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def report(results: dict[str, Any]) -> None:
    s = results["samples"]
    rows = []
    for name in CALLS:
        old = [x["sidecar"] for x in s["old"][name]]
        new = [x["sidecar"] for x in s["new"][name]]
        ratios = [b / a for a, b in zip(old, new, strict=True) if a]
        rows.append([name, _spread(old), _spread(new),
                     f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]",
                     _spread([x["client"] for x in s["new"][name]]),
                     _spread([x["backend"] for x in s["new"][name]])])
    table(f"Sidecar CPU per call, µs, median [min-max] of {results['rounds']} rounds of "
          f"{results['calls_per_loop']} (old: {results['old_tree']})",
          ["call", "sidecar old", "sidecar new", "new / old (per round)", "client (new)",
           "redis-server (new)"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sidecar_ab", description=__doc__)
    parser.add_argument("--old", required=True, help="the other source tree (a checkout)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.old, "sidecars")):
        parser.error(f"{args.old} has no sidecars/ package")
    ctx = Context(Options())
    try:
        report(measure(ctx, args.old, args.calls, args.rounds))
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
