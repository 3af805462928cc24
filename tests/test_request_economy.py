"""Requests per operation, counted where they land (tests/harness/economy.py).

Redis is counted by its own ``MONITOR`` feed (a Lua script is one request),
S3 by a proxy in front of moto, NATS by the messages its server received
from the sidecar, local by the sidecar's requests. These are the budgets of
docs/performance.md ("Request economy").
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

import vfs_state
from tests.connectors import ALL_CONNECTORS
from tests.harness.economy import CountedMount
from vfs_state.client import SidecarClient

KINDS = ("local", "redis", "s3", "nats")
#: Backend requests of one directory listing: NATS KV creates a consumer,
#: fetches from it (one fetch per 1,000 keys) and deletes it.
LISTING = {"nats": 3}
#: Requests that guard a blind write of a new key against a directory of the
#: same name, before the write itself: S3 lists, NATS KV gets the last
#: message of the key's subtree; local and Redis check inside the write.
DIR_CHECK = {"s3": 1, "nats": 1}


@pytest.fixture(scope="module", params=KINDS)
def mounted(request):
    """``(counted mount, base directory on a shim mount)``, shim installed."""
    yield from _mounted(request.param, "cas")


@pytest.fixture(scope="module")
def s3_lww():
    """S3 with last-write-wins: the sidecar drops preconditions on writes."""
    yield from _mounted("s3", "lww")


def _mounted(kind: str, consistency: str):
    """The same sidecar is mounted twice: at ``path`` as usual, and at
    ``path-lazy`` with ``open=lazy`` (``_lazy`` maps a path between them)."""
    tmp = tempfile.mkdtemp(prefix="vfs-economy-")
    mount = CountedMount(kind, tmp, consistency)
    path = f"/vfs-economy-{uuid.uuid4().hex[:8]}"
    socket = mount.socket_path
    try:
        with vfs_state.installed(f"m:{path}:socket={socket};"
                                 f"lazy:{path}-lazy:socket={socket},open=lazy"):
            base = f"{path}/run"
            os.mkdir(base)
            yield mount, base
    finally:
        mount.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _lazy(path: str) -> str:
    """``path`` on the ``open=lazy`` mount of the same store."""
    root, rest = path.split("/run", 1)
    return f"{root}-lazy/run{rest}"


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def test_scandir_and_entry_stat_is_one_listing(mounted):
    mount, base = mounted
    os.makedirs(f"{base}/dir/sub", exist_ok=True)
    for i in range(5):
        _write(f"{base}/dir/f{i}.json", b"x" * (10 + i))
    os.scandir(f"{base}/dir").close()  # warm: connections, script loads
    with mount.counting() as counts:
        with os.scandir(f"{base}/dir") as entries:
            stats = {e.name: e.stat() for e in entries}
    assert counts.backend_requests == LISTING.get(mount.kind, 1), counts.detail
    assert counts.sidecar_requests == 1, counts.detail
    assert {n: s.st_size for n, s in stats.items() if n != "sub"} == {
        f"f{i}.json": 10 + i for i in range(5)}
    assert stats["f0.json"].st_mtime == os.stat(f"{base}/dir/f0.json").st_mtime


def test_entry_stat_observes_the_listed_version_for_cas(mounted):
    """A version seen through ``entry.stat()`` guards the next write, as a HEAD's would."""
    _, base = mounted
    _write(f"{base}/cas.json", b"1")
    with vfs_state.session():
        with os.scandir(base) as entries:
            [e.stat() for e in entries if e.name == "cas.json"]
        with vfs_state.session():
            _write(f"{base}/cas.json", b"2")  # another writer in between
        with pytest.raises(FileExistsError):
            _write(f"{base}/cas.json", b"3")


@pytest.mark.parametrize("operation", ["stat", "read_small", "write_overwrite"])
def test_small_operations_cost_one_backend_request(mounted, operation):
    mount, base = mounted
    path = f"{base}/small-{operation}.json"
    _write(path, b"{}" * 512)

    def call() -> None:
        if operation == "stat":
            os.stat(path)
        elif operation == "read_small":
            with open(path, "rb") as f:
                assert len(f.read()) == 1024
        else:
            _write(path, b"[]" * 512)

    call()
    with mount.counting() as counts:
        call()
    assert counts.backend_requests == 1, counts.detail


