"""What-if measurements for the fixes proposed in docs/performance.md.

Each experiment applies a candidate change *from the outside* (a subclass or
a monkeypatch in this process; ``vfs_state`` and ``sidecars`` are not
edited) and times it against the stock code, interleaved:

* ``transport``: the current ``Transport`` (one ``sendall``, replies parsed by
  hand) against the previous ``http.client`` one (``httpclient_transport.py``);
* ``readbytes``: ``StateFS.readbytes`` through ``FS.open`` (stock) vs
  ``openbin`` + ``read`` (what an override would do);
* ``streamed read``: ``StateFS`` sequential read (streams since 8ccbf81) vs one
  open-ended ``Range: bytes=0-`` GET read in 1 MiB pieces, from S3.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    Context,
    KiB,
    MiB,
    interleaved,
    log,
    ratio,
    seed_s3_object,
    spread,
    stats,
    table,
)

NAME = "experiments"
SMALL_CONNECTORS = ("redis-buffered-cas", "local-buffered-lww")


def small_ops(fs: Any, data: bytes, tag: str) -> dict[str, Callable[[], object]]:
    path = f"/exp/{tag}"

    def write() -> None:
        with fs.openbin(path, "w", create_parents=True) as f:
            f.write(data)

    def read() -> bytes:
        with fs.openbin(path) as f:
            return f.read()
    write()
    return {"write": write, "read": read, "stat": lambda: fs.getinfo(path, ["details"])}


def transport(ctx: Context) -> dict[str, Any]:
    """The current ``Transport`` against the previous ``http.client`` one."""
    from benchmarks.httpclient_transport import HttpClientTransport
    from vfs_state import StateFS
    out: dict[str, Any] = {}
    for connector in SMALL_CONNECTORS:
        sidecar = ctx.pool.sidecar(connector)
        old, new = StateFS(sidecar.socket_path), StateFS(sidecar.socket_path)
        old.client.transport = HttpClientTransport(sidecar.socket_path)
        data = os.urandom(KiB)
        ops_old, ops_new = small_ops(old, data, "old"), small_ops(new, data, "new")
        assert ops_new["read"]() == data and ops_old["read"]() == data
        variants = {f"{op} {name}": ops[op] for op in ops_old
                    for name, ops in (("old", ops_old), ("new", ops_new))}
        samples = interleaved(variants, ctx.scale(300, 30), warmup=5)
        s = {k: stats(v, 1e6) for k, v in samples.items()}
        out[connector] = {op: {"http_client_us": s[f"{op} old"], "current_us": s[f"{op} new"],
                               "saved_us": round(s[f"{op} old"]["median"]
                                                 - s[f"{op} new"]["median"], 1)}
                          for op in ops_old}
        old.close()
        new.close()
    return out


def readbytes(ctx: Context) -> dict[str, Any]:
    from vfs_state import StateFS
    sidecar = ctx.pool.sidecar("local-buffered-lww")
    fs = StateFS(sidecar.socket_path)
    ops = small_ops(fs, os.urandom(KiB), "rb")
    samples = interleaved({"FS.readbytes (stock)": lambda: fs.readbytes("/exp/rb"),
                           "openbin + read": ops["read"]}, ctx.scale(300, 30), warmup=5)
    fs.close()
    return {k: stats(v, 1e6) for k, v in samples.items()}


def streamed_read(ctx: Context) -> dict[str, Any]:
    """S3: stock ranged-block reading vs one open-ended GET streamed in 1 MiB pieces."""
    from vfs_state.transport import UnixHTTPConnection
    size = min(ctx.options.large_size, ctx.scale(256 * MiB, 64 * MiB))
    seeded = seed_s3_object(ctx, "/exp/stream", size)
    fs, s3, sidecar = seeded.fs, seeded.s3, seeded.sidecar

    def ranged() -> None:
        with fs.openbin("/exp/stream") as f:
            got = 0
            while piece := f.read(MiB):
                got += len(piece)
        assert got == size

    def streamed() -> None:
        conn = UnixHTTPConnection(sidecar.socket_path, 600)
        conn.request("GET", "/keys/exp/stream", headers={"Range": "bytes=0-"})
        response, got = conn.getresponse(), 0
        while piece := response.read(MiB):
            got += len(piece)
        conn.close()
        assert got == size

    def boto3_get() -> None:
        body = s3.get_object(Bucket=seeded.bucket, Key=seeded.key)["Body"]
        assert sum(len(p) for p in body.iter_chunks(MiB)) == size
    samples = interleaved({"StateFS (stock)": ranged,
                           "one streamed GET via sidecar": streamed,
                           "boto3 streamed get_object": boto3_get}, ctx.scale(2, 1), warmup=0)
    seeded.cleanup()
    return {"size_mib": size // MiB,
            **{k: {"mib_per_s": round(size / MiB / min(v), 1), "seconds": stats(v, 1, 2)}
               for k, v in samples.items()}}


def run(ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, fn in (("transport", transport), ("readbytes", readbytes),
                     ("streamed_read", streamed_read)):
        log(f"experiments: {name}")
        start = time.perf_counter()
        results[name] = fn(ctx)
        results[name + "_seconds"] = round(time.perf_counter() - start, 1)
    return results


def report(results: dict[str, Any]) -> None:
    rows = [[c, op, spread(r["http_client_us"]), spread(r["current_us"]), r["saved_us"],
             ratio(r["current_us"]["median"], r["http_client_us"]["median"])]
            for c, ops in results["transport"].items()
            for op, r in sorted(ops.items(), key=lambda kv: ("write", "read", "stat").index(kv[0]))]
    table("Experiment: client transport, http.client (before f061504) vs hand-written "
          "(current), StateFS, 1 KiB, µs",
          ["connector", "op", "http.client", "current", "saved µs", "current/http.client"],
          rows)
    rb = results["readbytes"]
    table("Experiment: StateFS.readbytes via FS.open vs openbin (local, 1 KiB), µs",
          ["variant", "µs"],
          [[k, spread(v)] for k, v in sorted(rb.items(), key=lambda kv: "stock" not in kv[0])])
    for name, title in (("streamed_read", "sequential read from S3"),):
        r = results[name]
        table(f"Experiment: {title}, {r['size_mib']} MiB: MiB/s (best run)",
              ["variant", "MiB/s", "s median [p25-p75]"],
              [[k, v["mib_per_s"], spread(v["seconds"], 2)] for k, v in
               sorted(r.items(), key=lambda kv: "stock" not in kv[0]) if isinstance(v, dict)])
