"""Transport and Protocol (c10k.core.transport) on every backend, over real socketpairs.

The transport owns one end of a socketpair (a bare fd); the test holds the other end and
a recording protocol, and drives the loop until a condition holds.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _core_support import BACKEND_PARAMS, Watchdog, drain_socket

from c10k.core import FileRegion, Loop, Protocol, Transport, bind_socket, serve
from c10k.core.transport import TURN_SHARE


@pytest.fixture(params=BACKEND_PARAMS)
def loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    lp = Loop(request.param)
    yield lp
    for cb in lp.callbacks():  # transports own their fds: close what a test left open
        transport = getattr(cb, "__self__", None)
        if isinstance(transport, Transport):
            transport.abort()
    lp.close()


class Recorder(Protocol):
    def __init__(self, reply: Callable[[bytes], bytes | None] | None = None) -> None:
        self.events: list[str] = []
        self.data = b""
        self.reply = reply
        self.lost: list[BaseException | None] = []

    def data_received(self, data: bytes) -> bytes | None:
        self.data += data
        return self.reply(data) if self.reply else None

    def eof_received(self) -> None:
        self.events.append("eof")
        self.transport.close()

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


@pytest.fixture
def pair() -> Iterator[Callable[[], tuple[int, socket.socket]]]:
    peers: list[socket.socket] = []

    def make() -> tuple[int, socket.socket]:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        peers.append(b)
        return a.detach(), b

    yield make
    for b in peers:
        b.close()


def spin(loop: Loop, until: Callable[[], bool], seconds: float = 10.0) -> None:
    """Run loop turns until ``until()`` holds (fails after ``seconds``)."""
    deadline = time.monotonic() + seconds

    def check() -> None:
        if until() or time.monotonic() > deadline:
            loop.stop()
        else:
            loop.call_later(0.001, check)

    loop.call_soon(check)
    with Watchdog(loop, seconds + 5):
        loop.run()
    assert until(), "condition not reached"


def read_all(sock: socket.socket, n: int, seconds: float = 10.0) -> bytes:
    sock.setblocking(True)
    sock.settimeout(seconds)
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    sock.setblocking(False)
    return out


def test_core_transport_reply_is_written(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder(reply=lambda d: d.upper())
    Transport(loop, fd, proto)
    peer.send(b"hello")
    spin(loop, lambda: proto.data == b"hello")
    assert read_all(peer, 5) == b"HELLO"


def test_core_transport_queues_what_the_socket_does_not_take(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    big = os.urandom(8 << 20)
    t.write(big)
    assert proto.events == ["pause"]  # before write returned
    assert t.get_write_buffer_size() > 0
    assert t.pending_bytes() >= t.get_write_buffer_size()
    got = bytearray()

    def drained() -> bool:
        try:
            got.extend(peer.recv(1 << 20))
        except BlockingIOError:
            pass
        return proto.events == ["pause", "resume"]

    spin(loop, drained)
    got += read_all(peer, len(big) - len(got))
    assert bytes(got) == big


def test_core_transport_sends_regions_in_order(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    t = Transport(loop, fd, Recorder())
    released: list[int] = []
    with tempfile.TemporaryFile() as f:
        content = b"".join(b"X%06dXX\n" % i for i in range(100_000))
        f.write(content)
        f.flush()
        region = FileRegion(
            os.dup(f.fileno()), 10, 500_000, closer=lambda fd: (os.close(fd), released.append(1))
        )
        t.writelines([b"head:", region, b":tail"])
        total = 5 + 500_000 + 5
        got = bytearray()

        def all_in() -> bool:
            try:
                got.extend(peer.recv(1 << 20))
            except BlockingIOError:
                pass
            return len(got) >= total

        spin(loop, all_in)
    assert bytes(got) == b"head:" + content[10:500_010] + b":tail"
    assert released == [1]


def test_core_transport_close_waits_for_the_queue(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    big = b"z" * (4 << 20)
    t.write(big)
    t.close()
    assert not t.closed
    assert proto.lost == []
    got = bytearray()

    def done() -> bool:
        try:
            data = peer.recv(1 << 20)
            got.extend(data)
            return not data
        except BlockingIOError:
            return False

    spin(loop, done)
    assert len(got) == len(big)
    assert t.closed
    assert proto.lost == [None]


def test_core_transport_write_eof_then_reads_on(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    t.write(b"bye")
    t.write_eof()
    assert read_all(peer, 10, seconds=5) == b"bye"  # then EOF
    peer.send(b"still talking")
    spin(loop, lambda: proto.data == b"still talking")
    peer.shutdown(socket.SHUT_WR)
    spin(loop, lambda: t.closed)
    assert proto.events == ["eof"]


def test_core_transport_abort_reset_drops_the_queue(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    t.write(b"q" * (8 << 20))
    t.abort(reset=True)
    assert t.closed
    assert proto.lost == [None]
    assert drain_socket(peer) < 8 << 20


def test_core_transport_pause_reading_holds_bytes_in_the_kernel(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    t.pause_reading()
    assert not t.reading
    peer.send(b"waiting")
    loop.call_later(0.1, loop.stop)
    loop.run()
    assert proto.data == b""
    t.resume_reading()  # an edge-triggered backend must read what came while paused
    spin(loop, lambda: proto.data == b"waiting")


def test_core_transport_protocol_error_closes_the_connection(loop: Loop, pair: Any) -> None:
    fd, peer = pair()

    def bug(data: bytes) -> bytes:
        raise ValueError("protocol bug")

    proto = Recorder(reply=bug)
    t = Transport(loop, fd, proto)
    peer.send(b"x")
    spin(loop, lambda: t.closed)
    assert isinstance(proto.lost[0], ValueError)


def test_core_transport_peer_reset_is_a_quiet_close(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    peer.close()
    spin(loop, lambda: t.closed)
    assert proto.events == ["eof"]


def test_core_transport_write_after_close_is_an_error(loop: Loop, pair: Any) -> None:
    fd, _peer = pair()
    t = Transport(loop, fd, Recorder())
    t.write(b"x" * (8 << 20))
    t.close()
    with pytest.raises(RuntimeError, match="after close"):
        t.write(b"more")
    t.abort()
    t.write(b"ignored once closed")  # closed: dropped, no error


def test_core_transport_serve_accepts_into_protocols(loop: Loop) -> None:
    sock = bind_socket("127.0.0.1", 0)
    acceptor = serve(loop, sock, lambda: Recorder(reply=lambda d: b"<" + d + b">"))
    try:
        with socket.create_connection(sock.getsockname()[:2], timeout=5) as c:
            c.sendall(b"ping")
            got = b""

            def answered() -> bool:
                nonlocal got
                c.setblocking(False)
                try:
                    got += c.recv(100)
                except BlockingIOError:
                    pass
                return got == b"<ping>"

            spin(loop, answered)
    finally:
        acceptor.close()


def test_core_transport_read_size_bounds_each_read(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    sizes: list[int] = []

    class Small(Transport):
        __slots__ = ()
        read_size = 1000

    proto = Recorder(reply=lambda d: sizes.append(len(d)) or None)  # type: ignore[func-returns-value]
    Small(loop, fd, proto)
    peer.send(b"y" * 5000)
    spin(loop, lambda: len(proto.data) == 5000)
    assert max(sizes) <= 1000


class OneShot(Recorder):
    """Answers the first bytes and closes: a one-request client's server side."""

    def data_received(self, data: bytes) -> bytes | None:
        self.data += data
        self.transport.write(data.upper())
        self.transport.close()
        return None


