"""Listing a 10,000-key NATS KV directory: names only, with details, and nats-py's own.

``StateFS.listdir`` asks for names; ``StateFS.scandir(namespaces=["details"])``
for names with size, time and version (what ``os.scandir`` + ``entry.stat()``
needs). For reference, nats-py lists the same subtree itself with a
``meta_only`` watch. Starts a private nats-server and one sidecar worker;
the keys are written with nats-py directly.

Run from the repository root: ``python -m benchmarks.nats_listing [KEYS [ROUNDS]]``.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable

import nats
from nats.js.kv import KeyValue

from sidecars.nats_keys import encode_key, subtree_filter
from tests.harness.nats_server import NatsServer, sidecar_env
from tests.harness.sidecar import Sidecar
from vfs_state import StateFS

DIRECTORY = "big/"
BATCH = 500


async def _fill(kv: KeyValue, count: int) -> None:
    for first in range(0, count, BATCH):
        await asyncio.gather(*(kv.put(encode_key(f"{DIRECTORY}k{i:05d}"), b"x" * 10)
                               for i in range(first, min(count, first + BATCH))))


async def _watch_keys(kv: KeyValue) -> list[str]:
    """The subtree's live keys, as nats-py lists them (an ordered consumer)."""
    watcher = await kv.watch(subtree_filter(DIRECTORY), ignore_deletes=True, meta_only=True)
    keys = []
    async for entry in watcher:
        if entry is None:  # the initial values are all delivered
            break
        keys.append(entry.key)
    await watcher.stop()
    return keys


def _report(samples: dict[str, list[float]]) -> None:
    for name, values in samples.items():
        values.sort()
        print(f"{name:42s} median {statistics.median(values) * 1e3:9.1f} ms"
              f"  min {values[0] * 1e3:9.1f}  max {values[-1] * 1e3:9.1f}")


def main(count: int = 10_000, rounds: int = 5) -> None:
    server = NatsServer()
    server.start()
    sidecar = Sidecar("nats-kv-buffered-cas", sidecar_env(server, "state", ""), workers=1)
    sidecar.start()
    loop = asyncio.new_event_loop()
    fs = StateFS(sidecar.socket_path)
    try:
        fs.makedir("/" + DIRECTORY)
        nc = loop.run_until_complete(nats.connect(server.url))
        kv = loop.run_until_complete(nc.jetstream().key_value("state"))
        loop.run_until_complete(_fill(kv, count))
        variants: dict[str, Callable[[], list]] = {
            "StateFS.listdir": lambda: fs.listdir("/" + DIRECTORY),
            'StateFS.scandir(namespaces=["details"])':
                lambda: [e.size for e in fs.scandir("/" + DIRECTORY, namespaces=["details"])],
            "nats-py kv.watch(subtree, meta_only=True)":
                lambda: loop.run_until_complete(_watch_keys(kv)),
        }
        for name, fn in variants.items():  # warm up, and check each sees every key
            assert len(fn()) in (count, count + 1), name  # the watch sees the marker
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
        _report(samples)
        loop.run_until_complete(nc.close())
    finally:
        fs.close()
        loop.close()
        sidecar.close()
        server.close()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
