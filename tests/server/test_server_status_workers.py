"""The status page across workers, and what the supervisor says about its workers.

Servers are ``python -m c10k serve --workers 2 --status`` subprocesses. Every request here
goes on a connection of its own, so the kernel's SO_REUSEPORT hash spreads them over both
workers; which worker answered a scrape is the ``pid:`` line of the text page. Waits are
bounded polls; nothing asserts how fast anything is.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from c10k.server.base import ServerBase
from c10k.server.config import ServerConfig
from c10k.server.policy import Policy
from c10k.server.shared import FIELDS, Board, Cell, aggregate
from c10k.server.status import render_prometheus, render_stub
from c10k.server.supervisor import COUNT_INTERVAL, Supervisor, Worker
from helpers import REPO, ServerProcess, backend_params, big_content, make_docroot, read_response

pytestmark = pytest.mark.timed  # see conftest.SIBLING_MODES

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
N = 40  # requests before the first scrape
# The modes with a driver of their own (the other readiness backends run epoll's driver).
MODES = ("epoll", "uring", "threads", "asyncio", "uvloop")


def mode_params() -> list[object]:
    return [
        p
        for p in backend_params()
        if (p if isinstance(p, str) else p.values[0]) in MODES  # type: ignore[attr-defined]
    ]


# -- helpers ---------------------------------------------------------------------------------
def children(pid: int) -> set[int]:
    """Live (non-zombie) child processes of ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_until(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def fetch(port: int, raw: bytes) -> tuple[int, bytes]:
    """One request on a new connection; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        status, _, body = read_response(s, bytearray())
        return status, body


class Scrape:
    """One text status page: the totals, who answered, one dict per worker line."""

    def __init__(self, text: str) -> None:
        self.text = text
        lines = text.splitlines()
        self.accepts, self.handled, self.requests = map(int, lines[2].split())
        self.values = {}
        self.workers: dict[int, dict[str, int]] = {}
        for line in lines[4:]:
            name, _, rest = line.partition(": ")
            if name.startswith("worker "):
                pairs = dict(p.split("=") for p in rest.split())
                self.workers[int(pairs["pid"])] = {k: int(v) for k, v in pairs.items()}
            else:
                self.values[name] = int(rest)
        self.pid = self.values["pid"]


def scrape(port: int) -> Scrape:
    status, body = fetch(
        port, b"GET /_c10k/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
    return Scrape(body.decode())


def metrics(port: int) -> str:
    raw = b"GET /_c10k/status/metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    status, body = fetch(port, raw)
    assert status == 200
    return body.decode()


def series(prom: str, metric: str) -> dict[str, int]:
    """pid -> value of ``c10k_worker_<metric>{worker=...,pid=...}``."""
    pattern = rf'^c10k_worker_{metric}{{worker="\d+",pid="(\d+)"}} (\d+)$'
    return {pid: int(v) for pid, v in re.findall(pattern, prom, re.M)}


def total(prom: str, metric: str) -> int:
    m = re.search(rf"^c10k_{metric} (\d+)$", prom, re.M)
    assert m is not None, prom
    return int(m.group(1))


class Scraper:
    """Scrapes on new connections and checks what every scrape must show: the totals of
    the whole server, never going back, never more than what was asked, lines for live
    workers only; and, once records are written, every request served before it."""

    def __init__(self, port: int, served: int) -> None:
        self.port = port
        self.served = served  # requests answered before the next scrape (scrapes included)
        self.last = 0
        self.exact: set[int] = set()  # pids whose page counted everything before it

    def one(self, pids: set[int]) -> Scrape:
        page = scrape(self.port)
        assert self.last <= page.requests <= self.served, (self.last, self.served, page.text)
        # A worker forked a moment ago has a line once it has built its server.
        assert set(page.workers) <= pids, page.text
        live = sum(w["requests"] for w in page.workers.values())
        assert page.requests >= live  # the rest is what exited workers served
        if page.requests == self.served and set(page.workers) == pids:
            self.exact.add(page.pid)
        self.last = page.requests
        self.served += 1  # this scrape counts once answered
        return page

    def until_both_exact(self, pids: set[int]) -> Scrape:
        """Scrape until a page from each worker has counted every request before it
        (the other worker's record is at most COUNT_INTERVAL old)."""
        self.exact = set()
        for _ in range(60):
            page = self.one(pids)
            if self.exact >= pids:
                return page
            time.sleep(0.3)
        pytest.fail(f"not every worker's page counted all {self.served} requests: {self.exact}")


# -- the status page across workers ---------------------------------------------------------
@pytest.mark.parametrize("backend", mode_params())
def test_status_workers_totals_are_the_servers(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--workers", "2", "--status")
    try:
        pids = children(srv.pid)
        assert len(pids) == 2
        for _ in range(N):
            assert fetch(srv.port, GET)[0] == 200
        scraper = Scraper(srv.port, N)
        page = scraper.until_both_exact(pids)
        # Each worker served some (a new connection per request), and each page shows both.
        assert all(w["requests"] >= 1 for w in page.workers.values()), page.text
        assert page.values["workers"] == 2
        prom = metrics(srv.port)
        scraper.served += 1
        assert set(series(prom, "requests_total")) == {str(p) for p in pids}, prom
        assert total(prom, "requests_total") >= N
        assert total(prom, "requests_total") == sum(series(prom, "requests_total").values())
        assert total(prom, "workers") == 2
        assert set(series(prom, "active")) == {str(p) for p in pids}
        labels = r'\{worker="\d",pid="\d+",status="200"\}'
        assert re.search(rf"^c10k_worker_responses_total{labels} \d+$", prom, re.M), prom
        # A worker SIGKILLed: what it served stays in the totals, and its replacement
        # joins the per-worker lines.
        time.sleep(2 * COUNT_INTERVAL)  # its last scrape reaches its record
        victim = max(pids)
        os.kill(victim, signal.SIGKILL)
        now: set[int] = set()

        def replaced() -> bool:
            nonlocal now
            now = children(srv.pid)  # once: the victim may turn zombie between two reads
            return len(now) == 2 and victim not in now

        assert wait_until(replaced), now
        after = scraper.until_both_exact(now)  # nothing the victim served was lost
        assert after.values["workers_exited"] == 1
    finally:
        code, out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert f"c10k stopped after {scraper.served:,} requests" in out, out + err[-3000:]


# -- the shared board, without processes ------------------------------------------------------
def _values(**given: int) -> dict[str, int]:
    return {name: given.get(name, 0) for name in FIELDS}


def test_status_workers_board_folds_exited_workers_once() -> None:
    board = Board(2)
    board.claim(0, 1, 0)
    board.claim(1, 2, 1)
    a = Cell(board, 0, 1, 0, pid=101, started=time.time())
    b = Cell(board, 1, 2, 1, pid=102, started=time.time())
    a.write(_values(requests=5, active=2, backlog=100), {200: 4, 404: 1})
    b.write(_values(requests=7, active=1, backlog=50, shed_level=2), {200: 7})
    retired, live, exited = board.snapshot()
    st, by_status = aggregate(retired, live)
    assert (st["requests"], st["active"], st["backlog"], st["shed_level"]) == (12, 3, 50, 2)
    assert by_status == {200: 11, 404: 1}
    assert [r.pid for r in live] == [101, 102]
    assert exited == 0
    # a exits: its count moves to "retired", its cell is free and taken by generation 3.
    board.retire(0, requests=6)  # its pipe said 6: its last tick had not written it yet
    board.claim(0, 3, 0)
    a.write(_values(requests=99), {500: 99})  # the dead generation's write is refused
    c = Cell(board, 0, 3, 0, pid=103, started=time.time())
    c.write(_values(requests=1), {200: 1})
    retired, live, exited = board.snapshot()
    st, by_status = aggregate(retired, live)
    assert st["requests"] == 6 + 7 + 1
    assert st["active"] == 1  # gauges of live workers only
    assert by_status == {200: 12, 404: 1}
    assert [r.pid for r in live] == [103, 102] or [r.pid for r in live] == [102, 103]
    assert exited == 1


def test_status_workers_board_reader_skips_a_torn_record() -> None:
    board = Board(1)
    board.claim(0, 1, 0)
    Cell(board, 0, 1, 0, pid=101, started=0).write(_values(requests=3), {})
    at = board.offset(0)
    seq = board.word(at)
    board.mm[at : at + 8] = (seq + 1).to_bytes(8, sys.byteorder)  # a write under way
    before = board.read(0)
    assert before is not None  # kept after bounded retries
    assert before.values["requests"] == 3


def test_status_workers_policy_fields_match_the_record() -> None:
    assert list(Policy(ServerConfig()).values(dict.fromkeys(FIELDS[:4], 0))) == list(FIELDS)


def test_status_workers_render_per_worker_series() -> None:
    board = Board(1)
    board.claim(0, 1, 3)
    Cell(board, 0, 1, 3, pid=4242, started=0).write(_values(requests=2), {200: 2})
    retired, live, _ = board.snapshot()
    st, by_status = aggregate(retired, live)
    st.update(uptime_seconds=1, pid=1, workers=1, workers_exited=0)
    prom = render_prometheus(st, by_status, live)
    assert 'c10k_worker_requests_total{worker="3",pid="4242"} 2' in prom
    assert 'c10k_worker_responses_total{worker="3",pid="4242",status="200"} 2' in prom
    assert prom.count("# TYPE c10k_worker_requests_total counter") == 1
    text = render_stub(st, by_status, live)
    assert "\nworker 3: pid=4242 active=0 " in text
    assert " requests=2 " in text
    assert text.endswith(" status_200=2\n")


# -- what the supervisor says ---------------------------------------------------------------
def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "c10k", "serve", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("verbose", [False, True])
def test_status_workers_start_failure_is_one_line(tmp_path: Path, verbose: bool) -> None:
    root = make_docroot(tmp_path / "www")
    # The log is a symlink into a volume that is not there (unmounted, deleted): the
    # settings check finds a writable directory and no file, but the worker's open fails.
    log = tmp_path / "access.log"
    log.symlink_to(tmp_path / "gone" / "access.log")
    r = run_serve(str(root), "--port", "0", "--workers", "2", "--access-log", str(log),
                  *(["-v"] if verbose else []))  # fmt: skip
    assert r.returncode == 1, r.stderr
    why = f"FileNotFoundError: [Errno 2] No such file or directory: '{log}'"
    line = next(x for x in r.stderr.splitlines() if x.startswith("c10k serve: "))
    assert line.startswith("c10k serve: a worker failed to start: "), r.stderr
    assert line.endswith(why), r.stderr
    assert ("Traceback (most recent call last)" in r.stderr) == verbose, r.stderr


def test_status_workers_counts_in_words(docroot: Path) -> None:
    srv = ServerProcess(docroot, "epoll", "--workers", "2")
    assert fetch(srv.port, GET)[0] == 200
    code, out, err = srv.stop()
    assert code == 0, err
    assert "c10k stopped after 1 request\n" in out
    assert "stopping 2 workers" in err
    assert re.search(r"worker \d+ exited with status 0 after 1 request$", err, re.M), err
    assert re.search(r"worker \d+ exited with status 0 after 0 requests$", err, re.M), err


def _supervisor(say: Callable[[str], None]) -> Supervisor:
    return Supervisor(ServerConfig(workers=2), [[], []], say)


def test__goodbye_says_and_exits_on_cut_responses() -> None:
    said: list[str] = []
    sup = _supervisor(said.append)
    for pid, line in ((11, b'{"requests": 1, "cut": 2}\n'), (12, b'{"requests": 4}\n')):
        r, w = os.pipe()
        os.write(w, line)
        os.close(w)
        worker = Worker(pid, 0, r, time.monotonic(), stopping=True)
        sup.by_fd[r] = worker
        sup._poll.register(r)
        sup._on_exit(worker, 0)
    assert sup._goodbye() == 1
    assert said == ["c10k stopped after 5 requests; 2 responses cut short"]
    said.clear()
    sup.cut = 0
    assert sup._goodbye() == 0
    assert said == ["c10k stopped after 5 requests"]


@pytest.mark.skipif(
    "responses_cut" not in inspect.getsource(ServerBase),
    reason="ServerBase does not count responses_cut yet (another change)",
)
def test_status_workers_cut_responses_exit_1(tmp_path: Path) -> None:
    root = make_docroot(tmp_path / "www")
    (root / "huge.bin").write_bytes(big_content() * 8)  # more than the socket buffers hold
    srv = ServerProcess(root, "epoll", "--workers", "2", "--shutdown-timeout", "1")
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", srv.port))
        stalled.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        stalled.recv(100)  # it started; now never read again
        code, out, err = srv.stop()
    finally:
        stalled.close()
    assert code == 1, err[-3000:]
    assert "c10k stopped after 1 request; 1 response cut short" in out
