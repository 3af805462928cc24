"""Errors at the shim edge: what a local filesystem would have raised.

``fs`` errors become ``OSError`` subclasses with ``errno`` and the caller's
filename (via ``_pyfs.to_oserror``, the one table). Operations a mount cannot
support fail loudly with an ``OSError`` naming the mount, never by falling
through to the local disk.
"""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from vfs_state.shim.router import Target

if TYPE_CHECKING:
    from types import TracebackType


def oserror(number: int, filename: str | bytes | None, filename2: str | bytes | None = None,
            message: str | None = None) -> OSError:
    """``OSError(number, strerror, filename)``: the constructor picks the subclass."""
    text = message or os.strerror(number)
    if filename2 is not None:
        return OSError(number, text, filename, None, filename2)
    return OSError(number, text, filename)


def translated(exc: Exception, target: Target) -> Exception:
    """The exception to raise for ``exc`` from an operation on ``target``.

    ``fs`` errors become the ``OSError`` a local filesystem would raise;
    ``OSError``s that ``StateFS`` lets through (CAS conflicts, outages, size
    limits) keep their class and errno but name the caller's path, not the
    key (``exc`` itself is returned: re-raise it). Hot paths call this from
    a plain ``except`` (no context manager entered per call).
    """
    if isinstance(exc, OSError):
        renamed(exc, target)
        return exc
    # ``fs`` is imported with the mount's StateFS, not at start-up
    from vfs_state._pyfs import errors as fs_errors
    from vfs_state._pyfs import to_oserror

    if isinstance(exc, fs_errors.FSError):
        return to_oserror(exc, target.filename)
    return exc


class converted:  # noqa: N801 - used as ``with converted(target):``, like a function
    """``translated`` for the exceptions raised inside the block.

    A class rather than a generator: cheaper to enter, and most mount calls do.
    """

    __slots__ = ("target",)

    def __init__(self, target: Target) -> None:
        self.target = target

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if isinstance(exc, Exception):
            error = translated(exc, self.target)
            if error is not exc:
                raise error from None


def renamed(exc: OSError, target: Target) -> None:
    """Give ``exc`` the caller's path as filename where the client put the key."""
    if exc.filename == target.key:
        exc.filename = target.filename


def refused(target: Target, operation: str, number: int = errno.ENOTSUP,
            reason: str = "") -> OSError:
    """The error for an operation a mount cannot provide, naming the mount."""
    text = f"{operation} is not supported on {target.where()}"
    if reason:
        text += f": {reason}"
    return oserror(number, target.filename, message=text)
