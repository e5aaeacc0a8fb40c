"""TLSLayer and the certificate contexts without sockets: a client SSLObject on one side,
a fake mode transport and a fake Session on the other (issue 14)."""

from __future__ import annotations

import errno
import os
import ssl
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from c10k.region import FileRegion
from c10k.server import certs, tls

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")


class Stats:
    tls_handshakes = tls_failures = tls_plain_http = offloaded = 0


class Base:
    """A mode's transport: records what it is asked to do."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.eof = False
        self.aborted = False
        self.peer = ("127.0.0.1", 5)
        self.queued = 0

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def writelines(self, items: list[bytes]) -> None:
        self.sent.extend(bytes(i) for i in items)

    def pending_bytes(self) -> int:
        return self.queued

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def abort(self, reset: bool = False) -> None:
        self.aborted = self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def take(self) -> bytes:
        data, self.sent = b"".join(self.sent), []
        return data


class App:
    """A Session stand-in: answers every read with ``reply`` (returned, as the hot path)."""

    def __init__(self) -> None:
        self.got = b""
        self.events: list[str] = []
        self.transport: Any = None

    def connection_made(self, t: Any) -> None:
        self.transport = t

    def data_received(self, data: bytes) -> bytes | None:
        self.got += data
        return b"reply:" + data

    def eof_received(self) -> None:
        self.events.append("eof")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: object) -> None:
        self.events.append("lost")


class Loop:
    def __init__(self) -> None:
        self.soon: list[Any] = []
        self.jobs: list[Any] = []  # the disk pool's work, run when the test says

    def call_soon(self, fn: Any) -> None:
        self.soon.append(fn)

    def run_in_thread(self, fn: Any, *args: Any, done: Any) -> None:
        self.jobs.append((fn, args, done))

    def finish_jobs(self) -> None:
        while self.jobs:
            fn, args, done = self.jobs.pop(0)
            future: Future[Any] = Future()
            future.set_result(fn(*args))
            done(future)

    def run(self) -> None:
        while self.soon:
            self.soon.pop(0)()


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def pair(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _pair(ca, tmp_path_factory.mktemp("certs"), "localhost", "example.test")


def _pair(ca: Any, d: Path, *names: str) -> tuple[str, str]:
    leaf = ca.issue_cert(*names)
    cert, key = d / f"{names[0]}.pem", d / f"{names[0]}.key"
    leaf.private_key_pem.write_to_path(str(key))
    with open(cert, "wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())
    return str(cert), str(key)


class Client:
    def __init__(self, ca: Any, name: str = "localhost", **ctx_opts: Any) -> None:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        if "ciphers" in ctx_opts:
            ctx.set_ciphers(ctx_opts.pop("ciphers"))
        for k, v in ctx_opts.items():
            setattr(ctx, k, v)
        ctx.set_alpn_protocols(["http/1.1"])
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=name)

    def step(self) -> bytes:
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def send(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.out.read()

    def recv(self, records: bytes) -> bytes:
        self.inc.write(records)
        chunks = []
        while True:
            try:
                chunk = self.obj.read(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def connect(layer: tls.TLSLayer, base: Base, client: Client) -> None:
    """Run the handshake through the layer, records both ways, to completion."""
    to_server = client.step()
    for _ in range(5):
        back = layer.data_received(to_server) or b""
        back += base.take()
        client.inc.write(back)
        to_server = client.step()
        if not layer.handshaking and not to_server:
            return
        if not to_server:
            break
    assert not layer.handshaking


def make(pair: tuple[str, str]) -> tuple[tls.TLSLayer, Base, App, Loop, Stats]:
    ctxs = certs.load([pair])
    base, app, loop, stats = Base(), App(), Loop(), Stats()
    layer = tls.TLSLayer(app, ctxs.default, loop, stats)
    layer.connection_made(base)
    return layer, base, app, loop, stats


def test_tls_layer_handshake_then_the_reply_comes_back_as_the_return_value(
    ca: Any, pair: tuple[str, str]
) -> None:
    layer, base, _app, _loop, stats = make(pair)
    client = Client(ca)
    connect(layer, base, client)
    assert stats.tls_handshakes == 1
    assert client.obj.selected_alpn_protocol() == "http/1.1"
    assert client.obj.version() == "TLSv1.3"
    records = layer.data_received(client.send(b"GET / HTTP/1.1\r\n\r\n"))
    assert records is not None
    assert base.sent == []  # the hot path: returned to the mode, not written behind it
    assert client.recv(records) == b"reply:GET / HTTP/1.1\r\n\r\n"


def test_tls_layer_plain_http_gets_a_plain_400(pair: tuple[str, str]) -> None:
    layer, base, app, _loop, stats = make(pair)
    assert layer.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert base.take().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert base.closed
    assert stats.tls_plain_http == 1
    assert app.got == b""


def test_tls_layer_garbage_is_dropped_and_counted(pair: tuple[str, str]) -> None:
    layer, base, app, _loop, stats = make(pair)
    layer.data_received(b"\x16\x03\x01\x00\x05hello")
    assert base.closed
    assert stats.tls_failures == 1
    assert app.got == b""


def test_tls_layer_old_protocols_are_refused(ca: Any, pair: tuple[str, str]) -> None:
    layer, base, _app, _loop, stats = make(pair)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = Client(
            ca,
            ciphers="DEFAULT:@SECLEVEL=0",
            minimum_version=ssl.TLSVersion.TLSv1,
            maximum_version=ssl.TLSVersion.TLSv1_1,
        )
    try:
        hello = client.step()
    except ssl.SSLError:  # pragma: no cover - this OpenSSL will not even offer it
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    layer.data_received(hello)
    assert base.closed
    assert stats.tls_handshakes == 0


def test_tls_layer_file_region_goes_out_in_turns(
    ca: Any, pair: tuple[str, str], tmp_path: Path
) -> None:
    data = os.urandom(3 * tls.TURN_BYTES + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    layer, base, app, loop, _stats = make(pair)
    client = Client(ca)
    connect(layer, base, client)
    fd = os.open(path, os.O_RDONLY)
    closed: list[int] = []
    region = FileRegion(fd, 0, len(data), closer=lambda f: (closed.append(f), os.close(f)))
    layer.writelines([b"head:", region, b":tail"])
    assert app.events == ["pause"]  # the Session waits while the rest is encrypted
    assert layer.pending_bytes() > 0
    loop.run()
    assert app.events == ["pause", "resume"]
    assert client.recv(base.take()) == b"head:" + data + b":tail"
    assert closed == [fd]


def test_tls_layer_waits_for_the_mode_transport(
    ca: Any, pair: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100_000)
    layer, base, app, loop, _stats = make(pair)
    client = Client(ca)
    connect(layer, base, client)
    fd = os.open(path, os.O_RDONLY)
    base.writelines = lambda items: (  # type: ignore[method-assign]
        base.sent.extend(items),
        layer.pause_writing(),  # full after one write, as a slow client
    )
    layer.writelines([FileRegion(fd, 0, 100_000, closer=os.close)])
    assert app.events == ["pause"]
    assert len(base.sent) == 1
    layer.close()  # waits for the region: nothing closed yet
    assert not base.closed
    del base.writelines
    layer.resume_writing()
    loop.run()
    got = client.recv(base.take())
    assert got == b"x" * 100_000
    assert base.closed  # after the last region and close_notify


def test_tls_layer_abort_releases_queued_regions(
    ca: Any, pair: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * (3 * tls.TURN_BYTES))
    layer, base, _app, _loop, _stats = make(pair)
    connect(layer, base, Client(ca))
    fd = os.open(path, os.O_RDONLY)
    closed: list[int] = []
    layer.writelines([FileRegion(fd, 0, 3 * tls.TURN_BYTES, closer=closed.append)])
    layer.abort()
    assert closed == [fd]
    assert base.aborted
    os.close(fd)


def _cold(path: Path, data: bytes, monkeypatch: pytest.MonkeyPatch) -> int:
    """A file whose pages a read that must not wait (RWF_NOWAIT) finds missing. A stand-in
    for the page cache says so: a real NOWAIT read of a dropped page may rightly find it
    back (the read it starts can end before it looks; tests/core/test_core_diskio.py tests
    that on the page cache), and what is tested here is what the layer does then."""
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    preadv = os.preadv

    def cold_preadv(f: int, buffers: list[memoryview], offset: int, flags: int = 0) -> int:
        if f == fd and flags & tls.NOWAIT:
            raise BlockingIOError(errno.EAGAIN, "not in memory")
        return preadv(f, buffers, offset, flags)

    monkeypatch.setattr(os, "preadv", cold_preadv)
    return fd


def test_tls_layer_reads_a_cold_chunk_in_the_pool(
    ca: Any, pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(200_000)
    fd = _cold(tmp_path / "cold.bin", data, monkeypatch)
    layer, base, app, loop, stats = make(pair)
    client = Client(ca)
    connect(layer, base, client)
    closed: list[int] = []
    layer.writelines(
        [FileRegion(fd, 0, len(data), closer=lambda f: (closed.append(f), os.close(f)))]
    )
    assert len(loop.jobs) == 1  # not read on the loop
    assert stats.offloaded == 1
    assert client.recv(base.take()) == b""
    while loop.jobs or loop.soon:
        loop.finish_jobs()
        loop.run()
    assert client.recv(base.take()) == data
    assert closed == [fd]
    assert app.events == ["pause", "resume"]


def test_tls_layer_abort_during_a_pool_read_keeps_the_fd_until_it_returns(
    ca: Any, pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = _cold(tmp_path / "cold.bin", os.urandom(100_000), monkeypatch)
    layer, base, _app, loop, _stats = make(pair)
    connect(layer, base, Client(ca))
    closed: list[int] = []
    base.take()  # the handshake's last records
    region = FileRegion(fd, 0, 100_000, closer=lambda f: (closed.append(f), os.close(f)))
    layer.writelines([region])
    assert len(loop.jobs) == 1
    layer.abort()  # the client went away while the disk worked
    assert base.aborted
    assert closed == []  # a pool thread is reading that fd: closing it now would be a race
    loop.finish_jobs()
    assert closed == [fd]
    assert base.take() == b""  # nothing encrypted for a connection that is gone


def test_tls_layer_client_close_notify_is_eof(ca: Any, pair: tuple[str, str]) -> None:
    layer, base, app, _loop, _stats = make(pair)
    client = Client(ca)
    connect(layer, base, client)
    try:
        client.obj.unwrap()
    except ssl.SSLWantReadError:
        pass
    layer.data_received(client.out.read())
    assert app.events == ["eof"]


# -- certificates ----------------------------------------------------------------------------
def test_certs_sni_picks_the_certificate_by_name(ca: Any, tmp_path: Path) -> None:
    first = _pair(ca, tmp_path, "default.test")
    second = _pair(ca, tmp_path, "*.example.test", "example.test")
    loaded = certs.load([first, second])
    assert loaded.names == [["default.test"], ["*.example.test", "example.test"]]
    assert loaded.for_name("a.example.test") is not loaded.default
    assert loaded.for_name("EXAMPLE.test.") is loaded.for_name("a.example.test")
    assert loaded.for_name("a.b.example.test") is loaded.default  # one label only
    assert loaded.for_name("other.test") is loaded.default
    for name, expected in (("www.example.test", "*.example.test"), ("x.test", "default.test")):
        base, app, loop, stats = Base(), App(), Loop(), Stats()
        layer = tls.TLSLayer(app, loaded.default, loop, stats)
        layer.connection_made(base)
        client = Client(ca, name=name, check_hostname=False)
        connect(layer, base, client)
        peer = client.obj.getpeercert()
        assert peer is not None
        assert ("DNS", expected) in peer["subjectAltName"]


def test_certs_bad_files_say_why(ca: Any, tmp_path: Path) -> None:
    cert, key = _pair(ca, tmp_path, "a.test")
    _other_cert, other_key = _pair(ca, tmp_path, "b.test")
    with pytest.raises(certs.CertError, match="no such file"):
        certs.load([(str(tmp_path / "missing.pem"), key)])
    with pytest.raises(certs.CertError, match="does not belong to the certificate"):
        certs.load([(cert, other_key)])
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(certs.CertError, match="not a PEM"):
        certs.load([(str(junk), key)])


def test_tls_layer_request_then_close_notify_in_one_read_keeps_the_order(
    ca: Any, pair: tuple[str, str]
) -> None:
    layer, base, app, _loop, _stats = make(pair)
    client = Client(ca)
    connect(layer, base, client)
    order: list[str] = []
    app.data_received = lambda data: order.append("data") or None  # type: ignore[method-assign]
    app.eof_received = lambda: order.append("eof")  # type: ignore[method-assign]
    flight = client.send(b"GET / HTTP/1.1\r\n\r\n")
    try:
        client.obj.unwrap()
    except ssl.SSLWantReadError:
        pass
    layer.data_received(flight + client.out.read())
    assert order == ["data", "eof"]  # the Session answers what came before the close
