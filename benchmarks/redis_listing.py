"""Listing a 100-key directory in Redis, with and without 1,000,000 other keys.

The Redis backend lists from a per-directory sorted set, so the time should not
depend on how many unrelated keys the database holds. A ``SCAN MATCH`` listing
(what a keyspace-scanning design would do) is timed alongside for contrast.

Run from the repository root: ``python benchmarks/redis_listing.py``. Starts
its own private ``redis-server``; writes ``benchmarks/results/redis_listing.json``.
"""
from __future__ import annotations

import io
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sidecars.redis import RedisBackend  # noqa: E402
from tests.harness.redis_server import RedisServer  # noqa: E402

DIRECTORY = "bench/dir/"
KEYS_IN_DIR = 100
UNRELATED = 1_000_000
ROUNDS = 200
SCAN_ROUNDS = 5


def median_ms(fn, rounds: int) -> float:  # noqa: ANN001
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def main() -> dict[str, object]:
    with RedisServer(extra_args=("--enable-debug-command", "local")) as server:
        backend = RedisBackend(server.url)
        client = backend._redis()
        for i in range(KEYS_IN_DIR):
            backend.write(f"{DIRECTORY}k{i:03d}", io.BytesIO(b"x" * 64), 64)
        backend.write("bench/other/k", io.BytesIO(b"x"), 1)

        def listdir() -> None:
            page = backend.list(DIRECTORY, "/", None, 1000)
            assert len(page.keys) == KEYS_IN_DIR, len(page.keys)

        def scan() -> None:
            found = list(client.scan_iter(match=DIRECTORY + "*", count=1000))
            assert len(found) == KEYS_IN_DIR, len(found)

        result: dict[str, object] = {
            "redis_version": client.info("server")["redis_version"],
            "keys_in_directory": KEYS_IN_DIR, "rounds": ROUNDS,
        }
        result["listdir_ms_median_empty_db"] = median_ms(listdir, ROUNDS)
        result["scan_ms_median_empty_db"] = median_ms(scan, SCAN_ROUNDS)
        start = time.perf_counter()
        client.execute_command("DEBUG", "POPULATE", UNRELATED, "unrelated")
        result["populate_s"] = round(time.perf_counter() - start, 2)
        result["dbsize"] = client.dbsize()
        result["listdir_ms_median_1m_keys"] = median_ms(listdir, ROUNDS)
        result["scan_ms_median_1m_keys"] = median_ms(scan, SCAN_ROUNDS)
        backend.close()
    return result


if __name__ == "__main__":
    results = main()
    print(f"listdir of {KEYS_IN_DIR} keys, median over {ROUNDS} runs:")
    print(f"  empty db:     {results['listdir_ms_median_empty_db']:.3f} ms")
    print(f"  +1M keys:     {results['listdir_ms_median_1m_keys']:.3f} ms  "
          f"(dbsize {results['dbsize']})")
    print(f"SCAN MATCH for contrast: {results['scan_ms_median_empty_db']:.3f} ms -> "
          f"{results['scan_ms_median_1m_keys']:.1f} ms")
    out = os.path.join(ROOT, "benchmarks", "results", "redis_listing.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {out}")
