"""``open`` / ``io.open`` on mounts: the builtin's checks, defaults and io stack.

Arguments are validated as the builtin does (same exception types), then
``StateFS.openbin(..., create_parents=True)`` gives the raw binary file and
the usual ``io`` layers go on top: ``BufferedReader/Writer/Random`` and a
``TextIOWrapper`` built with the *builtin's* defaults (locale encoding,
``newline=None``), not pyfilesystem2's (utf-8, ``newline=""``). ``name`` is
the path the caller passed, ``mode`` what the builtin would report, and
``fileno()`` hands out a real descriptor on a local copy (``fd_files``).
``open(fd)`` on a descriptor ``os.open`` gave for a mount path builds the
same stack over it, and closing it commits.
"""
from __future__ import annotations

import errno
import functools
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from vfs_state.shim import fd_files
from vfs_state.shim.errors import converted, oserror, renamed
from vfs_state.shim.probe import kind
from vfs_state.shim.router import MountTable, Target
from vfs_state.writers import ChunkedUpload, SpooledFile

_NEWLINES = (None, "", "\n", "\r", "\r\n")


@dataclass(frozen=True)
class OpenMode:
    """A parsed ``open`` mode: one of r/w/x/a, update (+), binary or text."""

    kind: str
    plus: bool
    binary: bool

    @property
    def fs_mode(self) -> str:
        return self.kind + ("+" if self.plus else "") + "b"

    @property
    def raw_mode(self) -> str:
        """What ``FileIO.mode`` reports for this mode."""
        if self.kind == "x":
            return "xb+" if self.plus else "xb"
        if self.kind == "a":
            return "ab+" if self.plus else "ab"
        if self.kind == "w" and not self.plus:
            return "wb"
        return "rb+" if self.plus or self.kind == "w" else "rb"

    @property
    def reading_only(self) -> bool:
        return self.kind == "r"


def parse_mode(mode: object, buffering: object, encoding: object, errors: object,
               newline: object) -> OpenMode:
    """Validate ``open``'s arguments in the builtin's order, with its exceptions."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    if not isinstance(buffering, int):
        raise TypeError(f"'{type(buffering).__name__}' object cannot be interpreted "
                        "as an integer")
    for name, value in (("encoding", encoding), ("errors", errors), ("newline", newline)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"open() argument '{name}' must be str or None, "
                            f"not {type(value).__name__}")
    chars = set(mode)
    if chars - set("axrwb+t") or len(mode) > len(chars):
        raise ValueError(f"invalid mode: '{mode}'")
    kinds = [c for c in "rwxa" if c in chars]
    if "t" in chars and "b" in chars:
        raise ValueError("can't have text and binary mode at once")
    if len(kinds) != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    binary = "b" in chars
    for name, value in (("an encoding", encoding), ("an errors", errors),
                        ("a newline", newline)):
        if binary and value is not None:
            raise ValueError(f"binary mode doesn't take {name} argument")
    if newline not in _NEWLINES:
        raise ValueError(f"illegal newline value: {newline}")
    if buffering == 0 and not binary:
        raise ValueError("can't have unbuffered text I/O")
    return OpenMode(kinds[0], "+" in chars, binary)


class _MountRaw:
    """Mixed into the raw file's class: what the builtin's ``FileIO`` does differently.

    ``fileno()`` materialises a descriptor (a writer's spool, a reader's
    pinned copy) for ``mmap`` and C code; ``close()`` commits a write and
    reports a refused commit as a local file would report the open. Mixed
    in by swapping the instance's class (no new slots): methods on the
    class, not the instance, keep the file free of reference cycles, so
    CPython still commits an unclosed file as soon as it is dropped, and
    the garbage collector still can.
    """

    __slots__ = ()
    _vfs_target: Target

    def fileno(self) -> int:
        if self.closed:  # type: ignore[attr-defined]
            raise ValueError("I/O operation on closed file")
        fd = getattr(self, "_vfs_fd", None)
        if fd is None:
            fd = self._vfs_fd = _materialise(self, self._vfs_target)  # type: ignore[misc]
            fd_files.view(self._vfs_target, fd)
        return fd

    def close(self) -> None:
        fd = getattr(self, "_vfs_fd", None)
        mapped = False
        if fd is not None and not self.closed:  # type: ignore[attr-defined]
            fd_files.forget(fd)
            mapped = fd_files.live_maps(fd)
            if not isinstance(self, SpooledFile):  # a reader's copy; a spool closes its own
                os.close(fd)
        self._commit_close()
        if mapped and isinstance(self, SpooledFile):
            raise fd_files.outlived(self._vfs_target)

    def _commit_close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        except OSError as exc:
            target = self._vfs_target
            if getattr(exc, "status", None) == 409 and getattr(exc, "code", "") == "conflict":
                # the backend refused a file where a directory is, or under a file
                number = errno.EISDIR if kind(target) == "dir" else errno.ENOTDIR
                raise oserror(number, target.filename) from exc
            renamed(exc, target)
            raise


_MOUNT_CLASSES: dict[type, type] = {}


def _materialise(raw: Any, target: Target) -> int:
    """A real descriptor showing the file's content (see ``fileno()``)."""
    if isinstance(raw, SpooledFile):
        return SpooledFile.fileno(raw)  # the spool itself: fd writes are committed
    if isinstance(raw, ChunkedUpload):
        raise io.UnsupportedOperation(
            f"fileno: {target.where()} streams writes (write=passthrough); "
            "use a buffered mount or vfs_state.local_copy()")
    position = raw.tell()
    with tempfile.TemporaryFile(prefix="vfs-state-fileno-") as copy:
        raw.seek(0)
        shutil.copyfileobj(raw, copy, 1 << 20)
        raw.seek(position)
        copy.flush()
        copy.seek(position)  # the descriptor's offset is the file's, as for a FileIO
        return os.dup(copy.fileno())


