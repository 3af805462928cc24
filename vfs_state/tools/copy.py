"""``cp``: local to mount, mount to local, mount to mount; ``-r`` for directories.

Data moves in 1 MiB blocks, so memory stays bounded whatever the size
(reads are ranged streams; writes follow the mount's write mode, and a
buffered write spools to a temporary file beyond 4 MiB). A progress bar
(tqdm, the ``cli`` extra) appears on a terminal for large or many files.
"""
from __future__ import annotations

import argparse
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from vfs_state.tools.locations import Location, UsageError
from vfs_state.tools.progress import Progress
from vfs_state.tools.session import Session, named

BLOCK = 1 << 20


@dataclass
class Job:
    """One file to copy (``size`` is known before copying, for the progress bar)."""

    source: Location
    target: Location
    size: int


def cp(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise UsageError("cp needs a source and a destination")
    with Session(args) as session:
        *sources, dest_text = args.paths
        locations = [session.resolve(text) for text in sources]
        dest = session.resolve(dest_text)
        if not dest.remote and not any(s.remote for s in locations):
            raise UsageError("neither side is on a mount (use the system cp)")
        plan = Planner(session, args.recursive)
        jobs = plan.jobs(locations, dest, dest_text.endswith("/") or len(sources) > 1)
        total = sum(job.size for job in jobs)
        with Progress(total, len(jobs), enabled=not (args.quiet or args.json)) as progress:
            for job in jobs:
                copy_file(session, job, progress)
        if args.json:
            session.emit({"copied": [{"source": j.source.label, "target": j.target.label,
                                      "bytes": j.size} for j in jobs]})
    return 0


class Planner:
    """Expands sources into file jobs and creates the target directories."""

    def __init__(self, session: Session, recursive: bool) -> None:
        self.session = session
        self.recursive = recursive

    def jobs(self, sources: list[Location], dest: Location, into: bool) -> list[Job]:
        dest_is_dir = self.is_dir(dest)
        if into and not dest_is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", dest.label)
        jobs: list[Job] = []
        for source in sources:
            if not self.exists(source):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", source.label)
            name = _basename(source)
            target = dest.child(name) if dest_is_dir and name else dest
            if self.is_dir(source):
                if not self.recursive:
                    raise IsADirectoryError(errno.EISDIR, "is a directory (use cp -r)",
                                            source.label)
                jobs.extend(self.tree(source, target))
            else:
                jobs.append(Job(source, target, self.size(source)))
        return jobs

    def tree(self, source: Location, target: Location) -> Iterator[Job]:
        self.make_dir(target)
        for name, is_dir, size in self.children(source):
            if is_dir:
                yield from self.tree(source.child(name), target.child(name))
            else:
                yield Job(source.child(name), target.child(name), size)

    def children(self, location: Location) -> list[tuple[str, bool, int]]:
        if not location.remote:
            with os.scandir(location.key) as entries:
                return sorted((e.name, e.is_dir(), 0 if e.is_dir() else e.stat().st_size)
                              for e in entries)
        with named(location):
            infos = self.session.fs(location).scandir("/" + location.key, ["details"])
            return sorted((i.name, i.is_dir, i.size if not i.is_dir else 0) for i in infos)

    def exists(self, location: Location) -> bool:
        if not location.remote:
            return os.path.exists(location.key)
        with named(location):
            return self.session.fs(location).exists("/" + location.key)

    def is_dir(self, location: Location) -> bool:
        if not location.remote:
            return os.path.isdir(location.key)
        with named(location):
            return self.session.fs(location).isdir("/" + location.key)

    def size(self, location: Location) -> int:
        if not location.remote:
            return os.path.getsize(location.key)
        with named(location):
            return self.session.fs(location).getsize("/" + location.key)

    def make_dir(self, location: Location) -> None:
        if not location.remote:
            os.makedirs(location.key, exist_ok=True)
            return
        with named(location):
            self.session.fs(location).makedirs("/" + location.key, recreate=True)


def _basename(location: Location) -> str:
    return os.path.basename(location.key.rstrip("/"))


def copy_file(session: Session, job: Job, progress: Progress) -> None:
    """Stream one file; a local target appears only complete (temp file + rename)."""
    with _reader(session, job.source) as source:
        if job.target.remote:
            with named(job.target), session.fs(job.target).openbin(
                    job.target.key, "w", create_parents=True) as target:
                _pump(source, target, progress)
            return
        _write_local(source, job.target.key, progress)


def _reader(session: Session, location: Location) -> BinaryIO:
    if not location.remote:
        return open(location.key, "rb")
    with named(location):
        return session.fs(location).openbin(location.key, "r")


def _pump(source: BinaryIO, target: BinaryIO, progress: Progress) -> None:
    while block := source.read(BLOCK):
        target.write(block)
        progress.advance(len(block))


def _write_local(source: BinaryIO, path: str, progress: Progress) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(prefix=".vfs-state-cp-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as target:
            _pump(source, target, progress)
        if os.path.exists(path):
            shutil.copymode(path, temp)
        else:
            os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
