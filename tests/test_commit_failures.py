"""A failed commit is never silent: ``close()`` raises; garbage collection prints.

``open(p, "w").write(x)`` inside a function leaves the file to the garbage
collector, whose ``io`` finalizer swallows any error of ``close()``. With
the sidecar down the write was lost with no message at all. Now the commit's
failure is one stderr line naming the path and the error.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap

import pytest

from tests.harness.sidecar import Sidecar

SCRIPT = textwrap.dedent("""
    import sys
    import vfs_state
    from vfs_state import Mount, StateFS

    socket = sys.argv[1]
    vfs_state.install([Mount("m", "/state/m", "buffered", socket)])
    unclosed = []  # what a handler's frames would hold until they return

    def shim_save():
        unclosed.append(open("/state/m/shim.txt", "w"))
        unclosed[-1].write("data")

    def statefs_save():
        unclosed.append(StateFS(socket).open("fs.txt", "w"))
        unclosed[-1].write("data")

    def binary_save():
        unclosed.append(open("/state/m/raw.bin", "wb", buffering=0))
        unclosed[-1].write(b"data")

    shim_save()
    statefs_save()
    binary_save()
    print("opened", flush=True)
    sys.stdin.readline()  # the test stops the sidecar meanwhile
    unclosed.clear()  # the last references go: io's finalizers close (commit) them
    print("handler finished", flush=True)
""")


@pytest.fixture
def sidecar():
    """A real local sidecar; the test stops it."""
    with Sidecar("local-buffered-cas",
                 {"STATE_ROOT": tempfile.mkdtemp(prefix="vfs-local-")}) as running:
        yield running


def test_commit_failing_on_garbage_collection_prints_one_line(sidecar):
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, sidecar.socket_path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "opened\n"
        sidecar.stop()
        out, err = child.communicate("go\n", timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "handler finished" in out
    lines = err.splitlines()
    for name in ("/state/m/shim.txt", "fs.txt", "/state/m/raw.bin"):
        mentions = [line for line in lines if name in line]
        assert len(mentions) == 1, err
        assert "LOST" in mentions[0] and "sidecar unreachable" in mentions[0]


def test_commit_failing_in_close_raises_and_prints_nothing(sidecar, capfd):
    from vfs_state import StateFS

    handle = StateFS(sidecar.socket_path).open("explicit.txt", "w")
    handle.write("data")
    sidecar.stop()
    with pytest.raises(ConnectionError, match="sidecar unreachable"):
        handle.close()
    del handle
    assert "LOST" not in capfd.readouterr().err
