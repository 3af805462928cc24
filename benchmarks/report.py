"""Summary of the stored results: budget table, all tables in Markdown, the chart.

``python -m benchmarks`` calls ``finish()`` at the end; ``python -m
benchmarks.report`` rebuilds ``benchmarks/results/summary.md``,
``budgets.md`` and ``small_objects.png`` from the JSON files alone.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from typing import Any

from benchmarks.common import NA, RESULTS_DIR, capture_tables, fmt, read_json, table, write_json

ORDER = ("small_objects", "transport_layers", "concurrency", "large_objects", "ranged_read",
         "listing", "cas", "shim_tax", "profile", "experiments", "startup", "hot_path",
         "sidecar_layers", "client_layers", "request_economy")


Values = dict[str, tuple[str, float | None]]  # budget -> (limit, measured)


def budget_rows() -> list[list[Any]]:
    rows = []
    for name in ORDER:
        data = read_json(name)
        for b in (data or {}).get("budgets", []):
            met = NA if b["met"] is None else ("met" if b["met"] else "NOT MET")
            rows.append([b["budget"], b["limit"], fmt(b["value"], 2), met,
                         "quick" if data["run"]["quick"] else "full"])
    return rows


def budget_values(names: list[str]) -> Values:
    """This run's budgets of the benchmarks ``names``: budget -> (limit, value)."""
    values: Values = {}
    for name in ORDER:
        data = read_json(name) if name in names else None
        for b in (data or {}).get("budgets", []):
            values[b["budget"]] = (b["limit"], b["value"])
    return values


def spread(runs: list[Values], met: list[dict[str, bool | None]]) -> str:
    """Budgets over repeated runs: each run's value and in how many runs it was met.

    A budget that flips between runs on a shared machine is visible here at
    once, instead of being read off whichever run happened to be last.
    """
    budgets = list(dict.fromkeys(b for run in runs for b in run))
    rows = []
    for budget in budgets:
        limit = next(run[budget][0] for run in runs if budget in run)
        values = [fmt(run[budget][1], 2) if budget in run else NA for run in runs]
        passed = [m.get(budget) for m in met]
        counted = [p for p in passed if p is not None]
        status = f"{sum(counted)}/{len(counted)}" if counted else NA
        rows.append([budget, limit, " / ".join(values), status])
    captured = capture_tables()
    table(f"Budgets over {len(runs)} runs (each run's value; runs met)",
          ["budget", "limit", "measured per run", "met"], rows)
    text = captured[0]
    with open(os.path.join(RESULTS_DIR, "budget_spread.md"), "w") as f:
        f.write(text.lstrip() + "\n")
    return text


def budget_met(names: list[str]) -> dict[str, bool | None]:
    return {b["budget"]: b["met"] for name in ORDER if name in names
            for b in (read_json(name) or {}).get("budgets", [])}


def chart() -> str | None:
    """Small-object latency (shim / StateFS / direct) and shim/direct ratio per connector."""
    data = read_json("small_objects")
    if not data:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.small_objects import ordered
    connectors = ordered(data)
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    width = 0.27
    for ax, op in zip(axes[:2], ("read", "write"), strict=True):
        for i, variant in enumerate(("shim", "statefs", "direct")):
            medians, lows, highs = [], [], []
            for c in connectors:
                s = data["connectors"][c]["ops"][op].get(variant) or {}
                m = s.get("median") or 0
                medians.append(m / 1000)
                lows.append((m - s.get("p25", m)) / 1000)
                highs.append((s.get("p75", m) - m) / 1000)
            xs = [x + (i - 1) * width for x in range(len(connectors))]
            ax.bar(xs, medians, width, yerr=[lows, highs], capsize=2,
                   label={"statefs": "StateFS"}.get(variant, variant))
        ax.set_yscale("log")
        ax.set_ylabel("ms per call (median, p25-p75)")
        ax.set_title(f"1 KiB {op}")
        ax.set_xticks(range(len(connectors)), connectors, rotation=40, ha="right", fontsize=8)
        ax.legend()
    ax = axes[2]
    for i, op in enumerate(("read", "write", "stat", "listdir")):
        values = [data["connectors"][c]["ops"][op]["ratio_shim_direct"] or 0 for c in connectors]
        ax.bar([x + (i - 1.5) * 0.2 for x in range(len(connectors))], values, 0.2, label=op)
    for limit, style in ((3.0, "--"), (1.15, ":")):
        ax.axhline(limit, color="black", linestyle=style, linewidth=1,
                   label=f"budget {limit}x" + (" (Redis, NATS)" if limit == 3 else " (S3, GCS)"))
    ax.set_yscale("log")
    ax.set_title("shim / direct client (median ratio)")
    ax.set_xticks(range(len(connectors)), connectors, rotation=40, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    note = "quick run" if data["run"]["quick"] else "full run"
    fig.suptitle(f"vfs-state small objects ({note}, {data['run']['started']}, "
                 f"{data['run']['machine']['cpus']} CPUs, shared machine)")
    fig.tight_layout()
    path = os.path.join(RESULTS_DIR, "small_objects.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary() -> str:
    """Every stored result's tables plus the budget table, as Markdown."""
    tables = capture_tables()
    parts = []
    for name in ORDER:
        data = read_json(name)
        if not data:
            continue
        run = data["run"]
        parts.append(f"\n## {name}\n\n{'quick' if run['quick'] else 'full'} run started "
                     f"{run['started']}, {data['seconds']} s\n")
        module = importlib.import_module(f"benchmarks.{name}")
        del tables[:]
        with contextlib.redirect_stdout(io.StringIO()):
            module.report(data)
        parts.extend(tables)
    del tables[:]
    table("Budgets (issue 6)", ["budget", "limit", "measured", "status", "run"], budget_rows())
    budgets = tables[0]
    with open(os.path.join(RESULTS_DIR, "budgets.md"), "w") as f:
        f.write(budgets.lstrip() + "\n")
    text = "# Benchmark summary\n" + budgets + "\n" + "\n".join(parts) + "\n"
    with open(os.path.join(RESULTS_DIR, "summary.md"), "w") as f:
        f.write(text)
    return text


def finish(run_info: dict[str, Any]) -> None:
    write_json("run", run_info)
    try:
        path = chart()
        if path:
            print(f"chart: {os.path.relpath(path)}")
    except ImportError as exc:
        print(f"no chart ({exc}); pip install matplotlib", file=sys.stderr)
    print("\n# Budgets, from every stored result (see the run column)")
    summary()
    print(f"\nwrote {os.path.relpath(os.path.join(RESULTS_DIR, 'summary.md'))}")


if __name__ == "__main__":
    chart()
    summary()
