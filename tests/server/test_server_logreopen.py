"""SIGUSR1 reopens the access log (issue 16; logrotate's postrotate, nginx's USR1): after the
file is renamed, every worker (or the one process of --workers 1) writes later lines to a
new file at the same path; each line is in exactly one file, whole. --drain-delay's own
signal between the supervisor and its workers is SIGUSR2, so SIGUSR1 no longer fails the
health check."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from c10k.server import supervisor
from c10k.server.supervisor import Slot, Supervisor, Worker
from helpers import REPO, ServerProcess, backend_params

LINE = re.compile(
    r'127\.0\.0\.1 - - \[[^]]+\] "GET /small\.txt\?(\w+)=(\d+) HTTP/1\.1" 200 512 "-" "-"'
)


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def worker_pids(srv: ServerProcess, workers: int) -> set[int]:
    if workers == 1:
        return {srv.pid}
    text = Path(f"/proc/{srv.pid}/task/{srv.pid}/children").read_text()
    pids = {int(p) for p in text.split()}
    assert len(pids) == workers, pids
    return pids


def open_files(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed meanwhile
    return out


def reopened(pids: set[int], new: Path, old: Path) -> Callable[[], bool]:
    """Every process has the file at ``new`` open and no longer the renamed ``old``."""
    return lambda: all(
        str(new) in (files := open_files(pid)) and str(old) not in files for pid in pids
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def get(port: int, target: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers={"Connection": "close"})
        assert conn.getresponse().read() == b"0123456789" * 51 + b"AB"
    finally:
        conn.close()


def rotate(srv: ServerProcess, workers: int, log: Path) -> Path:
    """logrotate's move, then its postrotate kill -USR1; returns once every process has
    switched (read from /proc, not timed)."""
    pids = worker_pids(srv, workers)
    old = log.with_name(log.name + ".1")
    log.rename(old)
    os.kill(srv.pid, signal.SIGUSR1)
    wait_until(reopened(pids, log, old), "every process to reopen the access log")
    return old


def _modes() -> list[object]:
    """Every mode as one process (each installs its signal handlers its own way), and
    epoll with two workers under a supervisor."""
    out: list[object] = []
    for p in backend_params():
        if isinstance(p, str):
            out.append(pytest.param(p, 1, id=f"{p}-workers1"))
        else:  # skipped here, with its reason
            name = p.values[0]  # type: ignore[attr-defined]
            out.append(pytest.param(name, 1, marks=p.marks, id=f"{name}-workers1"))  # type: ignore[attr-defined]
    out.append(pytest.param("epoll", 2, id="epoll-workers2"))
    return out


@pytest.mark.parametrize(("backend", "workers"), _modes())
def test_logreopen_sigusr1_splits_the_log_at_the_signal(
    docroot: Path, tmp_path: Path, backend: str, workers: int
) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(docroot, backend, "--access-log", str(log), "--workers", str(workers))
    try:
        for i in range(20):  # a connection each: both workers get some
            get(srv.port, f"/small.txt?before={i}")
        wait_until(lambda: len(lines(log)) == 20, "the first 20 lines")
        old = rotate(srv, workers, log)
        for i in range(20):
            get(srv.port, f"/small.txt?after={i}")
    finally:
        code, _out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert err.count("SIGUSR1: access log reopened") == workers, err[-3000:]
    before = [LINE.fullmatch(line) for line in lines(old)]
    after = [LINE.fullmatch(line) for line in lines(log)]
    assert all(before), lines(old)
    assert all(after), lines(log)
    assert sorted(int(m[2]) for m in before if m and m[1] == "before") == list(range(20))
    assert sorted(int(m[2]) for m in after if m and m[1] == "after") == list(range(20))
    assert len(before) == len(after) == 20


def test_logreopen_under_load_keeps_every_line_once(docroot: Path, tmp_path: Path) -> None:
    """Clients keep asking while the file is rotated. On one keep-alive connection the
    requests go in order, so its lines in the old file must be a prefix 0..k-1 and those
    in the new file the rest: nothing lost, repeated, split, or out of place."""
    log = tmp_path / "access.log"
    srv = ServerProcess(docroot, "epoll", "--access-log", str(log), "--workers", "2")
    stop = threading.Event()
    sent = [0, 0, 0, 0]
    errors: list[BaseException] = []

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            while not stop.is_set():
                conn.request("GET", f"/small.txt?c{c}={sent[c]}")
                assert conn.getresponse().read().endswith(b"AB")
                sent[c] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(len(sent))]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(lines(log)) >= 50, "lines before the rotation")
        old = rotate(srv, 2, log)
        wait_until(lambda: len(lines(log)) >= 50, "lines after the rotation")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        code, _out, err = srv.stop()
    assert not errors, errors
    assert code == 0, err[-3000:]
    before, after = lines(old), lines(log)
    matches = [LINE.fullmatch(line) for line in before + after]
    assert all(matches), [line for line in before + after if not LINE.fullmatch(line)][:5]
    for c, total in enumerate(sent):
        tag = f"c{c}"
        olds = [int(m[2]) for m in map(LINE.fullmatch, before) if m and m[1] == tag]
        news = [int(m[2]) for m in map(LINE.fullmatch, after) if m and m[1] == tag]
        assert olds == list(range(len(olds))), (tag, olds)
        assert news == list(range(len(olds), total)), (tag, len(olds), news[:5], total)
    assert len(before) + len(after) == sum(sent)
    assert before  # the rotation came in the middle of the traffic
    assert after


def test_logreopen_sigusr1_does_not_fail_the_health_check(docroot: Path, tmp_path: Path) -> None:
    """SIGUSR1 once meant "fail the health check" inside the supervisor (--drain-delay);
    now it only reopens the log, and SIGTERM's drain delay still fails the check."""
    log = tmp_path / "access.log"
    srv = ServerProcess(
        docroot, "epoll", "--access-log", str(log), "--workers", "2",
        "--health", "--drain-delay", "2",
    )  # fmt: skip

    def health() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("GET", "/_c10k/health", headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    try:
        rotate(srv, 2, log)
        assert [health() for _ in range(16)] == [200] * 16  # each a new connection
        srv.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: health() == 503, "the health check to fail after SIGTERM", 5)
    finally:
        code, _out, err = srv.stop()
    assert code == 0, err[-3000:]


