"""``os.rename`` / ``os.replace`` on a mount: copy, then a conditional delete.

POSIX's rules (what may replace what, ``ENOTEMPTY``, ``EINVAL`` for a
directory into itself) are checked here; the move itself is
``StateFS.move``/``movedir``, compare-and-set safe: each object is copied,
then the source deleted *on the version copied*, so a source replaced
meanwhile survives (``FileExistsError``). **Not atomic**. Moves
between mounts, or between a mount and the local disk, raise ``EXDEV`` as a
move across devices does, so ``shutil.move`` falls back to copy + delete.
"""
from __future__ import annotations

import errno
import functools
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vfs_state.shim.errors import oserror
from vfs_state.shim.probe import key_kind, kind
from vfs_state.shim.router import MountTable, Target


@contextmanager
def _both_named(source: Target, dest: Target) -> Iterator[None]:
    """Errors from ``StateFS`` naming both of the caller's paths, as ``os.rename`` does."""
    try:
        yield
    except OSError as exc:
        if exc.filename in (source.key, source.fs_path):
            exc.filename = source.filename
        elif exc.filename in (dest.key, dest.fs_path):
            exc.filename = dest.filename
        raise
    except Exception as exc:
        from vfs_state._pyfs import errors as fs_errors  # fs.base: not at start-up
        from vfs_state._pyfs import to_oserror
        if not isinstance(exc, fs_errors.FSError):
            raise
        number = to_oserror(exc, source.filename).errno or errno.EIO
        raise oserror(number, source.filename, dest.filename) from None


def _check(source: Target, dest: Target) -> str | None:
    """Raise what a local rename would; returns the source kind, None for a no-op."""
    names = (source.filename, dest.filename)
    if not source.key or not dest.key:
        raise oserror(errno.EBUSY, *names)
    found = kind(source)
    if found is None:
        raise oserror(errno.ENOENT, *names)
    if source.key == dest.key:
        return None
    existing = kind(dest)
    if found == "file":
        if source.dir_only:
            raise oserror(errno.ENOTDIR, *names)
        if existing == "dir":
            raise oserror(errno.EISDIR, *names)
        if dest.dir_only:
            raise oserror(errno.ENOTDIR, *names)
        return found
    if dest.key.startswith(source.key + "/"):
        raise oserror(errno.EINVAL, *names)
    if existing == "file":
        raise oserror(errno.ENOTDIR, *names)
    if existing == "dir" and dest.fs.listdir(dest.fs_path):
        raise oserror(errno.ENOTEMPTY, *names)
    return found


def move_within(source: Target, dest: Target) -> None:
    """Rename inside one mount (files and whole directories), through ``StateFS``."""
    found = _check(source, dest)
    if found is None:
        return
    with _both_named(source, dest):
        if found == "dir":
            source.fs.movedir(source.fs_path, dest.fs_path, create=True)
            return
        parent = posixpath.dirname(dest.key)
        if parent and key_kind(dest, parent) == "file":
            raise oserror(errno.ENOTDIR, source.filename, dest.filename)
        source.fs.move(source.fs_path, dest.fs_path, overwrite=True, create_parents=True)


def _cross_device(source: Target | None, dest: Target | None, src: Any, dst: Any,
                  real_lstat: Callable[..., Any]) -> OSError:
    """Source must exist (else ``ENOENT``); then ``EXDEV``, as across devices."""
    names = (source.filename if source else src, dest.filename if dest else dst)
    if source is None:
        real_lstat(src)
    elif kind(source) is None:
        return oserror(errno.ENOENT, *names)
    return oserror(errno.EXDEV, *names)


def make_rename(table: MountTable, real: Callable[..., None],
                real_lstat: Callable[..., Any]) -> Callable[..., None]:
    """A replacement for ``os.rename`` or ``os.replace`` (same rules on POSIX)."""
    resolve = table.resolve

    @functools.wraps(real)
    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        source, dest = resolve(src), resolve(dst)
        if source is None and dest is None:
            return real(src, dst, *args, **kwargs)
        if args or any(v is not None for v in kwargs.values()):
            where = (source or dest).where()  # type: ignore[union-attr]
            raise oserror(errno.ENOTSUP, src, dst,
                          message=f"rename with dir_fd is not supported on {where}")
        if source is None or dest is None or source.mount != dest.mount:
            raise _cross_device(source, dest, src, dst, real_lstat)
        move_within(source, dest)
        return None

    return rename


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    import os

    return {("os", "rename"): make_rename(table, os.rename, os.lstat),
            ("os", "replace"): make_rename(table, os.replace, os.lstat)}
