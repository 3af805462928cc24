"""Where a small operation's client CPU goes, layer by layer (1 KiB; Redis sidecar by default).

Two tables, for reading the client side of ``hot_path``:

* **CPU per call** of each client layer called on its own in a tight loop
  (``--calls``; median and min over ``--rounds``, rotating the order): the
  raw HTTP exchange on a socket, ``Transport.request``, ``SidecarClient``,
  ``StateFS``, the shim. Differences between neighbouring rows are what a
  layer adds.
* **Python bytecodes per call by layer**, counted with ``sys.settrace``
  opcode events over 200 calls: exact and independent of machine load
  (C work, system calls and cache misses are not in it; the CPU table has
  them). Runs on any commit with the same public calls, so before and after
  compare directly.

``python -m benchmarks.client_layers [--calls 2000] [--rounds 5] [--connector local-buffered-cas]``
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import Context, KiB, Options, shim_installed, table

NAME = "client_layers"
CONNECTOR = "redis-buffered-cas"
KEY = "layers/k"
#: path fragment -> layer, first match wins
LAYERS = (("vfs_state/shim/", "shim"), ("vfs_state/statefs", "StateFS"),
          ("vfs_state/_pyfs", "StateFS"), ("/fs/", "StateFS"),
          ("vfs_state/reader", "reader/writer"), ("vfs_state/writers", "reader/writer"),
          ("vfs_state/client", "client"), ("vfs_state/versions", "client"),
          ("vfs_state/transport", "transport"), ("vfs_state/connection", "transport"),
          ("vfs_state/", "other vfs_state"))


def calls(sidecar: Any, mount_path: str) -> dict[str, Callable[[], object]]:
    from benchmarks.transport_layers import RawHttp
    from vfs_state import StateFS
    fs = StateFS(sidecar.socket_path)
    payload = os.urandom(KiB // 2).hex().encode()
    with fs.openbin("/" + KEY, "w", create_parents=True) as f:
        f.write(payload)
    raw = RawHttp(sidecar.socket_path, "/keys/" + KEY)
    transport, client, path = fs.client.transport, fs.client, f"{mount_path}/{KEY}"
    first = {"Range": "bytes=0-65535"}

    def shim_read() -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def shim_text() -> str:
        with open(path) as f:
            return f.read()

    def shim_write() -> None:
        with open(path, "wb") as f:
            f.write(payload)

    return {
        "raw socket GET (floor)": raw.get,
        "Transport.request GET": lambda: transport.request("GET", "/keys/" + KEY, first),
        "SidecarClient.read_head": lambda: client.read_head(KEY, 64 * KiB),
        "StateFS.readbytes": lambda: fs.readbytes("/" + KEY),
        "StateFS.openbin().read()": lambda: _read(fs.openbin("/" + KEY)),
        "shim open('rb').read()": shim_read,
        "shim open('r').read()": shim_text,
        "SidecarClient.stat": lambda: client.stat(KEY),
        "shim os.stat()": lambda: os.stat(path),
        "SidecarClient.write": lambda: client.write(KEY, payload, len(payload)),
        "shim open('wb').write()": shim_write,
    }


def _read(file: Any) -> bytes:
    with file:
        return file.read()  # type: ignore[no-any-return]


def layer_of(filename: str) -> str:
    for fragment, layer in LAYERS:
        if fragment in filename:
            return layer
    return "stdlib/other"


def bytecodes(call: Callable[[], object], n: int = 200) -> dict[str, float]:
    """Python bytecodes executed per call, by layer (``sys.settrace`` opcode events)."""
    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame: Any, event: str, arg: object) -> Any:
        if event != "call":
            return None
        frame.f_trace_opcodes = True
        layer = layer_of(frame.f_code.co_filename.replace("\\", "/"))

        def local(frame: Any, event: str, arg: object) -> Any:
            if event == "opcode":
                counts[layer] += 1
            return local
        return local
    for _ in range(20):
        call()
    sys.settrace(tracer)
    try:
        for _ in range(n):
            call()
    finally:
        sys.settrace(None)
    return {layer: count / n for layer, count in counts.items()}


def measure(ctx: Context, n: int, rounds: int, connector: str = CONNECTOR) -> dict[str, Any]:
    from vfs_state.mounts import Mount
    sidecar = ctx.pool.sidecar(connector)
    mount_path = "/vfs-bench-layers"
    mount = Mount(name="layers", path=mount_path, socket=sidecar.socket_path)
    cpu: dict[str, list[float]] = {}
    with shim_installed([mount]):
        ops = calls(sidecar, mount_path)
        names = list(ops)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                call = ops[name]
                for _ in range(max(1, n // 10)):
                    call()
                start = time.process_time()
                for _ in range(n):
                    call()
                cpu.setdefault(name, []).append((time.process_time() - start) * 1e6 / n)
        codes = {name: bytecodes(ops[name]) for name in names if "floor" not in name}
    return {"calls_per_loop": n, "rounds": rounds, "cpu_us": cpu, "bytecodes": codes}


def run(ctx: Context) -> dict[str, Any]:
    return measure(ctx, ctx.scale(2000, 500), ctx.scale(5, 2))


def report(results: dict[str, Any]) -> None:
    cpu = results["cpu_us"]
    table(f"Client CPU per call, µs: median [min] of {results['rounds']} loops of "
          f"{results['calls_per_loop']}", ["call", "client CPU"],
          [[name, f"{statistics.median(v):.0f} [{min(v):.0f}]"] for name, v in cpu.items()])
    codes = results["bytecodes"]
    layers = sorted({layer for c in codes.values() for layer in c},
                    key=lambda k: [x[1] for x in LAYERS].index(k) if k in [x[1] for x in LAYERS]
                    else 99)
    table("Python bytecodes per call, by layer", ["call", *layers, "total"],
          [[name, *(f"{c.get(layer, 0):.0f}" for layer in layers), f"{sum(c.values()):.0f}"]
           for name, c in codes.items()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client_layers",
                                     description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connector", default=CONNECTOR)
    args = parser.parse_args(argv)
    ctx = Context(Options())
    try:
        report(measure(ctx, args.calls, args.rounds, args.connector))
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
