"""File descriptors for mount paths, backed by a local temporary copy.

A backend object has no descriptor, so ``os.open`` on a mount path
*materialises* the key: its content (the version read, pinned) goes to a
private temporary file outside every mount, and the caller gets a real
descriptor on that file. ``mmap``, ``os.read/write``, ``os.fstat`` and C
code then work on it. The content goes back to the store, conditional on
the version read (``If-Match``; ``If-None-Match: *`` for a new key), when
the descriptor ``os.open`` returned is closed with ``os.close`` (or by the
file object ``os.fdopen``/``open(fd)`` built on it) and on ``os.fsync``;
unchanged content is not written back.

Cost: one full download at open (unless truncating), the object's size on
local disk until the close, one full upload at each commit.

``os.dup``/``os.dup2`` give real, untracked duplicates: the commit happens
when the descriptor ``os.open`` returned is closed; writes through a
duplicate after that are not stored. Also here, because they guard these
copies: descriptors still open at exit are committed; a writable ``mmap``
still open when its file is committed is an error (its later writes
could not be stored); locks (``fcntl``) on a copy are refused, since they
would not exclude other processes. Local descriptors pay one check of an
(empty) dictionary. See docs/shim.md, "File descriptors".

Start-up budget: ``hashlib``, ``tempfile``, ``mmap`` and ``fcntl`` are
imported where a mount descriptor needs them, not here; the patches of the
last three are applied when the program imports them (``LATE_PATCHES``,
see ``shim.patcher``).
"""
from __future__ import annotations

import atexit
import errno
import functools
import io
import os
import shutil
import stat as stat_module
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from vfs_state.shim.errors import converted, oserror, refused
from vfs_state.shim.router import MountTable, Target, routed
from vfs_state.shim.stats import make_stat

_CHUNK = 1 << 20
_real_close = os.close
_real_open = os.open
_NOT_PASSED = (os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_TRUNC", 0))
_DIR_FDS = "a directory on a mount has no descriptor (a commit is durable: no fsync needed)"


def _sha256() -> Any:
    import hashlib  # loads OpenSSL: only for descriptors on mounts, not at start-up

    return hashlib.sha256()


def _digest_fd(fd: int) -> str:
    digest = _sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


class Backing:
    """One materialised key: the temp file, and what a commit is conditional on.

    ``view`` backings belong to a file object's ``fileno()``; they never
    commit (the file object does) and only make ``os.fstat`` answer for the key.
    """

    __slots__ = ("target", "path", "writable", "expect", "digest", "view", "lock")

    def __init__(self, target: Target, path: str, writable: bool, expect: object,
                 digest: str | None, view: bool = False) -> None:
        self.target = target
        self.path = path
        self.writable = writable
        self.expect = expect  # what a commit is conditional on (StateFS.observed())
        self.digest = digest  # None: always commit (created or truncated)
        self.view = view
        self.lock = threading.Lock()

    def commit(self) -> None:
        """Upload the temp file if it changed since the last commit (CAS-checked)."""
        if not self.writable or self.view:
            return
        with self.lock, open(self.path, "rb") as handle:
            digest = _digest_fd(handle.fileno())
            if digest == self.digest:
                return
            target = self.target
            with converted(target):
                target.fs.upload(target.fs_path, handle, expect=self.expect,
                                 create_parents=True)
            self.expect = target.fs.observed(target.fs_path)
            self.digest = digest

    def discard(self) -> None:
        if self.path:
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)


#: descriptor -> its backing; empty for processes that never use a mount fd.
REGISTRY: dict[int, Backing] = {}


def registered(fd: object) -> Backing | None:
    """The backing of ``fd`` (cheap: an empty dict for most processes)."""
    if not REGISTRY or type(fd) is not int:
        return None
    return REGISTRY.get(fd)


def _writable(flags: int) -> bool:
    """From the access mode bits: ``O_WRONLY`` or ``O_RDWR``."""
    return flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) != os.O_RDONLY


