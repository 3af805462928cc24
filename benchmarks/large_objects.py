"""Large objects (1 GiB; ``--size``; ``--quick`` 64 MiB): throughput and peak memory.

Through ``StateFS`` to moto S3 and to a local directory, in both write
modes (buffered: spool to disk, one PUT with ``Content-Length``;
passthrough: chunked PUT as you write), each followed by a read of the
object. Baseline: boto3 ``upload_fileobj`` and a streamed ``get_object``
against the same moto server. Each transfer runs in a fresh child process
(``benchmarks._transfer``) so its peak RSS is the client's alone; the
sidecar's gunicorn processes are watched at the same time (kernel peak
mark ``VmHWM`` per process, reset before each transfer, and a sampled sum).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from benchmarks.common import (
    ROOT,
    Context,
    MiB,
    RssSampler,
    log,
    peak_rss_mib,
    ratio,
    reset_peak_rss,
    sidecar_pids,
    table,
)

NAME = "large_objects"
# (label, client, target, write mode, connector, operations). The read path does
# not depend on the write mode, so each target is read once (after passthrough).
VARIANTS = (
    ("StateFS buffered -> local", "statefs", "local", "buffered", "local-buffered-lww",
     ("write",)),
    ("StateFS passthrough -> local", "statefs", "local", "passthrough", "local-buffered-lww",
     ("write", "read")),
    ("StateFS buffered -> s3", "statefs", "s3", "buffered", "s3-buffered-lww", ("write",)),
    ("StateFS passthrough -> s3", "statefs", "s3", "passthrough", "s3-passthrough",
     ("write", "read")),
    ("boto3 -> s3 (upload_fileobj / streamed get_object)", "boto3", "s3", "-", None,
     ("write", "read")),
    # one part at a time, as the sidecar uploads: isolates the cost of concurrency
    ("boto3 -> s3, upload_fileobj max_concurrency=1", "boto3", "s3", "sequential", None,
     ("write",)),
)
BUDGET = {"write": 0.8, "read": 0.5, "sidecar_mib": 100, "client_mib": 64}


def transfer(spec: dict[str, Any], sidecar: Any | None) -> dict[str, Any]:
    """Run one child transfer while watching the sidecar's memory."""
    pids = sidecar_pids(sidecar) if sidecar is not None else []
    reset_peak_rss(pids)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-m", "benchmarks._transfer", json.dumps(spec)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    groups = {"sidecar": lambda: sidecar_pids(sidecar) if sidecar is not None else []}
    with RssSampler(groups) as sampler:
        out, err = child.communicate(timeout=1800)
    if child.returncode != 0:
        raise RuntimeError(f"transfer {spec} failed:\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["mib_per_s"] = round(spec["size"] / MiB / result["seconds"], 1)
    result["seconds"] = round(result["seconds"], 2)
    if sidecar is not None:
        peaks = {str(pid): peak_rss_mib(pid) for pid in pids}
        result["sidecar_peak_rss_mib"] = {"per_process": peaks,
                                          "max_process": max(v for v in peaks.values() if v),
                                          "sampled_sum": sampler.mib("sidecar")["peak_total_mib"]}
    return result


def run_variant(ctx: Context, label: str, client: str, target: str, mode: str,
                connector: str | None, ops: tuple[str, ...], size: int) -> dict[str, Any]:
    from tests.connectors import BUCKET
    entry: dict[str, Any] = {"client": client, "target": target, "write_mode": mode}
    spec: dict[str, Any] = {"client": client, "size": size}
    if client == "statefs":
        sidecar = ctx.pool.sidecar(connector)
        spec.update(socket=sidecar.socket_path, mode=mode, path=f"/large/{mode}-obj")
        entry["connector"] = connector
    else:
        sidecar = None
        spec.update(endpoint=ctx.pool.server("s3").endpoint, bucket=BUCKET,
                    key=f"bench-large/boto3-{os.getpid()}",
                    concurrency=1 if mode == "sequential" else None)
    for op in ops:
        log(f"large_objects: {label}: {op} {size // MiB} MiB")
        entry[op] = transfer(dict(spec, op=op), sidecar)
    _delete(ctx, spec, sidecar)
    return entry


def _delete(ctx: Context, spec: dict[str, Any], sidecar: Any | None) -> None:
    """Free the backend's memory (moto keeps objects in RAM)."""
    if sidecar is not None:
        from vfs_state import StateFS
        with StateFS(sidecar.socket_path) as fs:
            fs.remove(spec["path"])
    else:
        from tests.harness.moto_s3 import s3_client
        s3_client(ctx.pool.server("s3")).delete_object(Bucket=spec["bucket"], Key=spec["key"])


def run(ctx: Context) -> dict[str, Any]:
    size = ctx.options.large_size
    results: dict[str, Any] = {"size": size, "size_mib": size // MiB, "variants": {}}
    for label, client, target, mode, connector, ops in VARIANTS:
        results["variants"][label] = run_variant(ctx, label, client, target, mode, connector,
                                                 ops, size)
    results["budgets"] = budgets(results)
    return results


def budgets(results: dict[str, Any]) -> list[dict[str, Any]]:
    v = results["variants"]
    boto = v["boto3 -> s3 (upload_fileobj / streamed get_object)"]
    through = v["StateFS passthrough -> s3"]
    rows = [
        {"budget": "passthrough write / boto3 upload_fileobj (s3)",
         "limit": f">= {BUDGET['write']}x",
         "value": ratio(through["write"]["mib_per_s"], boto["write"]["mib_per_s"])},
        {"budget": "StateFS read / streamed get_object (s3)", "limit": f">= {BUDGET['read']}x",
         "value": ratio(through["read"]["mib_per_s"], boto["read"]["mib_per_s"])},
    ]
    for row, floor in zip(rows, (BUDGET["write"], BUDGET["read"]), strict=True):
        row["met"] = row["value"] is not None and row["value"] >= floor
    statefs = {k: e for k, e in v.items() if e["client"] == "statefs"}
    side = max(e[op]["sidecar_peak_rss_mib"]["max_process"] for e in statefs.values()
               for op in ("write", "read") if op in e)
    client = max(e[op]["peak_rss_mib"] for e in statefs.values()
                 for op in ("write", "read") if op in e)
    rows.append({"budget": "sidecar peak RSS (largest gunicorn process)",
                 "limit": f"< {BUDGET['sidecar_mib']} MiB", "value": side,
                 "met": side < BUDGET["sidecar_mib"]})
    rows.append({"budget": "client peak RSS (StateFS transfer process)",
                 "limit": f"< {BUDGET['client_mib']} MiB", "value": client,
                 "met": client < BUDGET["client_mib"]})
    return rows


def report(results: dict[str, Any]) -> None:
    rows = []
    labels = [v[0] for v in VARIANTS if v[0] in results["variants"]]
    for label in labels + [k for k in results["variants"] if k not in labels]:
        e = results["variants"][label]
        for op in [o for o in ("write", "read") if o in e]:
            r = e[op]
            side = r.get("sidecar_peak_rss_mib") or {}
            rows.append([label, op, r["mib_per_s"], r["seconds"], r["peak_rss_mib"],
                         r["rss_after_imports_mib"], side.get("max_process"),
                         side.get("sampled_sum")])
    table(f"Large objects ({results['size_mib']} MiB): MiB/s and peak RSS (MiB)",
          ["variant", "op", "MiB/s", "s", "client peak", "client after imports",
           "sidecar max process", "sidecar sum (sampled)"], rows)