def test_core_transport_read_first_answers_without_watching(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    peer.send(b"hello")  # already there, as after TCP_DEFER_ACCEPT
    proto = OneShot()
    transport = Transport(loop, fd, proto, register=False)
    assert not loop.watching(fd)
    transport.read_first()
    assert proto.data == b"hello"
    assert transport.closed
    assert proto.lost == [None]
    assert not loop.watching(fd)  # answered and closed without entering the backend
    assert read_all(peer, 5) == b"HELLO"


def test_core_transport_read_first_watches_when_nothing_is_there(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder(reply=lambda d: d.upper())
    transport = Transport(loop, fd, proto, register=False)
    transport.read_first()  # nothing to read yet: watched from now on
    assert loop.watching(fd)
    assert not transport.closed
    peer.send(b"later")
    spin(loop, lambda: proto.data == b"later")
    assert read_all(peer, 5) == b"LATER"


def test_core_transport_read_first_keeps_a_partial_write_queued(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    big = b"x" * (4 << 20)  # more than the socketpair takes at once
    peer.send(b"go")
    proto = Recorder(reply=lambda d: big)
    transport = Transport(loop, fd, proto, register=False)
    transport.read_first()
    assert "pause" in proto.events  # the rest is queued, and the fd is watched for it
    assert loop.watching(fd)
    assert receive(loop, peer, len(big), lambda: True) == big
    assert "resume" in proto.events
    assert transport.closed is False


def test_core_transport_read_first_takes_bytes_read_already(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    proto = Recorder(reply=lambda d: d.upper())
    transport = Transport(loop, fd, proto, register=False)
    transport.read_first(b"early")  # what the caller read from the fd before
    assert proto.data == b"early"
    assert read_all(peer, 5) == b"EARLY"
    assert loop.watching(fd)  # still open: watched for the next bytes
    peer.send(b"next")
    spin(loop, lambda: proto.data == b"earlynext")


def test_core_transport_watch_registers_without_reading(loop: Loop, pair: Any) -> None:
    fd, peer = pair()
    peer.send(b"waiting")
    proto = Recorder()
    transport = Transport(loop, fd, proto, register=False)
    transport.watch()
    assert loop.watching(fd)
    assert proto.data == b""  # not read by watch(): the loop reads it
    spin(loop, lambda: proto.data == b"waiting")
    transport.watch()  # a second call changes nothing
    transport.close()
    transport.watch()  # nor one after close
    assert not loop.watching(fd)


def test_core_transport_close_leaves_no_reference_cycle(loop: Loop, pair: Any) -> None:
    # The protocol keeps its transport (Protocol.connection_made); a closed transport
    # drops its protocol, so refcounting frees both at once, not the cyclic GC later.
    import gc
    import weakref

    fd, peer = pair()
    seen: list[bytes] = []  # (the spin condition must not keep the protocol alive)
    proto = Recorder(reply=lambda d: seen.append(d) or d)
    transport = Transport(loop, fd, proto)
    peer.send(b"x")
    spin(loop, lambda: seen == [b"x"])
    gone = weakref.ref(proto)
    gc.disable()
    try:
        transport.close()
        assert proto.lost == [None]
        del proto, transport
        assert gone() is None
    finally:
        gc.enable()


# -- send_file: a head and a file region, flat when that is one write and one sendfile ------
def file_with(content: bytes) -> Any:
    f = tempfile.TemporaryFile()  # noqa: SIM115  # (the caller's with closes it)
    f.write(content)
    f.flush()
    return f


def receive(loop: Loop, peer: socket.socket, total: int, done: Callable[[], bool]) -> bytes:
    """Run the loop until ``total`` bytes came out of ``peer`` and ``done()`` holds."""
    got = bytearray()

    def all_in() -> bool:
        try:
            while chunk := peer.recv(1 << 20):
                got.extend(chunk)
        except BlockingIOError:
            pass
        return len(got) >= total and done()

    spin(loop, all_in)
    return bytes(got)


@pytest.mark.parametrize(
    ("head_size", "size"),
    [(200, 50_000), (200, 1 << 20), (4 << 20, 50_000)],
    ids=["all-at-once", "region-blocks", "head-blocks"],
)
def test_core_transport_send_file_sends_the_head_then_the_region(
    loop: Loop, pair: Any, head_size: int, size: int
) -> None:
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    released: list[int] = []
    content = os.urandom(size + 10)
    head = os.urandom(head_size)
    with file_with(content) as f:
        region = FileRegion(
            os.dup(f.fileno()), 10, size, closer=lambda fd: (os.close(fd), released.append(1))
        )
        t.send_file(head, region)
        blocked = proto.events == ["pause"]  # (said before send_file returned)
        assert blocked == (head_size + size > 200_000)  # (a socketpair holds ~200 KB)
        got = receive(loop, peer, head_size + size, lambda: not blocked or "resume" in proto.events)
    assert got == head + content[10 : 10 + size]
    assert released == [1]
    assert proto.events == (["pause", "resume"] if blocked else [])
    assert not t.closed


def test_core_transport_send_file_of_a_file_that_shrank_closes(loop: Loop, pair: Any) -> None:
    """The region promises more than the file has: what there is goes out, then the
    connection closes (its length was promised), the region released."""
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    released: list[int] = []
    content = os.urandom(1000)
    with file_with(content) as f:
        region = FileRegion(
            os.dup(f.fileno()), 0, 50_000, closer=lambda fd: (os.close(fd), released.append(1))
        )
        t.send_file(b"head:", region)
        got = receive(loop, peer, 5 + 1000, lambda: bool(proto.lost))
    assert got == b"head:" + content
    assert released == [1]
    assert t.closed


def test_core_transport_send_file_of_a_cold_region_waits_for_the_disk_pool(
    loop: Loop, pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region the kernel says is not in memory is read in the loop's pool first (the
    general path), never sent from the loop thread on the spot."""
    from c10k.core import diskio

    monkeypatch.setattr(diskio, "resident", lambda fd, offset, count: False)
    fd, peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    cold = diskio.COUNTS.cold
    content = os.urandom(50_000)
    with file_with(content) as f:
        region = FileRegion(os.dup(f.fileno()), 0, 50_000, closer=os.close)
        t.send_file(b"head:", region)
        assert diskio.COUNTS.cold == cold + 1  # handed to the pool
        got = receive(loop, peer, 5 + 50_000, lambda: "resume" in proto.events)
    assert got == b"head:" + content
    assert proto.events == ["pause", "resume"]  # (queued while the pool read)


def tcp_pair() -> tuple[int, socket.socket]:
    """A loopback TCP connection: our end as a bare nonblocking fd with TCP_NODELAY (as
    c10k's listeners set it), and the peer's socket."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        peer = socket.create_connection(lsock.getsockname())
        ours, _ = lsock.accept()
    ours.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ours.setblocking(False)
    peer.setblocking(False)
    return ours.detach(), peer


def data_segments_out(fd: int) -> int:
    """TCP_INFO's tcpi_data_segs_out (Linux 4.6+): segments with data this socket sent."""
    s = socket.socket(fileno=fd)
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    finally:
        s.detach()
    return int.from_bytes(info[156:160], "little")


@pytest.mark.parametrize("cork", ["libc", "socket-object"])
def test_core_transport_send_file_head_and_small_body_share_one_pushed_segment(
    loop: Loop, monkeypatch: pytest.MonkeyPatch, cork: str
) -> None:
    """Over TCP with TCP_NODELAY: the head and a body smaller than a segment leave as one
    segment (corked together: set_cork inlined, or its path without ctypes), and it is
    pushed at once (nothing else is in flight: no ACK would release it)."""
    from c10k.core import transport

    if cork == "socket-object":
        monkeypatch.setattr(transport, "CORK", None)
    fd, peer = tcp_pair()
    with peer:
        t = Transport(loop, fd, Recorder())
        with file_with(b"b" * 100) as f:
            t.send_file(b"h" * 200, FileRegion(os.dup(f.fileno()), 0, 100, closer=os.close))
            got = receive(loop, peer, 300, lambda: True)
        assert got == b"h" * 200 + b"b" * 100
        assert data_segments_out(fd) == 1
        t.close()


def test_core_transport_send_file_whose_cork_fails_releases_the_region(
    loop: Loop, pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error from the socket before the head went out (the cork refused) is the
    connection's error like any other: the region is released, the connection closed."""
    from c10k.core import transport

    def refuse(fd: int, on: bool) -> None:
        raise OSError(9, "Bad file descriptor")

    # (set_cork's path, taken without ctypes; the inlined libc call's result is not read:
    # it fails only where corking means nothing, or where the write fails next)
    monkeypatch.setattr(transport, "CORK", None)
    monkeypatch.setattr(transport, "set_cork", refuse)
    fd, _peer = pair()
    proto = Recorder()
    t = Transport(loop, fd, proto)
    released: list[int] = []
    with file_with(b"x" * 1000) as f:
        region = FileRegion(
            os.dup(f.fileno()), 0, 1000, closer=lambda fd: (os.close(fd), released.append(1))
        )
        t.send_file(b"head:", region)
        spin(loop, lambda: bool(proto.lost))
    assert released == [1]
    assert t.closed


def test_core_transport_a_socket_that_never_fills_gets_a_share_per_turn(
    loop: Loop, pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader as fast as sendfile never fills its socket (loopback, a proxy on the same
    host): the transport sends it ``TURN_SHARE`` bytes of a file per loop turn, then lets
    the others run, and goes on at the next turn (posted, on an edge-triggered backend,
    where no new edge comes) until the whole file is out. Here sendfile takes every byte
    it is offered, as such a socket does, without sending anything."""
    calls: list[int] = []

    def takes_all(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append(count)
        return count

    size = 8 * TURN_SHARE + 12345
    with file_with(b"z" * size) as f:
        fd, _peer = pair()
        rec = Recorder()
        t = Transport(loop, fd, rec)
        released: list[int] = []
        region = FileRegion(os.dup(f.fileno()), 0, size, closer=released.append)
        monkeypatch.setattr(os, "sendfile", takes_all)
        t.writelines([region])
        assert sum(calls) == TURN_SHARE, "one turn sent more than its share"
        assert rec.events == ["pause"]
        seen: list[int] = []
        loop.call_soon(lambda: seen.append(sum(calls)))  # another callback's turn
        spin(loop, lambda: rec.events == ["pause", "resume"])
    assert sum(calls) == size
    assert len(seen) == 1
    assert TURN_SHARE <= seen[0] < size, "the loop ran nothing else meanwhile"
    assert len(released) == 1
    os.close(released[0])
