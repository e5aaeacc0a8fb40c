"""The Python load generator (``c10k.bench.client``) against a real loopback server."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from c10k.bench import client

SLOW = 0.3  # seconds each response takes


class _Slow(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        time.sleep(SLOW)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def slow_server() -> Iterator[tuple[str, int]]:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Slow) as srv:
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield srv.server_address[0], srv.server_address[1]
        finally:
            srv.shutdown()
            thread.join(timeout=5)


def test_open_loop_waits_for_what_arrived_in_the_window(
    slow_server: tuple[str, int], tmp_path: Path
) -> None:
    # 20 arrivals a second for 1 s against responses that take 0.3 s: the last six
    # arrive within a response time of the window's end. They are waited for and count
    # as served; closed at the window's end they counted as not served.
    host, port = slow_server
    cfg = {
        "mode": "open",
        "host": host,
        "port": port,
        "path": "/",
        "conns": 1,
        "keepalive": False,
        "rate": 20.0,
        "duration": 1.0,
        "warmup": 0.0,
        "timeout": 2.0,
        "max_lifetime": 30.0,
    }
    with client.LoadGenerator([cfg], tmp_path / "logs") as lg:
        lg.wait_all("ready", 10.0)
        lg.send({"cmd": "go"})
        (result,) = lg.wait_all("result", 20.0)
    assert result["attempted"] == 20, result
    assert result["ok"] == result["attempted"], result
    assert not result["errors"], result


BODY = 3 * (1 << 20) + 7  # over several recv calls of the plain path, and an odd tail
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY


class _Files(socketserver.BaseRequestHandler):
    """Keep-alive: answers each GET with HEAD and BODY bytes; after ``cut_after`` whole
    responses it sends half a body and closes (``cut_after`` None: never)."""

    cut_after: int | None = None

    def handle(self) -> None:
        try:
            self._serve(b"b" * BODY)
        except OSError:
            pass  # the generator stopped with a response under way

    def _serve(self, body: bytes) -> None:
        served = 0
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                data += chunk
            data = data.split(b"\r\n\r\n", 1)[1]
            if self.cut_after is not None and served == self.cut_after:
                self.request.sendall(HEAD + body[: BODY // 2])
                return
            self.request.sendall(HEAD + body)
            served += 1


def _files_run(port: int, tmp_path: Path, cut_after: int | None) -> dict[str, object]:
    _Files.cut_after = cut_after
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", port), _Files) as srv:
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        cfg = {
            "mode": "closed",
            "host": "127.0.0.1",
            "port": srv.server_address[1],
            "path": "/big.bin",
            "conns": 2,
            "keepalive": True,
            "duration": 1.0,
            "warmup": 0.0,
            "timeout": 5.0,
            "max_lifetime": 30.0,
            "discard": True,
        }
        try:
            with client.LoadGenerator([cfg], tmp_path / "logs") as lg:
                lg.wait_all("ready", 10.0)
                lg.send({"cmd": "go"})
                (result,) = lg.wait_all("result", 20.0)
        finally:
            srv.shutdown()
    return result


def test_discard_drops_bodies_and_counts_every_byte(tmp_path: Path) -> None:
    """Bodies dropped in the kernel (``discard``): each keep-alive response is whole
    (the next request goes out on time, so many are served in a second) and its bytes
    are counted, head and body, as the plain path counts them."""
    result = _files_run(0, tmp_path, None)
    ok = result["ok"]
    assert isinstance(ok, int)
    assert ok >= 10, result
    assert not result["errors"], result
    nbytes = result["bytes"]
    assert isinstance(nbytes, int)
    # Whole responses, plus at most one under way per connection at the window's ends.
    assert ok * BODY <= nbytes <= (ok + 2 * 2) * (len(HEAD) + BODY), result
    # Every body byte but what came with its head (one small read) went by MSG_TRUNC:
    # the plain path copies up to 256 KiB a read.
    discarded = result["discarded"]
    assert isinstance(discarded, int)
    assert nbytes - discarded <= (ok + 2 * 2) * client.HEAD_READ, result


def test_discard_counts_a_cut_body_as_an_error(tmp_path: Path) -> None:
    """A body cut short (the server closed half-way) is an error, never a response: each
    connection (the generator opens a new one after an error) has one whole response,
    then one cut."""
    result = _files_run(0, tmp_path, 1)
    ok = result["ok"]
    errors = result["errors"]
    assert isinstance(ok, int)
    assert isinstance(errors, dict)
    cut = errors.get("eof", 0) + errors.get("read", 0)
    assert cut >= 2, result
    assert ok - 2 <= cut <= ok + 2, result