def _check(target: Target, flags: int, writable: bool) -> str | None:
    """POSIX open rules against what is stored: "file", or None to create."""
    from vfs_state._pyfs import errors as fs_errors  # fs.base: not at start-up

    stat = None
    with converted(target):
        try:
            stat = target.fs.getinfo(target.fs_path) if target.key else None  # observed
        except fs_errors.ResourceNotFound:
            pass
    if not target.key or (stat is not None and stat.is_dir):
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise oserror(errno.EEXIST, target.filename)
        if writable or flags & os.O_CREAT:
            raise oserror(errno.EISDIR, target.filename)
        raise refused(target, "os.open() of a directory", errno.ENOTSUP, _DIR_FDS)
    if target.dir_only or flags & getattr(os, "O_DIRECTORY", 0):
        raise oserror(errno.ENOTDIR if stat is not None else errno.ENOENT, target.filename)
    if stat is None:
        if not flags & os.O_CREAT:
            raise oserror(errno.ENOENT, target.filename)
        return None
    if flags & os.O_CREAT and flags & os.O_EXCL:
        raise oserror(errno.EEXIST, target.filename)
    return "file"


def _fill(target: Target, path: str) -> None:
    """Download the key into ``path`` (one pinned read; observes the version)."""
    with converted(target), open(path, "wb") as out:
        target.fs.download(target.fs_path, out)


def _create(target: Target) -> None:
    """Create the empty key now, exclusively: ``O_EXCL`` is atomic, as locally."""
    with converted(target):
        target.fs.upload(target.fs_path, io.BytesIO(), expect=None, create_parents=True)


def open_fd(target: Target, flags: int, mode: int = 0o777, *,
            dir_fd: int | None = None) -> int:
    """``os.open`` for a mount path: a real descriptor on a local copy."""
    if dir_fd is not None:
        raise refused(target, "os.open(dir_fd=...)")
    if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
        raise refused(target, "os.open(O_TMPFILE)", errno.EOPNOTSUPP)
    import tempfile  # not at start-up (it imports random)

    writable = _writable(flags)
    found = _check(target, flags, writable)
    directory = tempfile.mkdtemp(prefix="vfs-state-fd-")
    path = os.path.join(directory, "data")
    try:
        if found is None:
            _create(target)  # stored empty now: the unchanged copy needs no commit
            open(path, "wb").close()
            digest: str | None = _sha256().hexdigest()
        elif flags & os.O_TRUNC and writable:
            open(path, "wb").close()
            digest = None  # truncated: always written back
        else:
            _fill(target, path)
            digest = _digest_path(path)
        expect = target.fs.observed(target.fs_path)
        fd = _real_open(path, flags & ~_NOT_PASSED, 0o600)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    REGISTRY[fd] = Backing(target, path, writable, expect, digest)
    if not _exit_hook:
        _exit_hook.append(atexit.register(commit_at_exit))
    return fd


_exit_hook: list[Callable[[], None]] = []


def commit_at_exit() -> None:
    """Descriptors still open at interpreter exit are committed, as the kernel keeps
    a local file's writes; a failure is printed on stderr (nothing else can see it)."""
    for fd, backing in list(REGISTRY.items()):
        if backing.view:
            continue
        try:
            close_fd(fd)
        except Exception as exc:  # noqa: BLE001 - reported, the exit goes on
            print(f"vfs-state: descriptor for {backing.target.filename!r} on "
                  f"{backing.target.where()} not stored at exit: {exc}", file=sys.stderr)


def _digest_path(path: str) -> str:
    fd = _real_open(path, os.O_RDONLY)
    try:
        return _digest_fd(fd)
    finally:
        _real_close(fd)


def unlinked(target: Target) -> None:
    """``target`` was removed: its open copies no longer commit (as a local unlinked file)."""
    for backing in list(REGISTRY.values()):
        same = backing.target
        if same.key == target.key and same.mount == target.mount:
            backing.writable = False


def view(target: Target, fd: int) -> None:
    """Record that ``fd`` (a file object's ``fileno()``) shows ``target``."""
    REGISTRY[fd] = Backing(target, "", False, None, None, view=True)


