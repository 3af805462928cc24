"""The one door to pyfilesystem2 (``fs``), and the error table both ways.

``fs`` 2.4.16 imports ``pkg_resources``; ``_fsimport`` defers that import
(about 0.1 s) until something other than a namespace declaration needs it.
Keeping every ``fs`` import here means a future ``fs`` release
or replacement touches one module. ``fs`` errors are not ``OSError``s, so
the shim converts them with ``to_oserror``; ``StateFS`` converts the
client's ``OSError``s with ``to_fs_error``. One table serves both.
"""
from __future__ import annotations

import errno
import os
import warnings
from typing import Any

from vfs_state._fsimport import import_fs
from vfs_state.errors import VersionConflict

import_fs()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # fs's pkg_resources deprecation notice
    from fs import errors
    from fs.base import FS
    from fs.enums import ResourceType
    from fs.info import Info
    from fs.mode import Mode, validate_open_mode
    from fs.path import abspath, basename, dirname, normpath, relpath
    from fs.subfs import SubFS

# fs error class <-> (OSError subclass, errno); first match wins when going to fs
ERROR_TABLE: list[tuple[type[Exception], type[OSError], int]] = [
    (errors.ResourceNotFound, FileNotFoundError, errno.ENOENT),
    (errors.DirectoryExpected, NotADirectoryError, errno.ENOTDIR),
    (errors.FileExpected, IsADirectoryError, errno.EISDIR),
    (errors.DirectoryNotEmpty, OSError, errno.ENOTEMPTY),
    (errors.DirectoryExists, FileExistsError, errno.EEXIST),
    (errors.FileExists, FileExistsError, errno.EEXIST),
    (errors.DestinationExists, FileExistsError, errno.EEXIST),
    (errors.PermissionDenied, PermissionError, errno.EACCES),
    (errors.ResourceReadOnly, PermissionError, errno.EROFS),
    (errors.RemoveRootError, OSError, errno.EBUSY),  # rmdir of a mount point, as locally
    (errors.InsufficientStorage, OSError, errno.ENOSPC),
    (errors.RemoteConnectionError, ConnectionError, errno.ECONNREFUSED),
    (errors.OperationTimeout, TimeoutError, errno.ETIMEDOUT),
    (errors.Unsupported, OSError, errno.ENOTSUP),
    (errors.ResourceInvalid, OSError, errno.EINVAL),
    (errors.IllegalBackReference, OSError, errno.EINVAL),
]

#: errno -> fs error class (called as ``cls(path, exc=...)``, typed loosely for that)
_BY_ERRNO: dict[int, Any] = {
    number: fs_cls for fs_cls, _, number in reversed(ERROR_TABLE)}
_BY_ERRNO[errno.ENOENT] = errors.ResourceNotFound
_BY_ERRNO[errno.EEXIST] = errors.FileExists


_EXPLAINED = (errno.ENOTSUP, errno.EACCES)


def to_oserror(exc: errors.FSError, path: str | bytes) -> OSError:
    """An ``fs`` error as the ``OSError`` a local filesystem would raise.

    Errors a local file system raises too keep the local message; refusals
    (``ENOTSUP``, ``EACCES``) keep the sidecar's, which names the mount and
    says why.
    """
    cause = getattr(exc, "exc", None)
    for fs_cls, os_cls, number in ERROR_TABLE:
        if isinstance(exc, fs_cls):
            text = os.strerror(number)
            if number in _EXPLAINED and isinstance(cause, OSError) and cause.strerror:
                text = cause.strerror
            return os_cls(number, text, path)
    return OSError(errno.EIO, str(exc), path)


def to_fs_error(exc: OSError, path: str) -> errors.FSError | None:
    """The ``fs`` error for a client ``OSError`` on ``path``; None to re-raise as is.

    CAS conflicts (``VersionConflict``), backend outages and size limits stay
    built-in exceptions: they are not path errors and callers catch them by
    those names.
    """
    if isinstance(exc, (VersionConflict, ConnectionError, TimeoutError)):
        return None
    fs_cls = _BY_ERRNO.get(exc.errno or 0)
    if fs_cls is None or exc.errno == errno.EFBIG:
        return None
    return fs_cls(path, exc=exc)


__all__ = ["FS", "Info", "Mode", "ResourceType", "SubFS", "errors", "abspath", "basename",
           "dirname", "normpath", "relpath", "validate_open_mode", "to_oserror", "to_fs_error",
           "ERROR_TABLE"]
