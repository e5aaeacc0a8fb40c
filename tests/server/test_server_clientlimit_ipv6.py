"""--limit-conn-per-ip over IPv6 on a real server: a client is its /64 (issue 16).

Loopback has one IPv6 address (::1), so the server and its clients run in a network
namespace of their own (``ip netns add``; root only, skipped otherwise) whose lo carries
addresses in two neighbouring /64s: 2001:db8:1:0::/64 and 2001:db8:1:1::/64 (they differ
in the last bit of the prefix). The server is ``ip netns exec NS python -m c10k serve``;
the test makes its client sockets inside the namespace (setns(2) on this thread while the
socket is created: a socket stays in the namespace it was made in) and uses them as any.

- Two source addresses of one /64 share one count; the next /64 has its own; ::1 its own.
- A dual-stack listener (c10k binds IPv6 with IPV6_V6ONLY; systemd's sockets, passed by
  socket activation, may be dual-stack: ``systemd-socket-activate -l [::]:P`` is) sees an
  IPv4 client as ``::ffff:a.b.c.d``: counted as that IPv4 address, with its connections
  to an IPv4 listener, and apart from ::1.

The namespace is deleted at the end of the module, even when a test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import REPO, ServerProcess, backend_params, make_docroot, read_response
from helpers import _closed as closed_by_server

LIMIT = 2
SERVER = "2001:db8:1::1"
ONE_64 = ("2001:db8:1::2", "2001:db8:1:0:ffff::3", "2001:db8:1::4")  # one /64
NEXT_64 = "2001:db8:1:1::2"  # the /64 after it
ADDRESSES = (SERVER, *ONE_64, NEXT_64)
CLONE_NEWNET = 0x40000000
IP_TIMEOUT = 10  # seconds for any one ip(8) command


# -- the namespace ------------------------------------------------------------------------------
def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A network namespace with lo up and ADDRESSES on it; deleted afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("ip(8) is not installed (iproute2): no network namespace to test IPv6 in")
    name = f"c10k-limits-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    made = ip("netns", "add", name)
    if made.returncode:
        pytest.skip(f"ip netns add failed (root is needed): {made.stderr.strip()}")
    try:
        steps = [("link", "set", "lo", "up")]
        # nodad: usable at once (duplicate address detection would hold them for a second)
        steps += [("-6", "addr", "add", f"{a}/64", "dev", "lo", "nodad") for a in ADDRESSES]
        for step in steps:
            done = ip("-n", name, *step)
            if done.returncode:  # IPv6 turned off in this kernel, say
                pytest.skip(f"ip -n {name} {' '.join(step)} failed: {done.stderr.strip()}")
        yield name
    finally:
        gone = ip("netns", "delete", name)
        assert gone.returncode == 0, gone.stderr


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """This thread in namespace ``name`` for the block (sockets made in it stay there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), f"setns to {name} failed")
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET):  # pragma: no cover - would strand the run
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(target)
        os.close(own)


def connect_from(ns: str, src: str, dst: str, port: int) -> socket.socket:
    """A connection inside ``ns`` from source address ``src`` to ``dst``:``port``."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    with inside(ns):
        s = socket.socket(family)
    try:
        s.settimeout(10)
        s.bind((src, 0))
        s.connect((dst, port))
    except BaseException:
        s.close()
        raise
    return s


def free_port(ns: str) -> int:
    """A TCP port free on every address in ``ns`` now."""
    with inside(ns):
        s = socket.socket(socket.AF_INET6)
    with s:
        s.bind(("::", 0))
        return int(s.getsockname()[1])


def get(s: socket.socket) -> int:
    s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, _ = read_response(s, bytearray())
    if status == 503:
        assert headers.get("connection") == "close"
        assert closed_by_server(s, timeout=5)
    return status


class Clients:
    """Connections made by a test, each asked for one file: closed at the end."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.socks: list[socket.socket] = []

    def status(self, src: str, dst: str, port: int) -> int:
        s = connect_from(self.ns, src, dst, port)
        self.socks.append(s)
        return get(s)

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("limits6") / "www")


