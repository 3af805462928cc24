"""The verbs' argument parsers, and the one place failures become exit codes."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from vfs_state.tools.locations import UsageError

OK, FAILED, USAGE = 0, 1, 2

DESCRIPTION = """\
Plain Python file operations on mount paths, stored by sidecars.

Mount paths on the command line:
  NAME:KEY          key KEY on the mount NAME from VFS_STATE_MOUNTS
  /state/meta/KEY   the same, written as the mount path the handler uses
  :KEY              key KEY on the sidecar given by --socket PATH
  anything else     a local file (write ./a:b for a local name with ':')

Exit status: 0 ok, 1 the operation failed, 2 bad usage.
"""


def _one_line_error(parser: argparse.ArgumentParser) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        parser.exit(USAGE, f"vfs-state: {message} (see '{parser.prog} --help')\n")
    return error


def _common() -> argparse.ArgumentParser:
    """Options every verb takes, before or after its own arguments."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--socket", metavar="PATH",
                        help="address one sidecar directly; its keys are written :KEY")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="seconds to wait for the sidecar on each request (default 60)")
    return common


def _version() -> str:
    import vfs_state
    version = getattr(vfs_state, "__version__", None)
    if version is None:
        from importlib import metadata
        try:
            version = metadata.version("vfs-state")
        except metadata.PackageNotFoundError:
            version = "unknown"
    return f"vfs-state {version}"


def register(parser: argparse.ArgumentParser, verbs: argparse._SubParsersAction) -> None:
    """Add the operator verbs (and ``--version``) to the ``vfs-state`` parser."""
    from vfs_state.tools import commands, copy

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--version", action="version", version=_version())
    parser.error = _one_line_error(parser)  # type: ignore[method-assign,assignment]
    common = [_common()]

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, parents=common, help=help_text, description=help_text)
        sub.error = _one_line_error(sub)  # type: ignore[method-assign]
        sub.set_defaults(tool=handler, verb=name)
        return sub

    ls = add("ls", commands.ls, "list mount directories (no argument: list the mounts)")
    ls.add_argument("-l", dest="long", action="store_true", help="size, mtime and version")
    ls.add_argument("-R", dest="recursive", action="store_true", help="list subdirectories too")
    ls.add_argument("paths", nargs="*", metavar="PATH")
    cat = add("cat", commands.cat, "write files from a mount to standard output")
    cat.add_argument("paths", nargs="+", metavar="PATH")
    cp = add("cp", copy.cp, "copy files to, from or between mounts")
    cp.add_argument("-r", "-R", dest="recursive", action="store_true",
                    help="copy directories recursively")
    cp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    cp.add_argument("paths", nargs="+", metavar="SRC... DST")
    rm = add("rm", commands.rm, "remove files (and with -r, directories) from a mount")
    rm.add_argument("-r", "-R", dest="recursive", action="store_true",
                    help="remove directories and their contents")
    rm.add_argument("paths", nargs="+", metavar="PATH")
    stat = add("stat", commands.stat, "show what the sidecar knows of a path")
    stat.add_argument("paths", nargs="+", metavar="PATH")
    xattr = add("xattr", commands.xattr,
                "backend attributes: xattr list|get|set PATH [NAME [VALUE]]")
    xattr.add_argument("action", choices=("list", "get", "set"))
    xattr.add_argument("path", metavar="PATH")
    xattr.add_argument("name", nargs="?", metavar="NAME", help="e.g. ttl or user.vfs.ttl")
    xattr.add_argument("value", nargs="?", metavar="VALUE")
    health = add("health", commands.health,
                 "readiness (or --live liveness) of mounts; exit 0 only when all answer")
    health.add_argument("--live", action="store_true",
                        help="liveness only (/healthz), not the backend (/readyz)")
    health.add_argument("mounts", nargs="*", metavar="MOUNT",
                        help="mount names (default: every mount, or --socket)")
    health.set_defaults(timeout=None)


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen verb; one stderr line and an exit code for every failure."""
    verb = args.verb
    try:
        return args.tool(args)
    except UsageError as exc:
        return report(verb, str(exc), USAGE)
    except KeyboardInterrupt:
        return report(verb, "interrupted", 130)
    except BrokenPipeError:
        _silence_stdout()
        return FAILED
    except (OSError, ValueError) as exc:
        return report(verb, describe(exc), FAILED)


def report(verb: str, message: str, status: int) -> int:
    text = " ".join(message.split())
    print(f"vfs-state: {verb}: {text}", file=sys.stderr)
    return status


def describe(exc: BaseException) -> str:
    """An exception as one readable phrase (no errno numbers, no class names)."""
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename
        return f"{name}: {exc.strerror}" if name else exc.strerror
    return str(exc) or type(exc).__name__


def _silence_stdout() -> None:
    """After a closed pipe, stop Python from complaining at exit."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
