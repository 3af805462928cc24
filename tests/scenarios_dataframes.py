"""Differential scenarios: pandas, pyarrow, polars and numpy on plain paths.

These libraries do native I/O; on a mount they work through the shim's
library adapters (vfs_state/shim/libraries). Results are compared as plain
values (``to_dict``, ``to_pylist``, ``tolist``), sorted where a library
does not promise an order (partitioned datasets).
"""
from __future__ import annotations

import errno
import os

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq

from tests.differential import differs, ok, raises, scenario

DATA = {"a": [3, 1, 2, 4], "b": ["x", "y", "x", "z"], "c": [0.5, 1.5, 2.5, 3.5]}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(DATA)


def _sorted_rows(table: pa.Table) -> list:
    return sorted(map(tuple, (row.values() for row in table.to_pylist())), key=str)


# -- pandas --------------------------------------------------------------------------------------

@scenario
def pandas_csv_roundtrip(base):
    _frame().to_csv(f"{base}/f.csv", index=False)
    return pd.read_csv(f"{base}/f.csv").to_dict()


@scenario
def pandas_csv_chunks(base):
    _frame().to_csv(f"{base}/f.csv", index=False)
    return [chunk.to_dict() for chunk in pd.read_csv(f"{base}/f.csv", chunksize=3)]


@scenario
def pandas_json_lines(base):
    _frame().to_json(f"{base}/f.jsonl", orient="records", lines=True)
    return pd.read_json(f"{base}/f.jsonl", lines=True).to_dict()


@scenario
def pandas_parquet_roundtrip(base):
    _frame().to_parquet(f"{base}/f.parquet")
    return pd.read_parquet(f"{base}/f.parquet").to_dict()


@scenario
def pandas_parquet_columns(base):
    _frame().to_parquet(f"{base}/f.parquet", index=False)
    return pd.read_parquet(f"{base}/f.parquet", columns=["b"]).to_dict()


@scenario
def pandas_parquet_missing_parent(base):
    _frame().to_parquet(f"{base}/missing/f.parquet")


@scenario
def pandas_read_parquet_missing(base):
    pd.read_parquet(f"{base}/nope.parquet")


@scenario
def pandas_partitioned_parquet(base):
    _frame().to_parquet(f"{base}/parts", partition_cols=["b"], index=False)
    back = pd.read_parquet(f"{base}/parts")
    return sorted(os.listdir(f"{base}/parts")), sorted(back["a"].tolist())


@scenario
def pandas_feather_roundtrip(base):
    _frame().to_feather(f"{base}/f.feather")
    return pd.read_feather(f"{base}/f.feather").to_dict()


@scenario
def pandas_pickle_roundtrip(base):
    _frame().to_pickle(f"{base}/f.pkl")
    return pd.read_pickle(f"{base}/f.pkl").to_dict()


@scenario
def pandas_csv_gzip(base):
    _frame().to_csv(f"{base}/f.csv.gz", index=False)
    return pd.read_csv(f"{base}/f.csv.gz").to_dict()


# -- pyarrow -------------------------------------------------------------------------------------

@scenario
def pyarrow_parquet_roundtrip(base):
    pq.write_table(pa.table(DATA), f"{base}/t.parquet")
    return pq.read_table(f"{base}/t.parquet").to_pydict()


@scenario
def pyarrow_parquet_metadata(base):
    pq.write_table(pa.table(DATA), f"{base}/t.parquet", row_group_size=2)
    meta = pq.read_metadata(f"{base}/t.parquet")
    return meta.num_rows, meta.num_row_groups, pq.read_schema(f"{base}/t.parquet").names


@scenario
def pyarrow_parquet_file_row_groups(base):
    pq.write_table(pa.table(DATA), f"{base}/t.parquet", row_group_size=3)
    with pq.ParquetFile(f"{base}/t.parquet") as parquet:
        return parquet.num_row_groups, parquet.read_row_group(1).to_pydict()


@scenario
def pyarrow_parquet_read_pandas_and_core_functions(base):
    from pyarrow.parquet import core
    pq.write_table(pa.table(DATA), f"{base}/t.parquet")
    core.write_table(pa.table(DATA), f"{base}/c.parquet")
    return (pq.read_pandas(f"{base}/t.parquet", columns=["a"]).to_pydict(),
            core.read_table(f"{base}/c.parquet").num_rows,
            isinstance(core.ParquetFile(f"{base}/c.parquet"), pq.ParquetFile))


