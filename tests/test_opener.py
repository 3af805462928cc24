"""``fs.open_fs("vfsstate://...")`` on a real local sidecar."""
from __future__ import annotations

import uuid

import fs
import fs.opener
import pytest

from vfs_state.opener import VfsStateOpener
from vfs_state.statefs import StateFS

# The `fs.opener` entry point does this once the package is (re)installed.
fs.opener.registry.install(VfsStateOpener)


def test_explicit_socket(local_sidecar):
    name = f"opener-{uuid.uuid4().hex[:8]}.txt"
    with fs.open_fs(f"vfsstate://{local_sidecar.socket_path}") as statefs:
        assert isinstance(statefs, StateFS)
        statefs.writetext(name, "hi")
        assert statefs.readtext(name) == "hi"


def test_mount_name_and_subdir(local_sidecar, monkeypatch):
    monkeypatch.setenv("VFS_STATE_MOUNTS",
                       f"data:/vfs-opener-unused:socket={local_sidecar.socket_path}")
    sub = f"opener-{uuid.uuid4().hex[:8]}"
    with fs.open_fs(f"vfsstate://data/{sub}", create=True) as view:
        view.writetext("f.txt", "x")
    with fs.open_fs(f"vfsstate://{local_sidecar.socket_path}") as whole:
        assert whole.readtext(f"{sub}/f.txt") == "x"


def test_unknown_mount_name(monkeypatch):
    monkeypatch.delenv("VFS_STATE_MOUNTS", raising=False)
    with pytest.raises(fs.opener.errors.OpenerError, match="nope"):
        fs.open_fs("vfsstate://nope")
