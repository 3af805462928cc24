"""The client core through a real gunicorn sidecar: ranges, writers, CAS rules."""
from __future__ import annotations

import array
import errno
import io
import multiprocessing
import os
import uuid

import pytest

from tests.harness.sidecar import Sidecar
from vfs_state import StateFS, retry_on_conflict, session
from vfs_state._pyfs import errors
from vfs_state.writers import SpooledFile


@pytest.fixture()
def fs(local_sidecar):
    statefs = StateFS(local_sidecar.socket_path)
    base = f"client-{uuid.uuid4().hex}"
    statefs.makedir(base)
    yield statefs.opendir(base)
    statefs.close()


def test_ranged_read_moves_only_a_block(fs):
    data = os.urandom(8 * 1024 * 1024)
    fs.writebytes("big.bin", data)
    transport = fs.delegate_fs().client.transport
    before = transport.bytes_received
    with fs.openbin("big.bin") as f:
        f.seek(7 * 1024 * 1024 + 123)
        chunk = f.read(4096)
    moved = transport.bytes_received - before
    assert chunk == data[7 * 1024 * 1024 + 123:][:4096]
    assert moved < 256 * 1024, moved


def test_sequential_read_returns_everything(fs):
    data = os.urandom(3 * 1024 * 1024 + 17)
    fs.writebytes("seq.bin", data)
    with fs.openbin("seq.bin") as f:
        parts = []
        while piece := f.read(100_000):
            parts.append(piece)
    assert b"".join(parts) == data
    with fs.openbin("seq.bin") as f:
        f.seek(10)
        assert f.read() == data[10:]
        buf = bytearray(5)
        f.seek(-5, io.SEEK_END)
        assert f.readinto(buf) == 5 and bytes(buf) == data[-5:]


@pytest.mark.parametrize("size", [10, 200 * 1024], ids=["whole-in-the-first-block", "ranged"])
def test_small_and_ranged_readers_behave_alike(fs, size):
    """A file the first GET brought whole is read from memory; it keeps the
    read-only file's behaviour (and errors) of the ranged reader."""
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    fs.writebytes("r.bin", data)
    with fs.openbin("r.bin") as f:
        raw = f.raw
        assert raw.name.endswith("/r.bin") and (raw.mode, raw.readable(), raw.seekable()) == (
            "rb", True, True)
        assert not raw.writable() and not f.writable()
        with pytest.raises(io.UnsupportedOperation):
            raw.truncate(0)
        with pytest.raises(io.UnsupportedOperation):
            raw.fileno()  # no descriptor hooks: no surprise download
        with pytest.raises(OSError) as negative:
            f.seek(-1)
        assert negative.value.errno == errno.EINVAL
        with pytest.raises(OSError) as before_start:
            raw.seek(-size - 1, io.SEEK_END)
        assert before_start.value.errno == errno.EINVAL
        with pytest.raises(ValueError):
            raw.seek(0, 3)
        assert f.read(3) == data[:3] and f.tell() == 3
        assert f.seek(-2, io.SEEK_END) == size - 2 and f.read() == data[-2:]
        assert f.seek(size + 10) == size + 10 and f.read() == b""
        f.seek(1)
        assert f.read() == data[1:]
    assert raw.closed
    with pytest.raises(ValueError):
        raw.read()
    statefs, path = fs.delegate_path("r.bin")  # a SubFS always buffers
    with statefs.openbin(path, buffering=0) as unbuffered:
        assert isinstance(unbuffered, io.RawIOBase) and unbuffered.readall() == data
    with fs.open("r.bin", "r", encoding="latin-1") as text:
        assert not text.writable() and text.read() == data.decode("latin-1")


def test_reader_is_a_real_io_object(fs):
    fs.writetext("t.txt", "one\ntwo\n")
    with fs.openbin("t.txt") as f:
        assert isinstance(f, io.BufferedReader)
        assert f.readline() == b"one\n"
        assert list(f) == [b"two\n"]
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()


def test_buffered_writer_spills_to_disk_past_4_mib(fs):
    data = os.urandom(5 * 1024 * 1024)
    with fs.openbin("spill.bin", "w") as f:
        f.write(data[:1024])
        assert not f.raw.rolled_to_disk
        f.write(data[1024:])
        assert isinstance(f.raw, SpooledFile) and f.raw.rolled_to_disk
        assert f.tell() == len(data)
    assert fs.readbytes("spill.bin") == data


def test_buffered_writer_seek_and_truncate(fs):
    with fs.openbin("s.bin", "w+") as f:
        f.write(b"hello world")
        f.seek(6)
        f.write(b"WORLD")
        f.truncate(8)
        f.seek(0)
        assert f.read() == b"hello WO"
    assert fs.readbytes("s.bin") == b"hello WO"


