"""Mount configuration: ``NAME:/ABS/PATH:opt=val,opt=val`` entries, ``;``-separated.

Read from ``VFS_STATE_MOUNTS`` (or, for compatibility, ``ASYA_STATE_PROXY_MOUNTS``).
Options: ``write=buffered|passthrough``, ``socket=/path.sock`` (default
``$VFS_STATE_SOCKET_DIR/NAME.sock``, the directory defaulting to
``/var/run/asya/state``) and ``open=checked|lazy`` (default checked: ``open``
for reading asks the store at once, and raises as the builtin does; lazy
leaves that request, and a missing file's error, to the first read).
A malformed entry raises ``ValueError`` naming it.
"""
from __future__ import annotations

import os
import posixpath
import re

from vfs_state.protocol import WRITE_MODES

ENV_VARS = ("VFS_STATE_MOUNTS", "ASYA_STATE_PROXY_MOUNTS")
SOCKET_DIR_ENV = "VFS_STATE_SOCKET_DIR"
# Set by ``vfs-state run``: the start-up hook appends its pid there once active.
ACTIVATION_FILE_ENV = "VFS_STATE_ACTIVATION_FILE"
DEFAULT_SOCKET_DIR = "/var/run/asya/state"
OPEN_MODES = ("checked", "lazy")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# ',' '=' ';' and whitespace in a path almost always mean a mistyped option list
# (``meta:/state/meta,socket=/x.sock``); accepting them would leave the intended
# path unmounted, so they are refused.
_BAD_PATH_CHARS = re.compile(r"[,=;\s]")


class Mount:
    """One mount: files under ``path`` live behind the sidecar at ``socket``.

    Immutable, equal and hashed by its four fields. A plain class, not a
    dataclass: ``dataclasses`` imports ``inspect`` and ``ast``, about a
    quarter of the start-up cost of a process with the mounts set.
    """

    __slots__ = ("name", "path", "write_mode", "socket", "open_mode", "label")

    name: str
    path: str
    write_mode: str
    socket: str
    #: "checked" or "lazy" (``OPEN_MODES``): when a read's first request is sent
    open_mode: str
    #: how messages name the mount, made once (every open carries it)
    label: str

    def __init__(self, name: str, path: str, write_mode: str = "buffered",
                 socket: str = "", open_mode: str = "checked") -> None:
        if not _NAME.match(name):
            raise ValueError(f"mount name {name!r} must be letters, digits, '_', '-', '.'")
        if not path.startswith("/"):
            raise ValueError(f"mount {name!r}: path {path!r} must be absolute")
        bad = _BAD_PATH_CHARS.search(path)
        if bad:
            raise ValueError(f"mount {name!r}: path {path!r} contains "
                             f"{bad.group()!r}; options go after a second ':' "
                             "(NAME:/ABS/PATH:write=...,socket=...)")
        path = posixpath.normpath(path)
        if path == "/":
            raise ValueError(f"mount {name!r}: cannot mount over '/'")
        if write_mode not in WRITE_MODES:
            raise ValueError(f"mount {name!r}: write must be one of {WRITE_MODES}, "
                             f"not {write_mode!r}")
        if open_mode not in OPEN_MODES:
            raise ValueError(f"mount {name!r}: open must be one of {OPEN_MODES}, "
                             f"not {open_mode!r}")
        if not socket:
            directory = os.environ.get(SOCKET_DIR_ENV) or DEFAULT_SOCKET_DIR
            socket = os.path.join(directory, f"{name}.sock")
        init = object.__setattr__  # this class's own __setattr__ refuses: it is frozen
        init(self, "name", name)
        init(self, "path", path)
        init(self, "write_mode", write_mode)
        init(self, "socket", socket)
        init(self, "open_mode", open_mode)
        init(self, "label", f"mount {name!r} at {path}")

    @property
    def lazy_open(self) -> bool:
        """Whether ``open`` for reading leaves its request to the first read."""
        return self.open_mode == "lazy"

    def _fields(self) -> tuple[str, str, str, str, str]:
        return (self.name, self.path, self.write_mode, self.socket, self.open_mode)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Mount(name={self.name!r}, path={self.path!r}, "
                f"write_mode={self.write_mode!r}, socket={self.socket!r}"
                + (f", open_mode={self.open_mode!r})" if self.open_mode != "checked" else ")"))

    def __setattr__(self, attribute: str, value: object) -> None:
        raise AttributeError(f"Mount is immutable: cannot set {attribute!r}")

    def __delattr__(self, attribute: str) -> None:
        raise AttributeError(f"Mount is immutable: cannot delete {attribute!r}")

    def __reduce__(self) -> tuple[type[Mount], tuple[str, str, str, str, str]]:
        return Mount, self._fields()  # pickle and copy: rebuilt through __init__


def parse_mounts(text: str) -> list[Mount]:
    """Parse the mount list format; raises ``ValueError`` naming the bad entry."""
    mounts: list[Mount] = []
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        try:
            mounts.append(_parse_entry(entry))
        except ValueError as exc:
            raise ValueError(f"malformed mount entry {entry!r}: {exc}") from None
    return validate_mounts(mounts)


def validate_mounts(mounts: list[Mount]) -> list[Mount]:
    """Refuse duplicate names or paths and mounts nested in one another."""
    names = [m.name for m in mounts]
    paths = [m.path for m in mounts]
    for label, values in (("name", names), ("path", paths)):
        duplicates = {v for v in values if values.count(v) > 1}
        if duplicates:
            raise ValueError(f"duplicate mount {label}: {', '.join(sorted(duplicates))}")
    for a in paths:
        for b in paths:
            if a != b and b.startswith(a + "/"):
                raise ValueError(f"mount path {b!r} is nested inside {a!r}")
    return mounts


def _parse_entry(entry: str) -> Mount:
    parts = entry.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("expected NAME:/ABS/PATH[:opt=val,...]")
    name, path = parts[0].strip(), parts[1].strip()
    options: dict[str, str] = {}
    if len(parts) == 3 and parts[2].strip():
        for item in parts[2].split(","):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key or not value:
                raise ValueError(f"option {item!r} is not opt=val")
            if key not in ("write", "socket", "open"):
                raise ValueError(f"unknown option {key!r} (known: write, socket, open)")
            if key in options:
                raise ValueError(f"option {key!r} given twice")
            options[key] = value
    return Mount(name=name, path=path, write_mode=options.get("write", "buffered"),
                 socket=options.get("socket", ""), open_mode=options.get("open", "checked"))


def mounts_from_env(environ: dict[str, str] | None = None) -> list[Mount]:
    """Mounts from ``VFS_STATE_MOUNTS``, else ``ASYA_STATE_PROXY_MOUNTS``; [] if unset."""
    env = os.environ if environ is None else environ
    for name in ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return parse_mounts(value)
    return []


def format_mounts(mounts: list[Mount]) -> str:
    """The inverse of ``parse_mounts`` (for passing mounts to a child process)."""
    return ";".join(f"{m.name}:{m.path}:write={m.write_mode},socket={m.socket}"
                    + ("" if m.open_mode == "checked" else f",open={m.open_mode}")
                    for m in mounts)