@scenario
def pyarrow_parquet_writer_row_groups(base):
    table = pa.table(DATA)
    with pq.ParquetWriter(f"{base}/w.parquet", table.schema) as writer:
        writer.write_table(table)
        writer.write_table(table)
    path = f"{base}/w.parquet"
    return pq.ParquetFile(path).num_row_groups, pq.read_table(path).num_rows


@scenario
def pyarrow_parquet_dataset_class(base):
    pq.write_to_dataset(pa.table(DATA), f"{base}/ds", partition_cols=["b"])
    dataset = pq.ParquetDataset(f"{base}/ds")
    return sorted(dataset.read().column("a").to_pylist()), len(dataset.files)


@scenario
def pyarrow_input_output_streams(base):
    with pa.output_stream(f"{base}/s.bin") as sink:
        sink.write(b"plain")
    with pa.output_stream(f"{base}/s.gz") as sink:  # gzip, detected from the extension
        sink.write(b"zipped" * 100)
    with pa.input_stream(f"{base}/s.bin") as source:
        plain = source.read()
    with pa.input_stream(f"{base}/s.gz") as source:
        unzipped = source.read()
    with open(f"{base}/s.gz", "rb") as raw:
        magic = raw.read(2)
    return plain, len(unzipped), magic


@scenario
def pyarrow_ipc_file_and_stream_through_sinks(base):
    table = pa.table(DATA)
    with pa.output_stream(f"{base}/f.arrow") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    with pa.output_stream(f"{base}/s.arrows") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return (pa.ipc.open_file(f"{base}/f.arrow").read_all().to_pydict(),
            pa.ipc.open_stream(f"{base}/s.arrows").read_all().num_rows)


@scenario
def pyarrow_writer_classes_on_paths(base):
    import pyarrow.orc as orc
    table = pa.table(DATA)
    with pa.ipc.new_file(f"{base}/f.arrow", table.schema) as writer:
        writer.write_table(table)
    with pa.ipc.new_stream(f"{base}/s.arrows", table.schema) as writer:
        writer.write_table(table)
    with pacsv.CSVWriter(f"{base}/w.csv", table.schema) as writer:
        writer.write_table(table)
    writer = orc.ORCWriter(where=f"{base}/w.orc")
    writer.write(table)
    writer.close()
    return (sorted(os.listdir(base)), pa.ipc.open_file(f"{base}/f.arrow").read_all().num_rows,
            pa.ipc.open_stream(f"{base}/s.arrows").read_all().to_pydict(),
            pacsv.open_csv(f"{base}/w.csv").read_all().to_pydict(),
            orc.read_table(f"{base}/w.orc").num_rows)


@scenario
def pyarrow_stream_readers_on_paths(base):
    import pyarrow.json as pajson
    with open(f"{base}/t.jsonl", "w") as lines:
        lines.write('{"a": 1}\n{"a": 2}\n')
    pacsv.write_csv(pa.table(DATA), f"{base}/t.csv")
    missing = _caught(FileNotFoundError, lambda: pacsv.open_csv(f"{base}/nope.csv"),
                      lambda: pajson.open_json(f"{base}/nope.jsonl"))
    return (pacsv.open_csv(f"{base}/t.csv").read_all().to_pydict(),
            pajson.open_json(f"{base}/t.jsonl").read_all().to_pydict(),
            [type(exc).__name__ for exc in missing])


@differs("a memory map needs a local file: refused on a mount, naming a way",
         real=ok(["m.map"]), mount=raises(OSError, errno.ENOTSUP))
def pyarrow_memory_map_on_a_path(base):
    pa.create_memory_map(f"{base}/m.map", 16).close()
    with pa.memory_map(f"{base}/m.map") as mapped:
        mapped.read()
    return sorted(os.listdir(base))


