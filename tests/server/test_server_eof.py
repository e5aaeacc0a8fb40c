"""A client's EOF is seen however it arrives, in every mode.

On an edge-triggered backend (epoll-et, rtsig) the kernel reports a readable socket once
per arrival: bytes left unread after a wakeup, and a FIN queued behind them, raise no
second edge. A connection that stops reading in the middle of a batch (an answer that
closes, read at accept or in the hot path) or reads on after a short read must still get
to the EOF, or it lingers until ``linger_timeout`` (30 s here) for a client that has
long gone. Over TLS, a closing answer shuts the write side after its close_notify; the
client's close must then close the connection, not be dropped as a second "end".
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect, read_response, recv_all

# Each is answered with a closing error after the server's first read of 64 KiB, the rest
# of it and the client's FIN still queued: the server lingers, reading and discarding.
REQUESTS = {
    "long-request-line": (b"GET /" + b"a" * 200_000, b"HTTP/1.1 414 "),
    "unread-body": (
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" + b"z" * 200_000,
        b"HTTP/1.1 405 ",
    ),
}


@pytest.mark.parametrize("after", ["at-accept", "after-a-request"])
@pytest.mark.parametrize("request_kind", list(REQUESTS))
@pytest.mark.parametrize("backend", backend_params())
def test_server_lingering_ends_at_the_clients_eof(
    tmp_path: Path, docroot: Path, backend: str, request_kind: str, after: str
) -> None:
    # at-accept: the server's first read (at accept, deferred) gets it; after-a-request: a
    # keep-alive request first, so the loop's own read path gets it.
    config = tmp_path / "c10k.toml"
    config.write_text("linger_timeout = 30\n")
    payload, status = REQUESTS[request_kind]
    srv = ServerProcess(docroot, backend, "--config", str(config))
    try:
        baseline = srv.fd_count()
        for _ in range(3):
            with connect(srv.port) as s:
                if after == "after-a-request":
                    s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                    status_line, _, body = read_response(s, bytearray())
                    assert (status_line, len(body)) == (200, 512)
                # Everything, then the FIN, queued before the server looks: stopped, it
                # wakes to one edge for all of it.
                os.kill(srv.proc.pid, signal.SIGSTOP)
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                finally:
                    os.kill(srv.proc.pid, signal.SIGCONT)
                data = recv_all(s, timeout=10)
            assert data.startswith(status), data[:100]
            assert srv.wait_fd_count(baseline, timeout=5) == baseline, (
                "the server still holds the connection: it missed the client's EOF"
            )
    finally:
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]


@pytest.mark.parametrize("backend", backend_params())
def test_server_tls_closing_answer_ends_when_the_client_closes(
    tmp_path: Path, docroot: Path, backend: str
) -> None:
    # Over TLS a closing answer (4xx) sends close_notify and shuts the write side, then
    # lingers; the client's close must end it then, as in plain HTTP.
    config = tmp_path / "c10k.toml"
    config.write_text("linger_timeout = 30\n")
    srv = ServerProcess(docroot, backend, "--config", str(config), tls=True)
    try:
        baseline = srv.fd_count()
        for raw, status in [
            (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", b"HTTP/1.1 505 "),
            (b"GET /small.txt HTTP/1.1\r\nHost : t\r\n\r\n", b"HTTP/1.1 400 "),
        ] + [(REQUESTS["unread-body"][0], b"HTTP/1.1 405 ")] * 5:
            # (the body's rest is in flight when the server stops reading to answer: on
            # rtsig only its first read's batch told it to read on, 1 run in 4)
            with connect(srv.port) as s:
                s.sendall(raw)
                data = recv_all(s, timeout=10)  # to the server's close_notify and FIN
            assert data.startswith(status), data[:100]
            assert srv.wait_fd_count(baseline, timeout=5) == baseline, (
                f"the server still holds the connection after {status!r} and the close"
            )
    finally:
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]
