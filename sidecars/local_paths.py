"""Race-free confinement for the local backend: every lookup is fd-relative.

A path is never handed to the kernel as a string from ``STATE_ROOT``.
Instead each key segment is opened relative to the directory descriptor of
its parent with ``O_NOFOLLOW``, starting from a descriptor of the root held
for the worker's life. A symbolic link anywhere on the way therefore fails
the lookup (403) whatever another process swaps in between two requests or
two syscalls: the kernel never resolves a link we did not look at, and a
directory we hold open stays the directory we checked.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from sidecars.errors import BadRequest, Conflict, Forbidden, NotFound, SidecarError

#: Longest name most file systems accept for one path segment (bytes).
NAME_MAX = 255
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Opening a file to read it or stat it: never follow, never block on a FIFO.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PathMissing(NotFound):
    """A directory on the way to the key does not exist."""


class FileInPath(NotFound):
    """A directory on the way to the key is a file (a 409 when writing)."""


def segments(key: str) -> list[str]:
    """The path segments of a store key (a trailing ``/`` dropped).

    Keys were validated by the app core; only the per-segment length limit
    of the file system is checked here, so it is a 400 ``name_too_long``
    (the client's ``ENAMETOOLONG``) and not a 500.
    """
    parts = key.rstrip("/").split("/")
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise BadRequest(f"a key segment is longer than {NAME_MAX} bytes",
                             code="name_too_long")
    return parts


def os_error(exc: OSError, what: str) -> SidecarError:
    """A backend error for ``exc`` whose message names ``what``, never a server path."""
    code = exc.errno
    if code in (errno.ELOOP, errno.EMLINK):
        return Forbidden(f"{what}: symbolic links are not followed", code="symlink")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Forbidden(f"{what}: permission denied")
    if code == errno.ENAMETOOLONG:
        return BadRequest(f"{what}: name too long", code="name_too_long")
    if code in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"{what}: not found")
    if code == errno.EISDIR:
        return Conflict(f"{what}: is a directory")
    if code in (errno.ENOTEMPTY, errno.EEXIST):
        return Conflict(f"{what}: exists")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return SidecarError(f"{what}: no space left on the state volume", code="no_space")
    return SidecarError(f"{what}: {os.strerror(code or 0)}", code="os_error")


def is_link(dir_fd: int, name: str) -> bool:
    """True when ``name`` in ``dir_fd`` is a symbolic link (no link is followed)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_child_dir(dir_fd: int, name: str, create: bool = False) -> int:
    """Descriptor of directory ``name`` inside ``dir_fd``, made when ``create``.

    Raises ``Forbidden`` for a symbolic link, ``FileInPath`` for a non-directory,
    ``PathMissing`` when absent (and not created).
    """
    for _ in range(3):  # a concurrent rmdir or swap between two looks: try again
        try:
            return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise PathMissing("no such directory") from None
            try:
                os.mkdir(name, 0o777, dir_fd=dir_fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise os_error(exc, "cannot create a directory") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise os_error(exc, "cannot open a directory") from None
            kind = _kind(dir_fd, name)
            if kind == "other":
                raise FileInPath("a parent of the key is a file") from None
            if kind != "dir":  # a link, or swapped under us: never follow it
                raise Forbidden("a directory on the key's path is a symbolic link",
                                code="symlink") from None
            # a link swapped back for a directory between our two looks: look again
    raise Forbidden("a directory on the key's path keeps changing", code="symlink")


def _kind(dir_fd: int, name: str) -> str:
    """``dir``, ``link``, ``missing`` or ``other`` for ``name`` in ``dir_fd`` (not followed)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return "missing"
    if stat.S_ISDIR(mode):
        return "dir"
    return "link" if stat.S_ISLNK(mode) else "other"


class Root:
    """The state root, held open as a directory descriptor for the worker's life."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = os.path.realpath(path)  # for logs only; never in a reply
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def open_dir(self, parts: list[str] | tuple[str, ...], create: bool = False) -> int:
        """A new descriptor of the directory ``parts`` below the root (caller closes)."""
        if not parts:
            return os.dup(self.fd)
        current = self.fd
        try:
            for name in parts:
                child = open_child_dir(current, name, create)
                if current != self.fd:
                    os.close(current)
                current = child
        except BaseException:
            if current != self.fd:
                os.close(current)
            raise
        return current

    @contextmanager
    def directory(self, parts: list[str] | tuple[str, ...],
                  create: bool = False) -> Iterator[int]:
        """``open_dir`` as a context manager."""
        fd = self.open_dir(parts, create)
        try:
            yield fd
        finally:
            os.close(fd)

    def close(self) -> None:
        os.close(self.fd)
