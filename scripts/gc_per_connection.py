"""Objects per connection that only the cyclic GC frees, and their types (issue 18).

Starts ``c10k serve`` (one process) with ``gc.DEBUG_SAVEALL`` set in it, makes N one-shot
connections (``Connection: close``) and N keep-alive requests on loopback, then has the
server count what the collector found: with no reference cycle left per connection, the
garbage is the start-up's (argparse) and does not grow with N.

    .venv/bin/python scripts/gc_per_connection.py [--n 5000] [-- extra c10k serve flags]

At 7689671, before the transports dropped their protocol at close, 3,000 one-shot
connections left 6,147 such objects (2,049 each of Session, Transport and a bound method;
over TLS also TLSLayer, SSLObject, MemoryBIO); now none. ``--backend asyncio`` showed
asyncio's own transport cycle (CPython 3.11) until 17809a9 broke it at connection_lost.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import free_port

SERVER = """
import collections, gc, signal, sys
from c10k.cli import main
gc.set_debug(gc.DEBUG_SAVEALL)
def report(*_):
    gc.collect()
    kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
    print("GARBAGE", len(gc.garbage), dict(kinds.most_common(8)), file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR2, report)
sys.exit(main(sys.argv[1:]))
"""


def get(port: int, close: bool, sock: socket.socket | None = None) -> socket.socket:
    s = sock or socket.create_connection(("127.0.0.1", port))
    extra = "Connection: close\r\n" if close else ""
    s.sendall(f"GET /f HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 512:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    if close:
        s.close()
    return s


def garbage(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(__import__("signal").SIGUSR2)
    assert proc.stderr is not None
    while line := proc.stderr.readline().decode():
        if line.startswith("GARBAGE"):
            return line.strip()
    return "GARBAGE ? (server gone)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("serve_args", nargs="*", help="extra c10k serve flags (after --)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gc-per-conn-"))
    (root / "f").write_bytes(b"x" * 512)
    port = free_port()
    argv = ["serve", str(root), "--bind", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, *argv, *args.serve_args], stderr=subprocess.PIPE
    )
    try:
        for _ in range(100):
            try:
                get(port, True)
                break
            except OSError:
                time.sleep(0.1)
        print("after start-up:     ", garbage(proc))
        for _ in range(args.n):
            get(port, True)
        print(f"after {args.n} one-shot:", garbage(proc))
        s = get(port, False)
        for _ in range(args.n):
            get(port, False, s)
        s.close()
        print(f"after {args.n} keep-alive:", garbage(proc))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
