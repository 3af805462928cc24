"""``vfs-state`` operator verbs, each run as a subprocess against real sidecars.

A local-directory sidecar is mount ``meta``, an S3 sidecar (moto) is mount
``s3``, a Redis sidecar is mount ``kv`` (for a writable attribute). Every
verb is checked for its output, its ``--json`` form, and one failure: a
missing key exits 1 with one ``vfs-state:`` line, bad usage exits 2.
"""
from __future__ import annotations

import hashlib
import json
import os
import pty
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest

from tests.harness.sidecar import Sidecar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = 50 << 20
# Headroom over a tiny copy's peak RSS that a 50 MiB copy may use: well under
# the file's size, so a copy that held the file in memory fails.
RSS_SLACK = 24 << 20


@pytest.fixture(scope="module")
def meta():
    root = tempfile.mkdtemp(prefix="vfs-cli-")
    sidecar = Sidecar("local-buffered-cas", {"STATE_ROOT": root})
    sidecar.root = root
    with sidecar:
        yield sidecar


@pytest.fixture(scope="module")
def mounts(meta, connector_pool) -> str:
    s3 = connector_pool.sidecar("s3-buffered-cas")
    kv = connector_pool.sidecar("redis-buffered-cas")
    return (f"meta:/state/meta:socket={meta.socket_path};"
            f"s3:/state/s3:socket={s3.socket_path};kv:/state/kv:socket={kv.socket_path},open=lazy")


