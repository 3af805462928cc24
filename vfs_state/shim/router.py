"""The mount table: which path arguments belong to a mount, and to which key.

Every patched function asks ``MountTable.resolve`` first, so the path that is
*not* ours must cost next to nothing: no stack inspection, no ``fs`` import,
a type check and a prefix compare. Only a path that may touch a mount is
normalised. Relative paths are resolved against the real ``os.getcwd()``.
"""
from __future__ import annotations

import functools
import os
import posixpath
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vfs_state.mounts import Mount
    from vfs_state.statefs import StateFS

Entries = tuple[tuple[str, "Mount", "LazyFS"], ...]

_getcwd = os.getcwd
_fspath = os.fspath
_fsdecode = os.fsdecode


class Target:
    """A path argument that lies inside a mount.

    Attributes:
        mount: the ``Mount`` it lies in.
        fs: that mount's ``StateFS``.
        key: the key relative to the mount root ("" for the root itself).
        filename: the argument as ``os.fspath`` gives it, for error messages.
        is_bytes: the caller passed bytes (results come back as bytes).
        dir_only: the path ended in ``/`` or ``/.``: it must name a directory.
    """

    __slots__ = ("mount", "fs", "key", "filename", "is_bytes", "dir_only")

    def __init__(self, mount: Mount, fs: StateFS, key: str, filename: str | bytes,
                 is_bytes: bool, dir_only: bool) -> None:
        self.mount = mount
        self.fs = fs
        self.key = key
        self.filename = filename
        self.is_bytes = is_bytes
        self.dir_only = dir_only

    @property
    def fs_path(self) -> str:
        """The path ``StateFS`` understands ("/" + key)."""
        return "/" + self.key

    def child(self, name: str) -> Target:
        """The target of ``name`` inside this directory (filename joined as given)."""
        key = f"{self.key}/{name}" if self.key else name
        filename: str | bytes
        if isinstance(self.filename, bytes):
            filename = posixpath.join(self.filename, os.fsencode(name))
        else:
            filename = posixpath.join(self.filename, name)
        return Target(self.mount, self.fs, key, filename, self.is_bytes, False)

    def where(self) -> str:
        """How error messages name the mount."""
        return self.mount.label

    def __repr__(self) -> str:
        return f"Target({self.mount.name!r}, {self.key!r})"


class LazyFS:
    """A mount's ``StateFS``, built the first time a path in the mount is used.

    ``StateFS`` is a pyfilesystem2 ``FS``, and importing ``fs`` (which imports
    ``pkg_resources``) costs about 0.1 s: paid by a process that touches a
    mount, never by one that only starts with the mounts set
    (docs/performance.md).
    """

    __slots__ = ("mount", "fs")

    def __init__(self, mount: Mount) -> None:
        self.mount = mount
        self.fs: StateFS | None = None

    def get(self) -> StateFS:
        fs = self.fs
        if fs is None:
            from vfs_state.statefs import StateFS  # first use of the mount only

            with _build_lock:
                if self.fs is None:
                    m = self.mount
                    self.fs = StateFS(m.socket, m.write_mode, name=m.name,
                                      lazy_open=m.lazy_open)
                fs = self.fs
        return fs


_build_lock = threading.Lock()


class MountTable:
    """Mount paths and their ``StateFS`` objects; swapped whole on install.

    ``StateFS`` objects are kept per ``Mount`` so re-installing the same
    mount reuses its connections. They are built on first use (``LazyFS``).
    """

    def __init__(self) -> None:
        # (prefixes, entries), replaced in one assignment: a reader sees one table
        self._state: tuple[tuple[str, ...], Entries] = ((), ())
        self._filesystems: dict[Mount, LazyFS] = {}

    @property
    def mounts(self) -> list[Mount]:
        return [mount for _, mount, _ in self._state[1]]

    def load(self, mounts: Iterable[Mount]) -> None:
        """Replace the table (``StateFS`` objects of unchanged mounts are kept)."""
        mounts = list(mounts)
        filesystems = {m: self._filesystems.get(m) or LazyFS(m) for m in mounts}
        self._filesystems = filesystems
        self._state = (tuple(m.path for m in mounts),
                       tuple((m.path, m, filesystems[m]) for m in mounts))

    def clear(self) -> None:
        self._state = ((), ())

    def resolve(self, arg: object) -> Target | None:
        """The mount ``arg`` points into, or None (fds, other types, local paths).

        The common case, an absolute normalised ``str`` outside every mount,
        costs a type check, two substring checks and one ``startswith``.
        """
        prefixes, entries = self._state
        if not prefixes:
            return None
        if type(arg) is str:
            path = arg
        elif type(arg) is int or arg is None:
            return None
        else:
            return self._resolve_other(arg, entries)
        if path[:1] == "/" and "/." not in path and "//" not in path:
            if not path.startswith(prefixes):
                return None
            return _match(entries, path, path, False)
        return _resolve_slow(entries, path, path, False)

    @staticmethod
    def _resolve_other(arg: object, entries: Entries) -> Target | None:
        """``os.PathLike`` and bytes arguments."""
        try:
            path = _fspath(arg)  # type: ignore[call-overload]
        except TypeError:
            return None
        if type(path) is str:
            return _resolve_slow(entries, path, path, False)
        if type(path) is bytes:
            return _resolve_slow(entries, _fsdecode(path), path, True)
        return None


