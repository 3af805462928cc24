"""``vfs-state run``: the main job on one machine, no cluster needed.

Starts one sidecar per mount (the local-directory backend by default), checks
that a Python child would really activate the mounts (a handshake through
``VFS_STATE_ACTIVATION_FILE``), waits until each sidecar answers ``/readyz``,
prints the mount table on stderr (``--quiet`` hides it), runs the command with
``VFS_STATE_MOUNTS`` set, then stops the sidecars once the command has exited
and exits with its status (128+N when signal N killed it).

    vfs-state run --mount meta=./state -- python examples/counter_actor.py
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

from vfs_state import tools
from vfs_state.mounts import ACTIVATION_FILE_ENV, Mount, format_mounts, validate_mounts
from vfs_state.protocol import WRITE_MODES
from vfs_state.transport import UnixHTTPConnection

DEFAULT_CONNECTOR = "local-buffered-cas"
READY_TIMEOUT = 30.0


@dataclass
class MountSpec:
    """``NAME=DIR[:write=passthrough]`` from the command line."""

    name: str
    directory: str
    write_mode: str = "buffered"


def parse_mount_arg(text: str) -> MountSpec:
    name, eq, rest = text.partition("=")
    if not eq or not name or not rest:
        raise argparse.ArgumentTypeError(f"--mount {text!r}: expected NAME=DIR[:write=MODE]")
    directory, _, option = rest.partition(":")
    write_mode = "buffered"
    if option:
        key, _, value = option.partition("=")
        if key != "write" or value not in WRITE_MODES:
            raise argparse.ArgumentTypeError(
                f"--mount {text!r}: the only option is write=buffered|passthrough")
        write_mode = value
    return MountSpec(name, directory, write_mode)


class SidecarGroup:
    """The sidecar processes of one run: started together, stopped together.

    Each sidecar runs in its own session, so a Ctrl-C at the terminal reaches
    the handler but not the sidecars: they keep serving while the handler
    saves its state in ``except KeyboardInterrupt``, and stop after it exits.
    """

    def __init__(self, connector: str, socket_dir: str) -> None:
        self.connector = connector
        self.socket_dir = socket_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, spec: MountSpec) -> str:
        socket_path = os.path.join(self.socket_dir, f"{spec.name}.sock")
        env = dict(os.environ, CONNECTOR_SOCKET=socket_path)
        if self.connector.startswith("local-"):
            env["STATE_ROOT"] = os.path.abspath(spec.directory)
        env.pop("VFS_STATE_MOUNTS", None)  # the sidecar itself must not be shimmed
        env.pop("ASYA_STATE_PROXY_MOUNTS", None)
        env.setdefault("VFS_STATE_LOG_LEVEL", "error")  # no start-up line: the table says it
        command = [sys.executable, "-m", "sidecars.cli", self.connector]
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        self.procs.append((socket_path, proc))
        return socket_path

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for ``/readyz`` (backend reachable, bucket present) on every sidecar."""
        deadline = time.monotonic() + timeout
        for socket_path, proc in self.procs:
            while (status := _probe(socket_path, "/readyz")) != 200:
                if proc.poll() is not None:
                    raise RuntimeError(f"sidecar for {socket_path} exited with "
                                       f"{proc.returncode} (see its message above)")
                if time.monotonic() > deadline:
                    detail = "no answer" if status is None else f"/readyz answers {status}"
                    raise RuntimeError(f"sidecar for {socket_path} not ready after {timeout:g}s "
                                       f"({detail}: is the backend reachable and the bucket "
                                       "present?)")
                time.sleep(0.05)

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(35)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _probe(socket_path: str, route: str) -> int | None:
    """The HTTP status of ``route`` on the sidecar, None when it does not answer."""
    if not os.path.exists(socket_path):
        return None
    conn = UnixHTTPConnection(socket_path, timeout=2)
    try:
        conn.request("GET", route)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


def child_command(raw: list[str]) -> list[str]:
    """The child's argv: everything after the first ``--``, untouched."""
    command = raw[1:] if raw[:1] == ["--"] else list(raw)
    if not command:
        raise UsageError("give a command after --")
    return command