# -- IPv6 by /64 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", backend_params())
def test_limit_conn_keys_ipv6_clients_by_64(netns: str, root: Path, mode: str) -> None:
    wrap = ["ip", "netns", "exec", netns]
    # 127.0.0.1 too: the test helper reads the port from the first URL of the banner.
    listen = ["--listen", "127.0.0.1:0", "--listen", "[::]:0"]
    server = ServerProcess(root, mode, *listen, "--limit-conn-per-ip", str(LIMIT), wrap=wrap)
    clients = Clients(netns)
    try:
        m = re.search(r"http://\[::\]:(\d+)/", server.banner)
        assert m is not None, server.banner
        port = int(m.group(1))
        first, second, third = ONE_64
        assert clients.status(first, SERVER, port) == 200
        assert clients.status(second, SERVER, port) == 200  # another address, same /64...
        assert clients.status(third, SERVER, port) == 503  # ...so this is the third
        assert clients.status(first, SERVER, port) == 503
        # The next /64 counts apart, up to the limit of its own; ::1 (::/64) too.
        assert [clients.status(NEXT_64, SERVER, port) for _ in range(3)] == [200, 200, 503]
        assert clients.status("::1", "::1", port) == 200
    finally:
        clients.close()
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


# -- IPv4-mapped clients of a dual-stack listener --------------------------------------------
def activated(ns: str, root: Path, mode: str, v4: int, dual: int) -> subprocess.Popen[bytes]:
    """c10k under ``systemd-socket-activate`` in ``ns``: a 127.0.0.1:``v4`` socket and a
    dual-stack [::]:``dual`` one (the namespace's net.ipv6.bindv6only is 0)."""
    cmd = ["ip", "netns", "exec", ns, "systemd-socket-activate"]
    cmd += ["-l", f"127.0.0.1:{v4}", "-l", f"[::]:{dual}"]
    cmd += ["-E", f"PYTHONPATH={REPO / 'src'}"]  # it passes on no other variable
    cmd += [sys.executable, "-m", "c10k", "serve", str(root), "--backend", mode]
    cmd += ["--workers", "1", "--limit-conn-per-ip", str(LIMIT)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode(errors="replace")


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate is not installed (apt-get install systemd): c10k binds "
    "IPv6 with IPV6_V6ONLY, so only a passed socket is dual-stack",
)
@pytest.mark.parametrize("mode", backend_params())
def test_limit_conn_counts_a_v4_mapped_client_as_its_v4_address(
    netns: str, root: Path, mode: str
) -> None:
    v4, dual = free_port(netns), free_port(netns)
    proc = activated(netns, root, mode, v4, dual)
    clients = Clients(netns)
    try:
        # The first connection starts c10k (systemd-socket-activate execs it), once the
        # activator listens.
        deadline = time.monotonic() + 10
        while True:
            try:
                assert clients.status("127.0.0.2", "127.0.0.1", v4) == 200
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "systemd-socket-activate does not listen"
                time.sleep(0.02)
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()
        assert f"http://127.0.0.1:{v4}/" in banner, banner
        assert f":{dual}/" in banner, banner
        # 127.0.0.2 through the dual-stack socket is ::ffff:127.0.0.2: the same client.
        assert clients.status("127.0.0.2", "127.0.0.1", dual) == 200
        assert clients.status("127.0.0.2", "127.0.0.1", v4) == 503
        assert clients.status("127.0.0.2", "127.0.0.1", dual) == 503
        # 127.0.0.3 is another client, whichever socket it comes through...
        assert clients.status("127.0.0.3", "127.0.0.1", dual) == 200
        assert clients.status("127.0.0.3", "127.0.0.1", dual) == 200
        assert clients.status("127.0.0.3", "127.0.0.1", v4) == 503
        # ...and the mapped clients are not ::/64, which ::1 is.
        assert clients.status("::1", "::1", dual) == 200
        assert clients.status("::1", "::1", dual) == 200
        assert clients.status("::1", "::1", dual) == 503
    finally:
        clients.close()
        code, err = stop(proc)
    assert code == 0, err[-2000:]
