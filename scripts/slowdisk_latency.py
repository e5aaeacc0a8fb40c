"""Issue 15's slow-disk scenario, measured: other clients' latency while cold downloads run.

A docroot on a slow disk (tests/faults/slowfs.py: a FUSE mirror whose every read of a big
file sleeps ``--delay`` seconds, 50 ms by default), four clients downloading different
8 MiB files that are not in the page cache, and a fifth fetching a small cached file every
10 ms on a keep-alive connection until the downloads end. Reported per mode, with the disk
pool (the default) and without it (``--io-threads 0``: file bodies read on the loop): the
fifth client's p50/p99/max latency, and what became of the downloads (an intact body, or
the error: a reset means the server judged its own slow disk a slow reader).

    .venv/bin/python scripts/slowdisk_latency.py [--modes epoll,uring,asyncio,uvloop]
        [--delay 0.05] [--size-mib 8] [--json out.json]

Needs FUSE (Debian fuse3 + libfuse3-3, the mfusepy package: the test extra) and root or
/dev/fuse access. One server at a time, on CPU 0 with the clients on CPU 1 when there are
two CPUs; nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "faults"))
from slowfs import SlowFS, fuse_unavailable  # noqa: E402

SMALL = b"x" * 512
EVERY = 0.010  # the fifth client's pause between requests


def start_server(root: Path, mode: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    pin = ["taskset", "-c", "0"] if (os.cpu_count() or 1) > 1 else []
    argv = [*pin, sys.executable, "-m", "c10k", "serve", str(root), "--bind", "127.0.0.1"]
    argv += ["--port", "0", "--backend", mode, "--workers", "1", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    m = re.search(rb"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
    if m is None:
        proc.kill()
        raise RuntimeError(f"c10k serve --backend {mode} did not start")
    return proc, int(m.group(1))


def download(port: int, path: str, want: bytes, out: dict[str, str]) -> None:
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = bytearray()
            while chunk := s.recv(1 << 20):
                data += chunk
        body = bytes(data).partition(b"\r\n\r\n")[2]
        out[path] = "intact" if body == want else f"{len(body)} of {len(want)} bytes"
    except OSError as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
    out[path] += f" in {time.monotonic() - t0:.1f} s"


def prober(port: int, stop: threading.Event, lat: list[float], errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/small.txt")
            resp = conn.getresponse()
            if resp.read() != SMALL or resp.status != 200:
                errors.append(f"status {resp.status}")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        lat.append(time.perf_counter() - t0)
        time.sleep(EVERY)
    conn.close()


def run_one(fs: SlowFS, files: dict[str, bytes], mode: str, pool: bool) -> dict[str, object]:
    proc, port = start_server(fs.mountpoint, mode, [] if pool else ["--io-threads", "0"])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/small.txt")
        assert conn.getresponse().read() == SMALL  # now in the server's memory
        conn.close()
        for name in files:
            fs.drop_cache(name)
        before = fs.stats()["bytes"]
        outcome: dict[str, str] = {}
        lat: list[float] = []
        errors: list[str] = []
        stop = threading.Event()
        probe = threading.Thread(target=prober, args=(port, stop, lat, errors))
        probe.start()
        loads = [
            threading.Thread(target=download, args=(port, f"/{n}", body, outcome))
            for n, body in files.items()
        ]
        t0 = time.monotonic()
        for t in loads:
            t.start()
        for t in loads:
            t.join()
        took = time.monotonic() - t0
        stop.set()
        probe.join()
        from_disk = fs.stats()["bytes"] - before
    finally:
        proc.terminate()
        proc.wait(10)
    lat.sort()
    ms = [x * 1000 for x in lat]
    return {
        "mode": mode,
        "pool": pool,
        "requests": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
        "probe_errors": errors[:5],
        "downloads": outcome,
        "seconds": round(took, 2),
        "read_from_disk_mib": round(from_disk / 2**20, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="epoll,uring,asyncio,uvloop")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds per disk read (0.05)")
    ap.add_argument("--size-mib", type=int, default=8, help="each download's size (8)")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    if (why := fuse_unavailable()) is not None:
        print(f"no FUSE here: {why}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "small.txt").write_bytes(SMALL)
        files = {f"big{i}.bin": os.urandom(args.size_mib << 20) for i in range(4)}
        for name, body in files.items():
            (src / name).write_bytes(body)
        with SlowFS(src, Path(tmp) / "mnt", slow=["big*.bin"]) as fs:
            fs.command(f"delay {args.delay}")
            for mode in args.modes.split(","):
                for pool in (True, False):
                    r = run_one(fs, files, mode, pool)
                    results.append(r)
                    print(json.dumps(r), flush=True)
    print("\n| mode | disk pool | probe p50 | p99 | max | downloads |")
    print("|---|---|---:|---:|---:|---|")
    for r in results:
        dl = r["downloads"]
        ok = sum(v.startswith("intact") for v in dl.values())  # type: ignore[union-attr]
        print(
            f"| {r['mode']} | {'on' if r['pool'] else 'off (--io-threads 0)'} | "
            f"{r['p50_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms | {ok} of 4 intact |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
