"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--size 1GiB]``.

Runs the benchmarks of issue 6 against real backends and gunicorn sidecars
(started here, on free ports and private dirs), prints one table per
benchmark, writes ``benchmarks/results/<name>.json``, the chart
``benchmarks/results/small_objects.png`` and the budget table
``benchmarks/results/budgets.md``. Run from the repository root.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.common import Context, GiB, KiB, MiB, Options, log, machine, write_json  # noqa: E402

#: Run order: cheap and latency-sensitive first, memory- and fill-heavy last.
BENCHMARKS = ("shim_tax", "small_objects", "transport_layers", "concurrency", "cas",
              "ranged_read", "large_objects", "listing", "profile", "experiments",
              "request_economy", "startup", "hot_path", "sidecar_layers", "client_layers")


def parse_size(text: str) -> int:
    units = {"k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB, "": 1, "b": 1}
    number = text.strip().lower().rstrip()
    digits = number.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(float(digits) * units[number[len(digits):].strip()])


def run_selected(ctx: Context, selected: list[str], run_info: dict, failed: list[str]) -> None:
    """One pass over the selected benchmarks; each writes its JSON as it ends."""
    for name in [n for n in BENCHMARKS if n in selected]:
        log(f"== {name}")
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            result = module.run(ctx)
            module.report(result)
        except Exception:  # noqa: BLE001 - one broken benchmark must not stop the rest
            traceback.print_exc()
            failed.append(name)
            run_info["benchmarks"][name] = "failed"
            continue
        seconds = round(time.perf_counter() - start, 1)
        result = {"run": {k: run_info[k] for k in ("machine", "quick", "started", "argv")},
                  "seconds": seconds, **result}
        path = write_json(name, result)
        run_info["benchmarks"][name] = seconds
        log(f"== {name}: {seconds}s, wrote {os.path.relpath(path, ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: few repetitions, 64 MiB large objects, 100k Redis keys")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only these (repeat or comma-separate): {', '.join(BENCHMARKS)}")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="large-object size (default 1GiB, --quick 64MiB)")
    parser.add_argument("--redis-keys", type=int, default=None,
                        help="unrelated Redis keys for the listing (default 1000000, quick 100000)")
    parser.add_argument("--runs", type=int, default=1, metavar="N",
                        help="repeat the selection N times; budget_spread.md has each run's value")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    selected = [n for item in args.only for n in item.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in selected if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    options = Options(quick=args.quick,
                      large_size=args.size or (64 * MiB if args.quick else GiB),
                      redis_unrelated=args.redis_keys or (100_000 if args.quick else 1_000_000))
    ctx = Context(options)
    run_info = {"machine": machine(), "argv": sys.argv[1:], "quick": options.quick,
                "large_size": options.large_size, "redis_unrelated": options.redis_unrelated,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "benchmarks": {}}
    failed: list[str] = []
    values, met = [], []
    from benchmarks import report
    try:
        for number in range(1, args.runs + 1):
            if args.runs > 1:
                log(f"==== run {number} of {args.runs}")
            run_selected(ctx, selected, run_info, failed)
            values.append(report.budget_values(selected))
            met.append(report.budget_met(selected))
    finally:
        ctx.close()
    from benchmarks import report
    report.finish(run_info)
    if args.runs > 1:
        report.spread(values, met)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