def test_logreopen_a_starting_worker_gets_the_signal_once_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker still starting has no SIGUSR1 handler (it ignores the signal) and may have
    opened the file before the rename: the supervisor sends it once the worker is ready."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(supervisor, "_kill", lambda pid, sig: sent.append((pid, sig)))
    sup = Supervisor.__new__(Supervisor)  # only the signal bookkeeping, no sockets
    serving = Worker(pid=101, slot=0, rfd=-1, started=0.0, ready=True)
    starting = Worker(pid=102, slot=1, rfd=-1, started=0.0)
    sup.workers = {101: serving, 102: starting}
    sup.slots = [Slot(0, [], current=serving), Slot(1, [], current=starting)]
    sup.stopping, sup.drain_at, sup.booted, sup.reloading = False, None, True, False
    sup._handle_signal(signal.SIGUSR1)
    assert sent == [(101, signal.SIGUSR1)]
    sup._on_ready(starting, {"ready": 102})
    assert sent == [(101, signal.SIGUSR1), (102, signal.SIGUSR1)]
    sup._on_ready(starting, {"ready": 102})  # once only
    assert len(sent) == 2


def test_logreopen_with_contrib_logrotate(docroot: Path, tmp_path: Path) -> None:
    """contrib/c10k.logrotate run by the real logrotate, its path and postrotate pointed
    at this server (systemd is not here): the old lines are in access.log.1, the new
    ones in a new access.log."""
    logrotate = shutil.which("logrotate")
    if logrotate is None:
        pytest.skip("no logrotate here (apt-get install logrotate)")
    text = (REPO / "contrib" / "c10k.logrotate").read_text()
    assert "systemctl kill --kill-whom=main --signal=USR1 c10k.service" in text
    log = tmp_path / "access.log"
    srv = ServerProcess(docroot, "epoll", "--access-log", str(log), "--workers", "2")
    try:
        conf = tmp_path / "c10k.logrotate"
        conf.write_text(
            text.replace("/var/log/c10k/*.log", str(log)).replace(
                "systemctl kill --kill-whom=main --signal=USR1 c10k.service",
                f"kill -USR1 {srv.pid}",
            )
        )
        conf.chmod(0o644)  # logrotate refuses a config others may write
        for i in range(10):
            get(srv.port, f"/small.txt?before={i}")
        wait_until(lambda: len(lines(log)) == 10, "the first 10 lines")
        subprocess.run(
            [logrotate, "-f", "-s", str(tmp_path / "state"), str(conf)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        old = log.with_name("access.log.1")  # delaycompress: not compressed yet
        wait_until(reopened(worker_pids(srv, 2), log, old), "the workers to reopen")
        for i in range(10):
            get(srv.port, f"/small.txt?after={i}")
    finally:
        code, _out, err = srv.stop()
    assert code == 0, err[-3000:]
    for path, tag in ((old, "before"), (log, "after")):
        found = [LINE.fullmatch(x) for x in lines(path)]
        assert sorted(int(m[2]) for m in found if m and m[1] == tag) == list(range(10))
        assert len(found) == 10, lines(path)
