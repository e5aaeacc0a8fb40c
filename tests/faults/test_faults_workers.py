"""A worker killed with SIGKILL: the supervisor restarts it, the other worker keeps serving.

Which worker holds which client connection is read from the kernel: the server-side
socket of a client is the /proc/net/tcp entry whose local port is the server's and whose
remote port is the client's, and its inode appears as ``socket:[inode]`` among exactly
one worker's fds.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from _fault_support import cli_accepts, get, stop_clean, wait_until

from helpers import ServerProcess, connect, read_response

SMALL = b"0123456789" * 51 + b"AB"


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(x) for x in f.read().split()]
    return kids


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _server_side_inode(server_port: int, client_port: int) -> int | None:
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            lport = int(local.split(":")[1], 16)
            rport = int(remote.split(":")[1], 16)
            if (lport, rport) == (server_port, client_port) and inode:
                return inode
    return None


def _owner(srv: ServerProcess, workers: list[int], client: socket.socket) -> int:
    port = client.getsockname()[1]
    inode = _server_side_inode(srv.port, port)
    assert inode is not None, "server-side socket not found in /proc/net/tcp"
    owners = [w for w in workers if inode in _socket_inodes(w)]
    assert len(owners) == 1, owners
    return owners[0]


def _total_fds(srv: ServerProcess) -> int:
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in [srv.pid, *_children(srv.pid)])


@pytest.mark.skipif(not cli_accepts("--workers"), reason="c10k serve has no --workers yet")
def test_faults_worker_sigkill_restarted_others_serve(docroot: Path) -> None:
    srv = ServerProcess(docroot, "epoll", "--workers", "2")
    clients: list[socket.socket] = []
    try:
        assert wait_until(lambda: len(_children(srv.pid)) == 2)
        workers = _children(srv.pid)
        baseline = _total_fds(srv)
        # 16 keep-alive clients; the kernel's reuseport hash spreads them over the two.
        by_worker: dict[int, list[socket.socket]] = {w: [] for w in workers}
        for _ in range(16):
            c = connect(srv.port)
            clients.append(c)
            c.sendall(get("/small.txt"))
            assert read_response(c, bytearray())[::2] == (200, SMALL)
            by_worker[_owner(srv, workers, c)].append(c)
        victim = max(workers, key=lambda w: len(by_worker[w]))
        survivor = next(w for w in workers if w != victim)
        os.kill(victim, signal.SIGKILL)
        # The victim's clients see the connection end (EOF or reset), not a hang.
        for c in by_worker[victim]:
            c.settimeout(5.0)
            try:
                assert c.recv(100) == b""
            except ConnectionResetError:
                pass
        # The survivor's clients are served right away, restart or not.
        for c in by_worker[survivor]:
            c.sendall(get("/small.txt"))
            assert read_response(c, bytearray())[::2] == (200, SMALL)
        # The supervisor starts a replacement in the dead worker's slot.
        assert wait_until(
            lambda: len(kids := _children(srv.pid)) == 2 and victim not in kids, timeout=10
        ), f"no replacement for worker {victim}: {_children(srv.pid)}"
        assert survivor in _children(srv.pid)
        # New clients are all served, by both slots.
        for _ in range(40):
            with connect(srv.port) as c:
                c.sendall(get("/small.txt", "Connection: close\r\n"))
                assert read_response(c, bytearray())[::2] == (200, SMALL)
        for c in clients:
            c.close()
        clients.clear()
        assert wait_until(lambda: _total_fds(srv) == baseline), (_total_fds(srv), baseline)
    finally:
        for c in clients:
            c.close()
        err = stop_clean(srv)
    assert str(victim) in err  # the death is logged with the worker's pid