@scenario
def pyarrow_orc_json_and_parquet_metadata(base):
    import pyarrow.json as pajson
    import pyarrow.orc as orc
    orc.write_table(pa.table(DATA), f"{base}/t.orc")
    with open(f"{base}/t.jsonl", "w") as lines:
        lines.write('{"a": 1}\n{"a": 2}\n')
    pq.write_metadata(pa.table(DATA).schema, f"{base}/_common_metadata")
    return (orc.read_table(f"{base}/t.orc", columns=["a"]).to_pydict(),
            pajson.read_json(f"{base}/t.jsonl").num_rows,
            pq.read_schema(f"{base}/_common_metadata").names)


@scenario
def pyarrow_lists_of_paths_and_orc_file(base):
    import pyarrow.orc as orc
    for part in ("1", "2"):
        pq.write_table(pa.table(DATA), f"{base}/p{part}.parquet")
    paths = [f"{base}/p1.parquet", f"{base}/p2.parquet"]
    orc.write_table(pa.table(DATA), f"{base}/t.orc")
    orc_file = orc.ORCFile(f"{base}/t.orc")
    return (pq.read_table(paths).num_rows, pq.ParquetDataset(paths).read().num_rows,
            ds.dataset(paths, format="parquet").count_rows(),
            orc_file.nrows, orc_file.read(columns=["a"]).to_pydict(),
            isinstance(orc_file, orc.ORCFile))


@scenario
def pyarrow_parquet_read_missing(base):
    pq.read_table(f"{base}/nope.parquet")


@scenario
def pyarrow_and_pandas_missing_files_name_the_path(base):
    import pyarrow.orc as orc
    missing = f"{base}/nope"
    caught = _caught(FileNotFoundError, lambda: pq.read_table(missing),
                     lambda: pq.ParquetFile(missing), lambda: pq.read_metadata(missing),
                     lambda: ds.dataset(missing), lambda: pd.read_parquet(missing),
                     lambda: feather.read_table(missing), lambda: pacsv.read_csv(missing),
                     lambda: pa.input_stream(missing), lambda: orc.ORCFile(missing))
    return [missing in str(exc) for exc in caught]


@scenario
def pyarrow_directory_opened_as_a_file(base):
    import pyarrow.orc as orc
    directory = f"{base}/sub"
    os.makedirs(directory)
    with open(f"{directory}/x", "w") as f:
        f.write("x")
    caught = _caught(OSError, lambda: pq.ParquetFile(directory),
                     lambda: pq.read_metadata(directory), lambda: feather.read_table(directory),
                     lambda: pacsv.read_csv(directory), lambda: pa.input_stream(directory),
                     lambda: orc.ORCFile(directory), lambda: pa.ipc.open_file(directory))
    return [(type(exc).__name__, "is a directory" in str(exc), directory in str(exc))
            for exc in caught]


@scenario
def pyarrow_feather_roundtrip(base):
    feather.write_feather(pa.table(DATA), f"{base}/t.feather")
    return feather.read_table(f"{base}/t.feather").to_pydict()


@scenario
def pyarrow_csv_roundtrip(base):
    pacsv.write_csv(pa.table(DATA), f"{base}/t.csv")
    return pacsv.read_csv(f"{base}/t.csv").to_pydict()


@scenario
def pyarrow_write_to_dataset(base):
    pq.write_to_dataset(pa.table(DATA), f"{base}/ds", partition_cols=["b"])
    table = ds.dataset(f"{base}/ds", format="parquet", partitioning="hive").to_table()
    return sorted(os.listdir(f"{base}/ds")), _sorted_rows(table)


@scenario
def pyarrow_dataset_of_files(base):
    os.mkdir(f"{base}/many")
    for i in range(3):
        pq.write_table(pa.table({"i": [i, i + 10]}), f"{base}/many/{i}.parquet")
    table = ds.dataset(f"{base}/many", format="parquet").to_table()
    return sorted(table.column("i").to_pylist())


@scenario
def pyarrow_write_dataset(base):
    ds.write_dataset(pa.table(DATA), f"{base}/wd", format="parquet")
    return sorted(ds.dataset(f"{base}/wd", format="parquet").to_table().column("a").to_pylist())


@scenario
def pyarrow_read_table_of_directory(base):
    pq.write_to_dataset(pa.table(DATA), f"{base}/rd", partition_cols=["b"])
    return sorted(pq.read_table(f"{base}/rd").column("a").to_pylist())


