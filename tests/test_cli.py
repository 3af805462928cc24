"""The two command-line entry points: `vfs-state-sidecar` and `vfs-state run`."""
from __future__ import annotations

import json
import os
import shutil
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


def test_run_starts_sidecars_runs_the_command_and_propagates_exit(tmp_path, hooked_python):
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
                             f"meta={state}", "--", hooked_python, str(script)],
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
    os.chmod(shared, 0o1777)  # sticky, like /tmp: nobody else may remove or rename the socket
    sticky = Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path)}, workers=1)
    sticky.socket_path = socket_path
    with sticky:
        assert healthy(socket_path)


@pytest.fixture(scope="module")
def hooked_python(tmp_path_factory):
    """An interpreter with the package (and its start-up hook) really installed."""
    from tests.test_activation import _pip_install, _scratch_venv
    python = _scratch_venv(tmp_path_factory.mktemp("venv") / "venv")
    _pip_install(python, ROOT)
    return python


def _run(tmp_path, *child: str, extra: tuple[str, ...] = (), **popen):
    command = [sys.executable, "-m", "vfs_state.cli", "run", "--mount",
               f"meta={tmp_path / 'state'}", "--mount-root", str(tmp_path / "mnt"), *extra,
               "--", *child]
    return subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, **popen)


def test_run_passes_the_child_argv_untouched(tmp_path, hooked_python):
    proc = _run(tmp_path, hooked_python, "-c", "import sys; print(sys.argv[1:])",
                "a", "--", "b", "--")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "['a', '--', 'b', '--']"
    assert err.count("\n") == 1 and str(tmp_path / "mnt" / "meta") in err  # the mount table
    assert not (tmp_path / "mnt" / "meta").exists()  # the run's guard is gone


def test_run_quiet_prints_nothing_and_reports_a_signal_death_as_128_plus_n(tmp_path,
                                                                          hooked_python):
    proc = _run(tmp_path, hooked_python, "-c", "import os; os.kill(os.getpid(), 9)",
                extra=("--quiet",))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + 9, err
    assert err == ""


def test_ctrl_c_reaches_the_child_once_and_sidecars_outlive_it(tmp_path, hooked_python):
    ready = tmp_path / "ready"
    handler = (
        "import json, os, time\n"
        "hits = 0\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "try:\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    hits += 1\n"
        "    try:\n"
        "        time.sleep(1)  # a second SIGINT would land here\n"
        "    except KeyboardInterrupt:\n"
        "        hits += 1\n"
        f"    with open({str(tmp_path / 'mnt' / 'meta' / 'saved.json')!r}, 'w') as f:\n"
        "        json.dump({'hits': hits}, f)\n")
    proc = _run(tmp_path, hooked_python, "-c", handler, start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads((tmp_path / "state" / "saved.json").read_text()) == {"hits": 1}


def test_run_guards_the_mount_path_for_a_non_python_child(tmp_path):
    probe = f"mkdir -p {tmp_path}/mnt/meta/sub 2>/dev/null; echo $?; test -f {tmp_path}/mnt/meta"
    proc = _run(tmp_path, "sh", "-c", probe, extra=("--quiet",))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "1"  # mkdir failed: the guard is a file
    assert not (tmp_path / "mnt" / "meta").exists()


def test_run_refuses_an_interpreter_without_the_package(tmp_path):
    python = shutil.which("python3", path="/usr/bin") or "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no system python3")
    marker = tmp_path / "ran"
    proc = _run(tmp_path, python, "-c", f"open({str(marker)!r}, 'w').close()")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and not marker.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not activate" in lines[0] and sys.executable in lines[0]


def test_relative_mount_root_is_resolved(tmp_path, hooked_python):
    command = [sys.executable, "-m", "vfs_state.cli", "run", "--mount",
               f"meta={tmp_path / 'state'}", "--mount-root", "rel", "--quiet", "--",
               hooked_python, "-c", "open('rel/meta/x.txt', 'w').write('hi')"]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, cwd=tmp_path,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "state" / "x.txt").read_text() == "hi"
    assert not (tmp_path / "rel" / "meta" / "x.txt").exists()


@pytest.mark.parametrize("root", ["/sta te", "/state,x"])
def test_run_usage_errors_are_one_line(tmp_path, root):
    result = subprocess.run([sys.executable, "-m", "vfs_state.cli", "run", "--mount",
                             f"meta={tmp_path}", "--mount-root", root, "--", "true"],
                            env=_env(), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vfs-state"), result.stderr


def test_a_missing_backend_library_names_the_extra(tmp_path):
    # A package that shadows boto3 and cannot be found (find_spec sees None).
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'boto3':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n")
    env = _env(STATE_BUCKET="b", CONNECTOR_SOCKET=str(tmp_path / "s.sock"),
               PYTHONPATH=f"{tmp_path}:{ROOT}")
    result = subprocess.run([sys.executable, "-m", "sidecars.cli", "s3-buffered-cas"], env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'vfs-state[s3]'" in lines[0], result.stderr


def test_run_waits_for_readyz_and_names_a_missing_bucket(tmp_path, connector_pool):
    """/healthz would pass; /readyz finds the bucket missing before the handler runs."""
    from tests.harness import moto_s3
    server = connector_pool.server("s3")
    env = _env(**moto_s3.sidecar_env(server, "no-such-bucket-for-run"))
    command = [sys.executable, "-m", "vfs_state.cli", "run", "--connector", "s3-buffered-cas",
               "--mount", f"meta={tmp_path / 'state'}", "--mount-root", str(tmp_path / "mnt"),
               "--ready-timeout", "3", "--", sys.executable, "-c", "print('handler ran')"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "handler ran" not in done.stdout
    assert "not ready" in done.stderr and "/readyz" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
