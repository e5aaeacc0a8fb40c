"""--limit-rate, --limit-rate-after and --sndbuf on a real server, in every loop mode.

A download of 768 KiB with ``--limit-rate 256k --limit-rate-after 256k``: the first 256 KiB
come at once, the other 512 KiB at 256 KiB/s, so the body takes 2 s; it must take no less
than 90 % of that (the pacer never lets more through than the rate allows) and arrive intact.
The upper side is the issue's "within 10 %" plus slack for a loaded machine. The threads mode
refuses the flag at start (tests/test_cli.py); over TLS the pacer paces the plaintext.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect

RATE = 256 * 1024
AFTER = 256 * 1024
SIZE = 768 * 1024
PACED_SECONDS = (SIZE - AFTER) / RATE  # 2.0
LOOP_MODES = [p for p in backend_params() if p != "threads"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("paced")
    (d / "big.bin").write_bytes(os.urandom(SIZE))
    return d


def timed_get(port: int, path: str) -> tuple[bytes, float, float]:
    """The body, when its first AFTER bytes had come, and when the last one did."""
    with connect(port, timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        t_after = 0.0
        while chunk := s.recv(65536):
            data += chunk
            if not t_after and len(data) >= AFTER + 200:  # (+ the head)
                t_after = time.monotonic() - t0
        return bytes(data).partition(b"\r\n\r\n")[2], t_after, time.monotonic() - t0


def check_paced(server: ServerProcess, root: Path, failures: list[str] | None = None) -> None:
    """Download big.bin and check the pace; with ``failures``, record instead of raising
    (from a thread)."""
    try:
        body, t_after, total = timed_get(server.port, "/big.bin")
        assert body == (root / "big.bin").read_bytes()
        assert t_after < 0.5 * PACED_SECONDS, f"the first {AFTER} bytes took {t_after:.2f} s"
        assert total >= 0.9 * PACED_SECONDS, f"{SIZE} bytes in {total:.2f} s: above the rate"
        assert total <= 1.1 * PACED_SECONDS + 0.5, f"{total:.2f} s: much slower than the rate"
    except (AssertionError, OSError) as exc:
        if failures is None:
            raise
        failures.append(repr(exc))


@pytest.mark.timed
@pytest.mark.parametrize("mode", LOOP_MODES)
def test_limit_rate_paces_a_download(mode: str, root: Path) -> None:
    failures: list[str] = []
    server = ServerProcess(
        root, mode, "--limit-rate", "256k", "--limit-rate-after", str(AFTER), "--status"
    )
    try:
        paced = threading.Thread(target=check_paced, args=(server, root, failures))
        paced.start()
        time.sleep(0.5 * PACED_SECONDS)
        # Meanwhile the loop serves others: the status page answers at once, and counts
        # the paced connection as writing.
        t0 = time.monotonic()
        status, _, _ = timed_get(server.port, "/_c10k/status")
        assert time.monotonic() - t0 < 1.0
        assert b"Writing: 1 " in status
        paced.join(10)
        assert not paced.is_alive()
        assert failures == []
    finally:
        server.stop()


def test_limit_rate_paces_over_tls(root: Path) -> None:
    server = ServerProcess(
        root, "epoll", "--limit-rate", "256k", "--limit-rate-after", "256k", tls=True
    )
    try:
        check_paced(server, root)
    finally:
        server.stop()


def server_sndbuf(port: int) -> int:
    """The server side's send buffer (ss's skmem tb) of our one connection to ``port``."""
    out = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    field = out.split("skmem:(", 1)[1].split(")", 1)[0]
    return int(next(x for x in field.split(",") if x.startswith("tb"))[2:])


@pytest.mark.parametrize("mode", backend_params())
def test_sndbuf_reaches_every_connection(mode: str, root: Path) -> None:
    server = ServerProcess(root, mode, "--sndbuf", "64k")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            s.recv(1)
            # Linux doubles the value for its bookkeeping (socket(7)); autotuning would
            # have grown it to megabytes for this download.
            assert server_sndbuf(server.port) == 2 * 64 * 1024
    finally:
        server.stop()


@pytest.mark.parametrize("mode", backend_params())
def test_closing_answer_bigger_than_the_socket_arrives_whole(mode: str, tmp_path: Path) -> None:
    # A cached file's closing response that a small send buffer cannot take in one write:
    # the readiness modes answer a one-shot client before it has a Session
    # (answer_at_accept), and hand the rest to one when the write falls short.
    body = os.urandom(200_000)
    (tmp_path / "mid.bin").write_bytes(body)
    server = ServerProcess(tmp_path, mode, "--sndbuf", "4k", "--cache-max-file-bytes", "262144")
    try:
        for _ in range(3):  # the first is a cache miss; then the memoized wire
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
                s.settimeout(10)
                s.connect(("127.0.0.1", server.port))
                s.sendall(b"GET /mid.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                time.sleep(0.2)  # the server's write meets a full socket
                data = bytearray()
                while chunk := s.recv(65536):
                    data += chunk
            head, _, got = bytes(data).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head[:80]
            assert b"Connection: close" in head
            assert got == body
    finally:
        _, _, err = server.stop()
        assert "Traceback" not in err, err[-3000:]
