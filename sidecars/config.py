"""Sidecar configuration from the environment, failing early and clearly."""
from __future__ import annotations

import os
import stat


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the message names it."""


def require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"missing required environment variable {name}")
    return value


def optional(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip() or default


def choice(name: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed`` (the first when unset); anything else is refused by name."""
    value = optional(name, allowed[0])
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def integer(name: str, default: int | None, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
    """A whole number within ``[minimum, maximum]`` (``default`` when unset)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f"{minimum}"
        high = "" if maximum is None else f"{maximum}"
        raise ConfigError(f"{name} must be an integer in {low}..{high}, not {raw!r}")
    return value


def seconds(name: str, default: float, maximum: float = 86400.0) -> float:
    """A positive number of seconds (``default`` when unset), below ``maximum``.

    Zero, a negative value or NaN would disable a timeout or make every call
    fail at once, so they are refused by name like any malformed value.
    """
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not 0 < value <= maximum:  # also false for NaN
        raise ConfigError(f"{name} must be a number of seconds above 0 and at most "
                          f"{maximum:g}, not {raw!r}")
    return value


def consistency(explicit: str | None) -> str:
    """``lww`` or ``cas``: the argument, else ``VFS_STATE_CONSISTENCY``, else cas.

    CAS is the safe default: a client that never observed a key sends no
    precondition, so CAS only differs from LWW where it prevents a lost write.
    """
    value = (explicit or os.environ.get("VFS_STATE_CONSISTENCY", "") or "cas").strip().lower()
    if value not in ("lww", "cas"):
        raise ConfigError(f"VFS_STATE_CONSISTENCY must be lww or cas, not {value!r}")
    return value


ALLOW_SHARED_DIR_ENV = "VFS_STATE_ALLOW_WORLD_WRITABLE_SOCKET_DIR"


def check_socket_path(path: str) -> None:
    """Refuse a ``CONNECTOR_SOCKET`` that is not a socket, or sits in a shared directory.

    Only a socket file is ever removed as stale; a regular file or a directory
    there is somebody else's, so the sidecar stops instead. A world-writable
    directory without the sticky bit lets any local user replace the socket
    (and read or forge state), so it is refused unless
    ``VFS_STATE_ALLOW_WORLD_WRITABLE_SOCKET_DIR`` is true. A sticky one such
    as ``/tmp`` is accepted: only the socket's owner may remove or rename it.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # a file where a directory should be, no permission
        raise ConfigError(f"CONNECTOR_SOCKET {path} cannot be used: {exc.strerror}") from None
    if mode is not None and not stat.S_ISSOCK(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a socket"
        raise ConfigError(f"CONNECTOR_SOCKET {path} exists and is {kind}; "
                          "remove it or choose another path")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        dir_mode = os.stat(directory).st_mode
    except FileNotFoundError:
        return  # created by the sidecar with the default (umask) mode
    except OSError as exc:
        raise ConfigError(f"CONNECTOR_SOCKET directory {directory} cannot be used: "
                          f"{exc.strerror}") from None
    if not stat.S_ISDIR(dir_mode):
        raise ConfigError(f"CONNECTOR_SOCKET directory {directory} is not a directory")
    shared = dir_mode & stat.S_IWOTH and not dir_mode & stat.S_ISVTX
    if shared and not flag(ALLOW_SHARED_DIR_ENV):
        raise ConfigError(f"CONNECTOR_SOCKET directory {directory} is world-writable without "
                          f"the sticky bit; use a private directory or set "
                          f"{ALLOW_SHARED_DIR_ENV}=1")
