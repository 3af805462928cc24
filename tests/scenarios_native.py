"""Differential scenarios: native libraries that open paths in C or Rust.

h5py, safetensors and lmdb cannot be routed by the shim: on a mount their
path functions are refused at once (``ENOTSUP`` naming ``local_copy``), and
the working patterns are ``vfs_state.local_copy`` and file objects (see
docs/coverage.md). Each pattern must give what it gives on a local
directory.
"""
from __future__ import annotations

import errno
import os

import pytest

import vfs_state
from tests.differential import differs, ok, raises, scenario

_REFUSED = raises(OSError, errno.ENOTSUP)


def _numpy():
    return pytest.importorskip("numpy")


# -- h5py --

@scenario
def h5py_through_local_copy(base):
    h5py, np = pytest.importorskip("h5py"), _numpy()
    with vfs_state.local_copy(f"{base}/a.h5", "w") as path:
        fresh = os.path.exists(path)
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(6).reshape(2, 3)
            f["x"].attrs["unit"] = "m"
    with vfs_state.local_copy(f"{base}/a.h5", "r+") as path, h5py.File(path, "r+") as f:
        f["x"][0, 0] = 99
        f.create_group("g")["y"] = np.ones(2)
    with vfs_state.local_copy(f"{base}/a.h5") as path, h5py.File(path, "r") as f:
        content = (f["x"][()].tolist(), f["x"].attrs["unit"], sorted(f), f["g/y"][()].tolist())
    return fresh, content, os.listdir(base)


@scenario
def h5py_through_file_objects(base):
    h5py, np = pytest.importorskip("h5py"), _numpy()
    with open(f"{base}/b.h5", "wb") as handle, h5py.File(handle, "w") as f:
        f.create_dataset("z", data=np.linspace(0, 1, 5), compression="gzip")
    with open(f"{base}/b.h5", "rb") as handle, h5py.File(handle, "r") as f:
        return f["z"][()].tolist(), f["z"].compression


@differs("h5py.File on a mount path is refused at once, naming local_copy",
         real=ok(([1, 2], [])), mount=_REFUSED)
def h5py_file_on_the_path(base):
    h5py, np = pytest.importorskip("h5py"), _numpy()
    with h5py.File(f"{base}/c.h5", "w") as f:
        f["x"] = np.array([1, 2])
    with h5py.File(f"{base}/c.h5", "r") as f:
        return f["x"][()].tolist(), list(f["x"].attrs)


# -- safetensors --

@scenario
def safetensors_through_local_copy(base):
    stnp, np = pytest.importorskip("safetensors.numpy"), _numpy()
    tensors = {"w": np.arange(4, dtype="float32"), "b": np.zeros((2, 2), dtype="int64")}
    with vfs_state.local_copy(f"{base}/m.safetensors", "w") as path:
        stnp.save_file(tensors, path, metadata={"step": "1"})
    with vfs_state.local_copy(f"{base}/m.safetensors") as path:
        loaded = stnp.load_file(path)
    return ({k: (v.dtype.str, v.tolist()) for k, v in sorted(loaded.items())},
            os.path.getsize(f"{base}/m.safetensors"))


@scenario
def safetensors_bytes_through_open(base):
    stnp, np = pytest.importorskip("safetensors.numpy"), _numpy()
    with open(f"{base}/m.safetensors", "wb") as handle:
        handle.write(stnp.save({"w": np.arange(3, dtype="float64")}))
    with open(f"{base}/m.safetensors", "rb") as handle:
        loaded = stnp.load(handle.read())
    return loaded["w"].tolist()


@differs("safetensors.numpy.save_file on a mount path is refused at once, naming local_copy",
         real=ok([0.0, 0.0]), mount=_REFUSED)
def safetensors_save_file_on_the_path(base):
    stnp, np = pytest.importorskip("safetensors.numpy"), _numpy()
    stnp.save_file({"w": np.zeros(2)}, f"{base}/direct.safetensors")
    return stnp.load_file(f"{base}/direct.safetensors")["w"].tolist()


@differs("safetensors.numpy.load_file on a mount path is refused at once, naming local_copy",
         real=ok([1, 2]), mount=_REFUSED)
def safetensors_load_file_on_the_path(base):
    stnp, np = pytest.importorskip("safetensors.numpy"), _numpy()
    with open(f"{base}/written.safetensors", "wb") as handle:
        handle.write(stnp.save({"w": np.array([1, 2])}))
    return stnp.load_file(f"{base}/written.safetensors")["w"].tolist()


# -- lmdb --

@scenario
def lmdb_through_local_copy_of_a_directory(base):
    lmdb = pytest.importorskip("lmdb")
    with vfs_state.local_copy(f"{base}/db", "w") as path:
        with lmdb.open(path, map_size=1 << 20, lock=False) as env, env.begin(write=True) as txn:
            txn.put(b"count", b"1")
    with vfs_state.local_copy(f"{base}/db", "r+") as path:
        with lmdb.open(path, map_size=1 << 20, lock=False) as env, env.begin(write=True) as txn:
            txn.put(b"count", str(int(txn.get(b"count")) + 1).encode())
            txn.put(b"other", b"x")
    with vfs_state.local_copy(f"{base}/db") as path:
        with lmdb.open(path, readonly=True, lock=False) as env, env.begin() as txn:
            content = list(txn.cursor())
    return content, sorted(os.listdir(f"{base}/db"))


@differs("lmdb.open on a mount path is refused at once, naming local_copy",
         real=ok(b"v"), mount=_REFUSED)
def lmdb_open_on_the_path(base):
    lmdb = pytest.importorskip("lmdb")
    with lmdb.open(f"{base}/direct", map_size=1 << 20) as env:
        with env.begin(write=True) as txn:
            txn.put(b"k", b"v")
        with env.begin() as txn:
            return txn.get(b"k")
