"""Paging through one big local directory: ``python -m benchmarks.local_paging [N]``.

Standalone (not in ``python -m benchmarks``): fills a temp directory with N
empty files (default 100,000), then pages through it 1,000 keys at a time
with ``LocalBackend.list`` in process, as the app core asks (one extra key
per page), twice. Prints total and per-page time; before the listing
snapshots every page rescanned and sorted the directory.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from sidecars.local import LocalBackend

PAGE = 1000


def page_through(backend: LocalBackend) -> tuple[int, int, float, float]:
    """``(pages, keys, total seconds, worst page seconds)`` for one pass."""
    started, cursor, pages, keys, worst = time.perf_counter(), None, 0, 0, 0.0
    while True:
        t = time.perf_counter()
        page = backend.list("big/", "/", cursor, PAGE + 1)
        worst = max(worst, time.perf_counter() - t)
        pages, keys = pages + 1, keys + min(len(page.keys), PAGE)
        if len(page.keys) <= PAGE:
            return pages, keys, time.perf_counter() - started, worst
        cursor = page.keys[PAGE - 1]


def main(count: int) -> None:
    root = tempfile.mkdtemp(prefix="vfs-paging-")
    try:
        big = os.path.join(root, "big")
        os.mkdir(big)
        for i in range(count):
            open(os.path.join(big, f"f{i:07d}"), "wb").close()
        os.utime(big, (time.time() - 10, time.time() - 10))  # settled, as in production
        backend = LocalBackend(root)
        for run in range(2):
            pages, keys, total, worst = page_through(backend)
            print(f"pass {run}: {pages} pages, {keys} keys, {total:.2f} s, "
                  f"{total / pages * 1000:.1f} ms/page, worst page {worst * 1000:.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