def plan_mounts(args: argparse.Namespace, socket_for: dict[str, str]) -> list[Mount]:
    """The mount table of the child; a relative ``--mount-root`` is made absolute."""
    root = os.path.abspath(args.mount_root)
    try:
        return validate_mounts([Mount(spec.name, os.path.join(root, spec.name), spec.write_mode,
                                      socket_for.get(spec.name, "/unused.sock"))
                                for spec in args.mount])
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_interpreter(command: list[str], mounts: list[Mount]) -> None:
    """Refuse a Python interpreter whose start-up hook would not activate the mounts.

    The check starts the interpreter once with the mounts set and a handshake
    variable: vfs_state's start-up hook writes to that file when it activated.
    No file means the handler would run unshimmed and write to the local disk.
    """
    program = shutil.which(command[0]) or command[0]
    if not os.path.basename(program).startswith("python"):
        return
    with tempfile.TemporaryDirectory(prefix="vfs-state-check-") as scratch:
        marker = os.path.join(scratch, "activated")
        env = dict(os.environ, VFS_STATE_MOUNTS=format_mounts(mounts),
                   **{ACTIVATION_FILE_ENV: marker})
        env.pop("ASYA_STATE_PROXY_MOUNTS", None)
        try:
            subprocess.run([program, "-c", "pass"], env=env, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UsageError(f"cannot start {command[0]}: {exc}") from None
        if not os.path.exists(marker):
            raise UsageError(f"{program} does not activate vfs-state mounts (the package or "
                             f"its start-up hook is not installed there); run the handler "
                             f"with {sys.executable} or pip install vfs-state into it")


def mount_table(mounts: list[Mount], specs: list[MountSpec], connector: str) -> str:
    """One line naming each mount path and where its state lives."""
    where = {spec.name: os.path.abspath(spec.directory) for spec in specs}
    entries = ", ".join(f"{m.path} -> {where[m.name]} ({m.write_mode})" for m in mounts)
    return f"vfs-state run: {connector}: {entries}"


@contextmanager
def guarded(mounts: list[Mount]) -> Iterator[None]:
    """Guard files at the mount paths for the whole run (any child, Python or not)."""
    from vfs_state.shim import guard
    try:
        guard.sync([m.path for m in mounts])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield
    finally:
        guard.sync([])


def supervise(command: list[str], env: dict[str, str]) -> int:
    """Run the child; forward termination signals once; return its status (128+N if killed).

    SIGINT is not forwarded: a Ctrl-C reaches the whole foreground process
    group, so the child already has it; forwarding would deliver it twice.
    """
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        raise UsageError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    forwarded = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    previous = {s: signal.signal(s, lambda n, _f: child.send_signal(n)) for s in forwarded}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - status if status < 0 else status


def run(args: argparse.Namespace) -> int:
    """``vfs-state run``: sidecars up, handshake, child, sidecars down."""
    try:
        command = child_command(args.command)
        plan_mounts(args, {})  # usage errors before anything starts
    except UsageError as exc:
        print(f"vfs-state run: {exc}", file=sys.stderr)
        return 2
    socket_dir = tempfile.mkdtemp(prefix="vfs-state-")
    group = SidecarGroup(args.connector, socket_dir)
    try:
        mounts = plan_mounts(args, {spec.name: group.start(spec) for spec in args.mount})
        check_interpreter(command, mounts)
        group.wait_ready(args.ready_timeout)
        if not args.quiet:
            print(mount_table(mounts, args.mount, args.connector), file=sys.stderr)
        env = dict(os.environ, VFS_STATE_MOUNTS=format_mounts(mounts))
        env.pop("ASYA_STATE_PROXY_MOUNTS", None)
        with guarded(mounts):
            return supervise(command, env)
    except UsageError as exc:
        print(f"vfs-state run: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"vfs-state run: {exc}", file=sys.stderr)
        return 1
    finally:
        group.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def add_run_parser(commands: argparse._SubParsersAction) -> None:
    """The ``run`` verb's arguments (kept apart so other verbs can join ``main``)."""
    run_parser = commands.add_parser("run", help="run a command with state mounts active")
    run_parser.add_argument("--mount", action="append", type=parse_mount_arg, required=True,
                            metavar="NAME=DIR", help="mount DIR's state at MOUNT_ROOT/NAME")
    run_parser.add_argument("--mount-root", default="/state",
                            help="where mounts appear (default /state; relative paths are "
                                 "taken from the current directory)")
    run_parser.add_argument("--connector", default=DEFAULT_CONNECTOR,
                            help="connector for every mount (default local-buffered-cas; "
                                 "others read their settings from the environment)")
    run_parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT,
                            metavar="SECONDS", help="how long to wait for /readyz (default 30)")
    run_parser.add_argument("--quiet", "-q", action="store_true",
                            help="do not print the mount table on stderr")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="vfs-state", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    add_run_parser(commands)
    tools.register(parser, commands)  # ls, cat, cp, rm, stat, xattr, health
    args = parser.parse_args(argv)
    if tools.is_tool(args):
        return tools.dispatch(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
