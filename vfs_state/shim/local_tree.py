"""``local_copy`` of a directory: a prefix as a local tree, synced back on exit.

For formats made of several files (``shelve`` on ``dbm.dumb``: ``.dat``,
``.dir``, ``.bak``; a partitioned dataset). On entry every key under the
prefix is downloaded and its version remembered; on exit additions,
changes and deletions go back. The sync first checks every key it will
touch against the version seen on entry (absent for additions) and writes
nothing if one moved on (``FileExistsError`` naming them). Then it writes,
each write and delete still conditional. Not atomic: a writer that slips
in between the check and the writes makes that one key fail, and the keys
already written stay written (the error names what was and was not
synced). Empty local directories are not stored.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable

from vfs_state.shim.errors import converted, oserror
from vfs_state.shim.router import Target

_CHUNK = 1 << 20


def digest(path: str) -> str:
    """sha256 of a local file."""
    import hashlib  # loads OpenSSL: for local copies only, not at start-up

    hashed = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hashed.update(chunk)
    return hashed.hexdigest()


class Snapshot:
    """What the tree was on entry: relative name -> (version, digest)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str | None, str]] = {}


def download_tree(target: Target, root: str,
                  fetch: Callable[[Target, str], str | None]) -> Snapshot:
    """Materialise ``target`` under ``root``; ``fetch(child, path)`` returns the version."""
    snapshot = Snapshot()
    with converted(target):
        for name in list(target.fs.walk_files(target.fs_path)):
            path = os.path.join(root, *name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            version = fetch(target.child(name), path)
            snapshot.seen[name] = (version, digest(path))
    return snapshot


def _local_files(root: str) -> dict[str, str]:
    """relative name (``/``-separated) -> local path, for every file under ``root``."""
    found: dict[str, str] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root).replace(os.sep, "/")] = path
    return found


def sync_tree(target: Target, root: str, snapshot: Snapshot) -> list[str]:
    """Send additions, changes and deletions back; the names written or deleted."""
    local = _local_files(root) if os.path.isdir(root) else {}
    plan: list[tuple[str, str | None]] = []  # (name, local path or None to delete)
    for name, found in sorted(local.items()):
        seen = snapshot.seen.get(name)
        if seen is None or digest(found) != seen[1]:
            plan.append((name, found))
    plan += [(name, None) for name in sorted(set(snapshot.seen) - set(local))]
    _check(target, snapshot, [name for name, _ in plan])
    done: list[str] = []
    for name, source in plan:
        child = target.child(name)
        before = snapshot.seen.get(name)
        expect = before[0] if before else None  # None: must still be absent
        try:
            with converted(child):
                if source is None:
                    target.fs.remove(child.fs_path, expect=expect)
                else:
                    with open(source, "rb") as handle:
                        target.fs.upload(child.fs_path, handle, expect=expect,
                                         create_parents=True)
        except OSError as exc:
            exc.add_note(f"local_copy sync of {target.filename!r} stopped at {name!r}; "
                         f"already synced: {done or 'nothing'}")
            raise
        done.append(name)
    return done


def _check(target: Target, snapshot: Snapshot, names: list[str]) -> None:
    """Every key to touch must still be at the version seen on entry."""
    moved = []
    with converted(target):
        for name in names:
            info = target.fs.probe(target.child(name).fs_path)
            now = None if info is None else ("<dir>" if info.is_dir else info.get("vfs", "version"))
            before = snapshot.seen.get(name)
            if now != (before[0] if before else None):
                moved.append(name)
    if moved:
        raise oserror(errno.EEXIST, target.filename, message=(
            f"local_copy: {', '.join(moved)} changed in the store since the copy was made; "
            "nothing was written"))