def test_writing_a_new_key_over_a_directory_is_still_refused(mounted):
    mount, base = mounted
    _write(f"{base}/clash/inside", b"x")
    with pytest.raises(IsADirectoryError):
        _write(f"{base}/clash", b"y")
    with mount.counting() as counts:
        _write(f"{base}/fresh-{uuid.uuid4().hex[:6]}", b"z")
    assert counts.backend_requests == 1 + DIR_CHECK.get(mount.kind, 0), counts.detail


def test_lww_overwrite_of_a_file_seen_before_skips_the_directory_check(s3_lww):
    """The writer saw a file under this name (it sends ``If-Match``): no listing first."""
    mount, base = s3_lww
    _write(f"{base}/seen.json", b"{}")
    with mount.counting() as counts:
        _write(f"{base}/seen.json", b"[]")
    assert counts.backend_requests == 1, counts.detail
    with mount.counting() as counts:  # never seen: the check stays
        _write(f"{base}/unseen-{uuid.uuid4().hex[:6]}.json", b"{}")
    assert counts.backend_requests == 1 + DIR_CHECK["s3"], counts.detail
    _write(f"{base}/clash/inside", b"x")
    with pytest.raises(IsADirectoryError):
        _write(f"{base}/clash", b"y")


def test_ranged_read_moves_one_block(mounted):
    mount, base = mounted
    if mount.kind == "nats":
        pytest.skip("NATS KV values are at most 1 MiB, read whole")
    _write(f"{base}/large.bin", os.urandom(4 << 20))
    with mount.counting() as counts, open(f"{base}/large.bin", "rb") as f:
        f.seek(3 << 20)
        assert len(f.read(4096)) == 4096
    # the open fetches the first block (errors at open, as the builtin), the read one more
    assert counts.sidecar_requests == 2, counts.detail
    assert counts.sidecar_bytes <= 128 * 1024


@pytest.mark.parametrize("connector", ALL_CONNECTORS)
def test_listing_details_match_a_head(connector_pool, connector):
    """``details=1`` adds size, version and time per key; without it the reply is as before."""
    sidecar = connector_pool.sidecar(connector)
    client = SidecarClient(sidecar.socket_path)
    base = f"details-{uuid.uuid4().hex[:8]}"
    client.write(f"{base}/a.txt", b"hello", 5, conditions={})
    client.write(f"{base}/b/c.txt", b"x", 1, conditions={})
    client.make_marker(f"{base}/m")
    try:
        (keys, prefixes, stats), = client.list_details(base + "/")
        assert keys == [f"{base}/a.txt"] and prefixes == [f"{base}/b/", f"{base}/m/"]
        head = client.stat(f"{base}/a.txt")
        listed = stats[f"{base}/a.txt"]
        assert (listed.size, listed.version) == (5, head.version)
        assert listed.modified == head.modified
        (_, _, plain), = client.list_details(base + "/", details=False)
        assert plain == {}
    finally:
        client.close()


def test_fsspec_ls_with_details_is_one_listing(mounted):
    """``fsspec``'s ``ls(detail=True)`` takes sizes from the listing, no HEAD per file."""
    from vfs_state.fsspec_fs import VfsStateFileSystem

    mount, base = mounted
    os.makedirs(f"{base}/ls", exist_ok=True)
    for i in range(4):
        _write(f"{base}/ls/f{i}", b"y" * (i + 1))
    fs = VfsStateFileSystem(socket=mount.socket_path, skip_instance_cache=True)
    key = base.split("/", 2)[2] + "/ls"  # the mount path's key within the store
    fs.ls(key, detail=True)  # warm
    with mount.counting() as counts:
        entries = fs.ls(key, detail=True)
    assert counts.backend_requests == LISTING.get(mount.kind, 1), counts.detail
    assert counts.sidecar_requests == 1, counts.detail
    assert sorted((e["name"].rsplit("/", 1)[-1], e["size"]) for e in entries) == [
        (f"f{i}", i + 1) for i in range(4)]


#: The object the ranged and sequential reads use: NATS KV values are at most 1 MiB.
LARGE = {"nats": 768 << 10}


