"""``shutil`` on mounts: steer around what needs file descriptors or metadata.

Most of ``shutil`` already works through the patched ``open``/``os``
(``copyfile``'s ``sendfile`` fast path gives up when ``fileno()`` raises and
falls back to ``copyfileobj``). Three functions need help:

- ``rmtree`` takes its fd-based route (``os.open``, ``os.scandir(fd)``) on
  Linux; on a mount it takes a path-based route with the same error
  callbacks (``onerror``, and ``onexc`` where Python has it).
- ``copystat`` and ``copymode`` set times, modes and xattrs a mount cannot
  store: onto a mount they only check that the destination exists; from a
  mount onto the local disk they copy times and mode but not the backend's
  attributes (those describe the stored object, not the file).

``shutil`` is imported at start-up, before ``os`` is patched, although
start-up defers most imports: at import it decides whether ``rmtree`` may
take its symlink-attack-safe fd-based route, by finding ``os.open`` and
friends in ``os.supports_dir_fd``; imported after the patch, it would find
the replacements there instead, and use the unsafe path-based route for
local trees too (``rmtree.avoids_symlink_attacks`` false).
"""
from __future__ import annotations

import functools
import os
import shutil  # before the shim patches ``os``: see below
import stat as stat_module
import sys
from collections.abc import Callable
from typing import Any

from vfs_state.shim import os_adapter
from vfs_state.shim.direntry import scan
from vfs_state.shim.errors import refused
from vfs_state.shim.router import MountTable, Target, routed

ErrorHandler = Callable[[Callable[..., Any], Any, BaseException], None]


def _handler(ignore_errors: bool, onerror: Callable[..., Any] | None,
             onexc: Callable[..., Any] | None) -> ErrorHandler:
    """One callback shape whatever the caller gave (as ``shutil.rmtree`` does)."""
    def handle(function: Callable[..., Any], path: Any, exc: BaseException) -> None:
        if ignore_errors:
            return
        if onexc is not None:
            onexc(function, path, exc)
        elif onerror is not None:
            onerror(function, path, (type(exc), exc, exc.__traceback__))
        else:
            raise exc
    return handle


def _remove_contents(target: Target, handle: ErrorHandler) -> None:
    """Depth first, with the callbacks of ``shutil``'s fd-based route on Linux."""
    try:
        with scan(target) as entries:
            children = list(entries)
    except OSError as exc:
        handle(os.scandir, target.filename, exc)
        return
    for entry in children:
        child = target.child(os.fsdecode(entry.name))
        if entry.is_dir(follow_symlinks=False):
            _remove_contents(child, handle)
            _remove_directory(child, handle)
            continue
        try:
            os_adapter.remove(child)
        except OSError as exc:
            handle(os.unlink, child.filename, exc)


def _remove_directory(target: Target, handle: ErrorHandler) -> None:
    try:
        os_adapter.rmdir(target)
    except OSError as exc:
        handle(os.rmdir, target.filename, exc)


def rmtree(target: Target, ignore_errors: bool = False, onerror: Callable[..., Any] | None = None,
           *, onexc: Callable[..., Any] | None = None, dir_fd: int | None = None) -> None:
    if dir_fd is not None:
        raise refused(target, "shutil.rmtree(dir_fd=...)")
    sys.audit("shutil.rmtree", target.filename, dir_fd)
    handle = _handler(ignore_errors, onerror, onexc)
    try:
        os_adapter.stat(target)
    except OSError as exc:
        handle(os.lstat, target.filename, exc)
        return
    _remove_contents(target, handle)
    _remove_directory(target, handle)


def _make_copystat(table: MountTable, real: Callable[..., None],
                   copy_mode_only: bool) -> Callable[..., None]:
    resolve = table.resolve

    @functools.wraps(real)
    def replacement(src: Any, dst: Any, *, follow_symlinks: bool = True) -> None:
        dest = resolve(dst)
        if dest is not None:  # nothing to store; fail as the real one would if missing
            os_adapter.stat(dest)
            return None
        if copy_mode_only or resolve(src) is None:
            return real(src, dst, follow_symlinks=follow_symlinks)
        st = os.stat(src)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=follow_symlinks)
        os.chmod(dst, stat_module.S_IMODE(st.st_mode))
        return None

    return replacement


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    return {
        ("shutil", "rmtree"): routed(table, shutil.rmtree, rmtree),
        ("shutil", "copystat"): _make_copystat(table, shutil.copystat, copy_mode_only=False),
        ("shutil", "copymode"): _make_copystat(table, shutil.copymode, copy_mode_only=True),
    }
