"""A separate client process that holds N keep-alive connections, each having completed a
request. Protocol on stdout/stdin: prints "held N" when all N got their response, waits
for a line on stdin, closes everything, prints "closed". Used by test_server_c10k.py."""

from __future__ import annotations

import errno
import resource
import select
import socket
import sys
import time

REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
WINDOW = 500  # connects in flight at once: stay under the listen backlog


def main() -> int:
    port, n = int(sys.argv[1]), int(sys.argv[2])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    got: dict[int, int] = {}
    done = 0
    started = 0
    deadline = time.monotonic() + 120
    while done < n:
        if time.monotonic() > deadline:
            print(f"timeout: {done} of {n}", flush=True)
            return 1
        while started < n and len(socks) - done < WINDOW:
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                print(f"connect failed: {errno.errorcode[err]}", flush=True)
                return 1
            socks[s.fileno()] = s
            got[s.fileno()] = -1  # -1: request not sent yet
            ep.register(s.fileno(), select.EPOLLOUT)
            started += 1
        for fd, _ev in ep.poll(1.0):
            s = socks[fd]
            if got[fd] < 0:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    print("connect error", flush=True)
                    return 1
                s.send(REQUEST)
                got[fd] = 0
                ep.modify(fd, select.EPOLLIN)
                continue
            data = s.recv(65536)
            if not data:
                print("server closed a connection", flush=True)
                return 1
            got[fd] += len(data)
            if got[fd] >= 600:  # head (~200 B) + 512-byte body
                ep.unregister(fd)
                done += 1
    print(f"held {done}", flush=True)
    sys.stdin.readline()
    for s in socks.values():
        s.close()
    ep.close()
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