def _large_file(mount, base: str, name: str, size: int = 8 << 20) -> tuple[str, bytes]:
    """``(path on the lazy mount, its bytes)`` of a new random file (NATS: smaller)."""
    data = os.urandom(LARGE.get(mount.kind, size))
    _write(f"{base}/{name}", data)
    return _lazy(f"{base}/{name}"), data


def test_lazy_open_then_seek_and_read_is_one_ranged_request(mounted):
    mount, base = mounted
    path, data = _large_file(mount, base, "lazy-large.bin")
    size = len(data)
    with mount.counting() as at_open:
        f = open(path, "rb")
    with f, mount.counting() as counts:
        f.seek(size * 7 // 8)
        assert f.read(4096) == data[size * 7 // 8:][:4096]
    assert at_open.sidecar_requests == 0, at_open.detail
    assert counts.sidecar_requests == 1, counts.detail
    assert counts.sidecar_bytes <= 64 * 1024 + 1024  # one block and its head
    assert counts.backend_requests == 1, counts.detail


def test_lazy_open_sequential_read_is_one_get(mounted):
    """Reading on from 0 in 1 MiB reads: one streamed GET to the sidecar.

    Redis serves a stream in 1 MiB transactions, one backend request each
    (bounded sidecar memory); the other stores read it as one request.
    """
    mount, base = mounted
    path, data = _large_file(mount, base, "lazy-seq.bin")
    size = len(data)
    with mount.counting() as counts:
        with open(path, "rb") as f:
            chunks = []
            while chunk := f.read(1 << 20):
                chunks.append(chunk)
    assert b"".join(chunks) == data
    assert counts.sidecar_requests == 1, counts.detail
    expected = -(-size // (1 << 20)) if mount.kind == "redis" else 1
    assert counts.backend_requests == expected, counts.detail


def test_lazy_open_small_read_is_one_request(mounted):
    mount, base = mounted
    _write(f"{base}/lazy-small.json", b"{}" * 512)
    with mount.counting() as counts:
        with open(_lazy(f"{base}/lazy-small.json"), "rb") as f:
            assert f.read() == b"{}" * 512
    assert counts.sidecar_requests == 1, counts.detail
    assert counts.backend_requests == 1, counts.detail


def test_lazy_open_reports_a_missing_file_or_a_directory_at_the_first_read(mounted):
    mount, base = mounted
    os.makedirs(f"{base}/lazy-dir/sub", exist_ok=True)
    with mount.counting() as counts:
        missing = open(_lazy(f"{base}/lazy-missing.json"))
        directory = open(_lazy(f"{base}/lazy-dir"), "rb")
    assert counts.sidecar_requests == 0, counts.detail
    with missing, pytest.raises(FileNotFoundError) as raised:
        missing.read()
    assert raised.value.filename == _lazy(f"{base}/lazy-missing.json")
    with directory, pytest.raises(IsADirectoryError):
        directory.read(10)


def test_lazy_open_observes_the_version_it_read_for_cas(mounted):
    """The first read's version guards the next write, as a checked open's does."""
    _, base = mounted
    _write(f"{base}/lazy-cas.json", b"1")
    with vfs_state.session():
        with open(_lazy(f"{base}/lazy-cas.json"), "rb") as f:
            assert f.read() == b"1"
        with vfs_state.session():
            _write(f"{base}/lazy-cas.json", b"2")  # another writer in between
        with pytest.raises(FileExistsError):
            _write(_lazy(f"{base}/lazy-cas.json"), b"3")
    with open(f"{base}/lazy-cas.json", "rb") as f:
        assert f.read() == b"2"


def test_lazy_open_seek_from_the_end_asks_only_the_size(mounted):
    """A footer read (parquet's pattern): a stat for the size, one ranged read."""
    mount, base = mounted
    path, data = _large_file(mount, base, "lazy-footer.bin", 2 << 20)
    with mount.counting() as counts:
        with open(path, "rb") as f:
            f.seek(-8, os.SEEK_END)
            assert f.read() == data[-8:]
    assert counts.sidecar_requests == 2, counts.detail
    assert counts.sidecar_bytes <= 64 * 1024 + 2048
