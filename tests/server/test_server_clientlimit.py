"""--limit-conn-per-ip, --limit-req and --limit-req-burst on a real server (issue 16).

Clients bind their sockets to source addresses 127.0.0.2, 127.0.0.3, ... (all of
127.0.0.0/8 is loopback), so each address is a client with its own limits. In every mode,
plain and over TLS: the connection over the limit gets 503 and is closed while another
address still gets 200, and a closed connection gives its place back; a burst, then 429
with Retry-After, then service again after that many seconds. With ``--workers 2``, in
every mode (SO_REUSEPORT spreads one client's connections over both; which worker holds
each is read from the kernel), both limits hold for the total: each worker refuses
(503, 429) while it holds or served less than the limit itself;
a worker SIGKILLed holding counted connections leaves none counted once the supervisor has
reaped it. Behind a balancer the limit is the named client's: a PROXY header's source, or
X-Forwarded-For from a --trusted-proxy peer. Bad values are refused at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import (
    REPO,
    ServerProcess,
    backend_params,
    local_ca,
    make_docroot,
    read_response,
)
from helpers import _closed as closed_by_server

LIMIT = 2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("limits") / "www")


def connect_from(src: str, port: int, tls: bool = False) -> socket.socket:
    s = socket.socket()
    try:
        s.settimeout(10)
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        if tls:
            return local_ca()["client"].wrap_socket(s, server_hostname="localhost")  # type: ignore[no-any-return]
    except BaseException:
        s.close()  # (a leaked socket fails a later test with a ResourceWarning)
        raise
    return s


def get(s: socket.socket, path: str = "/small.txt", extra: str = "") -> tuple[int, dict[str, str]]:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
    status, headers, _ = read_response(s, bytearray())
    return status, headers


def status_text(port: int, src: str = "127.0.0.250", tls: bool = False) -> str:
    with connect_from(src, port, tls) as s:
        s.sendall(b"GET /_c10k/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(s, bytearray())
    assert status == 200
    return body.decode()


def counter(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(f"{name}: "):
            return int(line.split(": ")[1])
    raise AssertionError(f"{name} not on the status page:\n{text}")


def workers_of(text: str) -> dict[int, dict[str, int]]:
    """pid -> that worker's numbers, from the ``worker <slot>: pid=...`` lines."""
    out = {}
    for line in text.splitlines():
        if line.startswith("worker "):
            pairs = dict(p.split("=", 1) for p in line.split(": ", 1)[1].split())
            out[int(pairs["pid"])] = {k: int(v) for k, v in pairs.items()}
    return out


def hold(src: str, port: int, n: int, tls: bool = False) -> list[socket.socket]:
    """``n`` connections from ``src``, each with one request answered 200."""
    socks = []
    try:
        for _ in range(n):
            s = connect_from(src, port, tls)
            socks.append(s)
            assert get(s)[0] == 200
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def refused_and_closed(src: str, port: int, tls: bool = False) -> bool:
    with connect_from(src, port, tls) as s:
        status, headers = get(s)
        assert status == 503, status
        assert headers.get("connection") == "close"
        return closed_by_server(s, timeout=5)


