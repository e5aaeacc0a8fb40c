"""Instructions the server executes per keep-alive request, counted by callgrind.

    python scripts/instructions_per_request.py [--src DIR] [--backend epoll] [--requests 10000]

Wall-clock figures on a shared VM drift by 10 % between rounds; instruction counts do not.
This serves the built-in site under ``valgrind --tool=callgrind``, warms up with 2,000
keep-alive GETs of a cached file on one connection, zeroes the counters
(``callgrind_control -z``), runs ``--requests`` more, dumps (``callgrind_control -d``) and
prints user-space instructions per request. ``--src`` runs another source tree (e.g. a
``git worktree`` of an older commit) to compare. Needs valgrind (Debian package). The io_uring
mode does not run under valgrind.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
SMALL = b"0123456789" * 51 + b"AB"


def run(sock: socket.socket, n: int) -> None:
    for _ in range(n):
        sock.sendall(GET)
        got = b""
        while not got.endswith(SMALL):
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the server closed the connection")
            got += data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    parser.add_argument("--backend", default="epoll")
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "www")
        root.mkdir()
        (root / "small.txt").write_bytes(SMALL)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        out = Path(tmp, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
        argv += [sys.executable, "-m", "c10k", "serve", str(root), "--port", str(port)]
        argv += ["--workers", "1", "--backend", args.backend]
        env = dict(os.environ, PYTHONPATH=args.src)
        server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start under valgrind") from None
                    time.sleep(0.5)
            with sock:
                run(sock, 2000)
                subprocess.run(["callgrind_control", "-z"], capture_output=True, check=True)
                run(sock, args.requests)
                subprocess.run(["callgrind_control", "-d"], capture_output=True, check=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
        dumps = sorted(Path(tmp).glob("callgrind.out.*.1"))
        if not dumps:
            raise SystemExit("no callgrind dump was written")
        for line in dumps[0].read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
                print(f"{args.backend}: {total / args.requests:,.0f} instructions per request")
                return
        raise SystemExit("no totals in the callgrind dump")


if __name__ == "__main__":
    main()
