"""``--health`` and ``--drain-delay`` (issue 17): a balancer takes the host out before it goes.

Every mode answers ``/_c10k/health`` (200, then 503 once told to stop) and keeps it out of
the access log unless asked. With ``--drain-delay`` a SIGTERM first fails the check while
the server still accepts and serves (each response closing its connection), then drains;
one process or a supervisor with workers. And the point of it, with a real HAProxy in front
of two servers, retries off: stopping one of them fails no request.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from _haproxy import HAProxy

from helpers import ServerProcess, backend_params, make_docroot

SMALL = b"0123456789" * 51 + b"AB"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("site") / "www")


def get(port: int, path: str) -> tuple[int, str | None, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Connection"), r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("backend", backend_params())
def test_health_answers_and_stays_out_of_the_log(root: Path, tmp_path: Path, backend: str) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(root, backend, "--health", "--access-log", str(log))
    try:
        assert get(srv.port, "/_c10k/health") == (200, None, b"ok\n")
        assert get(srv.port, "/_c10k/health?from=lb") == (200, None, b"ok\n")
        assert get(srv.port, "/small.txt")[2] == SMALL
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert "/small.txt" in lines[0]


def test_log_health_writes_the_checks(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(root, "epoll", "--health", "--log-health", "--access-log", str(log))
    try:
        assert get(srv.port, "/_c10k/health")[0] == 200
    finally:
        srv.stop()
    assert "/_c10k/health" in log.read_text()


def test_without_health_the_path_is_a_file_path(root: Path) -> None:
    srv = ServerProcess(root, "epoll")
    try:
        assert get(srv.port, "/_c10k/health")[0] == 404
    finally:
        srv.stop()


def _in_the_window(port: int) -> None:
    """What the --drain-delay window looks like: check failing, files served, each
    response closing its connection, new connections accepted. (Asked until the check
    fails first: the signal is handled at the loop's next turn, a worker's after the
    supervisor passed it on, and a fixed pause raced with that on a busy machine.)"""
    deadline = time.monotonic() + 5
    while get(port, "/_c10k/health")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.02)
    for _ in range(3):
        assert get(port, "/_c10k/health") == (503, "close", b"draining\n")
        assert get(port, "/small.txt") == (200, "close", SMALL)


@pytest.mark.timed
@pytest.mark.parametrize("backend", backend_params())
def test_drain_delay_one_process(root: Path, backend: str) -> None:
    srv = ServerProcess(root, backend, "--health", "--drain-delay", "1.5")
    assert get(srv.port, "/_c10k/health") == (200, None, b"ok\n")
    srv.proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    _in_the_window(srv.port)
    assert srv.proc.wait(timeout=15) == 0
    assert time.monotonic() - start > 1.0  # it served the window before it went
    _, err = srv.proc.communicate()
    assert b"failing the health check" in err, err[-2000:]


def test_drain_delay_with_workers_and_a_second_signal(root: Path) -> None:
    srv = ServerProcess(root, "epoll", "--health", "--drain-delay", "30", "--workers", "2")
    srv.proc.send_signal(signal.SIGTERM)
    _in_the_window(srv.port)  # both workers (SO_REUSEPORT spreads these connections)
    start = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)  # again: drain now, not in 30 s
    assert srv.proc.wait(timeout=15) == 0
    assert time.monotonic() - start < 10
    _, err = srv.proc.communicate()
    assert b"again: draining now" in err, err[-2000:]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_stopping_a_host_behind_haproxy_fails_no_request(root: Path, tmp_path: Path) -> None:
    flags = ("--health", "--proxy-protocol", "--drain-delay", "1.5", "--workers", "2")
    a, b = (ServerProcess(root, "epoll", *flags) for _ in range(2))
    lb = HAProxy(tmp_path, a.port, "send-proxy-v2", second=b.port, check_path="/_c10k/health")
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, _, body = get(lb.port, "/small.txt")
                if (status, body) != (200, SMALL):
                    failures.append(f"{status} {body[:60]!r}")
                served[0] += 1
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))

    try:
        lb.wait_up(servers=2)
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        a.proc.send_signal(signal.SIGTERM)  # a rolling restart's first step
        assert a.proc.wait(timeout=15) == 0
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    finally:
        stop.set()
        lb.stop()
        a.stop()
        b.stop()
    assert served[0] > 100
    assert failures == [], failures[:5]
