"""Access log and the status page, over real sockets against `c10k serve`."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect, read_response, request

CLF = re.compile(
    r"^(?P<peer>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"$'
)


def _log_lines(path: Path, n: int, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            break
        time.sleep(0.05)
    return lines


@pytest.mark.parametrize("backend", backend_params())
def test_server_access_log_combined_format(docroot: Path, tmp_path: Path, backend: str) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(docroot, backend, "--access-log", str(log))
    try:
        with connect(srv.port) as s:
            buf = bytearray()
            s.sendall(
                b"GET /small.txt HTTP/1.1\r\nHost: t\r\nReferer: http://r/\r\n"
                b'User-Agent: t"e\xffst\r\n\r\n'
            )
            assert read_response(s, buf)[0] == 200
            s.sendall(b"HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s, buf, head_only=True)[0] == 200
            s.sendall(b"GET /nope HTTP/1.0\r\n\r\n")
            assert read_response(s, buf)[0] == 404
        assert request(srv.port, b"GET /x HTTP/1.1\r\n\r\n")[0] == 400  # no Host
        lines = _log_lines(log, 4)
    finally:
        assert srv.stop()[0] == 0
    assert len(lines) == 4, lines
    parsed = [CLF.match(line) for line in lines]
    assert all(parsed), lines
    first, head, missing, bad = (m.groupdict() for m in parsed if m)
    assert first["peer"] == "127.0.0.1"
    assert first["request"] == "GET /small.txt HTTP/1.1"
    assert (first["status"], first["size"]) == ("200", "512")
    assert first["referer"] == "http://r/"
    assert first["agent"] == "t\\x22e\\xFFst"  # escaped: a client cannot forge log syntax
    assert (head["request"], head["size"]) == ("HEAD /small.txt HTTP/1.1", "0")
    assert (missing["request"], missing["status"]) == ("GET /nope HTTP/1.0", "404")
    assert bad["status"] == "400"


def test_server_access_log_json(docroot: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    srv = ServerProcess(docroot, "epoll", "--access-log", str(log), "--log-format", "json")
    try:
        assert request(srv.port, b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
        lines = _log_lines(log, 1)
    finally:
        assert srv.stop()[0] == 0
    entry = json.loads(lines[0])
    assert entry["method"] == "GET"
    assert entry["target"] == "/small.txt"
    assert entry["status"] == 200
    assert entry["bytes"] == 512
    assert entry["remote"] == "127.0.0.1"
    assert entry["host"] == "t"  # the Host (with [[site]] tables, how the site was chosen)


def test_server_access_log_flushed_on_stop(docroot: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(docroot, "epoll", "--access-log", str(log))
    assert request(srv.port, b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
    assert srv.stop()[0] == 0  # at once: the line is written on the way out
    assert len(log.read_text().splitlines()) == 1


def test_server_bad_log_format_is_a_clear_error(docroot: Path) -> None:
    with pytest.raises(RuntimeError, match="combined or json"):
        ServerProcess(docroot, "epoll", "--log-format", "xml")


@pytest.mark.parametrize("backend", backend_params())
def test_server_status_page(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--status")
    try:
        idle = connect(srv.port)
        idle.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(idle, bytearray())[0] == 200
        assert request(srv.port, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 404
        time.sleep(0.15)  # the page is re-rendered at most every 100 ms
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/_c10k/status") as r:
            assert r.headers["Cache-Control"] == "no-store"
            text = r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/_c10k/status/metrics") as r:
            prom = r.read().decode()
        idle.close()
    finally:
        assert srv.stop()[0] == 0
    lines = text.splitlines()
    assert lines[0] == "Active connections: 2"  # the idle one and this one
    assert lines[1] == "server accepts handled requests"
    accepts, handled, requests = map(int, lines[2].split())
    assert (accepts, handled, requests) == (3, 3, 2)  # this request counts once answered
    assert re.fullmatch(r"Reading: \d+ Writing: \d+ Waiting: \d+", lines[3])
    assert "status_200: 1" in lines
    assert "status_404: 1" in lines
    assert "c10k_requests_total 3" in prom
    assert 'c10k_responses_total{status="404"} 1' in prom
    assert "# TYPE c10k_active gauge" in prom


def test_server_status_page_off_by_default(docroot: Path) -> None:
    srv = ServerProcess(docroot, "epoll")
    try:
        assert request(srv.port, b"GET /_c10k/status HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 404
    finally:
        assert srv.stop()[0] == 0
