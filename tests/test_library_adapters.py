"""pyarrow, pandas, polars and numpy on plain mount paths (real local sidecar).

Mount paths do not exist on the local disk, so any call the adapters failed
to route would fail (or write locally, which the last check looks for).
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import vfs_state
import vfs_state.shim
from tests.shim_fixtures import mounted_dir

FRAME = {"a": [1, 2, 3, 4], "b": ["x", "y", "x", "y"]}


@pytest.fixture
def base(local_sidecar):
    with mounted_dir(local_sidecar) as mounted:
        yield mounted.base


def test_pyarrow_parquet_feather_csv(base):
    table = pa.table(FRAME)
    pq.write_table(table, f"{base}/t.parquet")
    assert pq.read_table(f"{base}/t.parquet").to_pydict() == FRAME
    assert pq.read_metadata(f"{base}/t.parquet").num_rows == 4
    with pq.ParquetFile(f"{base}/t.parquet") as parquet:
        assert parquet.read().to_pydict() == FRAME
    feather.write_feather(table, f"{base}/t.feather")
    assert feather.read_table(f"{base}/t.feather").to_pydict() == FRAME
    pacsv.write_csv(table, f"{base}/t.csv")
    assert pacsv.read_csv(f"{base}/t.csv").to_pydict() == FRAME


def test_pyarrow_partitioned_dataset(base):
    pq.write_to_dataset(pa.table(FRAME), f"{base}/parts", partition_cols=["b"])
    assert sorted(os.listdir(f"{base}/parts")) == ["b=x", "b=y"]
    read = ds.dataset(f"{base}/parts", format="parquet", partitioning="hive").to_table()
    assert sorted(read.column("a").to_pylist()) == FRAME["a"]


def test_pandas_parquet_and_partitions(base):
    frame = pd.DataFrame(FRAME)
    frame.to_parquet(f"{base}/p.parquet")
    assert pd.read_parquet(f"{base}/p.parquet").to_dict() == frame.to_dict()
    frame.to_parquet(f"{base}/pp", partition_cols=["b"])
    back = pd.read_parquet(f"{base}/pp")
    assert sorted(back["a"].tolist()) == FRAME["a"]
    frame.to_feather(f"{base}/p.feather")
    assert pd.read_feather(f"{base}/p.feather").to_dict() == frame.to_dict()


def test_polars(base):
    frame = pl.DataFrame(FRAME)
    frame.write_parquet(f"{base}/f.parquet")
    frame.write_csv(f"{base}/f.csv")
    frame.write_ipc(f"{base}/f.ipc")
    assert pl.read_parquet(f"{base}/f.parquet").to_dict(as_series=False) == FRAME
    assert pl.read_csv(f"{base}/f.csv").to_dict(as_series=False) == FRAME
    assert pl.read_ipc(f"{base}/f.ipc").to_dict(as_series=False) == FRAME
    assert pl.scan_parquet(f"{base}/f.parquet").collect().to_dict(as_series=False) == FRAME
    with pytest.raises(FileNotFoundError):
        frame.write_parquet(f"{base}/missing/f.parquet")
    frame.write_parquet(f"{base}/made/f.parquet", mkdir=True)
    assert os.path.isfile(f"{base}/made/f.parquet")
    frame.write_parquet(f"{base}/pb", partition_by="b")
    back = pl.read_parquet(f"{base}/pb")
    assert sorted(back["a"].to_list()) == FRAME["a"]


def test_polars_deferred_sink_is_refused_and_writes_nothing(base):
    with pytest.raises(OSError) as caught:
        pl.LazyFrame(FRAME).sink_parquet(f"{base}/later.parquet", lazy=True)
    assert caught.value.errno == errno.ENOTSUP
    assert "lazy=True" in str(caught.value) and "mount" in str(caught.value)
    assert os.listdir(base) == []


@pytest.mark.parametrize("call", [
    lambda path: pa.memory_map(path),
    lambda path: pa.create_memory_map(path, 16),
], ids=["memory_map", "create_memory_map"])
def test_pyarrow_memory_maps_are_refused_with_a_way(base, call):
    with pytest.raises(OSError) as caught:
        call(f"{base}/x.arrow")
    assert caught.value.errno == errno.ENOTSUP
    message = str(caught.value)
    assert "pyarrow" in message and "mount" in message and "input_stream" in message
    assert os.listdir(base) == []


@pytest.mark.parametrize("call", [
    lambda path: pq.read_table(path),
    lambda path: pq.ParquetFile(path),
    lambda path: pd.read_parquet(path),
    lambda path: pa.input_stream(path),
], ids=["read_table", "ParquetFile", "pandas", "input_stream"])
def test_pyarrow_missing_file_error_names_the_mount_path(base, call):
    with pytest.raises(FileNotFoundError) as caught:
        call(f"{base}/nope.parquet")
    assert str(caught.value).endswith(f"{base}/nope.parquet")


def test_pyarrow_writer_that_fails_to_start_stores_nothing(base):
    import pyarrow.orc as orc
    with open(f"{base}/kept.csv", "w") as f:
        f.write("a\n1\n")
    with pytest.raises(TypeError):
        pacsv.CSVWriter(f"{base}/kept.csv", "not a schema")
    with pytest.raises(ValueError):
        orc.ORCWriter(f"{base}/new.orc", compression="no such codec")
    with pytest.raises(TypeError):
        pa.ipc.new_file(f"{base}/new.arrow", "not a schema")
    assert sorted(os.listdir(base)) == ["kept.csv"]
    with open(f"{base}/kept.csv") as f:
        assert f.read() == "a\n1\n"


def test_pyarrow_writer_whose_own_close_fails_stores_nothing(base, monkeypatch):
    """A writer that could not finish its file (say, the footer) leaves the stored
    file as it was, and says why."""
    import pyarrow.orc as orc
    with open(f"{base}/kept.orc", "wb") as f:
        f.write(b"old")
    writer = orc.ORCWriter(f"{base}/kept.orc")
    writer.write(pa.table({"a": [1]}))

    pyarrows = type(writer).__mro__[1]
    closes = pyarrows.close

    def broken(self):  # pyarrow's own close, failing once it is done
        closes(self)
        raise OSError(errno.EIO, "footer not written")
    monkeypatch.setattr(pyarrows, "close", broken)
    with pytest.raises(OSError, match="footer not written"):
        writer.close()
    monkeypatch.undo()  # before the writer's __del__ closes it again
    del writer
    with open(f"{base}/kept.orc", "rb") as f:
        assert f.read() == b"old"


def test_pyarrow_writer_closed_onto_a_directory_fails_loudly(base):
    os.mkdir(f"{base}/d")
    writer = pacsv.CSVWriter(f"{base}/d", pa.schema([("a", pa.int64())]))
    writer.write_table(pa.table({"a": [1]}))
    with pytest.raises(IsADirectoryError):
        writer.close()
    assert os.path.isdir(f"{base}/d") and os.listdir(base) == ["d"]


def test_pyarrow_writer_classes_keep_their_type(base):
    import pyarrow.orc as orc
    schema = pa.schema([("a", pa.int64())])
    with pa.ipc.new_file(f"{base}/f.arrow", schema) as writer:
        assert isinstance(writer, pa.lib._RecordBatchFileWriter)
        assert type(writer).__name__ == "RecordBatchFileWriter"
    with orc.ORCWriter(f"{base}/f.orc") as writer:
        assert isinstance(writer, orc.ORCWriter)
    local = pa.BufferOutputStream()  # not a path: the writer as pyarrow made it
    with pacsv.CSVWriter(local, schema) as writer:
        writer.write_table(pa.table({"a": [7]}))
    assert local.getvalue().to_pybytes() == b'"a"\n7\n'


def test_pyarrow_and_polars_writers_are_wrapped_and_restored(base):
    def ours(function) -> bool:  # a class's own __init__ may be a C slot, with no code
        code = getattr(function, "__code__", None)
        return code is not None and "vfs_state" in code.co_filename

    from pyarrow.parquet import core
    wrapped = (lambda: pq.ParquetWriter.__init__, lambda: pq.ParquetDataset.__init__,
               lambda: core.read_table, lambda: core.ParquetDataset.__init__,
               lambda: pa.input_stream, lambda: pa.memory_map, lambda: pa.ipc.open_file,
               lambda: pacsv.CSVWriter.__init__, lambda: pa.ipc.RecordBatchStreamWriter.__init__,
               lambda: pl.LazyFrame.sink_parquet, lambda: pl.DataFrame.write_ndjson,
               lambda: pl.read_ndjson)
    assert all(ours(get()) for get in wrapped)
    mount = vfs_state.shim.active_mounts()[0].path
    vfs_state.uninstall()
    try:
        assert not any(ours(get()) for get in wrapped)
    finally:
        vfs_state.install(f"meta:{mount}:socket=/nonexistent.sock")


def test_numpy_imported_before_install(base):
    np.savetxt(f"{base}/m.txt", np.arange(6).reshape(2, 3))
    assert np.loadtxt(f"{base}/m.txt").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert np.genfromtxt(f"{base}/m.txt").tolist() == [[0, 1, 2], [3, 4, 5]]
    np.save(f"{base}/a.npy", np.arange(3))
    assert np.load(f"{base}/a.npy").tolist() == [0, 1, 2]


def test_uninstall_restores_and_nothing_local(base):
    def ours(function) -> bool:
        return "vfs_state" in function.__code__.co_filename

    assert ours(pq.read_table) and ours(pl.DataFrame.write_parquet) and ours(pl.read_csv)
    mount = vfs_state.shim.active_mounts()[0].path
    vfs_state.uninstall()
    try:
        assert not ours(pq.read_table) and not ours(pl.DataFrame.write_parquet)
        assert not ours(pl.read_csv)
        assert np.lib._datasource._file_openers._file_openers[None] is open
        assert not os.path.lexists(mount)
    finally:
        vfs_state.install(f"meta:{mount}:socket=/nonexistent.sock")


def test_install_imports_no_library():
    code = ("import sys, vfs_state; vfs_state.install('m:/vfs-lazy-x:socket=/x.sock');"
            "import pyarrow.parquet as pq;"
            "print([n for n in ('pyarrow', 'polars', 'pandas', 'numpy') if n in sys.modules]);"
            "print(hasattr(pq.read_table, '__wrapped__'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert "polars" not in out[0] and "pandas" not in out[0]
    assert out[1] == "True"  # pyarrow imported after install() was patched on import


def test_libraries_imported_after_install_are_adapted_on_import():
    code = ("import vfs_state; vfs_state.install('m:/vfs-late-x:socket=/x.sock');"
            "import pyarrow as pa, pyarrow.ipc, pyarrow.orc, pyarrow.json, polars as pl;"
            "print([hasattr(f, '__wrapped__') for f in (pa.input_stream, pa.memory_map,"
            " pa.ipc.open_file, pa.ipc.RecordBatchFileWriter.__init__, pyarrow.orc.read_table,"
            " pyarrow.json.read_json, pl.read_ipc_stream, pl.LazyFrame.sink_csv,"
            " pl.DataFrame.write_ndjson)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str([True] * 9)
