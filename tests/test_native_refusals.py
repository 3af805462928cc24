"""h5py, lmdb and safetensors on mount paths: refused at once, naming the mount and
``local_copy``; file objects, local paths and ``local_copy`` keep working.

Before, the same calls failed with ``NotADirectoryError`` (h5py, lmdb: the
guard file at the mount path), ``FileNotFoundError`` (safetensors'
``load_file``/``safe_open``) or a ``SafetensorError`` about a temporary
file, none naming the mount or a way out.
"""
from __future__ import annotations

import errno
import io
import os
import subprocess
import sys

import pytest

from tests.shim_fixtures import fresh_mount_path, mount_spec, mounted_dir

h5py = pytest.importorskip("h5py")
lmdb = pytest.importorskip("lmdb")
np = pytest.importorskip("numpy")
safetensors = pytest.importorskip("safetensors")
stnp = pytest.importorskip("safetensors.numpy")


@pytest.fixture
def mounted(local_sidecar):
    with mounted_dir(local_sidecar) as mount:
        yield mount


def _calls(base: str) -> dict:
    tensors = {"x": np.arange(3)}
    return {
        "h5py.File()": lambda: h5py.File(f"{base}/a.h5", "w"),
        "h5py.is_hdf5()": lambda: h5py.is_hdf5(f"{base}/a.h5"),
        "lmdb.open()": lambda: lmdb.open(f"{base}/db"),
        "safetensors.numpy.save_file()": lambda: stnp.save_file(tensors, f"{base}/t.st"),
        "safetensors.numpy.load_file()": lambda: stnp.load_file(f"{base}/t.st"),
        "safetensors.safe_open()": lambda: safetensors.safe_open(f"{base}/t.st", "np"),
        "safetensors.serialize_file()": lambda: safetensors.serialize_file(
            {}, filename=f"{base}/u.st"),
    }


def test_native_calls_on_a_mount_are_refused_naming_local_copy(mounted):
    for shown, call in _calls(mounted.base).items():
        with pytest.raises(OSError, match=rf"{shown.replace('(', '[(]').replace(')', '[)]')}"
                           r" is not supported on mount 'meta'.*local_copy") as info:
            call()
        assert info.value.errno == errno.ENOTSUP, shown
    assert os.listdir(mounted.base) == []


def test_local_paths_and_file_objects_still_work(mounted, tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = np.arange(3)
    assert h5py.is_hdf5(tmp_path / "a.h5")
    stnp.save_file({"y": np.ones(2)}, str(tmp_path / "t.st"))
    assert stnp.load_file(str(tmp_path / "t.st"))["y"].tolist() == [1.0, 1.0]
    with lmdb.open(str(tmp_path / "db")) as env, env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    buffer = io.BytesIO()  # an HDF5 file in a mount file object
    with h5py.File(buffer, "w") as f:
        f["x"] = np.arange(4)
    with open(f"{mounted.base}/b.h5", "wb") as handle:
        handle.write(buffer.getvalue())
    with open(f"{mounted.base}/b.h5", "rb") as handle, h5py.File(handle, "r") as f:
        assert f["x"][()].tolist() == [0, 1, 2, 3]
    with open(f"{mounted.base}/t.st", "wb") as handle:
        handle.write(stnp.save({"z": np.zeros(2)}))
    with open(f"{mounted.base}/t.st", "rb") as handle:
        assert stnp.load(handle.read())["z"].tolist() == [0.0, 0.0]


def test_uninstall_restores_the_originals(local_sidecar):
    originals = (h5py._hl.files.make_fid, h5py.is_hdf5, lmdb.open, safetensors.safe_open,
                 stnp.load_file, stnp.save_file)
    with mounted_dir(local_sidecar):
        assert lmdb.open is not originals[2]
    assert (h5py._hl.files.make_fid, h5py.is_hdf5, lmdb.open, safetensors.safe_open,
            stnp.load_file, stnp.save_file) == originals


_CHILD = """
import sys, vfs_state
vfs_state.install(sys.argv[1])
import h5py, lmdb, numpy, safetensors.numpy
base = sys.argv[2]
for call in (lambda: h5py.File(base + "/a.h5", "r"), lambda: lmdb.open(base + "/db"),
             lambda: safetensors.numpy.load_file(base + "/t.st"),
             lambda: safetensors.numpy.save_file({"x": numpy.zeros(1)}, base + "/t.st")):
    try:
        call()
    except OSError as exc:
        print("refused:", exc.errno, exc.strerror.split(" is not")[0])
"""


def test_imported_after_install_is_refused(tmp_path):
    root = fresh_mount_path()
    spec = mount_spec("meta", root, str(tmp_path / "never.sock"))
    result = subprocess.run([sys.executable, "-c", _CHILD, spec, root],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "VFS_STATE_MOUNTS": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"refused: {errno.ENOTSUP} {name}" for name in
        ("h5py.File()", "lmdb.open()", "safetensors.numpy.load_file()",
         "safetensors.numpy.save_file()")]
    assert not os.path.lexists(root)
