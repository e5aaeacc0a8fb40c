"""The floor: a bare Python epoll loop that answers every CRLFCRLF with a canned response.

    python -m c10k.bench.baseline PORT ROOT        # serves ROOT/small.bin's bytes to every request

No parsing, no files, no timers, no error handling worth the name: it is not a server,
it is the measuring stick for "how much does the Python layer add over the kernel". A
careful Python server cannot beat it; the project's goal is to come within 10 % of it in
requests per busy CPU-second (docs/BENCHMARKS.md). Run it like any peer:

    ../shared/tools/vs-nginx -- python -m c10k.bench.baseline {port} {root}
    c10k bench keepalive --server 'bare={python} -m c10k.bench.baseline {port} {root}'
"""

from __future__ import annotations

import select
import socket
import sys
import time


def main(argv: list[str]) -> int:
    port, root = int(argv[0]), argv[1]
    with open(f"{root}/small.bin", "rb") as f:
        body = f.read()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
    resp = (
        b"HTTP/1.1 200 OK\r\nServer: bare\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\nDate: %s\r\n\r\n" % (len(body), date)
    ) + body
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    ls.setblocking(False)
    lfd = ls.fileno()
    ep = select.epoll()
    ep.register(lfd, select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    while True:
        for fd, _ in ep.poll():
            if fd == lfd:
                try:
                    while True:
                        c, _ = ls.accept()
                        c.setblocking(False)
                        conns[c.fileno()] = c
                        ep.register(c.fileno(), select.EPOLLIN)
                except BlockingIOError:
                    pass
                continue
            c = conns[fd]
            try:
                d = c.recv(65536)
            except OSError:
                d = b""
            if not d:
                ep.unregister(fd)
                c.close()
                del conns[fd]
                continue
            n = d.count(b"\r\n\r\n")
            if n:
                c.send(resp * n)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
