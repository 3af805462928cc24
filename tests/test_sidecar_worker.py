"""The sidecar's gunicorn worker (``sidecars.worker``): connections, limits, stopping.

Each test runs a real ``vfs-state-sidecar`` under gunicorn and talks raw
HTTP/1.1 on its Unix socket, so what is checked is what a client sees.
"""
from __future__ import annotations

import select
import signal
import socket
import time

import psutil
import pytest

from tests.harness.sidecar import Sidecar

PUT_A = (b"PUT /keys/w/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
GET_A = b"GET /keys/w/a HTTP/1.1\r\nHost: x\r\n\r\n"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _sidecar(tmp_path, *args: str) -> Sidecar:
    return Sidecar("local-buffered-lww", {"STATE_ROOT": str(tmp_path)}, workers=1,
                   extra_args=args)


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(path)
    return sock


def _read_replies(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` whole replies (head, body) from a Content-Length speaking server."""
    buf, replies = b"", []
    while len(replies) < count:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            assert data, f"connection closed after {len(replies)} replies"
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(buf) < length:
            buf += sock.recv(65536)
        replies.append((head, buf[:length]))
        buf = buf[length:]
    return replies


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    ready, _, _ = select.select([sock], [], [], within)
    return bool(ready) and sock.recv(1) == b""


def test_one_connection_serves_many_requests_including_pipelined_ones(tmp_path):
    with _sidecar(tmp_path) as sidecar:
        sock = _connect(sidecar.socket_path)
        sock.sendall(PUT_A)
        (head, _), = _read_replies(sock, 1)
        assert head.startswith(b"HTTP/1.1 20")
        sock.sendall(GET_A + HEALTH + GET_A)  # three requests in one write
        replies = _read_replies(sock, 3)
        assert [body for _, body in replies] == [b"abc", b'{"status":"ready"}\n', b"abc"]
        assert all(b"connection: close" not in h.lower() for h, _ in replies)
        sock.close()


def test_idle_connection_is_closed_after_keepalive_seconds(tmp_path):
    with _sidecar(tmp_path, "--keep-alive=1") as sidecar:
        sock = _connect(sidecar.socket_path)
        sock.sendall(HEALTH)
        _read_replies(sock, 1)
        assert _closed_by_peer(sock, within=10)
        fresh = _connect(sidecar.socket_path)  # and the sidecar still serves
        fresh.sendall(HEALTH)
        assert _read_replies(fresh, 1)[0][0].startswith(b"HTTP/1.1 200")


def test_a_bad_request_gets_400_and_the_worker_keeps_serving(tmp_path):
    with _sidecar(tmp_path) as sidecar:
        sock = _connect(sidecar.socket_path)
        sock.sendall(b"BOGUS\r\n\r\n")
        head, _ = _read_replies(sock, 1)[0]
        assert head.startswith(b"HTTP/1.1 400")
        again = _connect(sidecar.socket_path)
        again.sendall(HEALTH)
        assert _read_replies(again, 1)[0][0].startswith(b"HTTP/1.1 200")


def test_max_requests_closes_the_connection_and_a_new_worker_takes_over(tmp_path):
    with _sidecar(tmp_path, "--max-requests=3") as sidecar:
        worker_before = psutil.Process(sidecar.proc.pid).children()[0].pid
        sock = _connect(sidecar.socket_path)
        for _ in range(3):  # the harness's readiness probe may have counted too
            sock.sendall(HEALTH)
            head, _ = _read_replies(sock, 1)[0]
            assert head.startswith(b"HTTP/1.1 200")
            if b"connection: close" in head.lower():
                break
        else:
            pytest.fail("the third request did not close the connection")
        assert _closed_by_peer(sock, within=10)
        deadline = time.monotonic() + 20
        while True:  # the arbiter replaces the retired worker
            children = psutil.Process(sidecar.proc.pid).children()
            if children and children[0].pid != worker_before:
                break
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.05)
        fresh = _connect(sidecar.socket_path)
        fresh.sendall(HEALTH)
        assert _read_replies(fresh, 1)[0][0].startswith(b"HTTP/1.1 200")


def test_connections_beyond_worker_connections_wait_while_all_are_busy(tmp_path):
    """The cap holds when every connection is inside a request (here: a body arriving)."""
    with _sidecar(tmp_path, "--worker-connections=1") as sidecar:
        first = _connect(sidecar.socket_path)
        first.sendall(PUT_A[:-2])  # the head and one byte of the body: busy
        time.sleep(0.2)  # (a head still arriving could be evicted after 0.5 s)
        second = _connect(sidecar.socket_path)
        second.sendall(HEALTH)
        ready, _, _ = select.select([second], [], [], 1.0)
        assert not ready, "a second connection was served beyond the cap"
        first.sendall(PUT_A[-2:])
        assert _read_replies(first, 1)[0][0].startswith(b"HTTP/1.1 20")
        assert _read_replies(second, 1)[0][0].startswith(b"HTTP/1.1 200")


# -- slow and idle clients (issue 11, finding 5) ------------------------------

HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHo"


def _slow_sidecar(tmp_path, connections: int, header_timeout: float = 60,
                  body_timeout: float = 60, *args: str) -> Sidecar:
    env = {"STATE_ROOT": str(tmp_path), "VFS_STATE_HEADER_TIMEOUT": str(header_timeout),
           "VFS_STATE_BODY_TIMEOUT": str(body_timeout)}
    return Sidecar("local-buffered-lww", env, workers=1,
                   extra_args=(f"--worker-connections={connections}", *args))


def _stalled(path: str, count: int, data: bytes = HALF_REQUEST) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = _connect(path)
        sock.sendall(data)
        socks.append(sock)
    return socks


def _dropped(sock: socket.socket, within: float = 15) -> bytes:
    """What the server sent before closing (fails if it did not close ``within``)."""
    sock.settimeout(within)
    received = b""
    while data := sock.recv(65536):
        received += data
    return received


def test_stalled_half_requests_beyond_the_cap_do_not_lock_out_a_new_client(tmp_path):
    """Twice the cap in stalled heads (no timeout yet): a normal client is still served."""
    with _slow_sidecar(tmp_path, connections=4) as sidecar:
        stalled = _stalled(sidecar.socket_path, 8)
        normal = _connect(sidecar.socket_path)  # 20 s socket timeout bounds the wait
        normal.sendall(HEALTH)
        assert _read_replies(normal, 1)[0][0].startswith(b"HTTP/1.1 200")
        normal.sendall(HEALTH)  # and it stays served
        assert _read_replies(normal, 1)[0][0].startswith(b"HTTP/1.1 200")
        assert _dropped(stalled[0]) == b""  # the longest-waiting ones made room


def test_stalled_request_heads_are_closed_after_the_header_timeout(tmp_path):
    with _slow_sidecar(tmp_path, connections=64, header_timeout=1) as sidecar:
        stalled = _stalled(sidecar.socket_path, 3)
        silent = _connect(sidecar.socket_path)  # connects and never sends a byte
        for sock in stalled:
            assert _dropped(sock).startswith(b"HTTP/1.1 408")
        assert _dropped(silent) == b""
        normal = _connect(sidecar.socket_path)
        normal.sendall(HEALTH)
        assert _read_replies(normal, 1)[0][0].startswith(b"HTTP/1.1 200")


def test_a_stalled_body_is_dropped_after_the_body_timeout_and_nothing_is_stored(tmp_path):
    with _slow_sidecar(tmp_path, connections=64, body_timeout=1) as sidecar:
        sock, = _stalled(sidecar.socket_path, 1, PUT_A[:-2])
        reply = _dropped(sock)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
        assert not (tmp_path / "w" / "a").exists()


def _put_big(path: str, body: bytes) -> None:
    sock = _connect(path)
    sock.sendall(b"PUT /keys/w/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                 % len(body) + body)
    assert _read_replies(sock, 1)[0][0].startswith(b"HTTP/1.1 204")
    sock.close()


def _asking_for_big(socket_path: str, body: bytes) -> socket.socket:
    """``body`` stored as ``w/big``; a connection with a small receive buffer asking for it."""
    _put_big(socket_path, body)
    sock = _connect(socket_path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /keys/w/big HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_a_large_reply_to_a_slow_reader_arrives_whole(tmp_path):
    """The reply outgrows the socket buffer and waits for the reader, piece by piece."""
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB
    with _slow_sidecar(tmp_path, connections=8, body_timeout=5) as sidecar:
        sock = _asking_for_big(sidecar.socket_path, body)
        time.sleep(0.5)  # the server fills the buffers and must wait
        sock.sendall(HEALTH)  # pipelined: served once the big reply is out
        (head, got), (health, _) = _read_replies(sock, 2)
        assert head.startswith(b"HTTP/1.1 200") and got == body
        assert health.startswith(b"HTTP/1.1 200")


def test_a_reader_that_stops_reading_is_dropped_after_the_body_timeout(tmp_path):
    body = b"x" * (8 * 1024 * 1024)
    with _slow_sidecar(tmp_path, connections=8, body_timeout=1) as sidecar:
        stuck = _asking_for_big(sidecar.socket_path, body)
        time.sleep(3)  # reads nothing for longer than the body timeout
        assert len(_dropped(stuck)) < len(body)  # cut off, not sent whole
        normal = _connect(sidecar.socket_path)
        normal.sendall(HEALTH)
        assert _read_replies(normal, 1)[0][0].startswith(b"HTTP/1.1 200")


def test_idle_keepalive_connections_at_the_cap_do_not_block_a_new_client(tmp_path):
    with _slow_sidecar(tmp_path, 2, 60, 60, "--keep-alive=75") as sidecar:
        idle = []
        for _ in range(2):
            sock = _connect(sidecar.socket_path)
            sock.sendall(HEALTH)
            _read_replies(sock, 1)
            idle.append(sock)
            time.sleep(0.05)  # a clear order: idle[0] has waited longest
        newcomer = _connect(sidecar.socket_path)
        newcomer.sendall(HEALTH)
        assert _read_replies(newcomer, 1)[0][0].startswith(b"HTTP/1.1 200")
        assert _dropped(idle[0]) == b""  # the longest idle made room
        idle[1].sendall(HEALTH)  # the other one is still served
        assert _read_replies(idle[1], 1)[0][0].startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("idle_connections", [0, 3])
def test_sigterm_stops_without_waiting_out_idle_keepalive(tmp_path, idle_connections):
    """Kept-alive idle clients must not hold a stopping sidecar for 75 s."""
    sidecar = _sidecar(tmp_path, "--keep-alive=75", "--graceful-timeout=30").start()
    try:
        idle = [_connect(sidecar.socket_path) for _ in range(idle_connections)]
        for sock in idle:
            sock.sendall(HEALTH)
            _read_replies(sock, 1)
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.proc.wait(15) == 0
        assert all(_closed_by_peer(sock, within=1) for sock in idle)
    finally:
        sidecar.close()


def _idle_workers(sidecar: Sidecar, count: int) -> list[psutil.Process]:
    """The workers once all ``count`` have loaded the app (their CPU time stops growing)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = psutil.Process(sidecar.proc.pid).children()
        before = [w.cpu_times() for w in workers]
        time.sleep(0.3)
        if len(workers) == count and [w.cpu_times() for w in workers] == before:
            return workers
    raise AssertionError(f"{count} idle workers not seen")


def test_connections_spread_over_the_workers(tmp_path):
    """One worker must not take every client: the GIL would hold them to one core."""
    sidecar = Sidecar("local-buffered-lww", {"STATE_ROOT": str(tmp_path)}, workers=2)
    with sidecar:
        workers = _idle_workers(sidecar, 2)
        idle_threads = {w.pid: w.num_threads() for w in workers}
        for _ in range(3):  # clients come and go; each round must spread again
            clients = []
            for _ in range(4):
                sock = _connect(sidecar.socket_path)
                sock.sendall(HEALTH)
                _read_replies(sock, 1)
                clients.append(sock)
                time.sleep(0.01)
            served = [w.num_threads() - idle_threads[w.pid] for w in workers]
            assert sum(served) == 4 and min(served) >= 1, served
            for sock in clients:
                sock.close()
            while sum(w.num_threads() for w in workers) > sum(idle_threads.values()):
                time.sleep(0.01)  # every connection thread has ended


def test_a_bad_timeout_setting_stops_the_start_with_one_line(tmp_path):
    sidecar = Sidecar("local-buffered-lww", {"STATE_ROOT": str(tmp_path),
                                             "VFS_STATE_HEADER_TIMEOUT": "soon"}, workers=1)
    sidecar.startup_timeout = 20
    try:
        with pytest.raises(RuntimeError,
                           match=r"exited with 2:\n.*VFS_STATE_HEADER_TIMEOUT must be a number"):
            sidecar.start()
    finally:
        sidecar.close()
