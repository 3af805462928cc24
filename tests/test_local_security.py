"""Local connector security: confinement under races, links, bad input, leftovers, versions.

The race runs a real gunicorn sidecar (two workers) while a thread swaps a
directory inside ``STATE_ROOT`` for a symbolic link to an outside directory
and back. CI runs it for a few seconds; ``VFS_STATE_DEEP=1`` runs it longer.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import threading
import time
from collections import Counter

import psutil
import pytest

from sidecars.errors import Forbidden, PreconditionFailed
from sidecars.local import LocalBackend
from tests.harness.base import wait_for
from tests.harness.sidecar import Sidecar
from tests.rawhttp import key_url, request

DEEP = os.environ.get("VFS_STATE_DEEP", "") not in ("", "0")
RACE_SECONDS = 30.0 if DEEP else 3.0
SECRET = b"OUTSIDE-SECRET"
_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100


@pytest.fixture()
def dirs(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    return str(root), str(outside)


def _exchange(a: str, b: str) -> None:
    """Swap two names atomically (``renameat2(RENAME_EXCHANGE)``): no moment without ``a``."""
    if _LIBC.renameat2(_AT_FDCWD, a.encode(), _AT_FDCWD, b.encode(), 2) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _swapper(root: str, outside: str, stop: threading.Event, swaps: list[int]) -> None:
    """Flip ``root/d`` between a real directory and a symlink to ``outside``, forever."""
    real, link = os.path.join(root, "d"), os.path.join(root, "lnk")
    os.symlink(outside, link)
    while not stop.is_set():
        _exchange(real, link)  # d -> outside
        time.sleep(0.0002)
        _exchange(real, link)  # d is the real directory again
        swaps[0] += 1
        time.sleep(0.0002)


def _client(sock: str, worker: int, stop: threading.Event, seen: Counter,
            leaks: list[str]) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        key = f"d/w{worker}-{i % 7}"
        calls = [("PUT", key_url(key), b"payload"), ("PUT", key_url(f"d/sub{i % 3}/x"), b"p"),
                 ("GET", key_url("d/secret"), None), ("HEAD", key_url("d/secret"), None),
                 ("GET", "/keys/?prefix=d/&delimiter=/", None), ("GET", key_url(key), None),
                 ("DELETE", key_url(key), None), ("GET", "/meta/d/secret", None),
                 ("DELETE", key_url("d/secret"), None)]
        for method, path, body in calls:
            status, _, reply = request(sock, method, path, body)
            seen[status] += 1
            secret_hit = "d/secret" in path and status in (200, 204)
            listed = path.startswith("/keys/?") and status == 200 and \
                "d/secret" in json.loads(reply)["keys"]
            if SECRET in reply or secret_hit or listed:
                leaks.append(f"{method} {path} -> {status}")


@pytest.mark.skipif(not hasattr(_LIBC, "renameat2"), reason="needs renameat2 (Linux, glibc)")
def test_symlink_swap_race_stays_inside(dirs):
    root, outside = dirs
    os.mkdir(os.path.join(root, "d"))
    with Sidecar("local-buffered-cas", {"STATE_ROOT": root}, workers=2) as sidecar:
        stop, swaps, seen, leaks = threading.Event(), [0], Counter(), []
        threads = [threading.Thread(target=_swapper, args=(root, outside, stop, swaps))]
        threads += [threading.Thread(target=_client, args=(sidecar.socket_path, w, stop,
                                                           seen, leaks)) for w in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(RACE_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(30)
    print(f"race: {swaps[0]} swaps, statuses {dict(seen)}")
    assert sorted(os.listdir(outside)) == ["secret"], "a request wrote outside STATE_ROOT"
    assert open(os.path.join(outside, "secret"), "rb").read() == SECRET
    assert leaks == [], leaks[:5]
    assert not [s for s in seen if s >= 500], dict(seen)
    assert swaps[0] > 10 and seen[204] > 10  # the race really ran, and writes went through


def test_hard_link_to_outside_file_is_not_served(dirs, local_sidecar):
    root, outside = local_sidecar.root, dirs[1]
    os.link(os.path.join(outside, "secret"), os.path.join(root, "hardlinked"))
    for method in ("GET", "HEAD"):
        status, _, body = request(local_sidecar.socket_path, method, key_url("hardlinked"))
        assert status == 403 and SECRET not in body
    # replacing or deleting the name is fine and leaves the outside file alone
    assert request(local_sidecar.socket_path, "PUT", key_url("hardlinked"), b"mine")[0] == 204
    assert request(local_sidecar.socket_path, "GET", key_url("hardlinked"))[2] == b"mine"
    assert open(os.path.join(outside, "secret"), "rb").read() == SECRET


@pytest.mark.parametrize("method,path", [
    ("PUT", key_url("a" * 300)), ("GET", key_url("a" * 300)), ("HEAD", key_url("d/" + "é" * 200)),
    ("PUT", key_url("ok/" + "b" * 256 + "/c")), ("DELETE", key_url("b" * 256)),
    ("GET", "/keys/?prefix=" + "c" * 300 + "/x"), ("GET", "/meta/" + "m" * 256),
])
def test_overlong_segment_is_4xx_without_server_path(local_sidecar, method, path):
    status, _, body = request(local_sidecar.socket_path, method, path, b"x" if method == "PUT"
                              else None)
    assert 400 <= status < 500, body
    assert local_sidecar.root.encode() not in body


def test_meta_and_errors_disclose_no_server_path(local_sidecar, dirs):
    sock, root = local_sidecar.socket_path, local_sidecar.root
    request(sock, "PUT", key_url("meta/k"), b"v")
    status, _, body = request(sock, "GET", "/meta/meta/k")
    assert status == 200 and set(json.loads(body)["attrs"]) >= {"version", "size"}
    os.symlink(dirs[1], os.path.join(root, "linkdir"))
    open(os.path.join(root, "meta", "file"), "w").close()
    replies = [request(sock, "GET", "/meta/meta/k"),
               request(sock, "GET", key_url("linkdir/secret")),
               request(sock, "PUT", key_url("linkdir/new"), b"x"),
               request(sock, "PUT", key_url("meta/file/child"), b"x"),
               request(sock, "GET", "/keys/?prefix=linkdir/")]
    assert [r[0] for r in replies][1:] == [403, 403, 409, 403]
    for _, _, body in replies:
        assert root.encode() not in body and b"/tmp" not in body, body


def _temp_names(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root)
                  for f in files if f.startswith(".vfs-state-tmp-"))


def test_sweep_removes_orphans_and_spares_live_writers(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / ".vfs-state-tmp-dead").write_bytes(b"half an upload")
    live = root / ".vfs-state-tmp-live"
    live.write_bytes(b"being written")
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # what a writer in another worker holds
    try:
        assert LocalBackend(str(root)).temps.sweep() == 1
        assert _temp_names(str(root)) == [".vfs-state-tmp-live"]
    finally:
        os.close(holder)


def test_worker_exit_removes_temp_files_of_uploads_in_flight(tmp_path):
    temps = LocalBackend(str(tmp_path)).temps
    fd, name, _ = temps.create(temps.root.fd)
    try:
        assert _temp_names(str(tmp_path)) == [name]
        temps.remove_live()  # what atexit runs when a stopping worker exits
        assert _temp_names(str(tmp_path)) == []
    finally:
        os.close(fd)


def _stall_upload(sock_path: str, key: str) -> socket.socket:
    """Send a PUT that promises 1 MB and deliver a little: the upload stays open."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock_path)
    conn.sendall(f"PUT {key_url(key)} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                 .encode() + b"z" * 70000)
    return conn


def test_killed_worker_leaves_no_temp_file(tmp_path):
    root = str(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / ".vfs-state-tmp-from-last-run").write_bytes(b"x")
    with Sidecar("local-buffered-cas", {"STATE_ROOT": root}, workers=1) as sidecar:
        wait_for(lambda: _temp_names(root) == [], 20, "sweep at start")
        conn = _stall_upload(sidecar.socket_path, "big")
        wait_for(lambda: len(_temp_names(root)) == 1, 20, "upload started")
        workers = psutil.Process(sidecar.proc.pid).children()
        assert len(workers) == 1
        os.kill(workers[0].pid, signal.SIGKILL)
        conn.close()
        # gunicorn starts a new worker, whose sweep removes the dead worker's temp file
        wait_for(lambda: _temp_names(root) == [], 30, "stale temp removed")
        assert request(sidecar.socket_path, "GET", key_url("big"))[0] == 404


def test_sigterm_cut_upload_leaves_no_temp_file(tmp_path):
    root = str(tmp_path)
    env = {"STATE_ROOT": root}
    sidecar = Sidecar("local-buffered-cas", env, workers=1,
                      extra_args=("--graceful-timeout=3",))
    with sidecar:
        conn = _stall_upload(sidecar.socket_path, "cut")
        wait_for(lambda: len(_temp_names(root)) == 1, 20, "upload started")
        sidecar.stop()  # SIGTERM; the upload outlives the grace period
        conn.close()
        # the worker keeps part of the grace period back to clean up before SIGKILL
        assert _temp_names(root) == [], "the cut upload's temp file outlived the worker"


def test_versions_never_repeat_with_coarse_timestamps(tmp_path):
    """Same size, same mtime (as on a coarse-timestamp file system): versions still differ."""
    backend = LocalBackend(str(tmp_path))
    path = tmp_path / "k"
    stamp = 1_700_000_000_000_000_000
    seen = []
    for i in range(40):
        backend.write("k", _Body(b"value-%02d" % i), 8)
        os.utime(path, ns=(stamp, stamp))  # a coarse clock gives every write one tick
        seen.append(backend.stat("k").version)
    assert len(set(seen)) == len(seen), "a version repeated"
    for stale in seen[:-1]:
        with pytest.raises(PreconditionFailed):
            backend.write("k", _Body(b"stale!!!"), 8, if_match=stale)
    body = backend.read("k")
    assert b"".join(body.chunks) == b"value-39"
    body.close()


def test_versions_distinct_over_http(local_sidecar):
    sock = local_sidecar.socket_path
    etags = [request(sock, "PUT", key_url("rewrite/k"), b"%04d" % (i % 2))[1]["etag"]
             for i in range(200)]
    assert len(set(etags)) == len(etags)
    assert request(sock, "PUT", key_url("rewrite/k"), b"0000",
                   {"If-Match": etags[-3]})[0] == 412


def test_external_edits_change_the_version(tmp_path):
    backend = LocalBackend(str(tmp_path))
    (tmp_path / "ext").write_bytes(b"by another tool")
    first = backend.stat("ext").version
    assert backend.stat("ext").version == first  # stable without a stored token
    (tmp_path / "ext").write_bytes(b"edited in place, longer")
    assert backend.stat("ext").version != first
    backend.write("ext", _Body(b"ours"), 4)
    ours = backend.stat("ext").version
    with open(tmp_path / "ext", "r+b") as f:  # in place: keeps the inode and the token
        f.write(b"OURS!")
    assert backend.stat("ext").version != ours


def test_listing_pages_scan_once_and_see_changes(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    names = [f"f{i:04d}" for i in range(250)]
    for name in names:
        (big / name).write_bytes(b"")
    os.utime(big, ns=(1, 1))  # long unchanged: a snapshot may be kept
    backend = LocalBackend(str(tmp_path))
    got, cursor = [], None
    while True:
        page = backend.list_page("big/", "/", cursor, 30)
        got += page.keys
        if page.next is None:
            break
        cursor = page.next
    assert got == ["big/" + n for n in names]
    assert backend.listings.scans == 1
    backend.write("big/f0100x", _Body(b""), 0)  # changes the directory: next page sees it
    page = backend.list_page("big/", "/", "big/f0100", 2)
    assert page.keys == ["big/f0100x", "big/f0101"]
    assert backend.listings.scans == 2


def test_listing_snapshot_trust_follows_timestamp_granularity(tmp_path):
    """Fine mtimes are trusted 50 ms on, whole-millisecond ones (coarse filesystems) 2 s."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"")
    backend = LocalBackend(str(tmp_path))

    def scans_for_two_listings(mtime_ns: int) -> int:
        os.utime(tmp_path / "d", ns=(mtime_ns, mtime_ns))
        before = backend.listings.scans
        for _ in range(2):
            assert backend.list_names("d/", None, 10).files == ["a"]
        return backend.listings.scans - before

    now = time.time_ns()
    assert scans_for_two_listings(now - 200_000_001) == 1  # fine, 0.2 s ago: kept
    assert scans_for_two_listings(now - 200_000_000 - now % 1_000_000) == 2  # whole ms
    assert scans_for_two_listings(now - 5_000_001) == 2  # fine, but within a tick or so
    assert scans_for_two_listings(now - 3_000_000_000 - now % 1_000_000) == 1  # old


def test_symlinked_key_and_parent_are_refused(dirs):
    root, outside = dirs
    backend = LocalBackend(root)
    os.symlink(outside, os.path.join(root, "out"))
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "s"))
    for call in (lambda: backend.read("out/secret"), lambda: backend.read("s"),
                 lambda: backend.write("out/new", _Body(b"x"), 1),
                 lambda: backend.list_page("out/", "/", None, 10)):
        with pytest.raises(Forbidden):
            call()
    assert sorted(os.listdir(outside)) == ["secret"]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out