def test_passthrough_writer_streams_chunks(local_sidecar):
    statefs = StateFS(local_sidecar.socket_path, write_mode="passthrough")
    data = os.urandom(20 * 1024 * 1024)
    key = f"pass-{uuid.uuid4().hex}.bin"
    with statefs.openbin(key, "w") as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i:i + (1 << 20)])
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0)
    assert statefs.readbytes(key) == data


def test_passthrough_abort_keeps_old_object(local_sidecar):
    statefs = StateFS(local_sidecar.socket_path, write_mode="passthrough")
    key = f"abort-{uuid.uuid4().hex}.bin"
    statefs.writebytes(key, b"old")
    f = statefs.openbin(key, "w", buffering=0)
    f.write(b"new data that never completes")
    f.abort()
    assert statefs.readbytes(key) == b"old"


def test_append_mode_reads_then_writes(fs):
    fs.writebytes("log.txt", b"a\n")
    with fs.openbin("log.txt", "a") as f:
        f.write(b"b\n")
    assert fs.readbytes("log.txt") == b"a\nb\n"


def _two_clients(socket_path: str) -> tuple[StateFS, StateFS]:
    return StateFS(socket_path), StateFS(socket_path)


def _moved_on(other: StateFS, key: str, data: bytes) -> None:
    """Another client writes ``key`` in a session of its own (none of ours is touched)."""
    with session():
        other.writebytes(key, data)


def test_stale_write_raises_and_keeps_value(local_sidecar):
    a, b = _two_clients(local_sidecar.socket_path)
    key = f"cas-{uuid.uuid4().hex}"
    b.writebytes(key, b"v1")
    with session():
        assert a.readbytes(key) == b"v1"   # a observes v1
        _moved_on(b, key, b"v2")   # another client moves it on
        with pytest.raises(FileExistsError):
            a.writebytes(key, b"from a")
    assert b.readbytes(key) == b"v2"


def test_create_race_raises_and_keeps_value(local_sidecar):
    a, b = _two_clients(local_sidecar.socket_path)
    key = f"race-{uuid.uuid4().hex}"
    with session():
        assert not a.exists(key)           # a observes "absent"
        _moved_on(b, key, b"b won")
        with pytest.raises(FileExistsError):
            a.writebytes(key, b"a lost")
    assert b.readbytes(key) == b"b won"


def test_stale_delete_raises(local_sidecar):
    a, b = _two_clients(local_sidecar.socket_path)
    key = f"del-{uuid.uuid4().hex}"
    b.writebytes(key, b"v1")
    with session():
        a.getinfo(key)
        _moved_on(b, key, b"v2")
        with pytest.raises(FileExistsError):
            a.remove(key)
    assert b.readbytes(key) == b"v2"


def test_unobserved_key_is_written_unconditionally(local_sidecar):
    a, b = _two_clients(local_sidecar.socket_path)
    key = f"blind-{uuid.uuid4().hex}"
    b.writebytes(key, b"v1")
    with session():
        a.writebytes(key, b"blind write")
    assert b.readbytes(key) == b"blind write"


def test_library_checks_do_not_refresh_the_observed_version(local_sidecar):
    """open('w') on StateFS HEADs the key itself; that must not count as observing."""
    a, b = _two_clients(local_sidecar.socket_path)
    key = f"quiet-{uuid.uuid4().hex}"
    b.writebytes(key, b"v1")
    with session():
        a.readbytes(key)
        _moved_on(b, key, b"v2")
        with pytest.raises(FileExistsError):
            with a.openbin(key, "w") as f:   # HEADs internally (parent/dir checks)
                f.write(b"stale")
    assert b.readbytes(key) == b"v2"


def test_cas_holds_across_workers(tmp_path):
    """Versions live in the client, so it does not matter which worker answers."""
    with Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path)}, workers=3) as sidecar:
        for i in range(15):
            a, b = _two_clients(sidecar.socket_path)
            with session():
                b.writebytes("k", b"base %d" % i)
                a.readbytes("k")
                a.client.transport.close()   # next request: a new connection, maybe a new worker
                _moved_on(b, "k", b"moved %d" % i)
                with pytest.raises(FileExistsError):
                    a.writebytes("k", b"stale")
            assert b.readbytes("k") == b"moved %d" % i


def test_cas_holds_across_sidecar_restart(tmp_path):
    with Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path)}, workers=1) as sidecar:
        a, b = _two_clients(sidecar.socket_path)
        b.writebytes("k", b"v1")
        with session():
            a.readbytes("k")
            sidecar.restart()
            _moved_on(b, "k", b"v2")
            with pytest.raises(FileExistsError):
                a.writebytes("k", b"stale")
        assert b.readbytes("k") == b"v2"