class FileHooks:
    """``DescriptorHooks`` for a file the shim opened: its ``fileno()`` answers
    ``os.fstat`` for the key, and a writable map of it must not outlive it."""

    __slots__ = ("target",)

    def __init__(self, target: Target) -> None:
        self.target = target

    def shared(self, fd: int) -> None:
        view(self.target, fd)

    def released(self, fd: int) -> OSError | None:
        forget(fd)
        return outlived(self.target) if live_maps(fd) else None


def forget(fd: int) -> None:
    REGISTRY.pop(fd, None)


def close_fd(fd: int) -> None:
    """Close a registered descriptor: commit its copy if it changed, then drop it.

    A writable map of it still open is an error after the commit: its later
    writes could not reach the store.
    """
    mapped = live_maps(fd)
    backing = REGISTRY.pop(fd)
    _real_close(fd)
    try:
        backing.commit()
    finally:
        backing.discard()
    if mapped and backing.writable:
        raise outlived(backing.target)


def make_close(real: Callable[[int], None]) -> Callable[[int], None]:
    @functools.wraps(real)
    def close(fd: int) -> None:
        if REGISTRY and type(fd) is int and fd in REGISTRY:
            return close_fd(fd)
        return real(fd)
    return close


def make_fsync(real: Callable[[Any], None]) -> Callable[[Any], None]:
    """``os.fsync``/``os.fdatasync``: a registered descriptor commits now."""
    @functools.wraps(real)
    def fsync(fd: Any) -> None:
        backing = None
        if REGISTRY:  # a local descriptor costs this check only
            backing = registered(fd if type(fd) is int else _fileno(fd))
        real(fd)
        if backing is not None:
            backing.commit()
    return fsync