# -- polars --------------------------------------------------------------------------------------

@scenario
def polars_parquet_roundtrip(base):
    pl.DataFrame(DATA).write_parquet(f"{base}/f.parquet")
    return pl.read_parquet(f"{base}/f.parquet").to_dict(as_series=False)


@scenario
def polars_csv_roundtrip(base):
    pl.DataFrame(DATA).write_csv(f"{base}/f.csv")
    return pl.read_csv(f"{base}/f.csv").to_dict(as_series=False)


@scenario
def polars_ipc_roundtrip(base):
    pl.DataFrame(DATA).write_ipc(f"{base}/f.ipc")
    return pl.read_ipc(f"{base}/f.ipc").to_dict(as_series=False)


@scenario
def polars_scan_parquet(base):
    pl.DataFrame(DATA).write_parquet(f"{base}/f.parquet")
    lazy = pl.scan_parquet(f"{base}/f.parquet").filter(pl.col("a") > 1)
    return lazy.collect().to_dict(as_series=False)


@scenario
def polars_scan_csv(base):
    pl.DataFrame(DATA).write_csv(f"{base}/f.csv")
    return pl.scan_csv(f"{base}/f.csv").select("b").collect().to_dict(as_series=False)


@scenario
def polars_write_missing_parent(base):
    pl.DataFrame(DATA).write_parquet(f"{base}/missing/f.parquet")


@scenario
def polars_json_ndjson_avro_roundtrip(base):
    frame = pl.DataFrame(DATA)
    frame.write_json(f"{base}/f.json")
    frame.write_ndjson(f"{base}/f.ndjson")
    frame.write_avro(f"{base}/f.avro")
    return (pl.read_json(f"{base}/f.json").to_dict(as_series=False),
            pl.read_ndjson(f"{base}/f.ndjson").to_dict(as_series=False),
            pl.scan_ndjson(f"{base}/f.ndjson").select("a").collect().to_dict(as_series=False),
            pl.read_avro(f"{base}/f.avro").to_dict(as_series=False))


@scenario
def polars_lazy_sinks(base):
    lazy = pl.LazyFrame(DATA).filter(pl.col("a") > 1)
    lazy.sink_parquet(f"{base}/s.parquet")
    lazy.sink_csv(f"{base}/s.csv")
    lazy.sink_ipc(path=f"{base}/s.arrow")
    lazy.sink_ndjson(f"{base}/made/s.ndjson", mkdir=True)
    return (sorted(os.listdir(base)), pl.read_parquet(f"{base}/s.parquet").height,
            pl.read_csv(f"{base}/s.csv").height, pl.read_ipc(f"{base}/s.arrow").height,
            pl.read_ndjson(f"{base}/made/s.ndjson").height)


def _caught(expected: type[Exception], *calls) -> list[Exception]:
    """The ``expected`` exception each call raised (a call that raised none is left out)."""
    caught = []
    for call in calls:
        try:
            call()
        except expected as exc:
            caught.append(exc)
    return caught


@scenario
def polars_sink_and_ndjson_missing_parent(base):
    caught = _caught(FileNotFoundError,
                     lambda: pl.LazyFrame(DATA).sink_parquet(f"{base}/missing/s.parquet"),
                     lambda: pl.DataFrame(DATA).write_ndjson(f"{base}/missing/f.ndjson"),
                     lambda: pl.read_ndjson(f"{base}/nope.ndjson"))
    return [type(exc).__name__ for exc in caught], os.listdir(base)


@scenario
def polars_ipc_stream_schemas_and_metadata(base):
    frame = pl.DataFrame(DATA)
    frame.write_ipc_stream(f"{base}/s.arrows")
    frame.write_parquet(f"{base}/f.parquet")
    frame.write_ipc(f"{base}/f.arrow")
    return (pl.read_ipc_stream(f"{base}/s.arrows").to_dict(as_series=False),
            list(pl.read_parquet_schema(f"{base}/f.parquet")),
            list(pl.read_ipc_schema(f"{base}/f.arrow")),
            sorted(pl.read_parquet_metadata(f"{base}/f.parquet")))


