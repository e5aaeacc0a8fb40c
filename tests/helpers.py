"""Shared test helpers: a c10k server in a subprocess, raw HTTP over sockets, fixtures."""

from __future__ import annotations

import errno
import http.client
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from c10k.core.registry import BACKENDS, available_backends, unavailable_backends
from c10k.server.modes import SERVER_MODES, available_modes, unavailable_modes

REPO = Path(__file__).resolve().parents[1]
BIG_LINES = 100_000  # 1,000,000 bytes of self-describing lines


def big_content() -> bytes:
    # nginx-tests range.t style: every 10-byte record names its own number, so any slice
    # of the file tells where it came from.
    return b"".join(b"X%06dXX\n" % i for i in range(BIG_LINES))


def make_docroot(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_bytes(b"<h1>index</h1>\n")
    (root / "small.txt").write_bytes(b"0123456789" * 51 + b"AB")  # 512 bytes
    (root / "big.bin").write_bytes(big_content())
    (root / "a b.txt").write_bytes(b"space\n")
    (root / ".secret").write_bytes(b"dotfile\n")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "index.html").write_bytes(b"<h1>sub</h1>\n")
    (root / "sub" / "page.html").write_bytes(b"<p>page</p>\n")
    outside = root.parent / "outside-secret.txt"
    outside.write_bytes(b"TOP SECRET OUTSIDE\n")
    link = root / "escape.txt"
    if not link.is_symlink():
        link.symlink_to(outside)
    return root


def backend_params(modes: bool = True) -> list[object]:
    """Every readiness backend (and, with ``modes``, every server mode: uring, threads,
    asyncio, uvloop): those that run here, and the others skipped with their reason."""
    params: list[object] = list(available_backends())
    skipped = dict(unavailable_backends())
    if modes:
        params.extend(available_modes())
        skipped.update(unavailable_modes())
    for name, reason in skipped.items():
        params.append(pytest.param(name, marks=pytest.mark.skip(reason=reason), id=name))
    expected = set(BACKENDS) | (set(SERVER_MODES) if modes else set())
    assert expected == {p if isinstance(p, str) else p.values[0] for p in params}  # type: ignore[attr-defined]
    return params


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a process that binds it itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


STARTED: list[ServerProcess] = []  # servers not yet reaped (conftest's _servers_stopped)


def reap_servers(first: int) -> list[int]:
    """Kill the servers started since ``STARTED[first]`` that still run (a test that
    failed before its stop) and forget them all; returns the pids that were running. A
    running server left behind would fail a later test with a ResourceWarning."""
    running = []
    for srv in STARTED[first:]:
        if srv.proc.poll() is None:
            running.append(srv.pid)
            srv.proc.kill()
        srv.proc.communicate()  # reaped, pipes closed
    del STARTED[first:]
    return running