@pytest.fixture
def d() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def vfs(mounts: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``vfs-state ARGS`` with the test mounts; ``check`` wants exit 0."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ASYA_STATE_PROXY_MOUNTS", None)
    env.pop("VFS_STATE_MOUNTS", None)
    if mounts:
        env["VFS_STATE_MOUNTS"] = mounts
    proc = subprocess.run([sys.executable, "-m", "vfs_state.cli", *args], env=env,
                          capture_output=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
        assert b"Traceback" not in proc.stderr
    return proc


def one_line_error(proc: subprocess.CompletedProcess, status: int) -> str:
    """The exit status is ``status`` and stderr is exactly one ``vfs-state:`` line."""
    err = proc.stderr.decode()
    assert proc.returncode == status, (proc.returncode, err)
    assert err.startswith("vfs-state: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_help_is_plain_text_and_version_matches_the_package():
    from importlib import metadata

    import vfs_state
    out = vfs(None, "--help").stdout.decode()
    assert "\x1b[" not in out
    for verb in ("run", "ls", "cat", "cp", "rm", "stat", "xattr", "health", "NAME:KEY"):
        assert verb in out
    version = getattr(vfs_state, "__version__", None) or metadata.version("vfs-state")
    assert vfs(None, "--version").stdout.decode().strip() == f"vfs-state {version}"


@pytest.mark.parametrize("args", [
    [], ["bogus"], ["ls", "--nope"], ["cp", "meta:a"], ["cat", "nomount:x"],
    ["cat", ":x"], ["xattr", "get", "meta:a"], ["cp", "/etc/hostname", "/tmp/x"],
    ["rm", "-r", "meta:"], ["cat", "meta:../x"], ["health", "nomount"],
])
def test_bad_usage_exits_2_with_one_line(mounts, args):
    one_line_error(vfs(mounts, *args, check=False), 2)


@pytest.mark.parametrize("args", [
    ["cat", "meta:{d}/missing"], ["stat", "meta:{d}/missing"], ["rm", "meta:{d}/missing"],
    ["ls", "meta:{d}/missing"], ["xattr", "list", "meta:{d}/missing"],
    ["cp", "meta:{d}/missing", "{tmp}/out"], ["cp", "{tmp}/missing", "meta:{d}/x"],
    ["cat", "kv:{d}/missing"], ["cp", "kv:{d}/missing", "{tmp}/out"],  # open=lazy
])
def test_missing_key_exits_1_with_one_line(mounts, d, tmp_path, args):
    args = [a.format(d=d, tmp=tmp_path) for a in args]
    err = one_line_error(vfs(mounts, *args, check=False), 1)
    assert f"meta:{d}/missing" in err or f"kv:{d}/missing" in err or "missing: No such file" in err
    assert not os.path.exists(tmp_path / "out")


def test_cp_cat_stat_ls_on_a_local_mount(mounts, meta, d, tmp_path):
    data = b"hello\x00world\n" * 100
    vfs(mounts, "cp", write(tmp_path / "a.bin", data), f"meta:{d}/sub/a.bin")
    assert vfs(mounts, "cat", f"meta:{d}/sub/a.bin").stdout == data
    assert vfs(mounts, "cat", f"/state/meta/{d}/sub/a.bin").stdout == data  # mount path form
    with open(os.path.join(meta.root, d, "sub", "a.bin"), "rb") as f:
        assert f.read() == data
    info = json.loads(vfs(mounts, "stat", "--json", f"meta:{d}/sub/a.bin").stdout)
    assert info["type"] == "file" and info["size"] == len(data) and info["version"]
    text = vfs(mounts, "stat", f"meta:{d}/sub/a.bin").stdout.decode()
    assert str(len(data)) in text and info["version"] in text
    assert vfs(mounts, "ls", f"meta:{d}").stdout.decode().split() == ["sub/"]
    long = vfs(mounts, "ls", "-l", f"meta:{d}/sub").stdout.decode().split()
    assert long[0] == str(len(data)) and long[2] == info["version"] and long[3] == "a.bin"
    listed = json.loads(vfs(mounts, "ls", "-l", "--json", f"meta:{d}/sub").stdout)
    assert [(e["name"], e["size"], e["version"]) for e in listed] == \
        [("a.bin", len(data), info["version"])]


def test_ls_recursive_lists_the_tree_and_no_argument_lists_mounts(mounts, d, tmp_path):
    for name in ("x/1", "x/y/2", "z"):
        vfs(mounts, "cp", write(tmp_path / "f", name.encode()), f"meta:{d}/{name}")
    assert vfs(mounts, "ls", "-R", f"meta:{d}").stdout.decode().split() == \
        ["x/", "x/1", "x/y/", "x/y/2", "z"]
    table = json.loads(vfs(mounts, "ls", "--json").stdout)
    assert [(m["name"], m["open"]) for m in table] == [
        ("meta", "checked"), ("s3", "checked"), ("kv", "lazy")]


def test_socket_option_addresses_a_sidecar_without_mounts(meta, d, tmp_path, mounts):
    vfs(mounts, "cp", write(tmp_path / "f", b"direct"), f"meta:{d}/f")
    assert vfs(None, "cat", "--socket", meta.socket_path, f":{d}/f").stdout == b"direct"
    assert vfs(None, "ls", "--socket", meta.socket_path, d).stdout.decode().split() == ["f"]


def test_cp_recursive_between_local_s3_and_local_mount(mounts, d, tmp_path):
    source = tmp_path / "tree"
    files = {"a.txt": b"a", "deep/er/b.bin": os.urandom(3000), "deep/c": b""}
    for name, data in files.items():
        os.makedirs(os.path.dirname(source / name), exist_ok=True)
        write(source / name, data)
    os.makedirs(source / "empty")
    assert vfs(mounts, "cp", str(source), f"s3:{d}", check=False).returncode == 1  # needs -r
    vfs(mounts, "cp", "-r", str(source), f"s3:{d}")                 # local -> S3
    vfs(mounts, "cp", "-r", f"s3:{d}", f"meta:{d}")                 # S3 -> local mount
    vfs(mounts, "cp", "-r", f"meta:{d}", str(tmp_path / "back"))    # mount -> local
    for name, data in files.items():
        with open(tmp_path / "back" / name, "rb") as f:
            assert f.read() == data, name
    assert os.path.isdir(tmp_path / "back" / "empty")
    copied = json.loads(vfs(mounts, "cp", "--json", f"s3:{d}/a.txt", f"meta:{d}/").stdout)
    assert copied["copied"] == [{"source": f"s3:{d}/a.txt", "target": f"meta:{d}/a.txt",
                                 "bytes": 1}]


def test_rm_removes_files_and_with_r_trees(mounts, d, tmp_path):
    for name in ("t/1", "t/u/2", "f"):
        vfs(mounts, "cp", write(tmp_path / "x", b"x"), f"meta:{d}/{name}")
    one_line_error(vfs(mounts, "rm", f"meta:{d}/t", check=False), 1)  # a directory
    vfs(mounts, "rm", f"meta:{d}/f")
    removed = json.loads(vfs(mounts, "rm", "-r", "--json", f"meta:{d}/t").stdout)
    assert removed == {"removed": [f"meta:{d}/t"]}
    assert vfs(mounts, "ls", "-R", f"meta:{d}").stdout == b""  # nothing left


def test_xattr_list_get_set(mounts, d, tmp_path):
    vfs(mounts, "cp", write(tmp_path / "v", b"v"), f"kv:{d}/v")
    vfs(mounts, "xattr", "set", f"kv:{d}/v", "user.vfs.ttl", "3600")
    ttl = int(vfs(mounts, "xattr", "get", f"kv:{d}/v", "ttl").stdout)
    assert 0 < ttl <= 3600
    attrs = json.loads(vfs(mounts, "xattr", "list", "--json", f"kv:{d}/v").stdout)["attrs"]
    assert "ttl" in attrs and "version" in attrs
    assert "user.vfs.version=" in vfs(mounts, "xattr", "list", f"kv:{d}/v").stdout.decode()
    vfs(mounts, "cp", write(tmp_path / "v", b"v"), f"meta:{d}/v")
    one_line_error(vfs(mounts, "xattr", "set", f"meta:{d}/v", "ttl", "5", check=False), 1)
    one_line_error(vfs(mounts, "xattr", "get", f"meta:{d}/v", "nosuch", check=False), 1)


def test_health_exit_codes_for_a_kubernetes_probe(mounts, meta, tmp_path, connector_pool):
    assert vfs(mounts, "health").returncode == 0
    result = json.loads(vfs(mounts, "health", "--live", "--json", "meta").stdout)
    assert result == [{"mount": "meta", "socket": meta.socket_path, "route": "/healthz",
                       "ok": True, "error": None}]
    missing = vfs(None, "health", "--socket", str(tmp_path / "none.sock"), check=False)
    assert "unreachable" in one_line_error(missing, 1)
    # A sidecar that accepts but never answers: the probe gives up at its timeout.
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(4)
    try:
        stuck = vfs(None, "health", "--timeout", "0.5", "--socket", str(tmp_path / "silent.sock"),
                    check=False)
        assert "no answer within 0.5s" in one_line_error(stuck, 1)
    finally:
        silent.close()
    # Alive but not ready: the S3 sidecar's bucket is missing.
    from tests.harness import moto_s3
    env = moto_s3.sidecar_env(connector_pool.server("s3"), "no-such-bucket-here")
    with Sidecar("s3-buffered-cas", env, workers=1) as orphan:
        assert vfs(None, "health", "--live", "--socket", orphan.socket_path).returncode == 0
        one_line_error(vfs(None, "health", "--socket", orphan.socket_path, check=False), 1)


def _peak_rss(mounts: str, *args: str) -> int:
    """Peak RSS (bytes) of ``vfs-state ARGS``, measured by a parent that runs nothing else."""
    measure = ("import resource, subprocess, sys; "
               "rc = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")
    proc = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m",
                           "vfs_state.cli", *args], capture_output=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, VFS_STATE_MOUNTS=mounts),
                          check=False)
    assert proc.stderr == b"", proc.stderr  # no progress bar: stderr is not a terminal
    peak, status = proc.stdout.split()
    assert status == b"0"
    return int(peak) * 1024


