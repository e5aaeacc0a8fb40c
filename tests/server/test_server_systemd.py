"""systemd (issue 17): socket activation by the real ``systemd-socket-activate`` (Debian's
systemd package), and ``Type=notify`` played by the test: it binds the NOTIFY_SOCKET and
reads what c10k tells systemd."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from c10k.server.systemd import Notifier, listen_fds
from helpers import (
    REPO,
    ServerProcess,
    free_port,
    local_ca,
    make_docroot,
    tls_args,
    wait_listening,
)

SMALL = b"0123456789" * 51 + b"AB"
ENV = dict(os.environ, PYTHONPATH=str(REPO / "src"))
needs_activate = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate is not installed (apt-get install systemd)",
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("site") / "www")


def activate(port: int, *args: str, fdname: str = "c10k.socket", flags: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """``systemd-socket-activate`` holding 127.0.0.1:PORT; it execs c10k (same pid) on the
    first connection, with the socket as fd 3."""
    cmd = ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", f"--fdname={fdname}", *flags]
    # It gives the command only the variables named with -E: without this one, the c10k
    # installed in the venv would run, not the tree under test.
    cmd += ["-E", f"PYTHONPATH={ENV['PYTHONPATH']}"]
    cmd += [sys.executable, "-m", "c10k", "serve", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


def get(port: int, path: str = "/small.txt", context: ssl.SSLContext | None = None) -> bytes:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("localhost", port, timeout=10, context=context)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200
        return r.read()
    finally:
        conn.close()


@needs_activate
def test_socket_activation_with_workers_and_reload(root: Path) -> None:
    port = free_port()
    proc = activate(port, str(root), "--workers", "2", "--backend", "epoll")
    try:
        wait_listening(port)  # the activator's socket: c10k is not running yet
        assert get(port) == SMALL  # this connection starts c10k, which serves it
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()
        assert f"http://127.0.0.1:{port}/" in banner, banner
        proc.send_signal(signal.SIGHUP)  # new workers on the same passed socket
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert get(port) == SMALL
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"Traceback" not in err
        assert b"SIGHUP: reloading 2 workers" in err, err.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@needs_activate
def test_socket_activation_admission_knows_the_socket_is_shared(root: Path, tmp_path: Path) -> None:
    # Both workers accept from systemd's one socket: admission reads the wait at the
    # queue's tail at twice a worker's accept rate (Admission.share).
    port = free_port()
    trace = tmp_path / "admission.jsonl"
    proc = activate(port, str(root), "--workers", "2", "--admission-trace", str(trace))
    try:
        wait_listening(port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not trace.exists():
            for _ in range(20):
                assert get(port) == SMALL
            time.sleep(1.2)  # an idle worker checks once a second; a check with accepts writes
        lines = [json.loads(line) for line in trace.read_text().splitlines()]
        assert lines
        assert {line["sharers"] for line in lines} == {2}, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


@needs_activate
def test_socket_activation_names_a_tls_socket(root: Path) -> None:
    port = free_port()
    proc = activate(port, str(root), *tls_args(), fdname="tls")
    try:
        wait_listening(port)
        ctx = ssl.create_default_context(cafile=str(local_ca()["dir"] / "ca.pem"))
        assert get(port, context=ctx) == SMALL
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]


@needs_activate
@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (("--accept",), "fd 3 is not listening (Accept=yes? c10k needs Accept=no)"),
        (
            ("--datagram",),
            "fd 3 is not a stream socket (ListenDatagram=? c10k needs ListenStream=)",
        ),
    ],
)
def test_socket_activation_refuses_what_it_cannot_serve(
    root: Path, flags: tuple[str, ...], why: str
) -> None:
    port = free_port()
    proc = activate(port, str(root), flags=flags)
    try:
        read_until(proc, b"Listening on")  # bound: a datagram sent sooner would be lost
        if "--datagram" in flags:  # the activator execs c10k on the first datagram
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"x", ("127.0.0.1", port))
        else:  # it forks c10k per connection, with the connected socket, and stays
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        err = read_until(proc, b"c10k serve:")
    finally:
        proc.kill()
        proc.communicate()
    lines = [line for line in err.decode().splitlines() if line.startswith("c10k serve:")]
    assert len(lines) == 1, err.decode()
    assert lines[0].startswith(f"c10k serve: LISTEN_FDS: {why}"), err.decode()
    assert "Traceback" not in err.decode()


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = 15.0) -> bytes:
    """stderr up to the line after ``marker`` (or to EOF, or the timeout)."""
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = proc.stderr.read()
        if chunk:
            out += chunk
        if marker in out and out.endswith(b"\n"):
            time.sleep(0.2)  # and whatever else it says
            return out + (proc.stderr.read() or b"")
        if chunk == b"":
            return out  # EOF
        time.sleep(0.05)
    return out


class NotifySocket:
    """The datagram socket systemd would read ``sd_notify`` messages on."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, list[str]]] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopped:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def wait_for(self, line: str, after: int = 0, timeout: float = 10.0) -> int:
        """The index of the first message from ``after`` on with ``line`` in it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, (_, lines) in enumerate(self.messages[after:], after):
                if line in lines:
                    return i
            time.sleep(0.02)
        raise AssertionError(f"no {line} after #{after}: {self.messages}")

    def close(self) -> None:
        self.stopped = True
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    path = str(tmp_path / "notify")
    ns = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield ns
    ns.close()


def test_notify_with_workers(root: Path, notify: NotifySocket, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    srv = ServerProcess(root, "epoll", "--workers", "2")
    try:
        ready = notify.wait_for("READY=1")
        assert get(srv.port) == SMALL  # READY=1 meant it: the server answers
        _, lines = notify.messages[ready]
        assert f"MAINPID={srv.pid}" in lines
        assert any(line.startswith("STATUS=serving, 2 workers, ") for line in lines), lines
        pings = notify.wait_for("WATCHDOG=1", after=ready)
        notify.wait_for("WATCHDOG=1", after=pings + 1, timeout=2)
        srv.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=ready + 1)
        stamp = [x for x in notify.messages[reloading][1] if x.startswith("MONOTONIC_USEC=")]
        assert stamp, notify.messages[reloading]
        assert int(stamp[0].split("=")[1]) > 0
        again = notify.wait_for("READY=1", after=reloading + 1)
        status = [x for x in notify.messages[again][1] if x.startswith("STATUS=")]
        assert status, notify.messages[again]
        assert " connection" in status[0], status  # ("1 connection", "0 connections")
        assert " requests" in status[0] or " request" in status[0], status
        assert get(srv.port) == SMALL
        srv.proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", after=reloading + 1)
        srv.proc.wait(timeout=20)  # (stop() below would send a second SIGTERM otherwise)
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def test_notify_one_process_abstract_socket(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"c10k-test-{os.getpid()}-{time.monotonic_ns()}"
    ns = NotifySocket("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a ping a second (its tick)
    try:
        srv = ServerProcess(root, "threads")
        ready = ns.wait_for("READY=1")
        assert get(srv.port) == SMALL
        first = ns.wait_for("WATCHDOG=1", after=ready)
        ns.wait_for("WATCHDOG=1", after=first + 1, timeout=3)
        srv.proc.send_signal(signal.SIGTERM)
        ns.wait_for("STOPPING=1", after=ready)
        srv.proc.wait(timeout=20)
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]
    finally:
        ns.close()


def test_listen_fds_reads_only_its_own_and_unsets() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    assert listen_fds(env) is None  # pid 1's sockets, not ours
    assert env == {}
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a"}
    with pytest.raises(ValueError, match="LISTEN_FDNAMES names 1 sockets, LISTEN_FDS says 2"):
        listen_fds(env)
    with pytest.raises(ValueError, match="LISTEN_FDS='x'"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"})


def test_notifier_without_a_socket_is_quiet(tmp_path: Path) -> None:
    quiet = Notifier({})
    quiet.ready("x")  # no NOTIFY_SOCKET: nothing, no error
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    gone.ready("x")  # ECONNREFUSED/ENOENT: logged once, never raised
    gone.ready("x")
    assert gone._failed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_contrib_units_verify(tmp_path: Path) -> None:
    """contrib/c10k.service and c10k.socket as systemd reads them, with ExecStart pointed
    at this checkout's c10k."""
    c10k = Path(sys.executable).with_name("c10k")
    for name in ("c10k.service", "c10k.socket"):
        text = (REPO / "contrib" / name).read_text()
        (tmp_path / name).write_text(text.replace("/usr/local/bin/c10k", str(c10k)))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "c10k.socket", "c10k.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