def _match(entries: Entries, path: str, filename: str | bytes, is_bytes: bool) -> Target | None:
    """``path`` is absolute and normalised (except maybe one trailing slash)."""
    for prefix, mount, lazy in entries:
        if path.startswith(prefix):
            size = len(prefix)
            if len(path) == size:
                return Target(mount, lazy.fs or lazy.get(), "", filename, is_bytes, False)
            if path[size] == "/":
                key = path[size + 1:]
                if "\0" in key:
                    raise ValueError("embedded null byte")
                if key[-1:] == "/":
                    return Target(mount, lazy.fs or lazy.get(), key.rstrip("/"), filename,
                                  is_bytes, True)
                return Target(mount, lazy.fs or lazy.get(), key, filename, is_bytes, False)
    return None


def _resolve_slow(entries: Entries, path: str, filename: str | bytes,
                  is_bytes: bool) -> Target | None:
    """Relative or unnormalised paths: make absolute, normalise, then match."""
    if path[:1] != "/":
        if not path:
            return None
        try:
            path = _getcwd() + "/" + path
        except OSError:  # cwd removed: the real call reports it
            return None
    if "/." not in path and "//" not in path:
        return _match(entries, path, filename, is_bytes)
    dir_only = path.endswith(("/", "/.", "/.."))
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    target = _match(entries, normal, filename, is_bytes)
    if target is not None and dir_only:
        target.dir_only = True
    return target


def _relative_to_fd(target: Target, kwargs: dict[str, Any]) -> bool:
    """A relative path with ``dir_fd`` is resolved against that (local) fd."""
    if kwargs.get("dir_fd") is None:
        return False
    name = target.filename
    return not (name.startswith(b"/") if isinstance(name, bytes) else name.startswith("/"))


def routed(table: MountTable, real: Callable[..., Any], on_mount: Callable[..., Any],
           local: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """A replacement for ``real(path, ...)``: mount paths go to ``on_mount(target, ...)``.

    The one wrapper every adapter uses. Everything else (other paths, fds,
    bad types) reaches ``real`` unchanged, or ``local`` when given (``open``
    of a descriptor the shim made), so errors for those are exactly the real
    function's.
    """
    resolve = table.resolve
    otherwise = real if local is None else local

    @functools.wraps(real)
    def replacement(path: Any, *args: Any, **kwargs: Any) -> Any:
        target = resolve(path)
        if target is None or (kwargs and _relative_to_fd(target, kwargs)):
            return otherwise(path, *args, **kwargs)
        return on_mount(target, *args, **kwargs)

    return replacement


def routed_default(table: MountTable, real: Callable[..., Any], on_mount: Callable[..., Any],
                   default: object) -> Callable[..., Any]:
    """Like ``routed`` for functions whose path may be omitted (``os.listdir()``)."""
    resolve = table.resolve

    @functools.wraps(real)
    def replacement(path: Any = default, *args: Any, **kwargs: Any) -> Any:
        target = resolve(default if path is None else path)
        if target is None:
            return real(path, *args, **kwargs)
        return on_mount(target, *args, **kwargs)

    return replacement


def routed_path(table: MountTable, real: Callable[..., Any], keyword: str,
                on_mount: Callable[..., Any], position: int = 0) -> Callable[..., Any]:
    """Like ``routed`` for a path that may be passed by keyword, or omitted
    (``sqlite3.connect(database=...)``, ``duckdb.connect()``), or come after other
    arguments (``save_file(tensors, filename)``: ``position=1``; refusals only)."""
    resolve = table.resolve

    @functools.wraps(real)
    def replacement(*args: Any, **kwargs: Any) -> Any:
        path = args[position] if len(args) > position else kwargs.get(keyword)
        target = None if path is None else resolve(path)
        if target is None:
            return real(*args, **kwargs)
        if len(args) > position:
            return on_mount(target, *args[position + 1:], **kwargs)
        del kwargs[keyword]
        return on_mount(target, **kwargs)

    return replacement
