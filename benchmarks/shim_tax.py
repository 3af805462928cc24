"""Shim tax on paths outside every mount: ``open()`` + ``read()`` and ``os.stat``.

A real 1 KiB file in a temp directory is opened and read, and stat'ed, in
tight loops; batches with the shim installed (two mounts, elsewhere) and
without alternate, so drift on a busy machine hits both alike. The tax is
median(installed) - median(not installed), in µs per call. No sidecar is
needed: a path outside the mounts never reaches one.
"""
from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

from benchmarks.common import NA, Context, KiB, per_call, shim_api, shim_installed, stats, table

NAME = "shim_tax"
BUDGET_US = 3.0
ORDER = ("open(rb)+read", "open(r)+read (text)", "os.stat", "os.path.exists", "Path.read_bytes")


def calls(path: str) -> dict[str, Callable[[], object]]:
    def open_read() -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def open_read_text() -> str:
        with open(path, encoding="latin-1") as f:
            return f.read()

    return {"open(rb)+read": open_read, "open(r)+read (text)": open_read_text,
            "os.stat": lambda: os.stat(path), "os.path.exists": lambda: os.path.exists(path),
            "Path.read_bytes": lambda: pathlib.Path(path).read_bytes()}


def run(ctx: Context) -> dict[str, Any]:
    from vfs_state.mounts import Mount
    api, reason = shim_api()
    directory = tempfile.mkdtemp(prefix="vfs-bench-tax-")
    path = os.path.join(directory, "real.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(KiB))
    mounts = [Mount(name="a", path="/vfs-bench-tax/a", socket=os.path.join(directory, "a.sock")),
              Mount(name="b", path="/vfs-bench-tax/b", socket=os.path.join(directory, "b.sock"))]
    batches, loop = ctx.scale(30, 6), ctx.scale(2000, 500)
    samples: dict[str, dict[str, list[float]]] = {n: {"off": [], "on": []} for n in calls(path)}
    for _ in range(batches):
        for name, fn in calls(path).items():
            samples[name]["off"].append(per_call(fn, loop))
        if api is not None:
            with shim_installed(mounts):
                assert api.is_installed() if hasattr(api, "is_installed") else True
                for name, fn in calls(path).items():
                    samples[name]["on"].append(per_call(fn, loop))
    os.unlink(path)
    os.rmdir(directory)
    results: dict[str, Any] = {"shim": reason or "installed", "calls_per_batch": loop,
                               "batches": batches, "ops": {}}
    for name, s in samples.items():
        off, on = stats(s["off"], 1e6, 2), stats(s["on"], 1e6, 2) if s["on"] else None
        tax = round(on["median"] - off["median"], 2) if on else None
        results["ops"][name] = {"not_installed_us": off, "installed_us": on, "tax_us": tax}
    results["budgets"] = [
        {"budget": f"shim tax, {n}", "limit": f"< {BUDGET_US} µs", "value": r["tax_us"],
         "met": None if r["tax_us"] is None else r["tax_us"] < BUDGET_US}
        for n, r in results["ops"].items() if n in ("open(rb)+read", "os.stat")]
    return results


def report(results: dict[str, Any]) -> None:
    table("Shim tax on non-mount paths: µs per call, median [p25-p75]",
          ["call", "not installed", "installed", "tax µs"],
          [[n, _fmt(r["not_installed_us"]), _fmt(r["installed_us"]),
            NA if r["tax_us"] is None else r["tax_us"]]
           for n, r in sorted(results["ops"].items(), key=lambda kv: ORDER.index(kv[0])
                              if kv[0] in ORDER else len(ORDER))])


def _fmt(s: dict[str, Any] | None) -> str:
    if not s:
        return NA
    return f"{s['median']:.2f} [{s['p25']:.2f}-{s['p75']:.2f}]"