# -- every mode, plain and TLS ----------------------------------------------------------------
@pytest.fixture(params=[False, True], ids=["plain", "tls"])
def tls(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.mark.parametrize("mode", backend_params())
def test_limit_conn_per_address(mode: str, root: Path, tls: bool) -> None:
    args = ["--limit-conn-per-ip", str(LIMIT), "--status"]
    server = ServerProcess(root, mode, *args, tls=tls)
    held: list[socket.socket] = []
    try:
        port = server.port
        held = hold("127.0.0.2", port, LIMIT, tls)
        assert refused_and_closed("127.0.0.2", port, tls)
        # Another client is not affected; the held ones still work (kept alive).
        held += hold("127.0.0.3", port, LIMIT, tls)
        assert get(held[0])[0] == 200
        # A closed connection gives its place back (once the server has seen the close).
        held.pop(0).close()
        deadline = time.monotonic() + 5
        while True:
            s = connect_from("127.0.0.2", port, tls)
            status, _ = get(s)
            if status == 200 or time.monotonic() > deadline:
                break
            s.close()
            time.sleep(0.05)
        held.append(s)
        assert status == 200
        text = status_text(port, tls=tls)
        assert counter(text, "limit_conn_rejected") >= 1
        assert counter(text, "status_503") == counter(text, "limit_conn_rejected")
        assert counter(text, "limit_keys") >= 2
    finally:
        for s in held:
            s.close()
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


@pytest.mark.timed
@pytest.mark.parametrize("mode", backend_params())
def test_limit_req_burst_then_429(mode: str, root: Path) -> None:
    """1/s with a burst of 2: three at once, the fourth 429 with Retry-After: 1, and one
    more a second later; another client meanwhile gets its own three."""
    server = ServerProcess(root, mode, "--limit-req", "1/s", "--limit-req-burst", "2", "--status")
    try:
        with connect_from("127.0.0.2", server.port) as s:
            assert [get(s)[0] for _ in range(3)] == [200, 200, 200]
            status, headers = get(s)
            assert status == 429
            assert headers["retry-after"] == "1"
            with connect_from("127.0.0.3", server.port) as other:
                assert [get(other)[0] for _ in range(3)] == [200, 200, 200]
            time.sleep(int(headers["retry-after"]))
            assert get(s)[0] == 200  # the same connection: a 429 keeps it alive
            assert get(s)[0] == 429
        text = status_text(server.port)
        assert counter(text, "limit_req_rejected") == 2
        assert counter(text, "status_429") == 2
    finally:
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


# -- across workers ----------------------------------------------------------------------------
WORKER_LIMIT = 12  # connections of one address, over both workers (spread_connections)


def worker_server(root: Path, mode: str = "epoll") -> ServerProcess:
    args = ["--workers", "2", "--limit-conn-per-ip", str(WORKER_LIMIT), "--status"]
    return ServerProcess(root, mode, *args)


def wait_for(check: object, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = check()  # type: ignore[operator]
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def worker_pids(server: ServerProcess) -> set[int]:
    """The supervisor's two live workers (its children, from /proc), once both run."""

    def two() -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == server.pid and fields[0] != "Z":
                found.add(int(entry))
        return found if len(found) == 2 else set()

    pids = wait_for(two)
    assert pids, f"two workers of {server.pid} should run"
    return pids  # type: ignore[return-value]


def owner(s: socket.socket, pids: set[int]) -> int:
    """The worker holding the server side of ``s``, read from the kernel (the accepted
    socket's inode in /proc/net/tcp, then among the workers' fds), not from the server.
    The listener defers accept until the first bytes (TCP_DEFER_ACCEPT): ask once some
    were sent."""

    # By address and port: a client bound to 127.0.0.2 can get the server's port number
    # as its own, and then its own end's row matched too (a CI failure).
    server_end = proc_address(s.getpeername())
    client_end = proc_address(s.getsockname())

    def find() -> int:
        inode = 0
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                # ESTABLISHED (01) only: an earlier connection's TIME_WAIT may have the
                # same ports (a 503 was closed by the server first), without an inode.
                if (cols[1], cols[2], cols[3]) == (server_end, client_end, "01"):
                    inode = int(cols[9])
        if not inode:  # still in the accept queue (no inode before accept)
            return 0
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        return 0

    pid = wait_for(find, timeout=5)
    alive = [p for p in sorted(pids) if os.path.exists(f"/proc/{p}")]
    assert pid, f"no worker of {alive} (alive) holds it: {tcp_rows(s.getsockname()[1])}"
    return pid  # type: ignore[return-value]


def proc_address(address: tuple[str, int]) -> str:
    """An IPv4 (address, port) as /proc/net/tcp writes it: 0100007F:1F90."""
    return f"{socket.inet_aton(address[0])[::-1].hex().upper()}:{address[1]:04X}"


def tcp_rows(client_port: int) -> list[str]:
    """/proc/net/tcp's rows of a client port, either side (for a failure's message)."""
    with open("/proc/net/tcp") as f:
        rows = f.readlines()[1:]
    end = f":{client_port:04X} "
    return [" ".join(r.split()[1:4] + r.split()[9:10]) for r in rows if end in r]


def get_on_worker(s: socket.socket, port: int, pids: set[int]) -> tuple[int, int]:
    """A request on ``s``: (the worker that answered it, status). Half the head goes
    first, so the worker has accepted the connection and waits for the rest when it is
    looked up (a 503 closes the connection, after which no worker holds it)."""
    s.sendall(b"GET /small.txt HTTP/1.1\r\n")
    pid = owner(s, pids)
    s.sendall(b"Host: t\r\n\r\n")
    status, headers, _ = read_response(s, bytearray())
    if status == 503:
        assert headers.get("connection") == "close"
        assert closed_by_server(s, timeout=5)
    else:
        assert status == 200, status
    return pid, status


def spread_connections(
    port: int, pids: set[int], n: int, refused: dict[int, int]
) -> dict[int, list[socket.socket]]:
    """``n`` connections from 127.0.0.2, each with a request answered 200, on both
    workers: SO_REUSEPORT hashes each connection's ports, so while all sit on one worker
    one is closed and made again (on the other one time in two). 503s (a place given
    back but not yet released) are added to ``refused``."""
    held: dict[int, list[socket.socket]] = {pid: [] for pid in pids}
    deadline = time.monotonic() + 10
    try:
        while sum(map(len, held.values())) < n or not all(held.values()):
            assert time.monotonic() < deadline, f"could not spread {n} connections"
            if sum(map(len, held.values())) == n:  # all on one: give one place back
                held[max(held, key=lambda pid: len(held[pid]))].pop().close()
            s = connect_from("127.0.0.2", port)
            try:
                pid, status = get_on_worker(s, port, pids)
            except BaseException:
                s.close()
                raise
            if status == 200:
                held[pid].append(s)
            else:
                s.close()
                refused[pid] += 1
                time.sleep(0.05)
    except BaseException:
        for socks in held.values():
            for s in socks:
                s.close()
        raise
    return held


@pytest.mark.parametrize("mode", backend_params())
def test_limit_conn_holds_across_two_workers(root: Path, mode: str) -> None:
    """Both workers hold some of the address's connections, and both refuse the next
    one: each refuses with fewer than the limit of its own, so the total is counted."""
    server = worker_server(root, mode)
    held: dict[int, list[socket.socket]] = {}
    try:
        pids = worker_pids(server)
        refused = dict.fromkeys(pids, 0)
        held = spread_connections(server.port, pids, WORKER_LIMIT, refused)
        assert all(len(held[pid]) < WORKER_LIMIT for pid in pids)
        first = dict(refused)
        for _ in range(40):  # until each worker has refused one (1 in 2**40 it does not)
            with connect_from("127.0.0.2", server.port) as s:
                pid, status = get_on_worker(s, server.port, pids)
            assert status == 503, (pid, {p: len(v) for p, v in held.items()})
            refused[pid] += 1
            if all(refused[p] > first[p] for p in pids):
                break
        assert all(refused[p] > first[p] for p in pids), (first, refused)
        with connect_from("127.0.0.3", server.port) as other:  # another client is served
            assert get(other)[0] == 200
        for socks in held.values():  # the held ones still work (kept alive)
            assert get(socks[0])[0] == 200

        def counted() -> dict[int, int]:  # each worker writes its record every second or so
            w = workers_of(status_text(server.port))
            got = {p: w[p]["limit_conn_rejected"] for p in pids}
            return got if got == refused else {}

        # The status page counts the refusals where they happened.
        assert wait_for(counted), (workers_of(status_text(server.port)), refused)
    finally:
        for socks in held.values():
            for s in socks:
                s.close()
        code, _, err = server.stop()
        print(err[-3000:], file=sys.stderr)  # shown by pytest if the test failed
    assert code == 0, err[-2000:]


@pytest.mark.parametrize("mode", backend_params())
def test_limit_req_holds_across_two_workers(root: Path, mode: str) -> None:
    """1/m with a burst of 3: four requests of the address in all, one per connection
    (spread by SO_REUSEPORT), then 429 from both workers, each of which served fewer than
    four itself; another address gets its own four."""
    args = ["--workers", "2", "--limit-req", "1/m", "--limit-req-burst", "3"]
    server = ServerProcess(root, mode, *args)
    try:
        pids = worker_pids(server)
        served = dict.fromkeys(pids, 0)
        refused = dict.fromkeys(pids, 0)
        for _ in range(44):  # four served, then until each worker has refused one
            with connect_from("127.0.0.2", server.port) as s:
                # The worker is looked up while it waits for the rest of the head (as in
                # get_on_worker): after a response that closed its connection (keep-alive
                # shed under load, say) no worker holds it to be found.
                s.sendall(b"GET /small.txt HTTP/1.1\r\n")
                pid = owner(s, pids)
                s.sendall(b"Host: t\r\n\r\n")
                status, headers, _ = read_response(s, bytearray())
            assert status in (200, 429), status
            if status == 200:
                served[pid] += 1
            else:
                assert int(headers["retry-after"]) > 50, headers  # about a minute at 1/m
                refused[pid] += 1
            if all(refused.values()):
                break
        assert sum(served.values()) == 4, served
        assert all(refused.values()), refused
        with connect_from("127.0.0.3", server.port) as other:
            assert [get(other)[0] for _ in range(5)] == [200, 200, 200, 200, 429]
    finally:
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


def test_killed_worker_leaves_no_connections_counted(root: Path) -> None:
    server = worker_server(root)
    held: list[socket.socket] = []
    try:
        held = hold("127.0.0.2", server.port, WORKER_LIMIT)

        def settled() -> dict[int, dict[str, int]]:
            w = workers_of(status_text(server.port))
            active = {pid: v["active"] for pid, v in w.items()}
            # (the status connection itself is active on one of them)
            return w if len(w) == 2 and sum(active.values()) >= WORKER_LIMIT + 1 else {}

        per_worker = wait_for(settled)
        assert per_worker, status_text(server.port)
        victim = max(per_worker, key=lambda pid: per_worker[pid]["active"])  # type: ignore[index]
        os.kill(victim, signal.SIGKILL)
        # Its connections die with it; the survivor's stay open and counted.
        for s in held:
            s.close()
        held = []

        def restarted() -> bool:
            pids = set(workers_of(status_text(server.port)))
            return len(pids) == 2 and victim not in pids

        assert wait_for(restarted)

        def full_quota() -> list[socket.socket]:
            got = []
            try:
                for _ in range(WORKER_LIMIT):
                    s = connect_from("127.0.0.2", server.port)
                    got.append(s)
                    if get(s)[0] != 200:
                        raise AssertionError
            except (AssertionError, OSError):
                for s in got:
                    s.close()
                return []
            return got

        held = wait_for(full_quota)  # type: ignore[assignment]
        assert held, "a killed worker's connections are still counted"
        assert refused_and_closed("127.0.0.2", server.port)
    finally:
        for s in held:
            s.close()
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


# -- behind a balancer ---------------------------------------------------------------------------
def test_limit_conn_keys_on_the_proxy_header_client(root: Path) -> None:
    server = ServerProcess(root, "epoll", "--proxy-protocol", "--limit-conn-per-ip", "1")
    socks = []
    try:

        def named(client: str) -> socket.socket:
            s = connect_from("127.0.0.2", server.port)
            s.sendall(f"PROXY TCP4 {client} 127.0.0.1 4000 80\r\n".encode())
            socks.append(s)
            return s

        assert get(named("10.9.0.1"))[0] == 200
        assert get(named("10.9.0.1"))[0] == 503  # one connection through the balancer...
        assert get(named("10.9.0.2"))[0] == 200  # ...but the client named counts
    finally:
        for s in socks:
            s.close()
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


def test_limit_req_keys_on_the_trusted_forwarded_client(root: Path) -> None:
    args = ["--trusted-proxy", "127.0.0.2/32", "--limit-req", "1/m"]
    server = ServerProcess(root, "epoll", *args)
    try:
        with connect_from("127.0.0.2", server.port) as proxy:
            assert get(proxy, extra="X-Forwarded-For: 10.0.0.7\r\n")[0] == 200
            assert get(proxy, extra="X-Forwarded-For: 10.0.0.7\r\n")[0] == 429
            assert get(proxy, extra="X-Forwarded-For: 10.0.0.8\r\n")[0] == 200
        with connect_from("127.0.0.3", server.port) as untrusted:
            assert get(untrusted, extra="X-Forwarded-For: 10.0.0.9\r\n")[0] == 200
            assert get(untrusted, extra="X-Forwarded-For: 10.0.0.10\r\n")[0] == 429  # itself
    finally:
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


# -- bad values --------------------------------------------------------------------------------
def check_config(*args: str, toml: str | None = None, tmp: Path | None = None) -> tuple[int, str]:
    argv = [sys.executable, "-m", "c10k", "serve", "--check-config", *args]
    if toml is not None:
        assert tmp is not None
        (tmp / "c.toml").write_text(toml)
        argv += ["--config", str(tmp / "c.toml")]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    return p.returncode, p.stdout + p.stderr


def test_bad_limit_values_refused_at_start(tmp_path: Path) -> None:
    code, out = check_config(
        "--limit-conn-per-ip", "-1", "--limit-req", "20", "--limit-req-burst", "x"
    )
    assert code != 0
    assert "--limit-conn-per-ip -1: must be at least 0" in out
    assert "--limit-req 20: must be requests per second or minute, e.g. 20/s or 600/m" in out
    assert "--limit-req-burst x: must be a whole number" in out
    code, out = check_config("--limit-req-burst", "5")
    assert code != 0
    assert "--limit-req-burst 5 does nothing without --limit-req" in out
    code, out = check_config(toml='limit_req = "0/s"\nlimit_conn_per_ip = 1.5\n', tmp=tmp_path)
    assert code != 0
    assert "limit_req = '0/s': must be more than 0 requests (at least 1/m)" in out
    assert "limit_conn_per_ip = 1.5: must be a whole number" in out
    code, out = check_config(
        toml='limit-req = "600/m"\nlimit-req-burst = 10\nlimit-conn-per-ip = 4\n', tmp=tmp_path
    )
    assert code == 0, out


def test_limits_turned_on_by_a_reload_hold_across_workers(root: Path, tmp_path: Path) -> None:
    """SIGHUP with a --config that now sets a limit: the supervisor makes the shared table
    then, before forking the new workers, so the total holds for them too."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("status = true\n")
    server = ServerProcess(root, "epoll", "--workers", "2", "--config", str(cfg))
    held: list[socket.socket] = []
    try:
        before = set(workers_of(status_text(server.port)))
        cfg.write_text(f"status = true\nlimit_conn_per_ip = {WORKER_LIMIT}\n")
        os.kill(server.pid, signal.SIGHUP)

        def reloaded() -> bool:
            pids = set(workers_of(status_text(server.port)))
            return len(pids) == 2 and not pids & before

        assert wait_for(reloaded)
        held = hold("127.0.0.2", server.port, WORKER_LIMIT)
        assert refused_and_closed("127.0.0.2", server.port)
        with connect_from("127.0.0.3", server.port) as other:
            assert get(other)[0] == 200
    finally:
        for s in held:
            s.close()
        code, _, err = server.stop()
    assert code == 0, err[-2000:]
