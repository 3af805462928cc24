"""One invocation's sidecars: a ``StateFS`` per socket, errors named by location."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vfs_state._pyfs import errors as fs_errors
from vfs_state._pyfs import to_oserror
from vfs_state.statefs import StateFS
from vfs_state.tools.locations import Location, Resolver


class Session:
    """Opens each mount's ``StateFS`` once and closes them all at the end."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.resolver = Resolver.from_env(args.socket)
        self.timeout = args.timeout or 60.0
        self._filesystems: dict[str, StateFS] = {}

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        for filesystem in self._filesystems.values():
            filesystem.close()

    def resolve(self, text: str, remote_only: bool = False) -> Location:
        return self.resolver.resolve(text, remote_only)

    def fs(self, location: Location) -> StateFS:
        """The ``StateFS`` of ``location``'s mount (opened on first use)."""
        mount = location.mount
        assert mount is not None
        if mount.socket not in self._filesystems:
            self._filesystems[mount.socket] = StateFS(
                mount.socket, mount.write_mode, name=mount.name, timeout=self.timeout,
                lazy_open=mount.lazy_open)
        return self._filesystems[mount.socket]

    def emit(self, data: Any) -> None:
        """JSON on stdout (``--json``)."""
        json.dump(data, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")


@contextmanager
def named(location: Location) -> Iterator[None]:
    """``fs`` errors as ``OSError``s naming ``location`` the way the user wrote it."""
    try:
        yield
    except fs_errors.FSError as exc:
        raise to_oserror(exc, location.label) from None
    except OSError as exc:
        if exc.filename is not None and exc.strerror and location.remote:
            exc.filename = location.label
        raise
