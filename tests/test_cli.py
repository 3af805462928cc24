"""The two command-line entry points: `vfs-state-sidecar` and `vfs-state run`."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import psutil
import pytest

from tests.harness.sidecar import Sidecar, healthy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("VFS_STATE_MOUNTS", None)
    env.pop("ASYA_STATE_PROXY_MOUNTS", None)
    env.update(extra)
    return env


def _start_hook_installed() -> bool:
    import site
    return any(os.path.exists(os.path.join(d, "vfs_state_autoinstall.pth"))
               for d in site.getsitepackages())


def test_socket_mode_is_0660(tmp_path):
    with Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path)}, workers=1) as sidecar:
        assert stat.S_IMODE(os.stat(sidecar.socket_path).st_mode) == 0o660


def test_stale_socket_is_replaced_but_a_live_one_is_not(tmp_path):
    with Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path)}, workers=1) as live:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale_path = os.path.join(os.path.dirname(live.socket_path), "stale.sock")
        stale.bind(stale_path)
        stale.close()  # a socket file nobody listens on
        env = _env(STATE_ROOT=str(tmp_path), CONNECTOR_SOCKET=stale_path)
        proc = subprocess.Popen([sys.executable, "-m", "sidecars.cli", "local-buffered-cas"],
                                env=env)
        try:
            deadline = time.monotonic() + 20
            while not (os.path.exists(stale_path) and _answers(stale_path)):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(15)
        clash = subprocess.run([sys.executable, "-m", "sidecars.cli", "local-buffered-cas"],
                               env=_env(STATE_ROOT=str(tmp_path),
                                        CONNECTOR_SOCKET=live.socket_path),
                               capture_output=True, text=True, timeout=30, check=False)
        assert clash.returncode != 0 and "in use" in clash.stderr
        assert healthy(live.socket_path)


def _answers(path: str) -> bool:
    try:
        return healthy(path)
    except OSError:
        return False


def test_sigterm_stops_gracefully_and_gunicorn_args_apply(tmp_path):
    sidecar = Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path),
                                             "GUNICORN_CMD_ARGS": "--workers 3"}, workers=None)
    sidecar.start()
    try:
        master = psutil.Process(sidecar.proc.pid)
        deadline = time.monotonic() + 20   # the first worker may answer before all spawned
        while len(master.children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # and no more than 3 appear
        assert len(master.children(recursive=True)) == 3
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.proc.wait(20) == 0
    finally:
        sidecar.close()


@pytest.mark.skipif(not _start_hook_installed(),
                    reason="needs the package installed (its .pth start-up hook); nox does it")
def test_run_starts_sidecars_runs_the_command_and_propagates_exit(tmp_path):
    state = tmp_path / "state"
    script = tmp_path / "handler.py"
    script.write_text(
        "import json, os, sys\n"
        "os.makedirs('/state/meta/sub', exist_ok=True)\n"
        "with open('/state/meta/sub/a.json', 'w') as f:\n"
        "    json.dump({'n': 1}, f)\n"
        "print(sorted(os.listdir('/state/meta')))\n"
        "sys.exit(7)\n")
    result = subprocess.run([sys.executable, "-m", "vfs_state.cli", "run", "--mount",
                             f"meta={state}", "--", sys.executable, str(script)],
                            env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 7, result.stderr
    assert "['sub']" in result.stdout
    assert json.loads((state / "sub" / "a.json").read_text()) == {"n": 1}


def test_run_refuses_a_bad_mount_argument():
    result = subprocess.run([sys.executable, "-m", "vfs_state.cli", "run", "--mount", "nodir",
                             "--", "true"], env=_env(), capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2 and "NAME=DIR" in result.stderr


@pytest.mark.parametrize("value", ["meta", "meta:/x:write=sideways"])
def test_bad_mount_env_is_reported_at_start(value):
    """A broken VFS_STATE_MOUNTS is reported, never silently ignored (warn mode)."""
    code = "import vfs_state._autoinstall"
    result = subprocess.run([sys.executable, "-c", code],
                            env=_env(VFS_STATE_MOUNTS=value, VFS_STATE_ON_ERROR="warn"),
                            capture_output=True, text=True, timeout=30, check=False)
    assert "mounts NOT active" in result.stderr and value.split(":")[0] in result.stderr


def _sidecar_cli(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars.cli", "local-buffered-cas"],
                          env=env, capture_output=True, text=True, timeout=30, check=False)


def test_a_regular_file_at_the_socket_path_is_never_deleted(tmp_path):
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o700)
    target = sockets / "sidecar.sock"
    target.write_text("somebody's data")
    result = _sidecar_cli(_env(STATE_ROOT=str(tmp_path), CONNECTOR_SOCKET=str(target)))
    assert result.returncode == 2, result.stderr
    assert target.read_text() == "somebody's data"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a socket" in lines[0], result.stderr


def test_a_directory_at_the_socket_path_is_one_line(tmp_path):
    target = tmp_path / "sidecar.sock"
    target.mkdir()
    os.chmod(tmp_path, 0o700)
    result = _sidecar_cli(_env(STATE_ROOT=str(tmp_path), CONNECTOR_SOCKET=str(target)))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "directory" in lines[0], result.stderr
    assert target.is_dir()


def test_a_world_writable_socket_directory_is_refused_unless_allowed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    socket_path = str(shared / "sidecar.sock")
    result = _sidecar_cli(_env(STATE_ROOT=str(tmp_path), CONNECTOR_SOCKET=socket_path))
    assert result.returncode == 2 and "world-writable" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    allowed = Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path),
                                             "VFS_STATE_ALLOW_WORLD_WRITABLE_SOCKET_DIR": "1"},
                      workers=1)
    allowed.socket_path = socket_path
    with allowed:
        assert healthy(socket_path)
