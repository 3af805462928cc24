"""``os.stat_result`` for keys: what a stat on a mount returns.

Backends store neither modes nor owners nor inodes, so the shim reports what
a freshly written local file would show: ``S_IFREG | 0o644`` files,
``S_IFDIR | 0o755`` directories, owned by the calling process. Inode and
device numbers are stable hashes of mount and key, so ``os.path.samefile``
and ``shutil``'s same-file checks tell keys apart. Times come from the
backend's ``Last-Modified``. Directories are virtual and no backend stores
a time for them: they report the time of the call that looked at them (the
listing or stat time), so archivers that need a date (zip: 1980 or later)
work; see docs/coverage.md.
"""
from __future__ import annotations

import os
import stat as stat_module
import time
from collections.abc import Mapping
from typing import Any

from vfs_state.mounts import Mount

FILE_MODE = stat_module.S_IFREG | 0o644
DIR_MODE = stat_module.S_IFDIR | 0o755
BLOCK_SIZE = 4096


def _hash(*parts: str) -> int:
    import hashlib  # loads OpenSSL: on the first stat of a mount, not at start-up

    digest = hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # positive, fits st_ino / st_dev


#: numbers already hashed, by (mount name, socket[, key]): a stat asks for both
_NUMBERS: dict[tuple[str, ...], int] = {}


def inode(mount: Mount, key: str) -> int:
    """A stable inode number for ``key`` on ``mount``."""
    parts = (mount.name, mount.socket, key)
    number = _NUMBERS.get(parts)
    if number is None:
        if len(_NUMBERS) >= 4096:
            _NUMBERS.clear()
        number = _NUMBERS[parts] = _hash(*parts)
    return number


def device(mount: Mount) -> int:
    """A stable device number per mount (``os.path.ismount`` sees the boundary)."""
    parts = (mount.name, mount.socket)
    number = _NUMBERS.get(parts)
    if number is None:
        number = _NUMBERS[parts] = _hash(*parts) & 0xFFFFFFFF
    return number


def make_stat(mount: Mount, key: str, is_dir: bool, size: int = 0,
              modified: float | None = None) -> os.stat_result:
    """The ``os.stat_result`` for one key (or virtual directory)."""
    if is_dir and not modified:
        modified = time.time()  # no stored time for a virtual directory: "now"
    mtime = float(modified or 0.0)
    mtime_ns = int(round(mtime * 1e9))
    size = 0 if is_dir else size
    fields = (DIR_MODE if is_dir else FILE_MODE, inode(mount, key), device(mount),
              2 if is_dir else 1, os.getuid(), os.getgid(), size,
              int(mtime), int(mtime), int(mtime))
    extra = {"st_atime": mtime, "st_mtime": mtime, "st_ctime": mtime,
             "st_atime_ns": mtime_ns, "st_mtime_ns": mtime_ns, "st_ctime_ns": mtime_ns,
             "st_blksize": BLOCK_SIZE, "st_blocks": (size + 511) // 512}
    return os.stat_result(fields, extra)


def stat_from_info(mount: Mount, key: str, raw: Mapping[str, Mapping[str, Any]]) -> os.stat_result:
    """From a ``StateFS`` ``Info.raw`` (basic and details namespaces)."""
    is_dir = bool(raw["basic"]["is_dir"])
    details = raw.get("details") or {}
    return make_stat(mount, key, is_dir, int(details.get("size") or 0), details.get("modified"))