def test_large_cp_both_ways_in_bounded_memory(mounts, d, tmp_path):
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(tmp_path / "big", "wb") as f:
        for i in range(BIG >> 20):
            chunk = block[i:] + block[:i]
            digest.update(chunk)
            f.write(chunk)
    small = _peak_rss(mounts, "cp", write(tmp_path / "small", b"s"), f"meta:{d}/small")
    upload = _peak_rss(mounts, "cp", str(tmp_path / "big"), f"s3:{d}/big")
    download = _peak_rss(mounts, "cp", f"s3:{d}/big", str(tmp_path / "copy"))
    assert upload - small < RSS_SLACK and download - small < RSS_SLACK, (small, upload, download)
    check = hashlib.sha256()
    with open(tmp_path / "copy", "rb") as f:
        while chunk := f.read(1 << 20):
            check.update(chunk)
    assert check.digest() == digest.digest()
    assert json.loads(vfs(mounts, "stat", "--json", f"s3:{d}/big").stdout)["size"] == BIG


def test_progress_bar_only_on_a_terminal(mounts, d, tmp_path):
    source = write(tmp_path / "five", os.urandom(5 << 20))
    quiet = vfs(mounts, "cp", source, f"meta:{d}/five")
    assert quiet.stderr == b""
    status, drawn = _run_with_tty_stderr(mounts, "cp", source, f"meta:{d}/five2")
    assert status == 0
    assert "5.00M/5.00M" in drawn and "100%" in drawn, drawn


def _run_with_tty_stderr(mounts: str, *args: str) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal, read while it runs; (status, what it drew)."""
    env = dict(os.environ, PYTHONPATH=ROOT, VFS_STATE_MOUNTS=mounts)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "vfs_state.cli", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=follower)
    finally:
        os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    return proc.wait(120), b"".join(chunks).decode("utf-8", "replace")
