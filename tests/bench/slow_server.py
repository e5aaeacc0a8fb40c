"""A deliberately slow static server for the bench's own tests (not a peer).

Serves files from ROOT over HTTP/1.1 keep-alive, one thread per connection; files larger
than 64 KiB are sent at ``--rate`` bytes/s, so modem users fall below 3/4 of their target
and the dkftpbench failure rule can be seen to fire.

    python slow_server.py ROOT PORT [--rate BYTES_PER_S]
"""

import argparse
import os
import socket
import threading
import time


def handle(conn: socket.socket, root: str, rate: float) -> None:
    with conn:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode().lstrip("/")
            full = os.path.join(root, os.path.basename(path))
            try:
                with open(full, "rb") as f:
                    body = f.read()
            except OSError:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            if len(body) <= 65536:
                conn.sendall(body)
                continue
            chunk = max(1, int(rate / 10))
            for i in range(0, len(body), chunk):
                conn.sendall(body[i : i + chunk])
                time.sleep(0.1)


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("root")
    a.add_argument("port", type=int)
    a.add_argument("--rate", type=float, default=2000.0)
    o = a.parse_args()
    srv = socket.create_server(("127.0.0.1", o.port), backlog=128)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, o.root, o.rate), daemon=True).start()


if __name__ == "__main__":
    main()