def _fileno(obj: Any) -> int | None:
    try:
        return obj.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def make_fstat(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
    """``os.fstat``: a registered descriptor reports the key (size and time of the copy)."""
    @functools.wraps(real)
    def fstat(fd: int) -> os.stat_result:
        result = real(fd)
        backing = registered(fd)
        if backing is None or not stat_module.S_ISREG(result.st_mode):
            return result
        target = backing.target
        return make_stat(target.mount, target.key, False, result.st_size, result.st_mtime)
    return fstat


def _unlink_late(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method(self, ..., unlink=<os.unlink bound at import>)`` calling today's ``os.unlink``."""
    @functools.wraps(method)
    def replacement(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("unlink", os.unlink)
        return method(self, *args, **kwargs)
    return replacement


def tempfile_patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    """``NamedTemporaryFile`` deletes with an ``os.unlink`` held in a default argument.

    Private API: ``tempfile._TemporaryFileCloser.close`` (3.11) or ``.cleanup``
    (3.12, 3.13) with an ``unlink=_os.unlink`` parameter; checked by
    ``tests/test_shim_fds.py``; skipped when the shape differs.
    """
    import tempfile  # imported already: the patcher calls this once it is

    closer = getattr(tempfile, "_TemporaryFileCloser", None)
    result: dict[tuple[str, str], Callable[..., Any]] = {}
    for name in ("close", "cleanup"):
        method = vars(closer).get(name) if closer is not None else None
        code = getattr(method, "__code__", None)
        if method is not None and code is not None \
                and "unlink" in code.co_varnames[:code.co_argcount]:
            result[("tempfile", f"_TemporaryFileCloser.{name}")] = _unlink_late(method)
    return result


#: descriptor -> the writable shared maps made from it that may still be open.
MAPS: dict[int, weakref.WeakSet[Any]] = {}


def _writable_map(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Would ``mmap.mmap(fd, *args, **kwargs)`` write back to the file?"""
    import mmap  # imported already (this runs inside ``mmap.mmap``), bound here for the names

    names = ("length", "flags", "prot", "access", "offset")
    given = {**dict(zip(names, args, strict=False)), **kwargs}
    access = given.get("access", mmap.ACCESS_DEFAULT)
    if access != mmap.ACCESS_DEFAULT:
        return bool(access == mmap.ACCESS_WRITE)
    prot = given.get("prot", mmap.PROT_READ | mmap.PROT_WRITE)
    return bool(prot & mmap.PROT_WRITE and given.get("flags", mmap.MAP_SHARED) & mmap.MAP_SHARED)


def make_mmap(real: type) -> type:
    """``mmap.mmap`` noting writable maps of mount descriptors (see ``live_maps``)."""
    class mmap_type(real):  # type: ignore[valid-type,misc]  # noqa: N801 - stands in for mmap.mmap
        __doc__ = real.__doc__

        def __new__(cls, fileno: int, *args: Any, **kwargs: Any) -> Any:
            mapped = super().__new__(cls, fileno, *args, **kwargs)
            if REGISTRY and type(fileno) is int and fileno in REGISTRY \
                    and _writable_map(args, kwargs):
                MAPS.setdefault(fileno, weakref.WeakSet()).add(mapped)
            return mapped

    mmap_type.__name__ = mmap_type.__qualname__ = "mmap"
    mmap_type.__module__ = "mmap"
    return mmap_type


def live_maps(fd: int) -> bool:
    """Forget ``fd``'s maps; True if a writable one is still open (its writes would be lost)."""
    maps = MAPS.pop(fd, None)
    return bool(maps) and any(not mapped.closed for mapped in list(maps or ()))


def outlived(target: Target) -> OSError:
    """The error for a writable map still open when its file is committed."""
    return oserror(errno.EBUSY, target.filename, message=(
        f"a writable memory map of this file on {target.where()} is still open after the "
        "file was closed: what it writes from now on would not be stored (close the map "
        "first, or use vfs_state.local_copy)"))


_LOCKS = ("a lock on a mount file would lock only this process's local copy, so it "
          "could not exclude other processes; use compare-and-set instead "
          "(vfs_state.retry_on_conflict)")
_LOCKING_COMMANDS = ("F_SETLK", "F_SETLKW", "F_OFD_SETLK", "F_OFD_SETLKW")


def make_lock(real: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fcntl.flock/lockf/fcntl`` on a mount descriptor: refused (``ENOSYS``).

    ``filelock`` and friends then say the file system has no locks, instead
    of two processes both "holding" a lock on their own copies.
    """
    import fcntl  # imported already: the patcher calls this once it is

    commands = {getattr(fcntl, command) for command in _LOCKING_COMMANDS
                if hasattr(fcntl, command)}
    unlock = fcntl.LOCK_UN

    @functools.wraps(real)
    def lock(fd: Any, operation: Any, *args: Any, **kwargs: Any) -> Any:
        number = fd if type(fd) is int else _fileno(fd)  # may materialise a mount file
        if REGISTRY:
            backing = registered(number)
            unlocking = operation == unlock if name != "fcntl" else False
            locking = name != "fcntl" or operation in commands
            if backing is not None and locking and not unlocking:
                raise refused(backing.target, f"fcntl.{name}()", errno.ENOSYS, _LOCKS)
        return real(fd, operation, *args, **kwargs)
    return lock


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    """``os.open/close/fsync/fdatasync/fstat`` (part of ``os_adapter.patches``)."""
    result: dict[tuple[str, str], Callable[..., Any]] = {
        ("os", "open"): routed(table, os.open, open_fd),
        ("os", "close"): make_close(os.close),
        ("os", "fsync"): make_fsync(os.fsync),
        ("os", "fstat"): make_fstat(os.fstat),
    }
    if hasattr(os, "fdatasync"):
        result[("os", "fdatasync")] = make_fsync(os.fdatasync)
    return result


def mmap_patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    import mmap  # imported already: the patcher calls this once it is

    return {("mmap", "mmap"): make_mmap(mmap.mmap)}


def fcntl_patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    import fcntl  # imported already: the patcher calls this once it is

    return {("fcntl", name): make_lock(getattr(fcntl, name), name)
            for name in ("flock", "lockf", "fcntl")}


#: Patches of modules a process need not import: applied when it imports them.
LATE_PATCHES = {"mmap": mmap_patches, "fcntl": fcntl_patches, "tempfile": tempfile_patches}
