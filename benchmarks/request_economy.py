"""Requests and bytes per operation, counted at the sidecar and at the backend server.

Each operation runs through the shim on a fresh mount of a counted sidecar
(``tests.harness.economy``): Redis is counted by its ``MONITOR`` feed,
S3 by a proxy in front of moto, NATS by the messages its server received
from the sidecar (``/connz``), local by the sidecar's requests. Prints one
table; ``python -m benchmarks.request_economy`` runs it alone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

NAME = "request_economy"
KiB, MiB = 1024, 1024 ** 2
KINDS = ("local", "redis", "s3", "nats")
#: The "large" object: NATS KV values are at most 1 MiB.
LARGE = {"nats": 768 * KiB}


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def _reads(base: str, large: int, label: str) -> list[tuple[str, Callable[[], Any]]]:
    """The read operations on ``base`` (a checked or an ``open=lazy`` mount)."""
    def read_small() -> None:
        with open(f"{base}/small.json", "rb") as f:
            f.read()

    def seek_read() -> None:
        with open(f"{base}/large.bin", "rb") as f:
            f.seek(large * 7 // 8)
            f.read(4096)

    def sequential() -> None:
        with open(f"{base}/large.bin", "rb") as f:
            while f.read(1 << 20):
                pass

    def footer() -> None:
        with open(f"{base}/large.bin", "rb") as f:
            f.seek(-8, os.SEEK_END)
            f.read()

    return [(f"{label}open + read 1 KiB", read_small),
            (f"{label}open + seek + read 4 KiB of {_size(large)}", seek_read),
            (f"{label}sequential read of {_size(large)}", sequential),
            (f"{label}open + seek(-8, SEEK_END) + read", footer)]


def _operations(base: str, lazy_base: str, large: int) -> list[tuple[str, Callable[[], Any]]]:
    """``(label, call)``; the files they use are written by ``_prepare``."""

    def scandir_stat() -> None:
        with os.scandir(f"{base}/dir") as entries:
            for entry in entries:
                entry.stat()

    def walk_stat() -> None:
        for _root, _dirs, _files in os.walk(f"{base}/dir"):
            pass

    def write_small() -> None:
        with open(f"{base}/out.json", "wb") as f:
            f.write(b"{}" * 512)

    def write_new() -> None:
        with open(f"{base}/new-{uuid.uuid4().hex[:8]}.json", "wb") as f:
            f.write(b"{}" * 512)

    return [*_reads(base, large, ""),
            *_reads(lazy_base, large, "open=lazy: "),
            ("os.stat", lambda: os.stat(f"{base}/small.json")),
            ("os.scandir + entry.stat(), 20 files", scandir_stat),
            ("os.walk, 20 files", walk_stat),
            ("write 1 KiB (new key)", write_new),
            ("write 1 KiB (overwrite)", write_small)]


def _prepare(base: str, large: int) -> None:
    os.makedirs(f"{base}/dir", exist_ok=True)
    with open(f"{base}/small.json", "wb") as f:
        f.write(b"x" * 1024)
    with open(f"{base}/large.bin", "wb") as f:
        block = os.urandom(min(large, MiB))
        for _ in range(max(1, large // MiB)):
            f.write(block)
    for i in range(20):
        with open(f"{base}/dir/f{i:02d}.json", "wb") as f:
            f.write(b"y" * (100 + i))


def measure(kind: str, large: int | None = None) -> list[dict[str, Any]]:
    """One row per operation for connector ``kind`` (one of ``KINDS``)."""
    large = large or LARGE.get(kind, 8 * MiB)
    import vfs_state
    from tests.harness.economy import CountedMount

    tmp = tempfile.mkdtemp(prefix="vfs-economy-")
    mount = CountedMount(kind, tmp)
    path = f"/vfs-economy-{uuid.uuid4().hex[:8]}"
    rows = []
    socket = mount.socket_path
    try:  # the same sidecar mounted twice: checked opens, and open=lazy
        with vfs_state.installed(f"m:{path}:socket={socket};"
                                 f"lazy:{path}-lazy:socket={socket},open=lazy"):
            base = f"{path}/run"
            os.mkdir(base)
            _prepare(base, large)
            for label, call in _operations(base, f"{path}-lazy/run", large):
                call()  # warm: script loads and first connections are not the operation's
                with mount.counting() as counts:
                    call()
                unbytes = kind in ("redis", "nats")  # counted in requests only
                rows.append({"connector": kind, "operation": label,
                             "sidecar requests": counts.sidecar_requests,
                             "sidecar bytes": counts.sidecar_bytes,
                             "backend requests": counts.backend_requests,
                             "backend bytes": "n/a" if unbytes else counts.backend_bytes,
                             "detail": counts.detail})
    finally:
        mount.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


COLUMNS = ["connector", "operation", "sidecar requests", "sidecar bytes", "backend requests",
           "backend bytes"]


def run(ctx: Any = None) -> dict[str, Any]:
    rows = []
    for kind in KINDS:
        rows.extend(measure(kind))
    return {"rows": rows}


def report(result: dict[str, Any]) -> None:
    from benchmarks.common import table

    table("Request economy: requests and bytes per operation", COLUMNS,
          [[r[c] for c in COLUMNS] for r in result["rows"]])


if __name__ == "__main__":
    import sys

    if "-v" in sys.argv:
        for kind in KINDS:
            for row in measure(kind):
                print(row["connector"], row["operation"], row["backend requests"],
                      row["backend bytes"], *row["detail"], sep="\n  ")
    else:
        report(run())
