"""Temp files of the local backend: the commit lock, live writers and the sweep.

Every write streams into ``.vfs-state-tmp-<uuid>`` beside its target and
holds an exclusive ``flock`` on it until it is renamed or removed. The lock
tells a live temp file (some worker, in any process, is writing it) from
one left by a killed worker: the kernel drops the lock when its holder
dies. The sweep at worker start removes only temp files nobody holds.

One lock file, ``STATE_ROOT/.vfs-state.lock``, serialises across threads and
processes: a writer holds it shared while it creates and locks its temp file
(so the sweep never sees a created but not yet locked file), and
exclusively while it checks the version and renames (CAS); the sweep holds
it exclusively while it tests and removes a candidate.
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import itertools
import logging
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sidecars.keys import RESERVED_PREFIX
from sidecars.local_paths import DIR_FLAGS, FILE_FLAGS, Root, os_error

log = logging.getLogger("vfs_state.sidecar.local")

TMP_PREFIX = RESERVED_PREFIX + "-tmp-"
LOCK_NAME = RESERVED_PREFIX + ".lock"
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class TempFiles:
    """Creates, tracks and sweeps temp files under one root."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self._live: dict[int, tuple[int, str]] = {}  # id -> (dir fd, name)
        self._live_lock = threading.Lock()
        self._tickets = itertools.count()
        atexit.register(self.remove_live)

    @contextmanager
    def lock(self, mode: int = fcntl.LOCK_EX) -> Iterator[int]:
        """The root lock, opened afresh so threads of one process exclude each other too."""
        try:
            fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=self.root.fd)
        except OSError as exc:  # e.g. a symlink planted at the lock's name
            raise os_error(exc, "cannot open the lock file of STATE_ROOT") from None
        try:
            fcntl.flock(fd, mode)
            yield fd
        finally:
            os.close(fd)  # closing the description releases the flock

    def create(self, dir_fd: int) -> tuple[int, str, int]:
        """A new locked temp file in ``dir_fd``: ``(fd, name, ticket)``."""
        name = TMP_PREFIX + uuid.uuid4().hex
        with self.lock(fcntl.LOCK_SH):
            fd = os.open(name, _TMP_FLAGS, 0o666, dir_fd=dir_fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        with self._live_lock:
            ticket = next(self._tickets)
            self._live[ticket] = (dir_fd, name)
        return fd, name, ticket

    def done(self, ticket: int, dir_fd: int, name: str, renamed: bool) -> None:
        """Forget a temp file; remove it unless it was renamed into place."""
        with self._live_lock:
            self._live.pop(ticket, None)
        if not renamed:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass

    def remove_live(self) -> None:
        """At worker exit: remove temp files of uploads cut short (threads are dying)."""
        with self._live_lock:
            live = list(self._live.values())
            self._live.clear()
        for dir_fd, name in live:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except OSError:
                pass

    # -- the sweep ------------------------------------------------------------

    def sweep(self) -> int:
        """Remove temp files no live writer holds; returns how many were removed."""
        removed = 0
        for dir_fd, name in self._candidates(self.root.fd):
            try:
                removed += self._remove_if_orphan(dir_fd, name)
            except OSError as exc:
                log.warning("local sweep: cannot remove a stale temp file: %s",
                            os.strerror(exc.errno or 0))
            finally:
                os.close(dir_fd)
        if removed:
            log.warning("local sweep: removed %d stale temp file(s)", removed)
        return removed

    def sweep_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.sweep, name="vfs-state-sweep", daemon=True)
        thread.start()
        return thread

    def _remove_if_orphan(self, dir_fd: int, name: str) -> int:
        with self.lock():
            try:
                fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
            except OSError:
                return 0  # gone (committed or removed) or not ours to open
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return 0
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return 0  # a live writer holds it
                os.unlink(name, dir_fd=dir_fd)
                return 1
            finally:
                os.close(fd)

    def _candidates(self, dir_fd: int) -> Iterator[tuple[int, str]]:
        """``(own dir fd, name)`` of every temp file below ``dir_fd``; no link followed."""
        try:
            entries = list(os.scandir(dir_fd))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                yield os.dup(dir_fd), entry.name
            elif entry.is_dir(follow_symlinks=False):
                try:
                    child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES):
                        raise
                    continue
                try:
                    yield from self._candidates(child)
                finally:
                    os.close(child)
