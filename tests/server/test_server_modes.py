"""What is particular to the whole-server modes (threads, asyncio, uvloop) and to rtsig under
the server. The shared contract and policy suites run on them already (conftest)."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from c10k.core.registry import unavailable_backends
from c10k.server.aio import AsyncioServer, UvloopServer
from c10k.server.config import ServerConfig
from c10k.server.modes import mode_unavailable_reason
from c10k.server.supervisor import YOUNG_THRESHOLD
from c10k.server.threaded import ThreadedServer, thread_ceiling
from helpers import (
    REPO,
    ForkedServer,
    ServerProcess,
    backend_params,
    big_content,
    connect,
    free_port,
    read_response,
    wait_listening,
)

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
GET_BIG = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line")


def _wait_threads(pid: int, target: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    n = _threads(pid)
    while n != target and time.monotonic() < deadline:
        time.sleep(0.05)
        n = _threads(pid)
    return n


# -- every mode -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["threads", "asyncio", "uvloop"])
def test_server_mode_drains_then_second_signal_stops_at_once(docroot: Path, mode: str) -> None:
    reason = mode_unavailable_reason(mode)
    if reason is not None:
        pytest.skip(reason)
    srv = ServerProcess(docroot, mode, "--shutdown-timeout", "60")
    idle = connect(srv.port)
    slow = connect(srv.port)
    try:
        idle.sendall(GET)
        assert read_response(idle, bytearray())[0] == 200
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(GET_BIG * 20)  # far more than the socket buffers hold: in flight
        assert slow.recv(100).startswith(b"HTTP/1.1 200 ")
        srv.proc.send_signal(signal.SIGTERM)
        idle.settimeout(5)
        assert idle.recv(10) == b""  # the idle keep-alive client is let go at once
        time.sleep(0.3)
        assert srv.proc.poll() is None  # draining: the downloads are not finished
        srv.proc.send_signal(signal.SIGTERM)
        # Not the 60 s drain deadline; the download was cut short: said, exit status 1.
        assert srv.proc.wait(timeout=10) == 1
    finally:
        idle.close()
        slow.close()
        code, out, err = srv.stop()
    assert code == 1
    assert "; 1 response cut short" in out
    assert "Traceback" not in err
    assert "Error" not in err  # e.g. asyncio's InvalidStateError on a stop mid-sendfile


# -- threads ------------------------------------------------------------------------
def test_server_threads_one_thread_per_client_then_back_to_baseline(docroot: Path) -> None:
    srv = ServerProcess(docroot, "threads")
    try:
        baseline = _threads(srv.pid)
        clients = [connect(srv.port) for _ in range(20)]
        for c in clients:
            c.sendall(GET)
            assert read_response(c, bytearray())[0] == 200
        assert _threads(srv.pid) == baseline + 20  # one per held keep-alive client
        # Half leave politely, half reset mid-download: every thread must end.
        for i, c in enumerate(clients):
            if i % 2:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.sendall(GET_BIG)
                c.recv(100)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            c.close()
        assert _wait_threads(srv.pid, baseline) == baseline
    finally:
        code, _, err = srv.stop()
        assert code == 0, err
        assert "Traceback" not in err


def test_server_threads_banner_names_the_limit(docroot: Path) -> None:
    srv = ServerProcess(docroot, "threads")
    try:
        assert "backend threads; 1 process; capacity" in srv.banner
        assert "RLIMIT_NOFILE" in srv.banner or "threads:" in srv.banner
    finally:
        assert srv.stop()[0] == 0


def test_thread_ceiling_reports_rlimit_nproc(monkeypatch: pytest.MonkeyPatch) -> None:
    real = resource.getrlimit

    def fake(which: int) -> tuple[int, int]:
        if which == resource.RLIMIT_NPROC:
            return 123, 123
        return real(which)

    monkeypatch.setattr(resource, "getrlimit", fake)
    assert thread_ceiling() == (123, "RLIMIT_NPROC 123 (threads count as processes)")


def test_server_threads_cap_from_the_thread_ceiling(
    docroot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "c10k.server.threaded.thread_ceiling", lambda: (500, "kernel.threads-max 500")
    )
    server = ThreadedServer(ServerConfig(root=str(docroot), port=0))
    try:
        assert server.capacity < 500
        assert server.capacity_reason == "threads: kernel.threads-max 500"
    finally:
        server.close()


def test_server_threads_stop_from_another_thread_ends_every_client(docroot: Path) -> None:
    server = ThreadedServer(ServerConfig(root=str(docroot), port=0))
    runner = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    before = threading.active_count()
    runner.start()
    clients = [socket.create_connection(server.address, timeout=5) for _ in range(5)]
    try:
        for c in clients:
            c.sendall(GET)
            assert read_response(c, bytearray())[0] == 200
        assert threading.active_count() == before + 1 + 5
        server.stop()
        runner.join(10)
        assert not runner.is_alive()
        for c in clients:
            assert c.recv(10) == b""  # shut down by the stop
        assert threading.active_count() == before
        assert server.requests == 5
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("backend", backend_params())
def test_server_silent_client_does_not_stall_others(docroot: Path, backend: str) -> None:
    # A client that connects and sends nothing (on a listener without deferred accept, as
    # on any listener once TCP_DEFER_ACCEPT's time is up) is accepted without a request:
    # the mode's first read must not wait for it while others are served.
    config = ServerConfig(root=str(docroot), port=0, backend=backend, max_accept_wait=0.0)
    server = ForkedServer(config, None)
    try:
        with socket.create_connection(server.address, timeout=5) as silent:
            time.sleep(0.2)  # accepted by now
            with connect(server.address[1], timeout=5) as c:
                c.sendall(GET)
                assert read_response(c, bytearray())[0] == 200
            silent.sendall(GET)  # and it is served once it speaks
            assert read_response(silent, bytearray())[0] == 200
    finally:
        server.stop()


# -- asyncio / uvloop ---------------------------------------------------------------
@pytest.fixture(params=["asyncio", "uvloop"])
def aio_server(request: pytest.FixtureRequest, docroot: Path) -> Iterator[AsyncioServer]:
    cls = AsyncioServer if request.param == "asyncio" else UvloopServer
    reason = cls.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = cls(ServerConfig(root=str(docroot), port=0))
    runner = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    runner.start()
    yield server
    server.stop()
    runner.join(10)
    assert not runner.is_alive()


def _in_loop(server: AsyncioServer, fn: Any) -> Any:
    done = threading.Event()
    box: list[Any] = []

    def run() -> None:
        box.append(fn())
        done.set()

    server.loop.call_soon_threadsafe(run)
    assert done.wait(5)
    return box[0]


def _settled(server: AsyncioServer) -> tuple[int, int]:
    deadline = time.monotonic() + 10
    state = (-1, -1)
    while time.monotonic() < deadline:
        state = _in_loop(
            server, lambda: (len(asyncio.all_tasks(server.loop)), len(server.connections))
        )
        if state == (0, 0):
            break
        time.sleep(0.05)
    return state


def test_server_aio_no_task_or_connection_leak(aio_server: AsyncioServer) -> None:
    port = aio_server.address[1]
    for i in range(10):
        with connect(port) as c:
            if i % 3 == 0:  # reset in the middle of a file body (a sendfile task on asyncio)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.sendall(GET_BIG)
                c.recv(100)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            else:
                c.sendall(GET_BIG + GET)
                buf = bytearray()
                assert read_response(c, buf)[2] == big_content()
                assert read_response(c, buf)[0] == 200
    assert _settled(aio_server) == (0, 0)


def test_server_asyncio_accepts_without_a_task_per_connection(aio_server: AsyncioServer) -> None:
    # Plain asyncio builds each accepted connection's transport directly: a task and a
    # coroutine per connection cost the mode a quarter of its accept rate (aio.py). uvloop
    # has no such constructor and goes through connect_accepted_socket's task.
    made: list[object] = []

    def count_tasks() -> None:
        def factory(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            made.append(coro)
            return asyncio.Task(coro, loop=loop, **kwargs)

        aio_server.loop.set_task_factory(factory)

    _in_loop(aio_server, count_tasks)
    port = aio_server.address[1]
    for _ in range(5):
        with connect(port) as c:
            c.sendall(GET)
            assert read_response(c, bytearray())[0] == 200
    direct = aio_server.backend_name == "asyncio"
    assert (len(made) == 0) == direct, made
    assert _settled(aio_server) == (0, 0)  # and each was counted once: none left over
    assert _in_loop(aio_server, lambda: aio_server._attaching) == 0


def test_server_aio_answers_a_one_shot_client_at_accept(
    aio_server: AsyncioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first read happens at accept (ServerBase.first_read): a closing GET of a cached
    # file is answered with no asyncio transport or AioConnection; a keep-alive one gets
    # its connection, and the bytes read at accept reach its Session.
    from c10k.server import aio

    made: list[object] = []
    real_init = aio.AioConnection.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    # As `c10k serve`'s listeners (server/listeners.py): a connection is accepted once its
    # request is there (this fixture's socket is a bare one).
    aio_server.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    port = aio_server.address[1]
    closing = GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with connect(port) as c:  # (the file comes into the cache, its closing wire memoized)
        c.sendall(closing)
        assert read_response(c, bytearray())[0] == 200
    assert _settled(aio_server) == (0, 0)
    monkeypatch.setattr(aio.AioConnection, "__init__", counted)
    for i in range(6):
        if i == 1:  # the first may find the memo gone (an idle process sleeps: Wire.sleep)
            made.clear()
        with connect(port) as c:
            c.sendall(closing)
            status, _, body = read_response(c, bytearray())
            assert status == 200
            assert body
            assert c.recv(1) == b""  # and closed
    # The memoized wire also goes when the Date second turns; the one request after that
    # is answered by a Session, which makes the wire again.
    assert len(made) <= 1, made
    made.clear()
    with connect(port) as c:
        c.sendall(GET + GET)  # read at accept, both answered, the connection kept
        buf = bytearray()
        assert read_response(c, buf)[0] == 200
        assert read_response(c, buf)[0] == 200
        c.sendall(GET)
        assert read_response(c, buf)[0] == 200
    assert len(made) == 1


def test_server_aio_connection_leaves_no_cycle(aio_server: AsyncioServer) -> None:
    # A closed connection is freed by reference counting, not left to the cyclic GC (whose
    # full collections stall the loop for tens of ms under connection churn).
    import gc

    with connect(aio_server.address[1]) as c:  # the loop's own transport type, seen live
        c.sendall(GET)
        assert read_response(c, bytearray())[0] == 200
        kind = _in_loop(aio_server, lambda: type(next(iter(aio_server.live)).atransport))

    def transports() -> int:
        return sum(type(o) is kind for o in gc.get_objects())

    assert transports() >= 1  # the count sees this loop's transports
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            with connect(aio_server.address[1]) as c:
                c.sendall(GET_BIG + GET)
                buf = bytearray()
                assert read_response(c, buf)[2] == big_content()
                assert read_response(c, buf)[0] == 200
        assert _settled(aio_server) == (0, 0)
        # A closed Session stays filed in its deadline bucket until a sweep: sweep now.
        _in_loop(aio_server, aio_server.session_loop.deadlines._sweep)
        # (uvloop frees a closed handle's transport on a later loop turn: let it turn. A
        # cycle never goes with the collector off.)
        deadline = time.monotonic() + 5
        while transports() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert transports() == 0
    finally:
        gc.enable()


def test_server_aio_pauses_reading_while_output_is_pending(aio_server: AsyncioServer) -> None:
    # A client that pipelines many big GETs and reads nothing: the server must stop
    # reading (and parsing) its requests instead of queueing every response in memory.
    port = aio_server.address[1]
    with connect(port, timeout=10) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 200 requests arrive in one read; a file body counts whole against
        # max_pending_output_bytes, so parsing stops after the first: a slow reader holds
        # one open file, not one per request it queued.
        c.sendall(GET_BIG * 200)
        time.sleep(0.5)
        answered = aio_server.requests
        assert 0 < answered <= 2  # the rest waits unparsed behind the output
        reading = _in_loop(
            aio_server, lambda: [s.transport.reading for s in aio_server.connections]
        )
        assert reading == [False]


def test_server_uvloop_unavailable_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    reason = UvloopServer.unavailable_reason()
    assert reason is not None
    assert "pip install uvloop" in reason
    assert "pip install uvloop" in (mode_unavailable_reason("uvloop") or "")
    assert AsyncioServer.unavailable_reason() is None  # plain asyncio is unaffected


def test_server_uvloop_missing_is_a_clear_cli_error(docroot: Path) -> None:
    code = (
        "import sys; sys.modules['uvloop'] = None\n"
        "from c10k.cli import main\n"
        f"sys.exit(main(['serve', {str(docroot)!r}, '--port', '0', '--backend', 'uvloop']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    assert out.returncode == 2
    assert "pip install uvloop" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_freezes_the_startup_heap(docroot: Path, workers: int) -> None:
    # c10k serve, in its own process and in each worker, moves what startup built out of
    # the cyclic GC's walks (supervisor.keep_heap) before it serves.
    port = free_port()
    code = (
        "import gc, os, sys\n"
        "freeze = gc.freeze\n"
        "def noted():\n"
        "    freeze()\n"
        "    young = gc.get_threshold()[0]\n"
        "    print(f'frozen {os.getpid()} {gc.get_freeze_count()} {young}', file=sys.stderr)\n"
        "gc.freeze = noted\n"
        "from c10k.cli import main\n"
        f"sys.exit(main(['serve', {str(docroot)!r}, '--bind', '127.0.0.1', '--port', '{port}',"
        f" '--workers', '{workers}']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        wait_listening(port)
        with connect(port) as c:
            c.sendall(GET)
            assert read_response(c, bytearray())[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    frozen = re.findall(r"frozen (\d+) (\d+) (\d+)", err.decode())
    assert len({pid for pid, _, _ in frozen}) == workers, err
    assert all(int(count) > 1000 for _, count, _ in frozen), frozen
    assert all(int(young) == YOUNG_THRESHOLD for _, _, young in frozen), frozen


# -- rtsig under the server -----------------------------------------------------------
def test_server_rtsig_serves_many_keepalive_clients(docroot: Path) -> None:
    # 200 clients at once, each a few requests: one realtime signal per event, all
    # dispatched to the right connection (si_fd) with none lost.
    reason = unavailable_backends().get("rtsig")
    if reason is not None:
        pytest.skip(reason)
    srv = ServerProcess(docroot, "rtsig")
    try:
        clients = [connect(srv.port) for _ in range(200)]
        for _ in range(3):
            for c in clients:
                c.sendall(GET)
            for c in clients:
                assert read_response(c, bytearray())[0] == 200
        for c in clients:
            c.close()
    finally:
        code, _, err = srv.stop()
        assert code == 0, err
        assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["threads", "asyncio", "uvloop"])
def test_server_mode_serves_tcp_and_unix_listeners_together(
    docroot: Path, tmp_path: Path, mode: str
) -> None:
    # ``sock`` may be a list of listeners (``--listen``): every one is served, including
    # a Unix-domain socket, where TCP_CORK does not exist (file bodies must still go out).
    from c10k.core.listener import bind_socket, bind_unix_socket
    from c10k.server.modes import mode_class

    reason = mode_unavailable_reason(mode)
    if reason is not None:
        pytest.skip(reason)
    path = str(tmp_path / "c10k.sock")
    socks = [bind_socket("127.0.0.1", 0), bind_unix_socket(path)]
    server = mode_class(mode)(ServerConfig(root=str(docroot), port=0), sock=socks)
    runner = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    runner.start()
    try:
        with socket.create_connection(socks[0].getsockname(), timeout=5) as c:
            c.sendall(GET_BIG)
            assert read_response(c, bytearray())[2] == big_content()
        with socket.socket(socket.AF_UNIX) as u:
            u.settimeout(5)
            u.connect(path)
            u.sendall(GET_BIG + GET)
            buf = bytearray()
            assert read_response(u, buf)[2] == big_content()
            assert read_response(u, buf)[0] == 200
    finally:
        server.stop()
        runner.join(10)
    assert not runner.is_alive()
    assert server.requests == 3


@pytest.mark.parametrize("mode", ["threads", "asyncio", "uvloop"])
def test_server_mode_send_timeout_drops_a_stalled_reader(docroot: Path, mode: str) -> None:
    # A client that asks for a big file and never reads: once the socket buffers are full
    # and no byte moves for send_timeout, the server lets go (nginx send_timeout).
    reason = mode_unavailable_reason(mode)
    if reason is not None:
        pytest.skip(reason)
    srv = ServerProcess(docroot, mode, "--send-timeout", "1")
    try:
        baseline = srv.fd_count()
        with connect(srv.port) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(GET_BIG * 20)  # 20 MB: more than every socket buffer holds
            assert srv.wait_fd_count(baseline, timeout=15) == baseline  # socket + file closed
    finally:
        code, _, err = srv.stop()
    assert code == 0
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["threads", "asyncio", "uvloop"])
def test_server_mode_signal_right_after_the_banner_stops_it(docroot: Path, mode: str) -> None:
    # The banner is printed before serve_forever runs the loop: a SIGTERM in that window
    # must not be lost (uvloop replaced its signal socketpair at run start and dropped it).
    reason = mode_unavailable_reason(mode)
    if reason is not None:
        pytest.skip(reason)
    for _ in range(3):
        srv = ServerProcess(docroot, mode)
        srv.proc.send_signal(signal.SIGTERM)
        try:
            assert srv.proc.wait(timeout=5) == 0
        finally:
            code, _, err = srv.stop()
        assert code == 0
        assert "Traceback" not in err


# -- syscalls per request ----------------------------------------------------------------
N = 200
SYSCALL = re.compile(r"(?:\d+\s+)?(\w+)\(")
# mode -> (socket read syscall, socket write syscall, {syscall: max count in the window})
BUDGETS: dict[str, tuple[str, str, dict[str, int]]] = {
    # One sigtimedwait that takes the signal, one that finds the queue empty; the owner
    # check must not cost a gettid per wait.
    "rtsig": ("read", "write", {"rt_sigtimedwait": 2 * N + 6, "gettid": 0, "fcntl": 0}),
    # SO_RCVTIMEO is set once per phase, not per request. The accept thread polls only for
    # its own timers (the window holds a Date tick: PAUSE), and wakes itself for none.
    "threads": ("recvfrom", "sendto", {"setsockopt": 0, "poll": 4}),
    # BufferedProtocol: no 256 KiB bytes object per read (mmap + mremap + munmap).
    "asyncio": ("recvfrom", "sendto", {"epoll_wait": N + 4, "mmap": 0, "mremap": 0}),
    "uvloop": ("read", "write", {"epoll_pwait": N + 4, "mmap": 0}),
}

# Modes whose client pauses halfway, so that the window holds a once-a-second Date tick.
PAUSE = {"threads"}


def pause_across_one_tick() -> bool:
    """Sleep across the next Date tick (just after a wall-clock second) and never two;
    False, after a shorter sleep, when the clock sits too near a tick to start now."""
    # A tick that finds no request since the one before puts the server to sleep
    # (test_server_sleep.py): a pause over two ticks (a fixed 1.1 s did that about one
    # run in ten) puts its wake-ups, a byte each way on the wake socket, in the window.
    frac = time.time() % 1.0
    if not 0.2 < frac < 0.8:
        time.sleep(0.4)
        return False
    time.sleep(1.15 - frac)
    return True


# alone: strace counts; the client must follow the server's answers at once.
@pytest.mark.alone
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
@pytest.mark.parametrize("mode", list(BUDGETS))
def test_server_mode_keepalive_syscall_budget(docroot: Path, tmp_path: Path, mode: str) -> None:
    # A count, never a time (the shape of tests/server/test_server_syscalls.py).
    reason = unavailable_backends().get(mode) if mode == "rtsig" else mode_unavailable_reason(mode)
    if reason is not None:
        pytest.skip(reason)
    rd, wr, budget = BUDGETS[mode]
    trace = tmp_path / "trace"
    cfg = tmp_path / "trusted.toml"
    cfg.write_text("revalidate_seconds = 3600\n")  # no revalidation (a pool wakeup) in it
    strace = ["strace", "-qq", "-f", "-s", "48", "-o", str(trace)]
    srv = ServerProcess(docroot, mode, "--config", str(cfg), wrap=strace)
    server_pid = int(Path(f"/proc/{srv.pid}/task/{srv.pid}/children").read_text().split()[0])
    try:
        with connect(srv.port) as s:
            buf = bytearray()
            for path in ("/small.txt", "/c10k-begin-marker"):
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                read_response(s, buf)
            paused = mode not in PAUSE
            for i in range(N):
                if not paused and i >= N // 2:
                    paused = pause_across_one_tick()
                s.sendall(GET)
                assert read_response(s, buf)[0] == 200
            s.sendall(b"GET /c10k-end-marker HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s, buf)[0] == 404
    finally:
        os.kill(server_pid, signal.SIGTERM)
        srv.proc.communicate(timeout=30)
    lines = trace.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if "c10k-begin-marker" in line)
    end = next(i for i, line in enumerate(lines) if "c10k-end-marker" in line)
    # The window opens after the marker's own 404, answered from the disk pool: the pool
    # thread's wakeup byte is a write too, so look for the response itself.
    first = next(
        i
        for i in range(begin, end)
        if (m := SYSCALL.match(lines[i])) and m.group(1) == wr and "HTTP/1.1 404" in lines[i]
    )
    calls = collections.Counter(
        m.group(1) for line in lines[first + 1 : end] if (m := SYSCALL.match(line))
    )
    assert calls[wr] == N, calls
    assert N <= calls[rd] <= N + 2, calls
    assert calls["openat"] == 0, calls
    for name, most in budget.items():
        assert calls[name] <= most, (name, calls)


def test_server_threads_refuses_io_threads_with_the_reason(docroot: Path) -> None:
    # A setting a mode cannot honour is refused at start, never silently ignored: the
    # thread-per-client mode has no disk pool to size (each client thread does its own).
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "c10k",
            "serve",
            str(docroot),
            "--port",
            "0",
            "--backend",
            "threads",
            "--io-threads",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    assert out.returncode == 2
    assert "--backend threads cannot honour --io-threads" in out.stderr
    assert "Traceback" not in out.stderr


def test_server_refused_settings_are_checked_for_every_mode() -> None:
    from c10k.server.modes import refused_settings

    # The default is accepted everywhere; only a value that asks for something counts.
    for backend in ("epoll", "uring", "threads", "asyncio"):
        assert refused_settings(ServerConfig(backend=backend)) == []
    assert refused_settings(ServerConfig(backend="epoll", io_threads=8)) == []
    assert len(refused_settings(ServerConfig(backend="threads", io_threads=8))) == 1