def _adapt_raw(raw: io.RawIOBase, target: Target, parsed: OpenMode) -> None:
    """Make ``StateFS``'s raw file look like the builtin's: name, mode, fileno, close."""
    cls = type(raw)
    mount_cls = _MOUNT_CLASSES.get(cls)
    if mount_cls is None:
        mount_cls = _MOUNT_CLASSES.setdefault(cls, type(f"Mount{cls.__name__}",
                                                         (_MountRaw, cls), {}))
    raw.__class__ = mount_cls
    raw._vfs_target = target  # type: ignore[attr-defined]
    raw.name = target.filename  # type: ignore[attr-defined]
    raw.mode = parsed.raw_mode  # type: ignore[attr-defined]


def _check_trailing_slash(target: Target, parsed: OpenMode) -> None:
    """``open("x/")``: what Linux answers for each case."""
    if not parsed.reading_only:
        raise oserror(errno.EISDIR, target.filename)
    found = kind(target)
    raise oserror({None: errno.ENOENT, "file": errno.ENOTDIR}.get(found, errno.EISDIR),
                  target.filename)


def open_target(target: Target, mode: str = "r", buffering: int = -1,
                encoding: str | None = None, errors: str | None = None,
                newline: str | None = None, closefd: bool = True,
                opener: Callable[..., int] | None = None) -> IO[Any]:
    """``open()`` for a path inside a mount."""
    parsed = parse_mode(mode, buffering, encoding, errors, newline)
    if not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    if opener is not None:  # tempfile.NamedTemporaryFile: its opener calls os.open
        fd = opener(target.filename, _flags(parsed))
        if not isinstance(fd, int):
            raise TypeError(f"expected an integer from opener, got {type(fd).__name__}")
        handle: Any = open_descriptor(fd, mode, buffering, encoding, errors, newline)
        raw = handle if buffering == 0 else getattr(handle, "buffer", handle).raw
        raw.name = target.filename
        return handle
    if parsed.binary and buffering == 1:
        warnings.warn("line buffering (buffering=1) isn't supported in binary mode, "
                      "the default buffer size will be used", RuntimeWarning, stacklevel=3)
    if target.dir_only:
        _check_trailing_slash(target, parsed)
    size = -1 if buffering == 1 else buffering
    with converted(target):
        binary = target.fs.openbin(target.fs_path, parsed.fs_mode, size, create_parents=True)
    _adapt_raw(getattr(binary, "raw", binary), target, parsed)
    if parsed.binary:
        return binary
    try:
        text = io.TextIOWrapper(binary, encoding, errors, newline, buffering == 1)
    except BaseException:
        binary.close()  # as the builtin does: a "w" open has truncated already
        raise
    text.mode = mode  # type: ignore[misc]
    return text


