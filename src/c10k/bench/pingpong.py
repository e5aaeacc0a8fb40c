"""A control for latency figures: the machine's own round trip, without any server.

Two short-lived Python processes that are not c10k, pinned where the bench pins the
server and the generator, bounce 64 bytes over a loopback TCP connection for a while and
report the round trip's p50/p99. The C1M scenario runs it beside its active client at
every level: if the control's p99 grows with the idle connections held as the active
client's does, what grows is the machine's wakeup path (scheduler, virtualisation,
kernel memory), not the server; if it stays flat, the server is to blame.
"""

from __future__ import annotations

import json
import subprocess
import sys

from c10k.bench.stats import Histogram

_ECHO = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := c.recv(64):
    c.sendall(data)
"""

_CLIENT = """
import json, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
c = socket.create_connection(("127.0.0.1", port))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * 64
rtts = []
end = time.perf_counter() + seconds
while (t := time.perf_counter()) < end:
    c.sendall(msg)
    got = 0
    while got < 64:
        got += len(c.recv(64 - got))
    rtts.append(time.perf_counter() - t)
print(json.dumps(rtts))
"""


def _pinned(cpu: int | None, script: str, *args: str) -> list[str]:
    argv = [sys.executable, "-c", script, *args]
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def round_trips(server_cpu: int | None, client_cpu: int | None, seconds: float) -> dict[str, float]:
    """Round trips for ``seconds``: {"round_trips", "p50_ms", "p99_ms"}."""
    with subprocess.Popen(
        _pinned(server_cpu, _ECHO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as echo:
        try:
            assert echo.stdout is not None
            assert echo.stderr is not None
            port = echo.stdout.readline().strip()
            if not port:
                raise RuntimeError(f"ping-pong echo did not start: {echo.stderr.read()[-300:]}")
            out = subprocess.run(
                _pinned(client_cpu, _CLIENT, port, str(seconds)),
                capture_output=True,
                text=True,
                check=True,
                timeout=seconds + 30,
            ).stdout
        finally:
            echo.kill()
    # The active client's percentiles come from a Histogram: the same one here, so the
    # two are read alike.
    hist = Histogram()
    for rtt in json.loads(out):
        hist.record_seconds(rtt)
    return {
        "round_trips": hist.count,
        "p50_ms": hist.percentile(50) / 1e3,
        "p99_ms": hist.percentile(99) / 1e3,
    }
