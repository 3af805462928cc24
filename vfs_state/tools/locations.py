"""Where a command-line path points: a key on a mount, or a local file.

A mount path is written ``NAME:KEY`` (``NAME`` from ``VFS_STATE_MOUNTS``),
``:KEY`` for the sidecar given by ``--socket``, or as the absolute path the
shim would use (``/state/meta/KEY`` when ``meta`` is mounted at
``/state/meta``). Anything else is a local path (``./a:b`` forces local).
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field

from vfs_state.mounts import Mount, mounts_from_env

_REMOTE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)?:(.*)$", re.S)
SOCKET_NAME = "socket"


class UsageError(Exception):
    """Bad arguments: exit status 2."""


@dataclass(frozen=True)
class Location:
    """A resolved argument: ``mount`` is None for a local path."""

    text: str
    key: str
    mount: Mount | None = None

    @property
    def remote(self) -> bool:
        return self.mount is not None

    @property
    def label(self) -> str:
        """How messages name it: ``meta:dir/a.json`` or the local path."""
        if self.mount is None:
            return self.key
        return f"{self.mount.name}:{self.key}"

    def child(self, name: str) -> Location:
        key = posixpath.join(self.key, name) if self.remote else os.path.join(self.key, name)
        return Location(self.text, key, self.mount)


@dataclass
class Resolver:
    """Turns argument text into ``Location``s for one invocation."""

    socket: str | None = None
    mounts: list[Mount] = field(default_factory=list)

    @classmethod
    def from_env(cls, socket: str | None) -> Resolver:
        try:
            mounts = mounts_from_env()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return cls(socket, mounts)

    def socket_mount(self) -> Mount:
        if not self.socket:
            raise UsageError("':KEY' names the --socket sidecar, but no --socket was given")
        return Mount(SOCKET_NAME, "/" + SOCKET_NAME, socket=os.path.abspath(self.socket))

    def mount(self, name: str) -> Mount:
        if not name:
            return self.socket_mount()
        for mount in self.mounts:
            if mount.name == name:
                return mount
        known = ", ".join(m.name for m in self.mounts) or "none: VFS_STATE_MOUNTS is not set"
        raise UsageError(f"unknown mount {name!r} (known: {known})")

    def resolve(self, text: str, remote_only: bool = False) -> Location:
        """``text`` as a location; ``remote_only`` reads a bare key on ``--socket``."""
        match = _REMOTE.match(text)
        if match:
            mount = self.mount(match.group(1) or "")
            return Location(text, _clean_key(match.group(2), text), mount)
        if text.startswith("/"):
            normal = posixpath.normpath(text)
            for mount in self.mounts:
                if normal == mount.path or normal.startswith(mount.path + "/"):
                    return Location(text, _clean_key(normal[len(mount.path):], text), mount)
        if remote_only:
            if self.socket:
                return Location(text, _clean_key(text, text), self.socket_mount())
            raise UsageError(f"{text!r} is not on a mount: write NAME:KEY, a mount path, "
                             "or give --socket")
        return Location(text, text)


def _clean_key(key: str, text: str) -> str:
    """A key relative to the mount root: no leading '/', no '..' escaping it."""
    stripped = key.strip("/")
    if not stripped:
        return ""
    normal = posixpath.normpath(stripped)
    if normal == ".." or normal.startswith("../"):
        raise UsageError(f"{text!r} points outside its mount")
    return "" if normal == "." else normal
