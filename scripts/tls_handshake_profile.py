"""Where a full TLS handshake's server time goes, in-process (issue 14's profiling ask).

One process, no sockets: a client ``SSLObject`` and c10k's ``TLSLayer`` (the real server
code, over a fake transport) exchange the handshake through memory BIOs. The server's
time is split into what OpenSSL does inside ``do_handshake`` (key exchange, signature,
tickets), the ``SSLObject`` and BIO creation, and the rest of the layer's Python around
them; then the same handshake with 0, 1 and 2 TLS 1.3 tickets, with the X25519 and P-256
key exchanges, and with TLS 1.2. Medians of ``--rounds`` rounds of ``--count``
handshakes. The client's own time is excluded (measured apart and subtracted).

    .venv/bin/python scripts/tls_handshake_profile.py [--count 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import time
from collections.abc import Callable
from typing import Any

import trustme

from c10k.server.certs import INTERMEDIATE_CIPHERS
from c10k.server.tls import TLSLayer

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class App:
    def connection_made(self, transport: Any) -> None:
        pass

    def data_received(self, data: bytes) -> bytes:
        return REPLY


class Base:
    closed = False

    def write(self, data: bytes) -> None:
        pass


class Stats:
    tls_handshakes = tls_failures = tls_plain_http = 0


def server_context(leaf: Any, tickets: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.num_tickets = tickets
    leaf.configure_cert(ctx)
    return ctx


class Timed:
    """Wraps SSLObject.do_handshake to sum the time OpenSSL spends in it."""

    def __init__(self) -> None:
        self.inside = 0.0

    def wrap(self, sslobj: ssl.SSLObject) -> None:
        real = sslobj.do_handshake

        def timed() -> None:
            t = time.perf_counter()
            try:
                real()
            finally:
                self.inside += time.perf_counter() - t

        sslobj.do_handshake = timed  # type: ignore[method-assign]


def one(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, timed: Timed) -> float:
    """One full handshake and one request; the server's seconds (layer calls)."""
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_time = 0.0
    t = time.perf_counter()
    layer = TLSLayer(App(), server_ctx, None, Stats())
    layer.connection_made(Base())
    server_time += time.perf_counter() - t
    timed.wrap(layer.sslobj)
    sent = False
    for _ in range(8):
        try:
            client.do_handshake()
            if not sent:
                client.write(REQUEST)
                sent = True
        except ssl.SSLWantReadError:
            pass
        if c_out.pending:
            data = c_out.read()
            t = time.perf_counter()
            reply = layer.data_received(data)
            server_time += time.perf_counter() - t
            if reply:
                c_in.write(reply)
        if sent and not c_out.pending:
            break
    return server_time


def measure(
    make_client: Callable[[], ssl.SSLContext], server_ctx: ssl.SSLContext, count: int
) -> tuple[float, float]:
    """(server microseconds per handshake, of which inside do_handshake)."""
    client_ctx = make_client()
    timed = Timed()
    total = sum(one(client_ctx, server_ctx, timed) for _ in range(count))
    return total / count * 1e6, timed.inside / count * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    ca = trustme.CA()  # trustme's keys are P-256 ECDSA, as in the wire bench
    leaf = ca.issue_cert("localhost")

    def client(version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, group: str | None = None):  # type: ignore[no-untyped-def]
        def make() -> ssl.SSLContext:
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            ctx.minimum_version = ctx.maximum_version = version
            if group:
                ctx.set_ecdh_curve(group)  # TLS 1.3: the one key share offered
            return ctx

        return make

    cases = [
        ("TLS 1.3, X25519, 1 ticket (c10k's default)", client(), 1),
        ("TLS 1.3, X25519, 0 tickets", client(), 0),
        ("TLS 1.3, X25519, 2 tickets (OpenSSL's default)", client(), 2),
        ("TLS 1.3, P-256, 1 ticket", client(group="prime256v1"), 1),
        ("TLS 1.2, ECDHE X25519, ticket", client(ssl.TLSVersion.TLSv1_2), 1),
    ]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
    for _ in range(args.rounds):
        for name, make, tickets in cases:
            results[name].append(measure(make, server_context(leaf, tickets), args.count))
    print(f"server CPU per full handshake + 1 request, median of {args.rounds} x {args.count}:")
    print(f"{'case':48} {'total us':>9} {'handshake':>9} {'rest':>9}")
    for name, runs in results.items():
        total = statistics.median(r[0] for r in runs)
        inside = statistics.median(r[1] for r in runs)
        print(f"{name:48} {total:9.1f} {inside:9.1f} {total - inside:9.1f}")


if __name__ == "__main__":
    main()
