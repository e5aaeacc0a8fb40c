"""scripts/trunc_client.py, the client that lets the server set the pace in
scripts/files_vs_nginx.py --client trunc (issue 15): it must count whole responses and
every byte, reconnect after Connection: close, and call a cut body an error, never a
response. Served by a small keep-alive server here whose every answer is known."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

# Each test runs a client and a server flat out for a second: alone, so that it does not
# starve the parallel phase's timing-sensitive tests (the slow-disk tests' 0.5 s send
# timeout judges a client thread that gets no CPU as a slow reader).
pytestmark = pytest.mark.alone

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "trunc_client.py"
BODY = 300_000  # more than one recv takes: the discard loop runs several times


def head(close: bool) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (BODY, extra)


def serve(lsock: socket.socket, mode: str, stop: threading.Event) -> None:
    """Accept and answer each GET: ``keep`` whole over keep-alive, ``close`` whole with
    Connection: close, ``cut`` two whole and the third half, then close (the client's
    warm-up takes a connection's first response: the cut one falls in its window), ``404``
    a 404 each time."""
    lsock.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = lsock.accept()
        except TimeoutError:
            continue
        threading.Thread(target=answer, args=(conn, mode), daemon=True).start()


def answer(conn: socket.socket, mode: str) -> None:
    with conn:
        try:
            respond(conn, mode)
        except OSError:  # the client exits with requests unread: a reset
            return


def respond(conn: socket.socket, mode: str) -> None:
    body = b"x" * BODY
    for n in range(1_000_000):
        if not conn.recv(4096):
            return
        if mode == "404":
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            continue
        if mode == "cut" and n == 2:
            conn.sendall(head(False) + body[: BODY // 2])
            return
        conn.sendall(head(mode == "close") + body)
        if mode == "close":
            return


def run_client(mode: str) -> subprocess.CompletedProcess[str]:
    lsock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(lsock, mode, stop), daemon=True)
    server.start()
    port = lsock.getsockname()[1]
    try:
        argv = [sys.executable, str(SCRIPT), "--port", str(port), "--conns", "3", "--secs", "1"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        server.join(timeout=5)
        lsock.close()


def counts(mode: str) -> dict[str, Any]:
    done = run_client(mode)
    assert done.returncode == 0, done.stderr
    got: dict[str, Any] = json.loads(done.stdout)
    return got


@pytest.mark.parametrize("mode", ["keep", "close"])
def test_trunc_client_counts_whole_responses_and_every_byte(mode: str) -> None:
    got = counts(mode)
    responses = got["responses"]
    assert responses > 10, got
    assert got["errors"] == {}, got
    per = len(head(mode == "close")) + BODY
    # The counted window starts and ends mid-response on each of the 3 connections.
    assert (responses - 3) * per <= got["bytes"] <= (responses + 3) * per, got
    if mode == "close":
        assert got["reconnects"] == responses, got
    else:
        assert got["reconnects"] == 0, got


def test_trunc_client_calls_a_cut_body_an_error() -> None:
    got = counts("cut")
    # A connection's third response, cut, is an error and ends it (in the counted window:
    # one cut in the warm-up is replaced by a new connection, whose third falls there).
    # Its second counts unless it came during the warm-up.
    assert got["errors"] == {"closed mid-response": 3}, got
    responses = got["responses"]
    assert responses <= 6, got


def test_trunc_client_stops_at_once_on_a_wrong_answer() -> None:
    # A 404 (a wrong --path) would come back on every new connection: no figure, no
    # 30 s of retries.
    done = run_client("404")
    assert done.returncode == 1
    assert "not a whole 200 response: b'HTTP/1.1 404 Not Found" in done.stderr
