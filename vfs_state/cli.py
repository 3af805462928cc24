"""``vfs-state run``: the main job on one machine, no cluster needed.

Starts one sidecar per mount (the local-directory backend by default), waits
until each answers ``/healthz``, runs the command with ``VFS_STATE_MOUNTS``
set (the shim activates itself at interpreter start in the child), then
stops the sidecars and exits with the command's exit code.

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
from dataclasses import dataclass

from vfs_state import tools
from vfs_state.mounts import Mount, format_mounts
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
        if key != "write" or value not in ("buffered", "passthrough"):
            raise argparse.ArgumentTypeError(
                f"--mount {text!r}: the only option is write=buffered|passthrough")
        write_mode = value
    return MountSpec(name, directory, write_mode)


class SidecarGroup:
    """The sidecar processes of one run: started together, stopped together."""

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
        command = [sys.executable, "-m", "sidecars.cli", self.connector]
        self.procs.append((socket_path, subprocess.Popen(command, env=env)))
        return socket_path

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for socket_path, proc in self.procs:
            while not _healthy(socket_path):
                if proc.poll() is not None:
                    raise RuntimeError(f"sidecar for {socket_path} exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sidecar for {socket_path} not ready after {timeout}s")
                time.sleep(0.05)

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(socket_path: str) -> bool:
    if not os.path.exists(socket_path):
        return False
    conn = UnixHTTPConnection(socket_path, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def run(args: argparse.Namespace) -> int:
    command = [a for a in args.command if a != "--"] if args.command else []
    if not command:
        print("vfs-state run: give a command after --", file=sys.stderr)
        return 2
    socket_dir = tempfile.mkdtemp(prefix="vfs-state-")
    group = SidecarGroup(args.connector, socket_dir)
    try:
        mounts = []
        for spec in args.mount:
            socket_path = group.start(spec)
            path = os.path.join(args.mount_root, spec.name)
            mounts.append(Mount(spec.name, path, spec.write_mode, socket_path))
        group.wait_ready()
        env = dict(os.environ, VFS_STATE_MOUNTS=format_mounts(mounts))
        child = subprocess.Popen(command, env=env)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda s, _f: child.send_signal(s))
        return child.wait()
    except (RuntimeError, OSError) as exc:
        print(f"vfs-state run: {exc}", file=sys.stderr)
        return 1
    finally:
        group.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vfs-state", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="verb", required=True)
    run_parser = commands.add_parser("run", help="run a command with state mounts active")
    run_parser.add_argument("--mount", action="append", type=parse_mount_arg, required=True,
                            metavar="NAME=DIR", help="mount DIR's state at MOUNT_ROOT/NAME")
    run_parser.add_argument("--mount-root", default="/state",
                            help="where mounts appear (default /state)")
    run_parser.add_argument("--connector", default=DEFAULT_CONNECTOR,
                            help="connector for every mount (default local-buffered-cas; "
                                 "others read their settings from the environment)")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    tools.register(parser, commands)  # ls, cat, cp, rm, stat, xattr, health
    args = parser.parse_args(argv)
    if tools.is_tool(args):
        return tools.dispatch(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