def test_pyfilesystem_contract_for_missing_parent(fs):
    with pytest.raises(errors.ResourceNotFound):
        fs.writebytes("no/such/parent.txt", b"x")
    with fs.openbin("no/such/parent.txt", "w", create_parents=True) as f:
        f.write(b"flat")
    assert fs.readbytes("no/such/parent.txt") == b"flat"


def _increment(socket_path: str, key: str, count: int) -> int:
    statefs = StateFS(socket_path)
    conflicts = 0

    def once() -> None:
        nonlocal conflicts
        value = int(statefs.readtext(key))
        try:
            statefs.writetext(key, str(value + 1))
        except FileExistsError:
            conflicts += 1
            raise

    for _ in range(count):
        retry_on_conflict(once, attempts=100, backoff=0.005)
    return conflicts


def test_concurrent_increments_lose_nothing(local_sidecar):
    key = f"counter-{uuid.uuid4().hex}"
    StateFS(local_sidecar.socket_path).writetext(key, "0")
    workers, each = 4, 25
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        conflicts = pool.starmap(_increment, [(local_sidecar.socket_path, key, each)] * workers)
    assert StateFS(local_sidecar.socket_path).readtext(key) == str(workers * each)
    assert sum(conflicts) > 0  # the property was actually exercised


def test_oversize_write_reports_413_as_efbig(tmp_path):
    """The sidecar refuses before reading the body; the client still gets the verdict."""
    import errno
    env = {"STATE_ROOT": str(tmp_path), "STATE_MAX_OBJECT_SIZE": "1000"}
    with Sidecar("local-buffered-cas", env, workers=1) as sidecar:
        statefs = StateFS(sidecar.socket_path)
        statefs.writebytes("k", b"small")
        with pytest.raises(OSError) as raised:
            statefs.writebytes("k", os.urandom(8 * 1024 * 1024))
        assert raised.value.errno == errno.EFBIG
        assert statefs.readbytes("k") == b"small"


def test_sequential_reads_stream_and_seeking_away_drops_the_stream(fs):
    data = os.urandom(2 * 1024 * 1024 + 5)
    fs.writebytes("stream.bin", data)
    transport = fs.delegate_fs().client.transport
    with fs.openbin("stream.bin", buffering=0) as f:
        got = bytearray()
        while chunk := f.read(300_000):
            got += chunk
        assert bytes(got) == data
        f.seek(1000)
        assert f.read(10) == data[1000:1010]          # a ranged block after the stream
        before = transport.bytes_received
        f.seek(1_500_000)
        assert f.read(10) == data[1_500_000:1_500_010]
        assert f.read(200_000) == data[1_500_010:1_700_010]   # continues as a stream
        f.seek(0)                                     # seek away mid-stream
        assert f.read(5) == data[:5]
    assert transport.bytes_received - before < 1024 * 1024
    with fs.openbin("stream.bin") as f:               # the connection pool still works
        assert f.read() == data


def test_object_replaced_mid_read_raises_estale(local_sidecar):
    import errno
    statefs = StateFS(local_sidecar.socket_path)
    key = f"stale-{uuid.uuid4().hex}"
    statefs.writebytes(key, os.urandom(1024 * 1024))
    with statefs.openbin(key, buffering=0) as f:
        f.read(10)
        StateFS(local_sidecar.socket_path).writebytes(key, b"replaced")
        with pytest.raises(OSError) as raised:
            while f.read(500_000):   # the cached first block, then a pinned request
                pass
        assert raised.value.errno == errno.ESTALE


def test_passthrough_stale_write_raises_on_close_and_keeps_value(local_sidecar):
    a = StateFS(local_sidecar.socket_path, write_mode="passthrough")
    b = StateFS(local_sidecar.socket_path)
    key = f"pass-cas-{uuid.uuid4().hex}"
    b.writebytes(key, b"v1")
    with session():
        a.readbytes(key)
        _moved_on(b, key, b"v2")
        f = a.openbin(key, "w")
        f.write(b"stale streamed data")
        with pytest.raises(FileExistsError):
            f.close()
    assert b.readbytes(key) == b"v2"


def test_unbuffered_passthrough_write_counts_bytes_not_items(local_sidecar):
    """A typed buffer (4-byte ints) is framed by its byte size, as a local file writes it."""
    statefs = StateFS(local_sidecar.socket_path, write_mode="passthrough")
    key = f"typed-{uuid.uuid4().hex}.bin"
    small, large = array.array("i", range(3)), array.array("i", range(40_000))
    with statefs.openbin(key, "w", buffering=0) as f:
        assert f.write(small) == small.itemsize * len(small)
        assert f.write(large) == large.itemsize * len(large)
    assert statefs.readbytes(key) == small.tobytes() + large.tobytes()