@scenario
def polars_lists_and_globs_of_files(base):
    frame = pl.DataFrame(DATA)
    for part in ("1", "2"):
        frame.write_parquet(f"{base}/p{part}.parquet")
        frame.write_csv(f"{base}/c{part}.csv")
        frame.write_ipc(f"{base}/i{part}.arrow")
    listed = pl.read_parquet([f"{base}/p1.parquet", f"{base}/p2.parquet"], columns=["a"])
    limited = pl.scan_csv(f"{base}/c*.csv", n_rows=5, row_index_name="n", row_index_offset=10)
    csvs = pl.read_csv(f"{base}/c*.csv").height, pl.read_csv([f"{base}/c1.csv"]).height
    return (listed["a"].to_list(), pl.read_parquet(f"{base}/p?.parquet").height,
            limited.collect().to_dict(as_series=False), pl.read_ipc(f"{base}/i*.arrow").height,
            pl.scan_parquet(f"{base}/[p]*.parquet").select(pl.len()).collect().item(), csvs)


@scenario
def polars_directory_of_files(base):
    for sub in ("d/sub", "d/.hidden", "empty", "mixed"):
        os.makedirs(f"{base}/{sub}")
    for i, name in enumerate(("d/1.csv", "d/sub/2.csv", "d/.h.csv", "d/.hidden/4.csv")):
        pl.DataFrame({"a": [i]}).write_csv(f"{base}/{name}")
    pl.DataFrame({"a": [1]}).write_csv(f"{base}/mixed/x.csv")
    with open(f"{base}/mixed/y", "w") as f:
        f.write("a\n2\n")
    refused = _caught(pl.exceptions.PolarsError, lambda: pl.read_csv(f"{base}/empty"),
                      lambda: pl.read_csv(f"{base}/mixed"))
    return (pl.read_csv(f"{base}/d")["a"].to_list(),
            pl.scan_csv(f"{base}/d").collect()["a"].to_list(),
            pl.read_csv(f"{base}/d", n_rows=3)["a"].to_list(),
            [type(exc).__name__ for exc in refused])


@scenario
def polars_glob_matching_nothing(base):
    caught = _caught(pl.exceptions.ComputeError,
                     lambda: pl.read_parquet(f"{base}/none*.parquet"),
                     lambda: pl.scan_csv(f"{base}/none*.csv").collect())
    return ["expanded paths were empty" in str(exc) for exc in caught], os.listdir(base)


@scenario
def polars_read_missing(base):
    pl.read_csv(f"{base}/nope.csv")


@scenario
def polars_pandas_interchange(base):
    pl.DataFrame(DATA).write_parquet(f"{base}/f.parquet")
    return pd.read_parquet(f"{base}/f.parquet").to_dict()


# -- numpy ---------------------------------------------------------------------------------------

@scenario
def numpy_npy_roundtrip(base):
    np.save(f"{base}/a.npy", np.arange(12).reshape(3, 4))
    return np.load(f"{base}/a.npy").tolist()


@scenario
def numpy_npz_roundtrip(base):
    np.savez(f"{base}/a.npz", x=np.arange(3), y=np.ones(2))
    with np.load(f"{base}/a.npz") as archive:
        return sorted(archive.files), archive["x"].tolist(), archive["y"].tolist()


@scenario
def numpy_npz_compressed(base):
    np.savez_compressed(f"{base}/c.npz", x=np.arange(100))
    with np.load(f"{base}/c.npz") as archive:
        return archive["x"].sum().item()


@scenario
def numpy_savetxt_loadtxt(base):
    np.savetxt(f"{base}/m.txt", np.arange(6).reshape(2, 3), fmt="%d", delimiter=",")
    return np.loadtxt(f"{base}/m.txt", delimiter=",").tolist()


@scenario
def numpy_genfromtxt_missing_values(base):
    with open(f"{base}/g.csv", "w") as f:
        f.write("1,2,3\n4,,6\n")
    return np.genfromtxt(f"{base}/g.csv", delimiter=",", filling_values=-1).tolist()


@scenario
def numpy_loadtxt_missing(base):
    np.loadtxt(f"{base}/nope.txt")


# numpy tofile/fromfile (they need a descriptor) are in tests/scenarios_fds.py.
