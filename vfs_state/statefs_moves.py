"""How ``StateFS`` moves and copies: copy each object, then delete the source
*on the version it copied*.

Object stores have no rename. A copy reads the source without recording an
observation, refuses if the caller observed the source at another version
(``VersionConflict``, before anything is written), and writes the
destination conditional on what the caller observed of it. A move then
deletes the source with ``If-Match`` on the version copied, so a writer who
replaced the source meanwhile makes the delete fail (``VersionConflict``)
and the newer source survives. Not atomic: a crash between copy and delete
leaves both. Rules: docs/consistency.md; as the shim uses them: docs/shim.md.
"""
from __future__ import annotations

import errno

from vfs_state.client import SidecarClient
from vfs_state.errors import VersionConflict
from vfs_state.reader import MIN_BLOCK, RangeReader
from vfs_state.versions import UNSEEN, current_store, precondition_headers


def copy_object(client: SidecarClient, source: str, dest: str) -> str | None:
    """Copy one object; the version copied (it must be the one the caller observed).

    Raises ``FileNotFoundError`` when ``source`` is not an object.
    """
    stat, head = client.read_head(source, MIN_BLOCK, observe=False)
    seen = current_store().lookup(client.store_id, source)
    if seen is not UNSEEN and seen != stat.version:
        raise VersionConflict(errno.EEXIST,
                              f"source changed since it was observed [{client.where}]", source)
    if len(head) >= stat.size:
        client.write(dest, head[:stat.size], stat.size)
    else:
        with RangeReader(client, source, stat, head) as reader:
            client.write(dest, reader, stat.size)
    return stat.version


def delete_copied(client: SidecarClient, key: str, version: str | None) -> None:
    """DELETE ``key`` only if it still has the version that was copied."""
    client.delete(key, conditions=precondition_headers(version))


def tree(client: SidecarClient, key: str) -> tuple[list[str], list[str]]:
    """Every object key and directory marker under ``key`` (one recursive listing)."""
    prefix = key + "/" if key else ""
    files: list[str] = []
    markers: list[str] = []
    for keys, _ in client.list(prefix, delimiter=None):
        for child in keys:
            if child != prefix:
                (markers if child.endswith("/") else files).append(child)
    return files, markers


def move_tree(client: SidecarClient, source: str, dest: str) -> None:
    """Move every object and marker under ``source`` to ``dest``, then drop ``source``.

    All objects are copied before any source is deleted, so a refused copy
    leaves every source in place.
    """
    files, markers = tree(client, source)
    start = len(source) + 1
    client.make_marker(dest)
    for marker in markers:
        client.make_marker(f"{dest}/{marker[start:]}")
    copied = [(key, copy_object(client, key, f"{dest}/{key[start:]}")) for key in files]
    for key, version in copied:
        delete_copied(client, key, version)
    for marker in sorted(markers, key=lambda m: m.count("/"), reverse=True):
        client.remove_marker(marker)
    client.remove_marker(source)
