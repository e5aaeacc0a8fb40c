"""The balancers' own record of a ``c10k bench cluster`` run: which requests failed where.

Theory of operation
-------------------
The bench's clients see that a request failed, not where it went. The balancer knows, so
each run has it log every request: HAProxy to its stdout (``log stdout format raw``, one
line per request with the server, the timers, the status and the termination state, see
``HAPROXY_LOG_FORMAT``), nginx to an access log with ``$upstream_addr`` and
``$upstream_status`` and its error log at ``info``. Around the kill the bench also reads
HAProxy's per-server counters (``show stat`` on its stats socket).

Why counters as well as the log: when a request that HAProxy sent over a reused keep-alive
connection to a host finds that connection dead, and it is not the client connection's
first request, HAProxy closes the client connection without a response and without a log
line, so that the client retries (haproxy src/http_ana.c, ``abort_keep_alive``: "The client
is required to retry", as RFC 9112 section 9.3.1.1 allows for idempotent requests). The
bench's client does not retry (it counts what a strict client sees), so such a request is a
failure with no log line; HAProxy still counts it against the server (``eresp``, response
errors; refused connects are ``econ``). So "requests the balancer sent to the killed host
that were not answered" is, for HAProxy, the killed server's ``econ + eresp`` over the
kill phase; for nginx, the access-log attempts on the killed host's address that did not
get a 2xx (nginx logs every request, and answers 502 when no retry is allowed).
"""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

# %[date(0,us)]: when the line is written (the request's end), in microseconds; %cp: the
# client's port (the bench's socket); %s: the server; the five timers (-1: never got
# there); %ST: status; %tsc: termination state (e.g. SH--: the server aborted, SC--: the
# connection to it failed); %rc: retries.
HAPROXY_LOG_FORMAT = "%[date(0,us)] %cp %s %TR/%Tw/%Tc/%Tr/%Ta %ST %tsc %rc"
# "|" between fields: with retries, $upstream_addr and $upstream_status are lists ("a, b")
NGINX_LOG_FORMAT = "$msec|$remote_port|$upstream_addr|$upstream_status|$status|$request_time"
COUNTERS = ("stot", "econ", "eresp", "srv_abrt", "wretr", "wredis")


def haproxy_counters(stats: Path) -> dict[str, dict[str, int]]:
    """``show stat`` per server name: the COUNTERS (empty when the socket does not answer)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(stats))
            s.sendall(b"show stat\n")
            out = b"".join(iter(lambda: s.recv(65536), b"")).decode()
    except OSError:
        return {}
    rows = csv.DictReader(io.StringIO(out.lstrip("# ")))
    return {
        r["svname"]: {k: int(r[k] or 0) for k in COUNTERS}
        for r in rows
        if r.get("svname") not in (None, "FRONTEND", "BACKEND")
    }


def haproxy_unanswered(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], server: str
) -> dict[str, int]:
    """The server's counters' growth between two readings, and ``unanswered`` (econ+eresp)."""
    b, a = before.get(server, {}), after.get(server, {})
    grown = {k: a.get(k, 0) - b.get(k, 0) for k in COUNTERS}
    grown["unanswered"] = grown["econ"] + grown["eresp"]
    return grown


def nginx_unanswered(access_log: Path, address: str, t0: float, t1: float) -> dict[str, int]:
    """Attempts nginx made on ``address`` (host:port) between wall times t0 and t1, and
    how many got no 2xx (``unanswered``)."""
    sent = unanswered = 0
    for fields in _nginx_lines(access_log):
        if not t0 <= float(fields[0]) <= t1:
            continue
        addrs = [a.strip() for a in fields[2].split(",")]
        codes = [c.strip() for c in fields[3].split(",")]
        for addr, code in zip(addrs, codes, strict=False):
            if addr == address:
                sent += 1
                unanswered += not code.startswith("2")
    return {"stot": sent, "unanswered": unanswered}


def _nginx_lines(access_log: Path) -> list[list[str]]:
    fields = [line.split("|") for line in _read(access_log)]
    return [f for f in fields if len(f) == 6]


def notable(kind: str, d: Path) -> list[str]:
    """The balancer's lines that are not a plain 200: failed requests, servers going
    down and up, nginx's [error] lines (the evidence a reader checks the table against)."""
    if kind == "haproxy":
        lines = _read(d / "haproxy.out")
        return [ln for ln in lines if " 200 " not in ln and not ln.startswith("[")]
    access = [f for f in _nginx_lines(d / "access.log") if f[4] != "200" or "," in f[2]]
    errors = [ln for ln in _read(d / "error.log") if "[error]" in ln]
    return ["|".join(f) for f in access] + errors


def _read(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []
