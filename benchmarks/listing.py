"""Listing: 10,000 keys in one directory, and 100 keys among 1,000,000 unrelated ones.

Part 1 (local, S3, Redis): ``StateFS.listdir`` and ``os.listdir`` through
the shim of a 10,000-key directory (quick: 2,000) against the backend's own
paginated listing: sorted ``os.listdir``; ``list_objects_v2`` pages of
1,000 with ``Delimiter``; ``SCAN MATCH`` (and, as the floor, ``ZRANGEBYLEX``
pages over the sidecar's own directory index). Then CPU per call of each
process (client, sidecar, backend server) for ``StateFS.listdir`` and the
baseline (not on S3: moto's CPU is the whole story there).

Part 2 (Redis): a private redis-server and sidecar; ``StateFS.listdir`` of
a 100-key directory before and after filling the database with 1,000,000
unrelated keys (quick: 100,000; pipelined ``SET``s). ``SCAN MATCH`` is
timed alongside for contrast. ``benchmarks/redis_listing.py`` (the same
question one level down, ``RedisBackend.list`` after ``DEBUG POPULATE``)
stays as the backend-only variant.
"""
from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.common import (
    Context,
    cpu_per_call,
    interleaved,
    log,
    process_tree,
    ratio,
    shim_installed,
    sidecar_pids,
    spread,
    stats,
    table,
)
from benchmarks.direct import REAL

NAME = "listing"
CONNECTORS = ("local-buffered-lww", "s3-buffered-lww", "redis-buffered-cas")
DIRECTORY = "list-big"
BUDGET_BIG, BUDGET_UNRELATED = 1.5, 2.0


def fill_big(ctx: Context, connector: str, sidecar: Any, count: int) -> dict[str, Callable]:
    """Put ``count`` keys in one directory with the backend's tools; return its listings."""
    prefix = sidecar._env["STATE_PREFIX"].strip("/")
    names = [f"k{i:05d}" for i in range(count)]
    if connector.startswith("local"):
        base = os.path.join(sidecar._env["STATE_ROOT"], prefix, DIRECTORY)
        os.makedirs(base, exist_ok=True)
        for name in names:
            with REAL["open"](os.path.join(base, name), "wb") as f:
                f.write(b"x")
        return {"os.listdir (sorted)": lambda: sorted(REAL["listdir"](base))}
    if connector.startswith("s3"):
        from tests.connectors import BUCKET
        from tests.harness.moto_s3 import s3_client
        s3 = s3_client(ctx.pool.server("s3"))
        key_prefix = f"{prefix}/{DIRECTORY}/"
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: s3.put_object(Bucket=BUCKET, Key=key_prefix + n, Body=b"x"),
                          names))

        def s3_list() -> list[str]:
            out: list[str] = []
            for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=BUCKET, Prefix=key_prefix, Delimiter="/",
                    PaginationConfig={"PageSize": 1000}):
                out += [c["Key"] for c in page.get("Contents", [])]
            return out
        return {"list_objects_v2 (1000/page)": s3_list}
    return fill_redis(sidecar, f"{prefix}/{DIRECTORY}/", names)


def fill_redis(sidecar: Any, key_prefix: str, names: list[str]) -> dict[str, Callable]:
    """Write through the sidecar's own backend (keeps its index), list with redis-py."""
    from sidecars.redis import INDEX, RedisBackend
    backend = RedisBackend(sidecar._env["REDIS_URL"])
    for name in names:
        backend.write(key_prefix + name, io.BytesIO(b"x"), 1)
    client = backend._redis()

    def scan() -> list[bytes]:
        return list(client.scan_iter(match=key_prefix + "*", count=1000))

    def zrange() -> list[bytes]:
        out: list[bytes] = []
        low = "-"
        while page := client.zrangebylex(INDEX + key_prefix, low, "+", start=0, num=1000):
            out += page
            low = b"(" + page[-1]
        return out
    return {"SCAN MATCH (count 1000)": scan, "ZRANGEBYLEX index (1000/page)": zrange}


def measure_big(ctx: Context, connector: str, count: int) -> dict[str, Any]:
    from vfs_state import StateFS
    from vfs_state.mounts import Mount
    sidecar = ctx.pool.sidecar(connector)
    log(f"listing: filling {count} keys for {connector}")
    start = time.perf_counter()
    native = fill_big(ctx, connector, sidecar, count)
    fill_s = round(time.perf_counter() - start, 1)
    fs = StateFS(sidecar.socket_path)
    mount_path = "/vfs-bench-listing"
    with shim_installed([Mount(name="listing", path=mount_path,
                               socket=sidecar.socket_path)]) as shim:
        variants: dict[str, Callable | None] = {
            "StateFS.listdir": lambda: fs.listdir("/" + DIRECTORY),
            "os.listdir (shim)": (lambda: os.listdir(f"{mount_path}/{DIRECTORY}"))
            if shim is not None else None,
            **native}
        for name, fn in variants.items():
            got = len(fn()) if fn is not None else count
            assert got == count, (name, got, count)
        rounds = ctx.scale(3, 2) if connector.startswith("s3") else ctx.scale(10, 3)  # moto: ~s
        samples = interleaved(variants, rounds, warmup=1)
        baseline = next(iter(native))
        cpu = {}
        if not connector.startswith("s3"):  # moto's CPU per listing is seconds: not the point
            server = [] if connector.startswith("local") else process_tree(
                ctx.pool.server(connector.split("-")[0]).proc.pid)
            for name in ("StateFS.listdir", baseline):
                cpu[name] = {k: round(v / 1e3, 2) for k, v in cpu_per_call(
                    variants[name], ctx.scale(40, 20), sidecar_pids(sidecar), server).items()}
    fs.close()
    result = {name: stats(s, 1e3, 2) for name, s in samples.items()}
    return {"keys": count, "fill_seconds": fill_s, "baseline": baseline, "ms": result,
            "cpu_ms": cpu,
            "ratio_statefs_baseline": ratio(result["StateFS.listdir"]["median"],
                                            result[baseline]["median"])}


