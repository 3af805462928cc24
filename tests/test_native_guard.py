"""Native writers on a mount path never land on the local disk (the mount guard).

pyarrow, pandas (through pyarrow) and polars open and create files in C/Rust,
below the shim. ``install()`` puts a guard file at each mount path, so such a
call fails (``ENOTDIR``) instead of creating the mount path on the real disk.
Another layer may later make these calls work through the store; the checks
accept that too, but never data on the local disk.
"""
from __future__ import annotations

import os
import posix
import stat
import uuid

import pytest

import vfs_state
from tests.shim_fixtures import fresh_mount_path, mount_spec
from vfs_state.shim import guard

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")


def _pyarrow_dataset(target: str) -> None:
    table = pa.table({"k": [1, 1, 2], "v": ["a", "b", "c"]})
    pq.write_to_dataset(table, root_path=target, partition_cols=["k"])


def _pandas_partitioned(target: str) -> None:
    pd.DataFrame({"k": [1, 1, 2], "v": ["a", "b", "c"]}).to_parquet(target, partition_cols=["k"])


def _polars_mkdir(target: str) -> None:
    pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}).write_parquet(f"{target}/x.parquet", mkdir=True)


def _polars_partition_by(target: str) -> None:
    pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}).write_parquet(target, partition_by="k")


WRITERS = {"pyarrow.write_to_dataset": _pyarrow_dataset,
           "pandas.to_parquet(partition_cols)": _pandas_partitioned,
           "polars.write_parquet(mkdir=True)": _polars_mkdir,
           "polars.write_parquet(partition_by)": _polars_partition_by}


def _files_in_store(target: str) -> list[str]:
    """Files under ``target`` as the shim (the store) sees them."""
    if not os.path.isdir(target):
        return []
    return [os.path.join(d, f) for d, _, files in os.walk(target) for f in files]


@pytest.mark.parametrize("writer", list(WRITERS))
def test_native_writer_never_reaches_the_local_disk(local_sidecar, writer):
    path = fresh_mount_path()
    target = f"{path}/{uuid.uuid4().hex[:8]}"
    with vfs_state.installed(mount_spec("meta", path, local_sidecar.socket_path)):
        assert stat.S_ISREG(posix.lstat(path).st_mode) and guard.placed() == [path]
        assert os.path.isdir(path)  # the shim never shows the guard
        try:
            WRITERS[writer](target)
        except Exception as exc:  # noqa: BLE001 - the class is checked below
            failed: BaseException | None = exc
        else:
            failed = None
        if failed is not None:
            assert isinstance(failed, OSError) or "Not a directory" in str(failed), failed
        else:
            assert _files_in_store(target), f"{writer} returned but the store has nothing"
        # nothing beneath the mount path on the local disk: it is still the guard file
        assert stat.S_ISREG(posix.lstat(path).st_mode)
        with pytest.raises(NotADirectoryError):
            posix.lstat(f"{target}")
    assert not os.path.lexists(path), "guard left behind after uninstall"


def test_an_empty_directory_is_restored_and_a_full_one_refused(local_sidecar, tmp_path):
    path = fresh_mount_path()
    os.mkdir(path)
    try:
        with vfs_state.installed(mount_spec("meta", path, local_sidecar.socket_path)):
            assert stat.S_ISREG(posix.lstat(path).st_mode)
        assert os.path.isdir(path) and not os.listdir(path)
        with open(f"{path}/local.txt", "w") as handle:
            handle.write("left by an unshimmed run")
        with pytest.raises(ValueError, match="not empty"):
            vfs_state.install(mount_spec("meta", path, local_sidecar.socket_path))
        assert not vfs_state.shim.is_installed()
        assert open(f"{path}/local.txt").read() == "left by an unshimmed run"
    finally:
        vfs_state.uninstall()
        if os.path.isdir(path):
            for name in os.listdir(path):
                os.unlink(os.path.join(path, name))
            os.rmdir(path)


def test_the_guard_goes_when_the_process_exits_without_uninstall(local_sidecar):
    import subprocess
    import sys
    path = fresh_mount_path()
    code = ("import posix, stat, sys, vfs_state; vfs_state.install(sys.argv[1]); "
            "assert stat.S_ISREG(posix.lstat(sys.argv[2]).st_mode)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code, mount_spec("meta", path, local_sidecar.socket_path),
                    path], check=True, timeout=60, env=dict(os.environ, PYTHONPATH=root))
    assert not os.path.lexists(path)
