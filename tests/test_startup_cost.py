"""Start-up with ``VFS_STATE_MOUNTS`` set imports nothing heavy (docs/performance.md).

The hook verifies the mounts and that ``fs`` imports (fail-closed), but
``pkg_resources``, ``fs.base``, ``StateFS`` and ``http.client`` wait for the
first use of a mount; that first use still works, and ``fs``'s opener
registry still finds entry points through the deferred ``pkg_resources``.
Nor does the shim import ``dataclasses``, ``hashlib``, ``tempfile``, ``mmap``
or ``fcntl`` itself: the patches of the last three are applied when the
program imports them. ``shutil`` is the exception, for its safe ``rmtree``.
"""
from __future__ import annotations

import subprocess
import sys

from tests.test_activation import ROOT, _env

HEAVY = ("pkg_resources", "fs.base", "vfs_state.statefs", "http.client", "email.parser",
         # the shim's own imports, deferred to the first use that needs them
         "dataclasses", "inspect", "ast", "hashlib", "tempfile", "random",
         "importlib.abc", "importlib.resources", "mmap", "fcntl")
LATE = {"mmap.mmap", "fcntl.flock", "fcntl.lockf", "fcntl.fcntl"}


def _run(code: str, mounts: str | None = "meta:/state/meta") -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(mounts, PYTHONPATH=ROOT), timeout=60)
    assert result.returncode == 0, result
    return result.stdout.strip()


def test_start_with_mounts_imports_nothing_heavy():
    code = ("import sys, builtins, _io; assert builtins.open is not _io.open; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert _run(code) == "[]"


def test_first_use_of_a_mount_builds_its_statefs():
    # no sidecar at the socket: the first use must reach StateFS and fail as unreachable
    code = ("import sys\n"
            "try:\n    open('/state/meta/a.json').read()\n"
            "except OSError as exc:\n    print(type(exc).__name__)\n"
            "print('vfs_state.statefs' in sys.modules, 'pkg_resources' in sys.modules)")
    lines = _run(code).splitlines()
    assert lines[-1] == "True False", lines
    assert lines[0] in ("ConnectionRefusedError", "FileNotFoundError", "ConnectionError"), lines


def test_deferred_pkg_resources_still_serves_fs_openers(tmp_path):
    code = ("import sys\n"
            "from vfs_state import _pyfs\n"
            "import fs\n"
            "assert 'pkg_resources' not in sys.modules\n"
            f"with fs.open_fs('osfs://{tmp_path}') as f:\n    print(type(f).__name__)\n"
            "print('pkg_resources' in sys.modules)")
    assert _run(code, None).splitlines() == ["OSFS", "True"]


def test_hook_cost_is_not_paid_without_mounts():
    assert _run("import sys; print('vfs_state' in sys.modules)", None) == "False"


def test_import_fs_leaves_no_stand_in_behind():
    code = ("import sys\nfrom vfs_state._fsimport import import_fs\nimport_fs()\n"
            "import pkg_resources\nprint(hasattr(pkg_resources, 'iter_entry_points'), "
            "type(pkg_resources).__name__)")
    assert _run(code, None) == "True module"


_LATE_CODE = """
from vfs_state import shim
def late():
    owners = ("mmap", "fcntl", "_TemporaryFileCloser")
    return " ".join(sorted(f"{o.owner.__name__}.{o.attribute}" for o in shim.patched()
                           if getattr(o.owner, "__name__", None) in owners)) or "-"
print(late())
import tempfile
from mmap import mmap
from fcntl import flock
print(late())
print(flock is not flock.__wrapped__)
shim.uninstall()
import fcntl, mmap as mmap_module
print(fcntl.flock is flock.__wrapped__, mmap_module.mmap is mmap.__base__, late())
"""


def test_modules_imported_after_start_are_patched_when_imported():
    lines = _run(_LATE_CODE).splitlines()
    assert lines[0] == "-", lines  # none imported yet, none patched
    names = set(lines[1].split())
    assert LATE <= names, lines
    assert {n.split(".")[0] for n in names - LATE} == {"_TemporaryFileCloser"}, lines
    assert lines[2:] == ["True", "True True -"], lines


def test_shutil_keeps_its_symlink_safe_rmtree():
    # imported after os.open is patched, shutil would pick the unsafe path-based rmtree
    code = "import shutil; print(shutil.rmtree.avoids_symlink_attacks)"
    assert _run(code) == _run(code, None) == "True"
