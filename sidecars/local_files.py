"""Files of the local backend: opening them safely and naming their versions.

Versions never repeat. Every write stores a fresh random token in the
file's ``user.vfs.version`` extended attribute before the file is renamed
into place, so the token arrives atomically with the bytes, survives
restarts and needs no coordination between workers. The version is
``token-mtime-size``: the token makes each of our writes unique (inodes and
coarse timestamps are recycled, tokens are not); mtime and size make an
in-place edit by another tool visible even though it keeps the attribute.
A file written by another tool has no token and gets ``i<inode>-mtime-size``,
stable until its content or mtime changes.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import uuid

from sidecars.backend import ObjectInfo
from sidecars.errors import Forbidden
from sidecars.local_paths import FILE_FLAGS, os_error

log = logging.getLogger("vfs_state.sidecar.local")

VERSION_ATTR = "user.vfs.version"
_NO_XATTR = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)


class Versions:
    """Reads and stamps version tokens; remembers if the file system has no xattrs."""

    def __init__(self) -> None:
        self.supported = True

    def stamp(self, fd: int) -> None:
        """Give the (temporary) file behind ``fd`` a fresh token."""
        if not self.supported:
            return
        try:
            os.setxattr(fd, VERSION_ATTR, uuid.uuid4().hex.encode())
        except OSError as exc:
            if exc.errno not in _NO_XATTR:
                raise
            self.supported = False
            log.warning("STATE_ROOT has no user extended attributes: local versions fall "
                        "back to inode-mtime-size and may repeat (see docs/connectors/local.md)")

    def version(self, fd: int, st: os.stat_result) -> str:
        """The version of the open regular file ``fd`` whose ``fstat`` is ``st``."""
        token = None
        if self.supported:
            try:
                token = os.getxattr(fd, VERSION_ATTR)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, *_NO_XATTR):
                    raise
        tail = f"{st.st_mtime_ns:x}-{st.st_size:x}"
        if token and token.isascii() and token.isalnum():
            return f"{token.decode()}-{tail}"
        return f"i{st.st_ino:x}-{tail}"

    def info(self, fd: int, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(size=st.st_size, version=self.version(fd, st), modified=st.st_mtime)


def open_regular(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """``(fd, fstat)`` of regular file ``name`` in ``dir_fd``; None when absent or not a file.

    ``O_NOFOLLOW`` refuses a symbolic link (403); ``O_NONBLOCK`` keeps a FIFO
    from hanging the worker. The caller closes the descriptor.
    """
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket
            return None
        raise os_error(exc, "cannot open the key") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def check_servable(st: os.stat_result) -> None:
    """Refuse a file that may be a door out of the root: one with several hard links.

    A file with more than one link might be the same inode as a file outside
    ``STATE_ROOT`` (a hard link planted by someone who can write the root);
    we cannot tell where its other names are, so we serve no such file. No
    device check: a hard link cannot cross file systems, mounting one inside
    the root takes privileges, and overlayfs reports the real device of
    lower-layer files, which would refuse legitimate state.
    """
    if st.st_nlink > 1:
        raise Forbidden("the key is a file with several hard links; it is not served",
                        code="hard_link")
