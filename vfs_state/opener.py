"""pyfilesystem2 opener for the ``vfsstate`` scheme (docs/fsspec.md).

URL forms, registered by the ``fs.opener`` entry point:

* ``vfsstate://NAME`` or ``vfsstate://NAME/sub/dir``: the mount ``NAME`` from
  ``VFS_STATE_MOUNTS`` (its socket and write mode), optionally a directory in it;
* ``vfsstate:///path/to/sidecar.sock``: an explicit sidecar socket (a resource
  starting with ``/``); add ``!sub/dir`` for a directory inside it and
  ``?write=passthrough`` for streamed writes.
"""
from __future__ import annotations

from typing import Any

from fs.opener import Opener
from fs.opener.errors import OpenerError

from vfs_state.mounts import mounts_from_env
from vfs_state.statefs import StateFS


class VfsStateOpener(Opener):
    """Opens ``StateFS`` objects from ``vfsstate://`` URLs."""

    protocols = ["vfsstate"]

    def open_fs(self, fs_url: str, parse_result: Any, writeable: bool, create: bool,
                cwd: str) -> Any:
        resource = parse_result.resource
        write = parse_result.params.get("write")
        if resource.startswith("/"):
            statefs, sub = StateFS(resource, write or "buffered"), ""
        else:
            name, _, sub = resource.partition("/")
            mount = next((m for m in mounts_from_env() if m.name == name), None)
            if mount is None:
                raise OpenerError(f"no mount named {name!r} in VFS_STATE_MOUNTS ({fs_url})")
            statefs = StateFS(mount.socket, write or mount.write_mode, name=name,
                              lazy_open=mount.lazy_open)
        # fs.open_fs drops the "!path" part of a URL; a view of the root instead
        # would write where the caller never asked, so the opener applies it.
        sub = "/".join(p.strip("/") for p in (sub, parse_result.path or "") if p.strip("/"))
        if not sub:
            return statefs
        if create:
            statefs.makedirs(sub, recreate=True)
        return statefs.opendir(sub, factory=_closing_subfs)


def _closing_subfs(parent: StateFS, path: str) -> Any:
    """A sub-directory view that closes its ``StateFS`` when it is closed."""
    from fs.subfs import ClosingSubFS
    return ClosingSubFS(parent, path)
