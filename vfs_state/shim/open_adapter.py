"""``open`` / ``io.open`` on mounts: the builtin's checks, defaults and io stack.

Arguments are validated as the builtin does (same exception types), then
``StateFS.open_key`` (``openbin(..., create_parents=True)`` for a key the
router has normalised) gives the raw binary file and
the usual ``io`` layers go on top: ``BufferedReader/Writer/Random`` and a
``TextIOWrapper`` built with the *builtin's* defaults (locale encoding,
``newline=None``), not pyfilesystem2's (utf-8, ``newline=""``). ``name`` is
the path the caller passed, ``mode`` what the builtin would report (both
given to ``openbin`` in a ``FileContext``), and ``fileno()`` hands out a
real descriptor that ``fd_files`` knows about (its ``FileHooks``).
``open(fd)`` on a descriptor ``os.open`` gave for a mount path builds the
same stack over it, and closing it commits.
"""
from __future__ import annotations

import errno
import io
import os
import warnings
from collections.abc import Callable
from typing import IO, Any, NamedTuple

from vfs_state._types import FileContext
from vfs_state.shim import fd_files
from vfs_state.shim.errors import oserror, translated
from vfs_state.shim.probe import kind
from vfs_state.shim.router import MountTable, Target, routed

_NEWLINES = (None, "", "\n", "\r", "\r\n")
_new_context = tuple.__new__  # a ``FileContext`` without its Python-level ``__new__``
#: ``mode`` -> (parsed, ``fs`` mode, ``FileIO`` mode) for modes already checked
#: with no encoding, errors or newline given (the common call): parsing costs
#: more than the rest of the shim's part of a small read.
_PLAIN_MODES: dict[str, tuple[OpenMode, str, str]] = {}


class OpenMode(NamedTuple):
    """A parsed ``open`` mode: one of r/w/x/a, update (+), binary or text.

    (A tuple, not a dataclass: ``dataclasses`` costs start-up time.)
    """

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
    checked = None
    if encoding is None and errors is None and newline is None and type(buffering) is int:
        checked = _PLAIN_MODES.get(mode) if type(mode) is str else None
        if checked is not None and buffering == 0 and not checked[0].binary:
            raise ValueError("can't have unbuffered text I/O")
    if checked is None:
        parsed = parse_mode(mode, buffering, encoding, errors, newline)
        checked = (parsed, parsed.fs_mode, parsed.raw_mode)
        if (encoding is None and errors is None and newline is None and type(buffering) is int
                and len(_PLAIN_MODES) < 64):
            _PLAIN_MODES[mode] = checked
    parsed, fs_mode, raw_mode = checked
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
    context = _new_context(FileContext, (target.filename, raw_mode, target.mount.label,
                                         fd_files.FileHooks(target)))
    try:
        binary = target.fs.open_key(target.key, fs_mode, size, context)
    except Exception as exc:
        error = translated(exc, target)
        if error is exc:
            raise
        raise error from None
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
    """The replacement for ``builtins.open`` (and ``io.open``, the same object).

    Not a mount path: a descriptor ``os.open`` gave for one gets the mount's
    io stack, anything else the real ``open``.
    """
    registry = fd_files.REGISTRY

    def local(file: Any, *args: Any, **kwargs: Any) -> IO[Any]:
        if registry and type(file) is int and file in registry:
            return open_descriptor(file, *args, **kwargs)
        return real_open(file, *args, **kwargs)

    return routed(table, real_open, open_target, local=local)


def patches(table: MountTable) -> dict[tuple[str, str], Callable[..., Any]]:
    import builtins

    replacement = make_open(table, builtins.open)
    result = {("builtins", "open"): replacement}
    if io.open is builtins.open:
        result[("io", "open")] = replacement
    else:  # pragma: no cover - distinct objects on some other interpreter
        result[("io", "open")] = make_open(table, io.open)
    return result
