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


def test_bang_path_is_a_directory_not_the_root(local_sidecar, monkeypatch):
    """``fs.open_fs`` drops ``!path`` itself; before, the root was opened silently."""
    sub = f"opener-{uuid.uuid4().hex[:8]}"
    with fs.open_fs(f"vfsstate://{local_sidecar.socket_path}!{sub}/a", create=True) as view:
        view.writetext("f.txt", "x")
    monkeypatch.setenv("VFS_STATE_MOUNTS",
                       f"data:/vfs-opener-unused:socket={local_sidecar.socket_path}")
    with fs.open_fs(f"vfsstate://data/{sub}!a") as view:
        assert view.listdir("/") == ["f.txt"]
    whole = StateFS(local_sidecar.socket_path)
    assert whole.readtext(f"{sub}/a/f.txt") == "x"
    assert not whole.exists("f.txt")


def test_unknown_mount_name(monkeypatch):
    monkeypatch.delenv("VFS_STATE_MOUNTS", raising=False)
    with pytest.raises(fs.opener.errors.OpenerError, match="nope"):
        fs.open_fs("vfsstate://nope")


def _declared_entry_points() -> dict[str, str]:
    import configparser
    import os
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "setup.cfg"))
    lines = parser["options.entry_points"]
    return {group: lines[group] for group in ("fs.opener", "fsspec.specs")}


def test_setup_cfg_declares_the_entry_points():
    declared = _declared_entry_points()
    assert "vfsstate = vfs_state.opener:VfsStateOpener" in declared["fs.opener"]
    assert "vfsstate = vfs_state.fsspec_fs:VfsStateFileSystem" in declared["fsspec.specs"]


OPEN_BY_ENTRY_POINT = """
import sys, fs
with fs.open_fs("vfsstate://" + sys.argv[1] + "!" + sys.argv[2], create=True) as sub:
    sub.writetext("f.txt", "by entry point")
    print(type(sub).__name__, sub.readtext("f.txt"))
"""


def test_open_fs_finds_the_opener_by_entry_point(local_sidecar):
    """A fresh interpreter, no registration by hand: the installed entry point is used."""
    import os
    import subprocess
    import sys
    from importlib.metadata import entry_points
    if not entry_points(group="fs.opener", name="vfsstate"):
        pytest.skip("vfs-state is not installed (entry points come with the installed package)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sub = f"opener-{uuid.uuid4().hex[:8]}"
    result = subprocess.run([sys.executable, "-c", OPEN_BY_ENTRY_POINT,
                             local_sidecar.socket_path, sub],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": root})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ClosingSubFS", "by", "entry", "point"]
    assert StateFS(local_sidecar.socket_path).readtext(f"{sub}/f.txt") == "by entry point"
