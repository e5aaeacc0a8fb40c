"""scripts/bare_sendfile.py, the Python floor docs/BENCHMARKS.md measures c10k against
(issue 15): it must serve the file whole, on one keep-alive connection, with each knob."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bare_sendfile.py"
SIZE = 3 * 1024 * 1024 + 5  # more than a socket takes at once: the EPOLLOUT path too


@pytest.mark.parametrize(
    "knobs",
    [
        [],
        ["--lowat", "262144", "--extra-calls", "10"],
        ["--extra-calls", "10", "--extra-spread"],
        ["--nodelay", "--syn-filter"],
    ],
)
def test_bare_sendfile_serves_the_file_whole_over_keep_alive(
    tmp_path: Path, knobs: list[str]
) -> None:
    data = os.urandom(SIZE)
    (tmp_path / "big.bin").write_bytes(data)
    port = free_port()
    argv = [sys.executable, str(SCRIPT), "--root", str(tmp_path), "--port", str(port)]
    proc = subprocess.Popen([*argv, "--file", "big.bin", *knobs])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.connect()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "bare_sendfile.py did not listen"
                time.sleep(0.05)
        for _ in range(3):  # one connection: the cork comes off after each body
            conn.request("GET", "/big.bin")
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Length") == str(SIZE)
            assert response.read() == data
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
