"""Ranged read: 4 KiB at a 900 MiB offset of a 1 GiB object (quick: 60 of 64 MiB).

The object is put in place by the backend's own tools (a file in the local
sidecar's root; boto3 ``upload_fileobj`` under the S3 sidecar's prefix),
then each round opens it through ``StateFS``, seeks and reads 4 KiB.
Reported: latency (open + seek + read + close) and bytes moved over the
sidecar socket (``Transport.bytes_received``), against the backend's own
ranged read (``get_object(Range=...)``, or ``seek``/``read`` on the file).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    Context,
    GeneratedStream,
    GiB,
    KiB,
    MiB,
    chunks,
    interleaved,
    log,
    spread,
    stats,
    table,
)
from benchmarks.direct import REAL

NAME = "ranged_read"
READ = 4 * KiB
BUDGET_BYTES = MiB
CONNECTORS = ("local-buffered-lww", "s3-buffered-lww")


def geometry(ctx: Context) -> tuple[int, int]:
    size = ctx.options.large_size
    offset = 900 * MiB if size >= GiB else size - 4 * MiB
    return size, offset


def place_object(ctx: Context, connector: str, sidecar: Any, size: int) -> Callable[[int], bytes]:
    """Store the object with the backend's tools; return the backend's own ranged read."""
    prefix = sidecar._env["STATE_PREFIX"].strip("/")
    if connector.startswith("local"):
        path = os.path.join(sidecar._env["STATE_ROOT"], prefix, "ranged", "obj")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with REAL["open"](path, "wb") as f:
            for piece in chunks(size):
                f.write(piece)

        def local_range(offset: int) -> bytes:
            with REAL["open"](path, "rb") as f:
                f.seek(offset)
                return f.read(READ)
        return local_range
    from tests.connectors import BUCKET
    from tests.harness.moto_s3 import s3_client
    s3 = s3_client(ctx.pool.server("s3"))
    key = f"{prefix}/ranged/obj"
    s3.upload_fileobj(GeneratedStream(size), BUCKET, key)

    def s3_range(offset: int) -> bytes:
        resp = s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={offset}-{offset + READ - 1}")
        return resp["Body"].read()
    s3_range.cleanup = lambda: s3.delete_object(Bucket=BUCKET, Key=key)  # type: ignore[attr-defined]
    return s3_range


def measure(ctx: Context, connector: str, size: int, offset: int) -> dict[str, Any]:
    from vfs_state import StateFS
    sidecar = ctx.pool.sidecar(connector)
    log(f"ranged_read: placing {size // MiB} MiB for {connector}")
    direct = place_object(ctx, connector, sidecar, size)
    fs = StateFS(sidecar.socket_path)
    transport = fs.client.transport
    moved: list[int] = []
    expected = (bytes(range(256)) * (MiB // 256))[offset % MiB:offset % MiB + READ]

    def through_statefs() -> bytes:
        before = transport.bytes_received
        with fs.openbin("/ranged/obj") as f:
            f.seek(offset)
            data = f.read(READ)
        moved.append(transport.bytes_received - before)
        return data

    assert through_statefs() == expected and direct(offset) == expected
    # moto reads the whole object for every ranged GET: few rounds there
    rounds = ctx.scale(50, 8) if connector.startswith("local") else ctx.scale(5, 3)
    samples = interleaved({"statefs": through_statefs, "direct": lambda: direct(offset),
                           "one ranged GET (Transport)": lambda: fs.client.read_range(
                               "ranged/obj", offset, READ, None)}, rounds)
    fs.remove("/ranged/obj")
    fs.close()
    getattr(direct, "cleanup", lambda: None)()
    return {"latency_us": {k: stats(v, 1e6) for k, v in samples.items()},
            "bytes_moved": {"median": sorted(moved)[len(moved) // 2], "max": max(moved)},
            "direct_method": "file seek+read" if connector.startswith("local")
            else "get_object(Range)"}


def run(ctx: Context) -> dict[str, Any]:
    size, offset = geometry(ctx)
    results: dict[str, Any] = {"size": size, "offset": offset, "read": READ, "connectors": {}}
    for connector in CONNECTORS:
        results["connectors"][connector] = measure(ctx, connector, size, offset)
    results["budgets"] = [
        {"budget": f"ranged read bytes moved, {c}", "limit": "< 1 MiB",
         "value": r["bytes_moved"]["max"], "met": r["bytes_moved"]["max"] < BUDGET_BYTES}
        for c, r in results["connectors"].items()]
    return results


def report(results: dict[str, Any]) -> None:
    size, offset = results["size"], results["offset"]
    table(f"Ranged read: {READ // KiB} KiB at {offset // MiB} MiB of {size // MiB} MiB",
          ["connector", "StateFS open+seek+read µs", "one ranged GET µs", "direct µs", "direct",
           "bytes moved (StateFS)"],
          [[c, spread(r["latency_us"]["statefs"]),
            spread(r["latency_us"].get("one ranged GET (Transport)")),
            spread(r["latency_us"]["direct"]), r["direct_method"], r["bytes_moved"]["max"]]
           for c, r in results["connectors"].items()])
