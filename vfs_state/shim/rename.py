"""``os.rename`` / ``os.replace`` on a mount: copy, then a conditional delete.

Object stores have no rename, so a move inside one mount copies each object
and then deletes the source *on the version it copied* (``If-Match``): if
another writer replaced the source meanwhile the delete fails with
``FileExistsError`` and the newer source survives. This is **not atomic**:
a crash between copy and delete leaves both. A source the caller already
observed at another version fails before anything is written. Moves
between mounts, or between a mount and the local disk, raise ``EXDEV`` as a
move across devices does, so ``shutil.move`` falls back to copy + delete.
"""
from __future__ import annotations

import errno
import functools
import posixpath
from collections.abc import Callable
from typing import Any

from vfs_state.reader import MIN_BLOCK, RangeReader
from vfs_state.shim.errors import oserror
from vfs_state.shim.probe import key_kind, kind
from vfs_state.shim.router import MountTable, Target
from vfs_state.versions import UNSEEN, current_store


def _copy_object(target: Target, source_key: str, dest_key: str) -> str | None:
    """Copy one object; returns the version copied (checked against the caller's)."""
    client = target.fs.client
    stat, head = client.read_head(source_key, MIN_BLOCK, observe=False)
    seen = current_store().lookup(client.store_id, source_key)
    if seen is not UNSEEN and seen != stat.version:
        raise oserror(errno.EEXIST, target.filename,
                      message=f"source changed since it was observed [{target.where()}]")
    if len(head) >= stat.size:
        client.write(dest_key, head[:stat.size], stat.size)
    else:
        with RangeReader(client, source_key, stat, head) as reader:
            client.write(dest_key, reader, stat.size)
    return stat.version


def _delete_copied(target: Target, key: str, version: str | None) -> None:
    """DELETE ``key`` only if it still has the version that was copied."""
    client = target.fs.client
    client.observe(key, version)
    client.delete(key)


def _move_file(source: Target, dest: Target) -> None:
    parent = posixpath.dirname(dest.key)
    if parent and key_kind(dest, parent) == "file":
        raise oserror(errno.ENOTDIR, source.filename, dest.filename)
    version = _copy_object(source, source.key, dest.key)
    _delete_copied(source, source.key, version)


def _tree(target: Target) -> tuple[list[str], list[str]]:
    """All keys and directory markers under ``target`` (one recursive listing)."""
    prefix = target.key + "/"
    files: list[str] = []
    markers: list[str] = []
    for keys, _ in target.fs.client.list(prefix, delimiter=None):
        for key in keys:
            (markers if key.endswith("/") else files).append(key)
    return files, markers


def _move_tree(source: Target, dest: Target) -> None:
    client = source.fs.client
    files, markers = _tree(source)
    start = len(source.key) + 1
    client.make_marker(dest.key)
    for marker in markers:
        client.make_marker(f"{dest.key}/{marker[start:]}")
    copied = [(key, _copy_object(source, key, f"{dest.key}/{key[start:]}")) for key in files]
    for key, version in copied:
        _delete_copied(source, key, version)
    for marker in sorted(markers, key=lambda m: m.count("/"), reverse=True):
        client.remove_marker(marker)
    client.remove_marker(source.key)


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
    """Rename inside one mount (files and whole directories)."""
    found = _check(source, dest)
    if found == "file":
        _move_file(source, dest)
    elif found == "dir":
        _move_tree(source, dest)


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