class _DescriptorFile(io.FileIO):
    """``open(fd)`` on a descriptor ``os.open`` gave for a mount path.

    Closing it closes the descriptor through ``fd_files`` (the commit).
    """

    _vfs_closefd = True

    def close(self) -> None:
        if self.closed:
            return
        fd = self.fileno()
        try:
            super().close()  # built with closefd=False: the descriptor stays open
        finally:
            if self._vfs_closefd:
                os.close(fd)  # the shim's: commits a mount descriptor


def _flags(parsed: OpenMode) -> int:
    """The ``os.open`` flags the builtin passes an opener for ``parsed``."""
    flags = {"r": 0, "w": os.O_CREAT | os.O_TRUNC, "x": os.O_CREAT | os.O_EXCL,
             "a": os.O_CREAT | os.O_APPEND}[parsed.kind]
    if parsed.plus:
        flags |= os.O_RDWR
    else:
        flags |= os.O_RDONLY if parsed.kind == "r" else os.O_WRONLY
    return flags | getattr(os, "O_CLOEXEC", 0)


def open_descriptor(fd: int, mode: str = "r", buffering: int = -1, encoding: str | None = None,
                    errors: str | None = None, newline: str | None = None,
                    closefd: bool = True, opener: Callable[..., int] | None = None) -> IO[Any]:
    """``open(fd, ...)``/``os.fdopen`` for a mount descriptor: the builtin's io stack."""
    parsed = parse_mode(mode, buffering, encoding, errors, newline)
    raw = _DescriptorFile(fd, parsed.kind + ("+" if parsed.plus else ""), closefd=False)
    raw._vfs_closefd = closefd
    line_buffering = buffering == 1
    if buffering == 0:
        return raw
    size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
    if parsed.plus:
        buffer: Any = io.BufferedRandom(raw, size)
    elif parsed.kind == "r":
        buffer = io.BufferedReader(raw, size)
    else:
        buffer = io.BufferedWriter(raw, size)
    if parsed.binary:
        return buffer
    text = io.TextIOWrapper(buffer, encoding, errors, newline, line_buffering)
    text.mode = mode  # type: ignore[misc]
    return text


def make_open(table: MountTable, real_open: Callable[..., IO[Any]]) -> Callable[..., IO[Any]]:
    """The replacement for ``builtins.open`` (and ``io.open``, the same object)."""
    resolve = table.resolve

    @functools.wraps(real_open)
    def open(file: Any, *args: Any, **kwargs: Any) -> IO[Any]:  # noqa: A001
        target = resolve(file)
        if target is None:
            if fd_files.REGISTRY and type(file) is int and file in fd_files.REGISTRY:
                return open_descriptor(file, *args, **kwargs)
            return real_open(file, *args, **kwargs)
        return open_target(target, *args, **kwargs)

    return open


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    import builtins

    replacement = make_open(table, builtins.open)
    result = {("builtins", "open"): replacement}
    if io.open is builtins.open:
        result[("io", "open")] = replacement
    else:  # pragma: no cover - distinct objects on some other interpreter
        result[("io", "open")] = make_open(table, io.open)
    return result
