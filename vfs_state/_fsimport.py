"""Import pyfilesystem2 (``fs``) without importing ``pkg_resources`` at once.

``fs`` 2.4.16 calls ``pkg_resources.declare_namespace`` in ``fs/__init__.py``
and ``fs/opener/__init__.py`` and keeps ``pkg_resources`` for its opener
registry's entry points. Importing ``pkg_resources`` costs about 0.1 s, most
of the start-up cost of a process with ``VFS_STATE_MOUNTS`` set
(docs/performance.md). While ``fs`` is imported, a stand-in answers
``declare_namespace`` the way it does for these packages (``pkgutil``
extends the package path) and hands every other name to the real
``pkg_resources``, imported on first such use: ``fs.open_fs`` looking up
entry points still works, it pays the import then.
"""
from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import Any

NAME = "pkg_resources"


class _Deferred(types.ModuleType):
    """``pkg_resources`` as ``fs`` sees it: namespace declaration here, the rest deferred."""

    @staticmethod
    def declare_namespace(package: str) -> None:
        import pkgutil

        module = sys.modules[package]
        module.__path__ = pkgutil.extend_path(module.__path__, package)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(_real(), name)


def _real() -> types.ModuleType:
    if isinstance(sys.modules.get(NAME), _Deferred):
        del sys.modules[NAME]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setuptools' deprecation notice for pkg_resources
        return importlib.import_module(NAME)


def import_fs() -> types.ModuleType:
    """``import fs``, with ``pkg_resources`` deferred unless it is imported already."""
    if "fs" in sys.modules or NAME in sys.modules:
        return importlib.import_module("fs")
    stand_in = _Deferred(NAME)
    sys.modules[NAME] = stand_in
    try:
        return importlib.import_module("fs")
    finally:
        if sys.modules.get(NAME) is stand_in:
            del sys.modules[NAME]
