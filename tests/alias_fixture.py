"""Every way a module can hold a patched function, bound before the shim installs.

Imported by ``tests/test_shim_basic.py`` before any install. The first block
is reached by the shim's ``sys.modules`` scan (module attributes identical to
an original); the second block is *not* reached, as documented in
docs/shim.md, and the test checks that too.
"""
from __future__ import annotations

import builtins
import io
import os
import os.path
import shutil
from builtins import open as builtin_open  # noqa: F401
from io import open as io_open  # noqa: F401
from os import (  # noqa: F401
    getxattr,
    listdir,
    listxattr,
    lstat,
    makedirs,
    mkdir,
    remove,
    removedirs,
    rename,
    replace,
    rmdir,
    scandir,
    stat,
    unlink,
    walk,
)
from os import open as os_open  # noqa: F401
from os.path import exists, getmtime, getsize, isdir, isfile
from pathlib import Path
from shutil import copy, copy2, copyfile, copystat, move, rmtree  # noqa: F401

# -- reached: module attributes that *are* an original -----------------------------------------
open_alias = open
io_open_alias = io.open
stat_alias = os.stat
rmtree_alias = shutil.rmtree
touch = Path.touch

REACHED = {
    "builtin_open": builtins.open, "io_open": builtins.open, "open_alias": builtins.open,
    "io_open_alias": builtins.open, "stat": os.stat, "stat_alias": os.stat, "lstat": os.lstat,
    "listdir": os.listdir, "scandir": os.scandir, "remove": os.remove, "unlink": os.unlink,
    "mkdir": os.mkdir, "rmdir": os.rmdir, "rename": os.rename, "replace": os.replace,
    "getxattr": os.getxattr, "listxattr": os.listxattr, "os_open": os.open,
    "rmtree": shutil.rmtree, "rmtree_alias": shutil.rmtree, "copystat": shutil.copystat,
    "touch": Path.touch,
}

#: Pure-Python functions that call ``os.*`` at run time: need no rebinding at all.
THROUGH_OS = (exists, isfile, isdir, getsize, getmtime, makedirs, removedirs, walk, copy, copy2,
              copyfile, move, Path)

# -- not reached: copies the scan cannot see -----------------------------------------------------


def default_argument_stat(path: str, _stat=os.stat) -> os.stat_result:
    """A default argument captured the original at definition time."""
    return _stat(path)


def _closure():
    captured = os.stat

    def closure_stat(path: str) -> os.stat_result:
        return captured(path)
    return closure_stat


closure_stat = _closure()


class Holder:
    """A class attribute (not a module attribute)."""

    stat = staticmethod(os.stat)


CONTAINER = {"stat": os.stat}

NOT_REACHED = {
    "default_argument": default_argument_stat,
    "closure": closure_stat,
    "class_attribute": Holder.stat,
    "container": CONTAINER["stat"],
}