def measure_unrelated(ctx: Context, unrelated: int) -> dict[str, Any]:
    """A private redis-server: 100-key listing before and after ``unrelated`` keys."""
    from tests.harness import redis_server
    from tests.harness.sidecar import Sidecar
    from vfs_state import StateFS
    server = redis_server.RedisServer().start()
    sidecar = Sidecar("redis-buffered-cas", redis_server.sidecar_env(server, "app")).start()
    try:
        fs = StateFS(sidecar.socket_path)
        fs.makedirs("/dir", recreate=True)
        for i in range(100):
            fs.writebytes(f"/dir/k{i:03d}", b"x" * 64)
        import redis
        client = redis.Redis.from_url(server.url)
        scan = lambda: list(client.scan_iter(match="app/dir/*", count=1000))  # noqa: E731
        rounds = ctx.scale(200, 30)
        before = interleaved({"StateFS.listdir": lambda: fs.listdir("/dir"), "SCAN MATCH": scan},
                             rounds)
        log(f"listing: filling {unrelated:,} unrelated Redis keys (pipelined SET)")
        start = time.perf_counter()
        batch = 10_000
        for first in range(0, unrelated, batch):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(first + batch, unrelated)):
                pipe.set(f"other:{i}", b"v")
            pipe.execute()
        fill_s = round(time.perf_counter() - start, 1)
        after = interleaved({"StateFS.listdir": lambda: fs.listdir("/dir")}, rounds)
        after_scan = interleaved({"SCAN MATCH": scan}, ctx.scale(3, 2), warmup=0)
        dbsize = client.dbsize()
        client.close()
        fs.close()
    finally:
        sidecar.close()
        server.close()
    ms = {"before": {k: stats(v, 1e3, 3) for k, v in before.items()},
          "after": {"StateFS.listdir": stats(after["StateFS.listdir"], 1e3, 3),
                    "SCAN MATCH": stats(after_scan["SCAN MATCH"], 1e3, 1)}}
    return {"unrelated": unrelated, "dbsize_after": dbsize, "fill_seconds": fill_s, "ms": ms,
            "ratio_after_before": ratio(ms["after"]["StateFS.listdir"]["median"],
                                        ms["before"]["StateFS.listdir"]["median"])}


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.scale(10_000, 2_000)
    results: dict[str, Any] = {"big": {}, "unrelated": None}
    for connector in CONNECTORS:
        results["big"][connector] = measure_big(ctx, connector, count)
    results["unrelated"] = measure_unrelated(ctx, ctx.options.redis_unrelated)
    results["budgets"] = [
        {"budget": f"{count:,}-key listdir / backend listing, {c}", "limit": f"<= {BUDGET_BIG}x",
         "value": r["ratio_statefs_baseline"],
         "met": r["ratio_statefs_baseline"] is not None
         and r["ratio_statefs_baseline"] <= BUDGET_BIG}
        for c, r in results["big"].items()]
    u = results["unrelated"]
    results["budgets"].append(
        {"budget": f"100-key listdir with {u['unrelated']:,} unrelated Redis keys / without",
         "limit": f"<= {BUDGET_UNRELATED}x", "value": u["ratio_after_before"],
         "met": u["ratio_after_before"] is not None
         and u["ratio_after_before"] <= BUDGET_UNRELATED})
    return results


STATEFS_VARIANTS = ("StateFS.listdir", "os.listdir (shim)")


def _rank(name: str) -> int:
    """StateFS variants first, then the backend's own listings."""
    return STATEFS_VARIANTS.index(name) if name in STATEFS_VARIANTS else len(STATEFS_VARIANTS)


def report(results: dict[str, Any]) -> None:
    rows = []
    for connector, r in results["big"].items():
        for name, s in sorted(r["ms"].items(), key=lambda kv: _rank(kv[0])):
            rows.append([connector, name, spread(s, 2),
                         ratio(s["median"], r["ms"][r["baseline"]]["median"])])
    first = next(iter(results["big"].values()))
    table(f"Listing {first['keys']:,} keys in one directory: ms, median [p25-p75]",
          ["connector", "listing", "ms", "x backend listing"], rows)
    table(f"Listing {first['keys']:,} keys: CPU ms per call, by process",
          ["connector", "listing", "wall", "client", "sidecar", "backend server"],
          [[connector, name, cpu["wall"], cpu["client"], cpu["sidecar"], cpu["backend"]]
           for connector, r in results["big"].items()
           for name, cpu in r.get("cpu_ms", {}).items()])
    u = results["unrelated"]
    table(f"Redis: 100-key directory, {u['unrelated']:,} unrelated keys: ms, median [p25-p75]",
          ["listing", "before", "after", "after / before"],
          [[name, spread(u["ms"]["before"][name], 3), spread(u["ms"]["after"][name], 3),
            ratio(u["ms"]["after"][name]["median"], u["ms"]["before"][name]["median"])]
           for name in ("StateFS.listdir", "SCAN MATCH")])
