"""Activation at interpreter start: both install kinds, and failing closed.

SPEC: a process with ``VFS_STATE_MOUNTS`` set either runs with the shim on or
stops at start with one ``vfs-state:`` line; ``VFS_STATE_ON_ERROR=warn`` is the
documented opt-out. The install tests build the real package (regular wheel
and PEP 660 editable) into scratch venvs, so a packaging change that drops the
start-up ``.pth`` fails here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCHED = "import builtins, _io; print('PATCHED' if builtins.open is not _io.open else 'PLAIN')"
GOOD_MOUNTS = "meta:/state/meta"


def _env(mounts: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VFS_STATE_MOUNTS", "ASYA_STATE_PROXY_MOUNTS", "VFS_STATE_ON_ERROR",
                        "PYTHONPATH")}
    if mounts is not None:
        env["VFS_STATE_MOUNTS"] = mounts
    env.update(extra)
    return env


def _start_hook(mounts: str, python: str = sys.executable, **extra: str):
    """Run the start-up hook as the ``.pth`` line does, then one more statement."""
    code = ("import vfs_state._autoinstall; import builtins, _io; "
            "print('RAN', builtins.open is not _io.open)")
    return subprocess.run([python, "-c", code], env=_env(mounts, PYTHONPATH=ROOT, **extra),
                          capture_output=True, text=True, timeout=60)


BAD_MOUNTS = [
    "meta:/state/meta,socket=/x.sock",       # options after ',' instead of ':'
    "meta:/state/meta write=passthrough",    # options after a space
    "meta:/state/meta=x",
    "meta:/state/meta:colour=blue",          # unknown option
    "meta:relative/path",
    "no-path-at-all",
]


@pytest.mark.parametrize("mounts", BAD_MOUNTS)
def test_bad_mounts_stop_the_process_with_one_line(mounts):
    result = _start_hook(mounts)
    assert result.returncode != 0, result
    assert "RAN" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vfs-state:"), result.stderr


def test_import_failure_stops_the_process(tmp_path):
    # A dependency that cannot be imported (a broken ``fs`` shadowing the real
    # one) must stop the interpreter, not let it run unshimmed.
    (tmp_path / "fs").mkdir()
    (tmp_path / "fs" / "__init__.py").write_text("raise ImportError('boom')\n")
    code = "import vfs_state._autoinstall; print('RAN')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(GOOD_MOUNTS, PYTHONPATH=f"{tmp_path}:{ROOT}"), timeout=60)
    assert result.returncode != 0 and "RAN" not in result.stdout, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vfs-state:") and "boom" in lines[0]


def test_warn_mode_continues_without_the_shim():
    result = _start_hook(BAD_MOUNTS[0], VFS_STATE_ON_ERROR="warn")
    assert result.returncode == 0, result
    assert "RAN False" in result.stdout
    assert result.stderr.startswith("vfs-state:") and "NOT active" in result.stderr


def test_good_mounts_activate():
    result = _start_hook(GOOD_MOUNTS)
    assert result.returncode == 0, result
    assert "RAN True" in result.stdout


def _scratch_venv(path) -> str:
    """A venv without pip that sees the test venv's packages (deps) after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = os.path.join(path, "bin", "python")
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", query], capture_output=True, text=True,
                          check=True).stdout.strip()
    # '_' sorts before 'v', so the deps are on sys.path before our .pth runs.
    with open(os.path.join(site, "_vfs_state_test_deps.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _pip_install(python: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                    "--no-deps", "--no-build-isolation", "--no-index", *args],
                   check=True, timeout=300, cwd=ROOT, env=_env(None))


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_activates_at_interpreter_start(tmp_path, editable):
    python = _scratch_venv(tmp_path / "venv")
    _pip_install(python, *(["-e", ROOT] if editable else [ROOT]))
    query = ("import importlib.metadata as m, vfs_state; "
             "print(vfs_state.__file__, vfs_state.__version__ == m.version('vfs-state'))")
    where = subprocess.run([python, "-c", query], env=_env(None), capture_output=True,
                           text=True, check=True, cwd=tmp_path)
    assert where.stdout.split()[0].startswith(ROOT if editable else str(tmp_path)), where.stdout
    assert where.stdout.split()[1] == "True", where.stdout  # __version__ is the installed one
    unset = subprocess.run([python, "-c", PATCHED], env=_env(None),
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert unset.stdout.strip() == "PLAIN", unset
    active = subprocess.run([python, "-c", PATCHED], env=_env(GOOD_MOUNTS),
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert active.returncode == 0 and active.stdout.strip() == "PATCHED", active
    failing = subprocess.run([python, "-c", PATCHED], env=_env(BAD_MOUNTS[0]),
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert failing.returncode != 0 and failing.stderr.startswith("vfs-state:"), failing
