"""Helpers for the shim tests: a mount path routed to a real sidecar.

Mount paths are fresh absolute paths that do not exist on the local disk,
so anything the shim failed to route would fail loudly instead of quietly
touching a local directory.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import vfs_state


@dataclass
class MountedDir:
    """``base`` is a fresh, existing directory inside ``mount_path``."""

    mount_path: str
    base: str
    socket_path: str
    spec: str


def mount_spec(name: str, path: str, socket_path: str, write: str = "buffered") -> str:
    return f"{name}:{path}:write={write},socket={socket_path}"


def fresh_mount_path() -> str:
    path = f"/vfs-shim-test-{uuid.uuid4().hex[:10]}"
    assert not os.path.lexists(path)
    return path


@contextmanager
def mounted_dir(sidecar) -> Iterator[MountedDir]:
    """Install the shim with one mount on ``sidecar``; a fresh directory inside it."""
    path = fresh_mount_path()
    spec = mount_spec("meta", path, sidecar.socket_path)
    with vfs_state.installed(spec):
        base = f"{path}/run-{uuid.uuid4().hex[:8]}"
        os.mkdir(base)
        yield MountedDir(path, base, sidecar.socket_path, spec)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` with the plain builtin ``open`` (routed by the shim on a mount)."""
    with open(path, "wb") as handle:
        handle.write(data)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
