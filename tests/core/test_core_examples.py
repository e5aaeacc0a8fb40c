"""examples/echo.py and examples/chat.py, run as a user runs them, on every readiness backend.

Each example runs as a subprocess (``python examples/NAME.py --port 0 --backend NAME``);
the test is a crowd of real loopback clients: echo gets a unique message per client back,
chat fans one line out to 10,000 members (select: as many as FD_SETSIZE allows).
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from helpers import REPO, backend_params

CHAT_MEMBERS = 10_000
ECHO_CLIENTS = 2_000
SELECT_CLIENTS = 900  # select watches fds below FD_SETSIZE (1024) only
DEADLINE = 60.0


@pytest.fixture(autouse=True)
def _fd_room() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Example:
    def __init__(self, name: str, backend: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        argv = [sys.executable, str(REPO / "examples" / f"{name}.py"), "--port", "0"]
        self.proc = subprocess.Popen(
            [*argv, "--backend", backend], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        m = re.search(r"on 127\.0\.0\.1:(\d+) \((\S+)\)", line)
        if m is None:
            self.proc.kill()
            raise AssertionError(f"{name} did not start: {line!r} {self.proc.communicate()}")
        self.port = int(m.group(1))
        assert m.group(2) == backend

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err.decode()[-2000:]
        return err.decode()


@pytest.fixture
def run(request: pytest.FixtureRequest) -> Iterator[object]:
    started: list[Example] = []

    def start(name: str, backend: str) -> Example:
        ex = Example(name, backend)
        started.append(ex)
        return ex

    yield start
    for ex in started:
        err = ex.stop()
        assert "Traceback" not in err, err[-4000:]


def crowd(port: int, n: int) -> list[socket.socket]:
    """``n`` connected sockets, every handshake complete (so in the server's accept queue
    before anything connects after them: the queue is FIFO)."""
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE)
            socks.append(s)
            if len(socks) % 500 == 0:
                _wait_connected(sel, 500)
        _wait_connected(sel, len(sel.get_map()))
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        sel.close()
    return socks


def _wait_connected(sel: selectors.BaseSelector, n: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while sel.get_map():
        assert time.monotonic() < deadline, "connections did not complete"
        for key, _ in sel.select(1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            assert err == 0, os.strerror(err)
            sel.unregister(s)


def read_all(socks: list[socket.socket], want: dict[socket.socket, bytes]) -> None:
    """Read until each socket has received exactly ``want[sock]``."""
    got = dict.fromkeys(socks, b"")
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + DEADLINE
    try:
        while sel.get_map():
            assert time.monotonic() < deadline, f"{len(sel.get_map())} of {len(socks)} waiting"
            for key, _ in sel.select(1.0):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                data = s.recv(65536)
                assert data, "the server closed a member"
                got[s] += data
                assert want[s].startswith(got[s]), (got[s][:100], want[s][:100])
                if got[s] == want[s]:
                    sel.unregister(s)
    finally:
        sel.close()


def clients_for(backend: str, n: int) -> int:
    return min(n, SELECT_CLIENTS) if backend == "select" else n


@pytest.mark.parametrize("backend", backend_params(modes=False))
def test_examples_echo_many_clients(run: object, backend: str) -> None:
    ex = run("echo", backend)  # type: ignore[operator]
    socks = crowd(ex.port, clients_for(backend, ECHO_CLIENTS))
    try:
        want = {s: b"client %d says hello\n" % i * 3 for i, s in enumerate(socks)}
        for s in socks:
            s.sendall(want[s])
        read_all(socks, want)
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("backend", backend_params(modes=False))
def test_examples_chat_fans_one_line_out_to_every_member(run: object, backend: str) -> None:
    ex = run("chat", backend)  # type: ignore[operator]
    members = crowd(ex.port, clients_for(backend, CHAT_MEMBERS) - 1)
    try:
        # Connected after every member's handshake, so accepted after all of them: when
        # the server reads its line, everyone is in the room.
        sender = socket.create_connection(("127.0.0.1", ex.port), timeout=DEADLINE)
        members_and_sender = [*members, sender]
        try:
            sender.sendall(b"hello, room\n")
            read_all(members, dict.fromkeys(members, b"hello, room\n"))
            members[0].sendall(b"hi back\n")  # a member's line reaches everyone else
            others = members_and_sender[1:]
            read_all(others, dict.fromkeys(others, b"hi back\n"))
        finally:
            sender.close()
    finally:
        for s in members:
            s.close()


def test_examples_chat_drops_a_member_that_does_not_read(run: object) -> None:
    ex = run("chat", "epoll")  # type: ignore[operator]
    stalled = socket.create_connection(("127.0.0.1", ex.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    talker = socket.create_connection(("127.0.0.1", ex.port))
    try:
        line = b"x" * 1000 + b"\n"
        # Far more than the kernel buffers plus --max-behind (1 MiB) hold.
        for _ in range(4000):
            talker.sendall(line)
        # Only now does the stalled member read: it gets what the kernel held for it,
        # then the end (reset or EOF), not the 4 MB the room said.
        stalled.settimeout(10)
        total = 0
        while True:
            try:
                data = stalled.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                pytest.fail(f"the stalled member was never dropped ({total} bytes read)")
            if not data:
                break
            total += len(data)
        assert total < 4000 * len(line)
    finally:
        stalled.close()
        talker.close()
