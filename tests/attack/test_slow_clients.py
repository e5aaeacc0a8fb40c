"""Slow and hostile clients without slowhttptest: one raw socket each, doing exactly one
bad thing, against a ``c10k serve`` subprocess with short timeouts.

- header trickle: a head sent one byte per second must get 408 at the header timeout,
  counted from the head's first byte: bytes arriving do not push the deadline (nginx
  client_header_timeout is likewise one timer for the whole head);
- slow reader: no progress for send-timeout closes the connection; steady progress does
  not; progress slower than --min-send-rate on average does;
- a client that pipelines 10,000 requests and reads nothing: the server's memory stays
  bounded (it stops reading while output is queued), and every response comes in order
  once the client reads;
- an endless header line: 431 at the head limit, not a growing buffer;
- an endless request body: the server answers and lingers, but for at most
  linger_timeout, even though the body never ends.
Knobs still missing from the CLI are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from pathlib import Path

import pytest
from _attack_support import SMALL, cli_accepts, read_head, rss_kib

from helpers import ServerProcess, backend_params, big_content, connect, read_response

pytestmark = pytest.mark.timed  # see conftest.SIBLING_MODES

BACKENDS = backend_params()


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def _stop(srv: ServerProcess) -> None:
    code, _, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-5000:]


def _trickle_until_answer(s: socket.socket, data: bytes, interval: float, limit: float) -> float:
    """Send ``data`` one byte every ``interval`` s until the server answers or closes;
    return the seconds from the first byte to the answer. Fails after ``limit`` s."""
    t0 = time.monotonic()
    for i, byte in enumerate(data):
        try:
            s.send(bytes([byte]))
        except OSError:  # closed (the answer is already in our receive buffer)
            return time.monotonic() - t0
        r, _, _ = select.select([s], [], [], interval)
        if r:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < limit, f"no answer after {i + 1} bytes"
    raise AssertionError("the whole trickle was sent without an answer")


TRICKLE = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"a" * 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_header_trickle_gets_408_at_header_timeout(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--header-timeout", "2")
    try:
        baseline = srv.fd_count()
        with connect(srv.port, timeout=5) as s:
            elapsed = _trickle_until_answer(s, TRICKLE, 0.5, limit=8)
            status, headers, _ = read_response(s, bytearray())
        assert status == 408
        assert headers.get("connection") == "close"
        # Deadline from the first byte (2 s; deadlines sit in 1 s buckets), not from the
        # last byte: a deadline reset by each byte would never fire while we trickle.
        assert 1.5 < elapsed < 4.5, elapsed
        assert srv.wait_fd_count(baseline) == baseline
    finally:
        _stop(srv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_header_trickle_after_keepalive_gets_408(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--header-timeout", "2", "--keepalive-timeout", "30")
    try:
        with connect(srv.port, timeout=5) as s:
            s.sendall(_get("/small.txt"))
            buf = bytearray()
            assert read_response(s, buf)[0] == 200
            elapsed = _trickle_until_answer(s, TRICKLE, 0.5, limit=8)
            status, _, _ = read_response(s, buf)
        assert status == 408
        assert elapsed < 4.5, elapsed
    finally:
        _stop(srv)


def _slow_socket(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_reader_without_progress_dropped_at_send_timeout(
    tmp_path: Path, docroot: Path, backend: str
) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "huge.bin").write_bytes(big_content() * 16)  # 16 MB: more than socket buffers
    srv = ServerProcess(root, backend, "--send-timeout", "2")
    try:
        baseline = srv.fd_count()
        with _slow_socket(srv.port) as s:
            s.sendall(_get("/huge.bin"))
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            # Read nothing more: the server's sends block; after 2 s without progress it
            # must close (socket and file fd), while we still hold our end.
            assert srv.wait_fd_count(baseline + 2, timeout=3) == baseline + 2
            t0 = time.monotonic()
            assert srv.wait_fd_count(baseline, timeout=8) == baseline
            assert time.monotonic() - t0 > 1.0  # not at once: the timeout did it
    finally:
        _stop(srv)


def _paced_read(
    srv: ServerProcess,
    s: socket.socket,
    chunk: int,
    interval: float,
    limit: float,
    want: int = 1 << 62,
) -> tuple[bytearray, bool, float | None]:
    """Read ``chunk`` bytes every ``interval`` s for at most ``limit`` s, watching the
    server's fd count. Returns the bytes, whether EOF came, and when the server let go
    of the connection (its fds back to the count before the request; None if not).
    Stops early once ``want`` bytes are in."""
    baseline = srv.fd_count() - 2  # this connection's socket and the file's fd
    buf = bytearray()
    t0 = time.monotonic()
    released = None
    while time.monotonic() - t0 < limit and len(buf) < want:
        got = 0
        while got < chunk and len(buf) < want:
            try:
                data = s.recv(min(chunk - got, want - len(buf)))
            except ConnectionResetError:  # dropped with RST (send timeout, min rate)
                if released is None and srv.wait_fd_count(baseline, timeout=2) <= baseline:
                    released = time.monotonic() - t0
                return buf, True, released
            if not data:
                return buf, True, released
            buf += data
            got += len(data)
        if released is None and srv.fd_count() <= baseline:
            # The kernel goes on delivering what the server queued before closing, so
            # the client sees the close only later: the server's side tells at once.
            released = time.monotonic() - t0
        time.sleep(interval)
    return buf, False, released


def _huge_root(tmp_path: Path, copies: int) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "huge.bin").write_bytes(big_content() * copies)
    return root


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_reader_with_progress_is_served(tmp_path: Path, backend: str) -> None:
    # The send timeout counts from the last progress (nginx send_timeout: "between two
    # successive write operations"), not from the start: 8 MB read at ~2 MB/s takes 4 s,
    # 4x the timeout. The file is bigger than the server's socket buffer (tcp_wmem max
    # 4 MB), so the server must see writability several times. The server sees progress
    # only when a third of that buffer has drained, so the pace is kept well above
    # 1.3 MB per send timeout.
    root = _huge_root(tmp_path, 8)
    srv = ServerProcess(root, backend, "--send-timeout", "1")
    try:
        whole = big_content() * 8
        with _slow_socket(srv.port) as s:
            s.sendall(_get("/huge.bin"))
            status, headers, first = read_head(s)
            assert (status, int(headers["content-length"])) == (200, len(whole))
            want = len(whole) - len(first)
            body, eof, _ = _paced_read(srv, s, 131072, 0.05, limit=30, want=want)
            first += body
            assert not eof, f"closed after {len(first)} of {len(whole)} bytes"
            assert len(first) == len(whole), "not all in 30 s"
            assert first == whole
    finally:
        _stop(srv)


@pytest.mark.parametrize(
    "backend",
    list(BACKENDS),
)
def test_slow_keepalive_after_blocked_response_uses_keepalive_timeout(
    tmp_path: Path, backend: str
) -> None:
    # A response bigger than the socket buffers makes the server wait for writability
    # (send timeout armed); once it is complete the idle connection must get the
    # keep-alive timeout (30 s), not die at the send timeout (1 s).
    root = _huge_root(tmp_path, 16)
    srv = ServerProcess(root, backend, "--send-timeout", "1", "--keepalive-timeout", "30")
    try:
        with connect(srv.port, timeout=10) as s:
            s.sendall(_get("/huge.bin"))
            status, _, body = read_response(s, bytearray())
            assert (status, len(body)) == (200, 16 * len(big_content()))
            time.sleep(2.5)  # idle: past the send timeout, well inside keep-alive
            s.sendall(_get("/huge.bin"))
            assert s.recv(100).startswith(b"HTTP/1.1 200"), "keep-alive closed early"
    finally:
        _stop(srv)


@pytest.mark.skipif(not cli_accepts("--min-send-rate"), reason="no --min-send-rate in the CLI")
@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_reader_below_min_send_rate_dropped(tmp_path: Path, backend: str) -> None:
    # ~500 KB/s: progress the server sees every ~2.6 s (1.3 MB drained), inside each 5 s
    # send timeout, but below the 2 MiB/s asked for; the 64 MB file would take two
    # minutes. The rate rule can only act after one send timeout, so the drop comes
    # between 5 s and 15 s; by the send timeout alone it would not come at all.
    root = _huge_root(tmp_path, 64)
    srv = ServerProcess(root, backend, "--send-timeout", "5", "--min-send-rate", "2097152")
    try:
        with _slow_socket(srv.port) as s:
            s.sendall(_get("/huge.bin"))
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            _, _, released = _paced_read(srv, s, 51200, 0.1, limit=15)
        assert released is not None, "a client far below --min-send-rate kept its slot"
        assert released > 4.0, released  # the rate rule, not an immediate close
    finally:
        _stop(srv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_pipeline_10000_unread_memory_bounded(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--send-timeout", "10")
    n = 10_000
    try:
        with connect(srv.port, timeout=5) as warm:  # prime cache and allocator
            warm.sendall(_get("/small.txt"))
            read_response(warm, bytearray())
        rss0 = rss_kib(srv.pid)
        payload = _get("/small.txt") * n  # 370 KB of requests, 6.5 MB of responses
        with connect(srv.port, timeout=10) as s:

            def send_all() -> None:
                try:
                    s.sendall(payload)
                except OSError:
                    pass  # the server closed, or the test gave up and closed

            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            time.sleep(2.0)  # the server fills our receive buffer and stops reading
            rss_held = rss_kib(srv.pid)
            # Then read: every response, in order, or a close (never a wrong byte).
            buf = bytearray()
            count = 0
            try:
                while count < n:
                    status, _, body = read_response(s, buf)
                    assert (status, body) == (200, SMALL)
                    count += 1
            except ConnectionError:
                pass  # closed by the server: allowed, after a correct prefix
            except TimeoutError:
                pytest.fail(f"stalled after {count} of {n} responses (nothing for 10 s)")
            finally:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)  # unblocks the sender
                sender.join(timeout=10)
        print(f"{backend}: RSS {rss0} -> {rss_held} KiB while held; {count} responses")
        # Bounded: the whole pipeline (370 KB in, 6.5 MB out) is never held at once.
        assert rss_held - rss0 < 4 * 1024, (rss0, rss_held)
        assert count == n or count > 0
    finally:
        _stop(srv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_pipelined_big_files_hold_few_fds(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend)
    try:
        baseline = srv.fd_count()
        with _slow_socket(srv.port) as s:
            s.sendall(_get("/big.bin") * 50)
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
            held = srv.fd_count() - baseline
        # nginx answers pipelined requests one at a time: its socket and one file. Were
        # each queued response to hold its own file fd, one client could take 64.
        assert held <= 4, f"one client holds {held} fds in the server"
    finally:
        _stop(srv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_endless_header_line_gets_431(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend)
    try:
        baseline = srv.fd_count()
        with connect(srv.port, timeout=5) as s:
            s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nX-Endless: ")
            sent = 0
            chunk = b"a" * 4096
            while sent < 64_000_000:
                r, w, _ = select.select([s], [s], [], 5)
                if r:
                    break
                assert w, "neither readable nor writable for 5 s"
                try:
                    sent += s.send(chunk)
                except OSError:
                    break
            status, headers, _ = read_response(s, bytearray())
        assert status == 431
        assert headers.get("connection") == "close"
        # Answered while we were still sending: loopback socket buffers take a few MB
        # before the 431 is seen (tcp_rmem max 32 MB), so the bound is not 8 KiB; a server
        # that buffered the line until it ended would answer only after all 64 MB.
        assert sent < 64_000_000, f"no answer before {sent} bytes of one header line"
        assert srv.wait_fd_count(baseline) == baseline
    finally:
        _stop(srv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_endless_request_line_gets_4xx(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend)
    try:
        with connect(srv.port, timeout=5) as s:
            s.sendall(b"GET /" + b"a" * 200_000)  # no end of line in sight
            status, _, _ = read_response(s, bytearray())
        assert status in (414, 431), status
    finally:
        _stop(srv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_endless_body_lingering_is_bounded(
    tmp_path: Path, docroot: Path, backend: str
) -> None:
    linger = 2.0
    config = tmp_path / "c10k.toml"
    config.write_text(f"linger_timeout = {linger}\n")
    if not cli_accepts("--config"):
        pytest.skip("no --config in the CLI (linger_timeout has no flag)")
    srv = ServerProcess(docroot, backend, "--config", str(config))
    try:
        baseline = srv.fd_count()
        with connect(srv.port, timeout=5) as s:
            s.sendall(
                b"POST /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000000\r\n\r\n"
            )
            t0 = time.monotonic()
            chunk = b"b" * 65536
            status = None
            buf = bytearray()
            closed_after = None
            while time.monotonic() - t0 < linger + 8:
                r, w, _ = select.select([s], [s], [], 1)
                if r:
                    try:
                        data = s.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        closed_after = time.monotonic() - t0
                        break
                    buf += data
                if w:
                    try:
                        s.send(chunk)  # the body never ends
                    except OSError:
                        closed_after = time.monotonic() - t0
                        break
            if buf:
                status = int(buf.split(b" ", 2)[1])
        assert status == 405, bytes(buf[:200])
        assert closed_after is not None, "still lingering after linger_timeout + 8 s"
        assert closed_after < linger + 3, closed_after
        assert srv.wait_fd_count(baseline) == baseline
    finally:
        _stop(srv)


@pytest.mark.skipif(not cli_accepts("--max-pipelined"), reason="no --max-pipelined in the CLI")
@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_max_pipelined_1_still_answers_all(docroot: Path, backend: str) -> None:
    # The rest of a pipelined batch must be answered without a new read event (an
    # edge-triggered backend would never send one for bytes already read).
    srv = ServerProcess(docroot, backend, "--max-pipelined", "1")
    try:
        with connect(srv.port, timeout=5) as s:
            s.sendall(_get("/small.txt") * 10)
            buf = bytearray()
            for _ in range(10):
                assert read_response(s, buf)[::2] == (200, SMALL)
    finally:
        _stop(srv)


@pytest.mark.skipif(
    not cli_accepts("--max-buffer-bytes"), reason="no --max-buffer-bytes in the CLI"
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_max_buffer_bytes_bounds_memory(tmp_path: Path, backend: str) -> None:
    # A response the client does not read parks the connection (16 MB: more than the
    # socket buffers take); 3 s of pipelined requests behind it (tens of MB) must not be
    # read into memory. The server may stop reading (the kernel's buffers fill and our
    # send blocks) or give up on the client and discard while lingering; either way its
    # RSS stays flat.
    root = tmp_path / "www"
    root.mkdir()
    (root / "small.txt").write_bytes(SMALL)
    (root / "huge.bin").write_bytes(big_content() * 16)
    srv = ServerProcess(root, backend, "--max-buffer-bytes", "16384")
    try:
        with connect(srv.port, timeout=5) as warm:
            warm.sendall(_get("/small.txt"))
            read_response(warm, bytearray())
        rss0 = rss_kib(srv.pid)
        s = _slow_socket(srv.port)
        try:
            s.setblocking(False)
            s.send(_get("/huge.bin"))
            filler = _get("/small.txt", "X-Pad: " + "p" * 4000 + "\r\n")
            sent = 0
            deadline = time.monotonic() + 3
            while sent < 200_000_000 and time.monotonic() < deadline:
                try:
                    sent += s.send(filler)
                except BlockingIOError:
                    time.sleep(0.05)
            rss1 = rss_kib(srv.pid)
        finally:
            s.close()
        print(f"{backend}: sent {sent} bytes behind a parked response; RSS {rss0} -> {rss1}")
        assert rss1 - rss0 < 8 * 1024, (sent, rss0, rss1)
    finally:
        _stop(srv)


def test__trickle_helper_measures_from_first_byte() -> None:
    # The helper itself: a peer that answers after 1 s of trickle reports ~1 s.
    a, b = socket.socketpair()
    with a, b:
        timer = threading.Timer(1.0, b.send, args=(b"x",))
        timer.start()
        elapsed = _trickle_until_answer(a, b"y" * 100, 0.2, limit=5)
        timer.join()
    assert 0.8 < elapsed < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_max_buffer_bytes_small_reads_answer_a_long_pipeline(
    docroot: Path, backend: str
) -> None:
    # --max-buffer-bytes below one request: the server reads that much at a time (the
    # rest waits in the kernel) and still answers every pipelined request, in order.
    srv = ServerProcess(docroot, backend, "--max-buffer-bytes", "512")
    try:
        reqs = [_get(f"/small.txt?{i}", "X-Pad: " + "p" * 600 + "\r\n") for i in range(40)]
        with connect(srv.port, timeout=10) as s:
            s.sendall(b"".join(reqs))
            buf = bytearray()
            for _ in reqs:
                status, _, body = read_response(s, buf)
                assert (status, len(body)) == (200, 512)
    finally:
        _stop(srv)
