"""A progress bar for ``cp``: tqdm on a terminal, for large or many files only.

tqdm comes with the ``cli`` extra (``pip install 'vfs-state[cli]'``); without
it, or when stderr is not a terminal, nothing is drawn.
"""
from __future__ import annotations

import os
import sys
from typing import Any

MIN_BYTES = 4 << 20  # below this, and for few files, a bar would only flicker
MIN_FILES = 20


def _size() -> tuple[int, int]:
    """The terminal's columns and rows; 80x24 where it reports 0 (a fresh
    pseudo-terminal), which tqdm would otherwise take as "no room" and draw nothing."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


class Progress:
    """Counts bytes and files; draws only when worth it and on a terminal."""

    def __init__(self, total_bytes: int, files: int, enabled: bool = True) -> None:
        self.bar: Any = None
        wanted = total_bytes >= MIN_BYTES or files >= MIN_FILES
        if not (enabled and wanted and sys.stderr.isatty()):
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        columns, rows = _size()
        self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                        file=sys.stderr, ncols=columns, nrows=rows, leave=True,
                        desc=f"{files} file{'s' if files != 1 else ''}")

    def advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
