"""The least Python a keep-alive file server can run per response: a floor for issue 15.

One epoll loop, level-triggered, the file's fd opened once, no HTTP parsing beyond the
blank line that ends a request, one precomputed head. Per request it does what nginx does
(``sendfile on; tcp_nopush on``): cork, write the head, sendfile the body until the socket
is full, uncork once it is all sent. It is not a server (every request gets the one file,
nothing is checked); it answers one question: how near nginx's bytes per busy CPU-0 second
can Python get on big files, when the kernel's work is the same and the interpreter does
almost nothing? c10k's figure is read against this one, measured the same way:

    ../shared/tools/vs-nginx --file big.bin --conns 1000 --secs 8 --rounds 5 -- \\
        .venv/bin/python scripts/bare_sendfile.py --root {root} --port {port} --file big.bin
    .venv/bin/python scripts/files_vs_nginx.py --size 1g --conns 1 --bare

No TCP_NOTSENT_LOWAT (as nginx), so it gives up c10k's slow-reader defence: a floor, not a
design. Two knobs measure what c10k adds to it, one at a time: ``--lowat BYTES`` sets that
unsent limit on every connection (c10k starts a connection at 256 KiB), and
``--extra-calls N`` makes N small Python method calls per response (three attribute loads,
a list index and a dict lookup each), a yardstick for what Python costs per response. With
``--extra-spread`` each connection has its own N objects, as a server's per-connection
state is: a response then touches objects that other responses have not just touched.
``--nodelay`` sets TCP_NODELAY on every connection (c10k does, and nginx does on kept
connections: without it Nagle holds each response's last, partial segment until the
client's ACK, which on loopback moves that send to the client's CPU). ``--syn-filter``
attaches c10k admission's SYN-drop filter to the listener, so that every accepted socket
inherits it (a filter attached while connections arrive stays on those sockets).
"""

from __future__ import annotations

import argparse
import os
import select
import socket

CORK = socket.TCP_CORK
TCP = socket.IPPROTO_TCP
NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


class Work:
    """One small object of the ``--extra-calls`` yardstick."""

    def __init__(self, i: int) -> None:
        self.a, self.b, self.c = i, [i], {"k": i}

    def step(self, x: int) -> int:
        return x + self.a + self.b[0] + self.c["k"]


def spend(work: list[Work]) -> int:
    total = 0
    for w in work:
        total = w.step(total)
    return total


def head(size: int) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\nServer: bare\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()


def serve(
    port: int, path: str, lowat: int, extra_calls: int, spread: bool, nodelay: bool, filt: bool
) -> None:
    ffd = os.open(path, os.O_RDONLY)
    size = os.fstat(ffd).st_size
    top = head(size)
    lsock = socket.create_server(("127.0.0.1", port), backlog=4096)
    if nodelay:  # inherited by every accepted socket, as c10k sets it
        lsock.setsockopt(TCP, socket.TCP_NODELAY, 1)
    if filt:  # c10k admission's SYN filter, dropping next to none: accepted sockets inherit it
        from c10k.core.listener import drop_syns

        drop_syns(lsock, 1e-9)
    lsock.setblocking(False)
    lfd = lsock.fileno()
    ep = select.epoll()
    ep.register(lfd, select.EPOLLIN)
    socks: dict[int, socket.socket] = {}
    left: dict[int, int] = {}  # fd -> offset of what the socket has not taken yet
    shared = [Work(i) for i in range(extra_calls)]
    own: dict[int, list[Work]] = {}  # fd -> its connection's objects (--extra-spread)
    while True:
        for fd, ev in ep.poll():
            if fd == lfd:
                accept(lsock, ep, socks, lowat)
            elif ev & select.EPOLLOUT:
                send(fd, socks, left, ep, ffd, size, left[fd])
            else:
                try:
                    data = os.read(fd, 4096)
                except ConnectionError:
                    data = b""
                if not data:
                    close(fd, socks, left, ep)
                elif data.endswith(b"\r\n\r\n"):
                    socks[fd].setsockopt(TCP, CORK, 1)
                    os.write(fd, top)
                    if shared:
                        work = shared
                        if spread:
                            work = own.get(fd) or own.setdefault(
                                fd, [Work(i) for i in range(extra_calls)]
                            )
                        spend(work)
                    send(fd, socks, left, ep, ffd, size, 0)


def accept(
    lsock: socket.socket, ep: select.epoll, socks: dict[int, socket.socket], lowat: int
) -> None:
    while True:
        try:
            conn, _ = lsock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        if lowat:
            conn.setsockopt(TCP, NOTSENT_LOWAT, lowat)
        socks[conn.fileno()] = conn
        ep.register(conn.fileno(), select.EPOLLIN)


def send(
    fd: int,
    socks: dict[int, socket.socket],
    left: dict[int, int],
    ep: select.epoll,
    ffd: int,
    size: int,
    offset: int,
) -> None:
    """Send from ``offset`` until the socket is full (then wait for EPOLLOUT) or the body
    is out (then uncork, and wait for the next request)."""
    try:
        while offset < size:
            n = os.sendfile(fd, ffd, offset, size - offset)
            if n == 0:
                break
            offset += n
    except BlockingIOError:
        pass
    except ConnectionError:
        close(fd, socks, left, ep)
        return
    if offset < size:
        if fd not in left:
            ep.modify(fd, select.EPOLLOUT)
        left[fd] = offset
        return
    socks[fd].setsockopt(TCP, CORK, 0)
    if left.pop(fd, None) is not None:
        ep.modify(fd, select.EPOLLIN)


def close(fd: int, socks: dict[int, socket.socket], left: dict[int, int], ep: select.epoll) -> None:
    left.pop(fd, None)
    ep.unregister(fd)
    socks.pop(fd).close()


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--root", required=True)
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--file", required=True, help="the file every request gets, under --root")
    a.add_argument("--lowat", type=int, default=0, help="TCP_NOTSENT_LOWAT per connection")
    a.add_argument("--extra-calls", type=int, default=0, help="Python calls per response")
    a.add_argument("--extra-spread", action="store_true", help="objects per connection")
    a.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on every connection")
    a.add_argument("--syn-filter", action="store_true", help="admission's SYN filter on")
    o = a.parse_args()
    path = os.path.join(o.root, o.file)
    serve(o.port, path, o.lowat, o.extra_calls, o.extra_spread, o.nodelay, o.syn_filter)


if __name__ == "__main__":
    main()
