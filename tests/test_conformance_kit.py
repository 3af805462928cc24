"""The conformance kit (``vfs_state.testing``) used from outside this test package.

A copy of ``examples/memory_connector`` (a connector, a conftest with the
kit's ``vfs_state_socket`` hook, one test module) is run with ``pytest`` in
a subprocess, from a temporary directory, as a third-party repository
would: it must pass, and a copy whose backend drops ``If-Match`` must fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "memory_connector")

BROKEN = '''

class _DropsPreconditions(MemoryBackend):
    """Claims compare-and-set but writes whatever version the key has."""

    def write(self, key, body, length, if_match=None, if_none_match=False):
        return super().write(key, body, length)


def create_app(consistency=None):
    return build_app(_DropsPreconditions(), consistency="cas")
'''


def _project(tmp_path, broken: bool = False) -> str:
    project = str(tmp_path / "third-party")
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__"))
    if broken:
        with open(os.path.join(project, "memory_connector.py"), "a") as handle:
            handle.write(BROKEN)
    return project


def _packages_only(tmp_path) -> str:
    """A directory holding only ``vfs_state`` and ``sidecars`` (links), as if installed."""
    site = tmp_path / "site"
    site.mkdir()
    for package in ("vfs_state", "sidecars"):
        os.symlink(os.path.join(ROOT, package), site / package)
    return str(site)


def _pytest(project: str, examples: int, *args: str) -> subprocess.CompletedProcess:
    """``python -m pytest`` in ``project``; the packages importable, this tests/ not."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYPOTHESIS_PROFILE")}
    env["PYTHONPATH"] = _packages_only(Path(project).parent)
    env["KIT_EXAMPLES"] = str(examples)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--rootdir", project, *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_third_party_connector_passes_the_kit(tmp_path):
    result = _pytest(_project(tmp_path), examples=5)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "80 passed" in result.stdout  # the Hypothesis suite + 79 FSTestCases


def test_a_connector_dropping_preconditions_fails_the_kit(tmp_path):
    result = _pytest(_project(tmp_path, broken=True), 300, "-k", "TestConformance", "-x")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "CAS not enforced" in result.stdout


def test_the_kit_names_the_extra_when_hypothesis_is_missing():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "try:\n    import vfs_state.testing\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT}).stdout
    assert "vfs_state.testing needs the test extra" in out
    assert "pip install 'vfs-state[test]'" in out


@pytest.mark.parametrize("module", ["vfs_state", "vfs_state.shim", "vfs_state.fsspec_fs"])
def test_importing_the_package_imports_no_test_library(module):
    code = (f"import sys, {module}\n"
            "print(sorted(m for m in ('hypothesis', 'pytest', 'vfs_state.testing')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT}).stdout
    assert out.strip() == "[]"
