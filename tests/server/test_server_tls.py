"""HTTPS on every mode, with clients nobody here wrote: curl, openssl s_client and Python's
ssl (issue 14). Certificates come from trustme, made per run."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, big_content, make_docroot

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")

SMALL = b"0123456789" * 51 + b"AB"


class Certs:
    """A CA, a certificate for localhost/127.0.0.1 and one for *.wild.test/other.test."""

    def __init__(self, d: Path) -> None:
        self.ca = trustme.CA()
        self.dir = d
        self.ca_file = str(d / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.main = self._pair("localhost", "127.0.0.1")
        self.other = self._pair("other.test", "*.wild.test")

    def _pair(self, *names: str) -> tuple[str, str]:
        leaf = self.ca.issue_cert(*names)
        stem = names[0].replace("*", "_")
        cert, key = str(self.dir / f"{stem}.pem"), str(self.dir / f"{stem}.key")
        leaf.private_key_pem.write_to_path(key)
        with open(cert, "wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
        return cert, key

    def args(self) -> list[str]:
        out = []
        for cert, key in (self.main, self.other):
            out += ["--tls-cert", cert, "--tls-key", key]
        return out

    def client(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("tlsroot") / "www")


@pytest.fixture(scope="module", params=backend_params())
def https(request: pytest.FixtureRequest, certs: Certs, root: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(root, request.param, *certs.args(), "--header-timeout", "2")
    yield srv
    code, _out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=30)


def test_tls_banner_says_https(https: ServerProcess) -> None:
    assert f"https://127.0.0.1:{https.port}/" in https.banner


def test_tls_curl_small_and_big_files_on_one_connection(https: ServerProcess, certs: Certs) -> None:
    base = f"https://localhost:{https.port}"
    r = curl(
        "--cacert",
        certs.ca_file,
        "--resolve",
        f"localhost:{https.port}:127.0.0.1",
        f"{base}/small.txt",
        f"{base}/big.bin",
        f"{base}/small.txt",
        "-w",
        "%{num_connects} %{http_version}\\n",
    )
    assert r.returncode == 0, r.stderr
    body = r.stdout
    assert body.startswith(SMALL)
    assert body[len(SMALL) :].startswith(b"1 1.1\n")  # first transfer: one connection made
    rest = body[len(SMALL) + len(b"1 1.1\n") :]
    assert rest[: len(big_content())] == big_content()
    assert rest.endswith(SMALL + b"0 1.1\n")  # reused: keep-alive over TLS


def test_tls_python_client_ranges_and_keepalive(https: ServerProcess, certs: Certs) -> None:
    conn = http.client.HTTPSConnection("localhost", https.port, context=certs.client(), timeout=10)
    try:
        for rng, want in (("bytes=10-19", big_content()[10:20]), ("bytes=-5", big_content()[-5:])):
            conn.request("GET", "/big.bin", headers={"Range": rng})
            resp = conn.getresponse()
            assert resp.status == 206
            assert resp.read() == want
        conn.request("GET", "/small.txt")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, SMALL)
    finally:
        conn.close()


def test_tls_connection_close_after_a_response_read_slowly(
    https: ServerProcess, certs: Certs
) -> None:
    # The response outgrows the socket buffer, so the close comes when the last
    # encrypted bytes drain (asyncio: from inside its resume_writing callback, where a
    # close used to make asyncio call connection_lost twice: a traceback at teardown).
    for _ in range(3):
        with tls_socket(https.port, certs) as s:
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(0.2)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
                time.sleep(0.001)
        assert got.endswith(big_content())


def tls_socket(port: int, certs: Certs, name: str = "localhost") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return certs.client().wrap_socket(raw, server_hostname=name)


def test_tls_pipelined_requests(https: ServerProcess, certs: Certs) -> None:
    with tls_socket(https.port, certs) as s:
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        got = b""
        deadline = time.monotonic() + 10
        while got.count(SMALL) < 3 and time.monotonic() < deadline:
            got += s.recv(65536)
        assert got.count(b"HTTP/1.1 200 OK\r\n") == 3


def test_tls_sni_chooses_the_certificate(https: ServerProcess, certs: Certs) -> None:
    for name, expected in (
        ("localhost", "localhost"),
        ("a.wild.test", "other.test"),
        ("other.test", "other.test"),
        ("unknown.test", "localhost"),
    ):
        ctx = certs.client()
        ctx.check_hostname = False
        raw = socket.create_connection(("127.0.0.1", https.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            cert = s.getpeercert()
            assert cert is not None
            assert ("DNS", expected) in cert["subjectAltName"], name
            assert s.selected_alpn_protocol() in (None, "http/1.1")


def openssl(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=30)


def test_tls_openssl_alpn_and_versions(https: ServerProcess, certs: Certs) -> None:
    target = f"127.0.0.1:{https.port}"
    request = b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ok = openssl(
        "s_client", "-connect", target, "-servername", "localhost", "-alpn", "http/1.1",
        "-ign_eof", "-CAfile", certs.ca_file, stdin=request,
    )  # fmt: skip
    out = ok.stdout.decode(errors="replace")
    assert "ALPN protocol: http/1.1" in out
    assert "Verify return code: 0 (ok)" in out
    assert SMALL.decode() in out
    for old in ("-tls1", "-tls1_1"):
        refused = openssl("s_client", "-connect", target, old, "-cipher", "DEFAULT:@SECLEVEL=0")
        text = (refused.stdout + refused.stderr).decode(errors="replace")
        assert "Cipher is (NONE)" in text or refused.returncode != 0, text[-2000:]
        assert "SMALL" not in text
    tls12 = openssl("s_client", "-connect", target, "-tls1_2", "-CAfile", certs.ca_file)
    assert "Protocol  : TLSv1.2" in tls12.stdout.decode(errors="replace")


def test_tls_renegotiation_is_refused(https: ServerProcess, certs: Certs) -> None:
    # s_client's "R" command asks for a renegotiation (TLS 1.2 has one; 1.3 does not).
    r = openssl(
        "s_client", "-connect", f"127.0.0.1:{https.port}", "-tls1_2", "-CAfile", certs.ca_file,
        stdin=b"R\n",
    )  # fmt: skip
    text = (r.stdout + r.stderr).decode(errors="replace")
    assert "RENEGOTIATING" in text
    assert "no renegotiation" in text  # the server refused it (OP_NO_RENEGOTIATION)


def test_tls_plain_http_gets_400(https: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while chunk := s.recv(4096):
            got += chunk
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"This port speaks HTTPS" in got


@pytest.mark.timed
def test_tls_stalled_handshake_is_closed_at_the_header_timeout(https: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        start = time.monotonic()
        assert s.recv(4096) == b""  # closed by the server (--header-timeout 2)
        assert time.monotonic() - start < 9


@pytest.mark.parametrize("backend", backend_params())
def test_tls_redirect_https_and_hsts(certs: Certs, root: Path, backend: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = ServerProcess(
        root, backend, *certs.args(), "--redirect-https", str(port), "--hsts", "3600"
    )
    try:
        r = curl("-i", f"http://localhost:{port}/sub/page.html?x=1")
        head = r.stdout.decode().lower()
        assert head.startswith("http/1.1 301"), head
        assert f"location: https://localhost:{srv.port}/sub/page.html?x=1\r\n" in head
        assert "strict-transport-security" not in head  # never over plain HTTP (RFC 6797)
        r = curl("-I", f"http://localhost:{port}/")
        assert r.stdout.startswith(b"HTTP/1.1 301")
        # The engine's own answers on that port (bad request, bad method) are plain too.
        for req in (b"BAD\r\n\r\n", b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(req)
                got = s.recv(65536)
            assert got.startswith((b"HTTP/1.1 400", b"HTTP/1.1 405")), got
            assert b"strict-transport-security" not in got.lower(), got
        r = curl(
            "-i", "--cacert", certs.ca_file, "--resolve", f"localhost:{srv.port}:127.0.0.1",
            f"https://localhost:{srv.port}/small.txt",
        )  # fmt: skip
        assert b"\r\nStrict-Transport-Security: max-age=3600\r\n" in r.stdout
    finally:
        assert srv.stop()[0] == 0


@pytest.mark.parametrize("backend", backend_params())
def test_tls_client_certificates_required(
    certs: Certs, root: Path, tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(
        root, backend, *certs.args(), "--tls-client-ca", certs.ca_file, "--access-log", str(log)
    )
    try:
        base = ["--cacert", certs.ca_file, "--resolve", f"localhost:{srv.port}:127.0.0.1"]
        url = f"https://localhost:{srv.port}/small.txt"
        assert curl(*base, url).returncode != 0  # no client certificate: refused
        client = certs.ca.issue_cert("alice@example.test")
        pem = certs.dir / "alice.pem"
        client.private_key_and_cert_chain_pem.write_to_path(str(pem))
        r = curl(*base, "--cert", str(pem), url)
        assert r.returncode == 0, r.stderr
        assert r.stdout == SMALL
    finally:
        assert srv.stop()[0] == 0
    # The verified subject is the Combined format's user field.
    (line,) = log.read_text().splitlines()
    assert line.split(" ")[2].startswith("O=trustme"), line


# Connections SO_REUSEPORT spreads by source port: 12 once all went to one of two workers,
# so enough that both get some (each one a few milliseconds).
RESUMES = 64


@pytest.mark.parametrize(
    ("version", "tickets"),
    [
        (ssl.TLSVersion.TLSv1_2, True),
        (ssl.TLSVersion.TLSv1_2, False),  # by session ID: the cache shared by the workers
        (ssl.TLSVersion.TLSv1_3, True),
    ],
    ids=["1.2-ticket", "1.2-session-id", "1.3-ticket"],
)
def test_tls_sessions_resume_on_every_worker(
    certs: Certs, root: Path, version: object, tickets: bool
) -> None:
    # SO_REUSEPORT spreads new connections over both workers by their source port; a
    # ticket from one must be good on the other (the contexts are made before the fork),
    # and so must a session ID (sessioncache.py).
    srv = ServerProcess(root, "epoll", *certs.args(), "--workers", "2", "--status")
    try:
        ctx = certs.client()
        ctx.minimum_version = ctx.maximum_version = version  # type: ignore[assignment]
        if not tickets:
            ctx.options |= ssl.OP_NO_TICKET
        session = None
        reused = []
        for _ in range(RESUMES):
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while s.recv(65536):
                    pass
                reused.append(s.session_reused)
                session = s.session
        assert reused[0] is False
        assert all(reused[1:]), reused
        deadline = time.monotonic() + 10
        while True:  # each worker's record is at most a second old: wait for them all
            status = http_status(srv.port, certs)
            workers = [line for line in status.splitlines() if line.startswith("worker ")]
            counts = [int(w.split("tls_handshakes=")[1].split()[0]) for w in workers]
            if sum(counts) >= RESUMES or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(workers) == 2
        total = int(status.split("\ntls_handshakes: ")[1].split()[0])  # the server's line
        assert total == sum(counts)
        # Both workers took handshakes (resumed ones included): tickets crossed over.
        assert all(int(w.split("tls_handshakes=")[1].split()[0]) > 0 for w in workers), status
    finally:
        assert srv.stop()[0] == 0


def http_status(port: int, certs: Certs) -> str:
    conn = http.client.HTTPSConnection("localhost", port, context=certs.client(), timeout=10)
    try:
        conn.request("GET", "/_c10k/status")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def served_names(port: int, certs: Certs) -> list[str]:
    ctx = certs.client()
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        cert = s.getpeercert()
        assert cert is not None
        return [v for k, v in cert["subjectAltName"] if k == "DNS"]


def test_tls_sighup_reloads_certificates_and_keeps_them_if_bad(
    certs: Certs, root: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "c10k.toml"

    def use(cert: str, key: str) -> None:
        cfg.write_text(f'[[tls]]\ncert = "{cert}"\nkey = "{key}"\n')

    use(*certs.main)
    srv = ServerProcess(root, "epoll", "--workers", "2", "--config", str(cfg))
    try:
        assert served_names(srv.port, certs) == ["localhost"]
        use(*certs.other)
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while served_names(srv.port, certs) != ["other.test", "*.wild.test"]:
            assert time.monotonic() < deadline, "the new certificate never came"
            time.sleep(0.1)
        use(certs.main[0], certs.other[1])  # a key that is not the certificate's
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # time to (wrongly) switch; checked, not timed
        for _ in range(4):  # every worker still has the good pair
            assert served_names(srv.port, certs) == ["other.test", "*.wild.test"]
    finally:
        code, _out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "the key does not belong to the certificate" in err
