"""Modification times on a mount: the same from every path, and precise where the
backend keeps one precise time on every path (``exact_mtime``: local, Redis), so
that ``filecmp``'s shallow compare tells apart two files of one size written in
the same second (docs/coverage.md)."""
from __future__ import annotations

import filecmp
import os

import pytest

from tests.shim_fixtures import mounted_dir, write_bytes
from vfs_state import StateFS

EXACT = ("local-buffered-cas", "redis-buffered-cas")
WHOLE_SECONDS = ("s3-buffered-cas", "gcs-buffered-cas", "nats-kv-buffered-cas")


def _mounted(request, connector: str):
    sidecar = request.getfixturevalue("local_sidecar") if connector.startswith("local") \
        else request.getfixturevalue("connector_pool").sidecar(connector)
    return mounted_dir(sidecar)


@pytest.mark.parametrize("connector", EXACT + WHOLE_SECONDS)
def test_stat_and_listing_agree_on_the_time(request, connector):
    with _mounted(request, connector) as place:
        write_bytes(f"{place.base}/a", b"one")
        stat = os.stat(f"{place.base}/a")
        with os.scandir(place.base) as entries:
            listed = {entry.name: entry.stat().st_mtime for entry in entries}
    assert listed["a"] == stat.st_mtime
    if connector in WHOLE_SECONDS:
        assert stat.st_mtime == int(stat.st_mtime)


def test_redis_times_tell_same_size_files_apart_for_filecmp(request):
    """Redis stores the time of each write to the microsecond: two writes one
    after the other differ, so the shallow compare reads the contents."""
    with _mounted(request, "redis-buffered-cas") as place:
        base = place.base
        write_bytes(f"{base}/a", b"one")
        write_bytes(f"{base}/b", b"two")  # same size, well within the same second
        assert os.stat(f"{base}/a").st_mtime != os.stat(f"{base}/b").st_mtime
        assert not filecmp.cmp(f"{base}/a", f"{base}/b")
        key = base[len(place.mount_path) + 1:] + "/a"
        read, _ = StateFS(place.socket_path).client.read_head(key, 64)  # a GET's time
        assert read.modified == os.stat(f"{base}/a").st_mtime


def test_local_times_are_the_file_systems_own(request, local_sidecar):
    """The local connector reports its file's st_mtime as it is (two writes within
    one clock tick of that file system share it, as on a local disk)."""
    with _mounted(request, "local-buffered-cas") as place:
        write_bytes(f"{place.base}/a", b"one")
        key = place.base[len(place.mount_path) + 1:] + "/a"
        on_disk = os.stat(os.path.join(local_sidecar.root, key)).st_mtime
        assert os.stat(f"{place.base}/a").st_mtime == on_disk != int(on_disk)