class ServerProcess:
    """``python -m c10k serve`` in a subprocess on port 0; reads the URL it prints."""

    def __init__(
        self,
        root: Path,
        backend: str = "epoll",
        *args: str,
        wrap: list[str] | None = None,
        tls: bool = False,
    ) -> None:
        if tls:
            args = (*args, *tls_args())
        self.argv = [
            *(wrap or []),
            sys.executable,
            "-m",
            "c10k",
            "serve",
            str(root),
            # --listen names its own addresses (with -b/-p too, c10k refuses to start)
            *([] if "--listen" in args else ["--bind", "127.0.0.1", "--port", "0"]),
            "--backend",
            backend,
            # One process unless a test asks for workers: fd counts and /proc reads
            # below are of this pid.
            *([] if "--workers" in args else ["--workers", "1"]),
            *args,
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        STARTED.append(self)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        m = re.search(r"https?://127\.0\.0\.1:(\d+)/", line)
        if m is None:
            self.proc.kill()
            _, err_bytes = self.proc.communicate()  # also closes the pipes
            err = err_bytes.decode(errors="replace")
            raise RuntimeError(f"server did not start: {line!r} {err[-2000:]}")
        self.banner = line + self.proc.stdout.readline().decode()
        self.port = int(m.group(1))
        self.pid = self.proc.pid
        self.tls = tls
        if tls:
            _TLS_PORTS.add(self.port)

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_fd_count(self, target: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        n = self.fd_count()
        while n != target and time.monotonic() < deadline:
            time.sleep(0.05)
            n = self.fd_count()
        return n

    def wait_fd_count_at_most(self, target: int, timeout: float = 10.0) -> int:
        """Wait until at most ``target`` fds are open: a test's own fds all released. An fd
        a response of an earlier test still held (a file fd is shared by every response
        of the file, static/sharedfd.py) may close meanwhile, leaving fewer."""
        deadline = time.monotonic() + timeout
        n = self.fd_count()
        while n > target and time.monotonic() < deadline:
            time.sleep(0.05)
            n = self.fd_count()
        return n

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        _TLS_PORTS.discard(self.port)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=20)  # > the 10 s default drain
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out.decode(), err.decode()


# -- TLS: servers started with tls=True, and clients that trust them ------------------------
_TLS_PORTS: set[int] = set()  # ports of servers speaking TLS: connect() wraps for them
_TEST_CA: dict[str, Any] = {}


def local_ca() -> dict[str, Any]:
    """A CA made for this run (trustme) and a certificate for localhost/127.0.0.1: its
    files, and a client context that trusts it."""
    if not _TEST_CA:
        import ssl
        import tempfile

        trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")
        ca = trustme.CA()
        d = Path(tempfile.mkdtemp(prefix="c10k-ca-"))
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        leaf.private_key_pem.write_to_path(str(d / "key.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
        _TEST_CA.update(dir=d, ca=ca, client=ctx)
    return _TEST_CA


def tls_args() -> list[str]:
    d = local_ca()["dir"]
    return ["--tls-cert", str(d / "cert.pem"), "--tls-key", str(d / "key.pem")]


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    """A connection to the server on ``port``: TLS (to "localhost") if it speaks TLS."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if port in _TLS_PORTS:
        return local_ca()["client"].wrap_socket(s, server_hostname="localhost")  # type: ignore[no-any-return]
    return s


def http_connection(port: int, timeout: float = 5.0) -> http.client.HTTPConnection:
    if port in _TLS_PORTS:
        return http.client.HTTPSConnection(
            "localhost", port, timeout=timeout, context=local_ca()["client"]
        )
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def curl_base(port: int) -> list[str]:
    """curl's arguments for the server on ``port`` (trust, name) and its base URL, last."""
    if port in _TLS_PORTS:
        ca = local_ca()["dir"] / "ca.pem"
        return ["--cacert", str(ca), f"https://127.0.0.1:{port}"]
    return [f"http://127.0.0.1:{port}"]


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes (or timeout)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def read_response(
    sock: socket.socket, buf: bytearray, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Read one response from ``sock`` (using and updating ``buf``): status, headers, body."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full head; got {bytes(buf)!r}")
        buf += data
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1")
    del buf[: end + 4]
    lines = head.split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only or status in (204, 304) else int(headers.get("content-length", "0"))
    while len(buf) < length:
        data = sock.recv(max(65536, length - len(buf)))
        if not data:
            raise ConnectionError("closed inside a body")
        buf += data
    body = bytes(buf[:length])
    del buf[:length]
    return status, headers, body


class _Unchecked:
    """``request``'s closed flag when not asked for: using it is a test bug."""

    def __bool__(self) -> bool:
        raise AssertionError("request(..., check_closed=True) to read whether it closed")


def request(
    port: int, raw: bytes, head_only: bool = False, check_closed: bool = False
) -> tuple[int, dict[str, str], bytes, bool]:
    """Send ``raw`` on a new connection, read one response; with ``check_closed``, also
    whether the server then closed the connection (which costs up to half a second when it
    did not: the wait that tells)."""
    with connect(port) as s:
        s.sendall(raw)
        buf = bytearray()
        status, headers, body = read_response(s, buf, head_only)
        closed = _closed(s) if check_closed else _Unchecked()
        return status, headers, body, closed  # type: ignore[return-value]


def _closed(s: socket.socket, timeout: float = 0.5) -> bool:
    """True if the server closed the connection (EOF or reset) within ``timeout``;
    False if it is still open (nothing arrived). Extra bytes are a test failure."""
    s.settimeout(timeout)
    try:
        data = s.recv(65536)
    except TimeoutError:
        return False
    except OSError:
        return True
    assert data == b"", f"unexpected bytes after the response: {data[:200]!r}"
    return True


def quick_handshakes(
    address: tuple[str, int], n: int, family: int = socket.AF_INET, within: float = 0.3
) -> int:
    """Start ``n`` non-blocking connects to ``address``; how many completed within
    ``within`` seconds (a SYN dropped by a listener's filter or a full queue is
    retransmitted only after 1 s, so those count as not completed)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            c = socket.socket(family)
            socks.append(c)
            c.setblocking(False)
            assert c.connect_ex(address) in (0, errno.EINPROGRESS)
        time.sleep(within)
        done = 0
        for c in socks:
            try:
                c.getpeername()
            except OSError:
                continue
            done += 1
        return done
    finally:
        for c in socks:
            c.close()


class ForkedServer:
    """A ``Server`` built in a forked child, so its loop has a core of its own and the
    test's clients do not share its GIL; built in the child because a Server holds an epoll
    instance and a wakeup pair that must not be shared across fork. The listening socket
    is made here: the parent closes its copy, or keeps it (``keep_sock``) to look at the
    accept queue. Counters come from the status page (``config.status_path``)."""

    def __init__(
        self,
        config: Any,
        handler: Any,
        keep_sock: bool = False,
        backlog: int | None = None,
        before: Any = None,
    ) -> None:
        from c10k.core.listener import bind_socket
        from c10k.server import make_server

        self.config = config
        self.sock = bind_socket("127.0.0.1", 0, **({} if backlog is None else {"backlog": backlog}))
        self.address = self.sock.getsockname()
        if before is not None:
            before(self.sock)  # e.g. leave the socket as a killed worker would

        def serve() -> None:  # in the child: its own loop, epoll and wakeup pair
            make_server(config, handler=handler, sock=self.sock).serve_forever()

        self.proc = multiprocessing.get_context("fork").Process(target=serve, daemon=True)
        self.proc.start()
        if not keep_sock:
            self.sock.close()  # the parent's copy

    def status(self) -> dict[str, int]:
        """The status page's counters; asks again while the server sheds (503 or closed
        at accept), for up to 10 s."""
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(self.address, timeout=5) as c:
                    c.sendall(f"GET {self.config.status_path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                    status, _, body = read_response(c, bytearray())
            except ConnectionError:  # closed at accept: still shedding
                status, body = 0, b""
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.isdigit():
                out[name] = int(value)
        return out

    def stop(self) -> None:
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.join(timeout=20)
        self.sock.close()
        assert self.proc.exitcode == 0
