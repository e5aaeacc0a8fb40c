"""ProxyLayer without sockets: a fake mode transport below, a recording protocol above."""

from __future__ import annotations

from typing import Any

import pytest

from c10k.http.proxy import build_v1, build_v2
from c10k.server.proxylayer import ProxyLayer

HTTP = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
CONN_PEER = ("10.0.0.2", 40000)  # the balancer, as the socket sees it


class Base:
    """The mode's transport."""

    def __init__(self) -> None:
        self.peer = CONN_PEER
        self.closed = False
        self.aborted = False
        self.wrote: list[Any] = []

    def write(self, data: bytes) -> None:
        self.wrote.append(data)

    def writelines(self, items: list[Any]) -> None:
        self.wrote.extend(items)

    def close(self) -> None:
        self.closed = True

    def abort(self, reset: bool = False) -> None:
        self.closed = self.aborted = True

    def pending_bytes(self) -> int:
        return 0


class App:
    """What is served behind the header (a Session or a TLSLayer)."""

    def __init__(self) -> None:
        self.got = b""
        self.transport: Any = None
        self.eof = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> bytes | None:
        self.got += data
        return b"reply" if self.got.endswith(b"\r\n\r\n") else None

    def eof_received(self) -> None:
        self.eof = True


class Stats:
    proxy_headers = 0
    proxy_errors = 0


def layer() -> tuple[ProxyLayer, Base, App, Stats]:
    app, base, stats = App(), Base(), Stats()
    lay = ProxyLayer(app, stats)
    lay.connection_made(base)
    assert app.transport is lay
    return lay, base, app, stats


@pytest.mark.parametrize(
    "header",
    [build_v1(("198.51.100.4", 5555), ("10.0.0.1", 80)), build_v2(("198.51.100.4", 5555))],
)
def test_header_then_request_in_one_read(header: bytes) -> None:
    lay, base, app, stats = layer()
    assert lay.data_received(header + HTTP) == b"reply"  # the hot path's return passes up
    assert app.got == HTTP
    assert lay.peer == ("198.51.100.4", 5555)
    assert stats.proxy_headers == 1
    lay.write(b"x")
    assert base.wrote == [b"x"]


def test_header_byte_by_byte() -> None:
    lay, _, app, _ = layer()
    data = build_v2(("2001:db8::5", 1234)) + HTTP
    replies = [lay.data_received(data[i : i + 1]) for i in range(len(data))]
    assert app.got == HTTP
    assert replies[-1] == b"reply"
    assert lay.peer == ("2001:db8::5", 1234)


def test_local_header_keeps_the_balancers_address() -> None:
    lay, _, app, stats = layer()
    lay.data_received(build_v2(None) + HTTP)
    assert (lay.peer, app.got, stats.proxy_headers) == (CONN_PEER, HTTP, 1)


def test_no_header_is_refused_without_an_answer() -> None:
    lay, base, app, stats = layer()
    assert lay.data_received(HTTP) is None
    assert base.aborted
    assert (app.got, base.wrote, stats.proxy_errors) == (b"", [], 1)


def test_nothing_is_written_before_the_header_and_close_counts() -> None:
    lay, base, _, stats = layer()
    lay.data_received(b"PROXY TCP4 198.51")  # then the Session's header deadline fires
    lay.writelines([b"HTTP/1.1 408 Request Timeout\r\n\r\n"])
    lay.close()
    assert (base.wrote, base.aborted, stats.proxy_errors) == ([], True, 1)


def test_eof_inside_the_header_is_an_error_after_it_is_passed_on() -> None:
    lay, base, app, stats = layer()
    lay.data_received(b"PROXY ")
    lay.eof_received()
    assert (base.aborted, app.eof, stats.proxy_errors) == (True, False, 1)
    lay, base, app, stats = layer()
    lay.data_received(build_v1(("192.0.2.1", 1), ("192.0.2.2", 2)))
    lay.eof_received()
    assert (base.aborted, app.eof, stats.proxy_errors) == (False, True, 0)
