"""``c10k bench --tls`` (issue 14): the run's certificate, every server's TLS configuration,
every generator over TLS, and what refuses the flag.

The first half builds certificates, configs and command lines without starting anything
(nginx and lighttpd check their own configs with ``-t``/``-tt`` when installed).  The second
half runs one quick scenario per generator kind over TLS against c10k (wrk, h2load,
slowhttptest, and the Python generator in its closed, per-connection, modem and idle modes;
about 1 s of load each), nginx and lighttpd side by side, and the Python generator against
a certificate its CA did not sign.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from c10k.bench import certs, cli, client, peers, report, runner
from c10k.bench.machine import Pinning
from c10k.bench.scenarios import Options, make_docroot, scenario, title
from c10k.bench.tlswire import TLSWire

# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> certs.TLSFiles:
    if certs.maker() is None:
        pytest.skip(certs.MISSING)
    return certs.make(tmp_path_factory.mktemp("tls"))


def server_object(files: certs.TLSFiles) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    return ctx.wrap_bio(inc, out, server_side=True), inc, out


def handshake(wire: TLSWire, server: tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]) -> None:
    """Pump both sides in memory until the client is done (raises what the client raises)."""
    obj, inc, out = server
    raw = b""
    for _ in range(10):
        done = wire.handshake(raw)
        inc.write(wire.pending_out())
        if done:
            return
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        raw = out.read()
    raise AssertionError("the handshake did not finish")


def bench(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "out"
    rc = cli.main([*args, "--tls", "--quick", "--no-plots", "--out", str(out)])
    doc = json.loads((out / "results.json").read_text())
    return rc, doc, (out / "results.md").read_text()


def runs_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    (entry,) = doc["scenarios"]
    return [r for v in entry["variations"].values() for r in v["runs"]]


def check_tls_doc(doc: dict[str, Any], md: str) -> None:
    """A TLS run says so everywhere: document, scenario, runs, title, report."""
    assert doc["tls"] is True
    assert doc["options"]["tls"] is True
    assert doc["tls_certificate"]["key_type"] == "ECDSA P-256"
    (entry,) = doc["scenarios"]
    assert entry["tls"] is True
    assert "over TLS" in entry["title"]
    assert all(r["tls"] is True for r in runs_of(doc))
    assert md.startswith("# c10k bench results over TLS")
    assert "- Transport: TLS: every server over HTTPS" in md
    assert f"## {entry['name']}: {entry['title']}" in md


def c10k_serves_tls() -> str | None:
    p = subprocess.run(
        [sys.executable, "-m", "c10k", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if p.returncode != 0:
        return (p.stderr.strip().splitlines() or ["?"])[-1]
    return None if "--tls-cert" in p.stdout else "c10k serve has no --tls-cert"


_C10K_NOT = c10k_serves_tls()
needs_c10k = pytest.mark.skipif(_C10K_NOT is not None, reason=f"c10k serve: {_C10K_NOT}")


# --- the run's certificate ---------------------------------------------------------------------


def test_certs_openssl_makes_a_p256_pair_the_client_verifies(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    files = certs.make(tmp_path / "a")
    assert files.made_by == "openssl"
    assert files.ca == files.cert  # self-signed: its own CA
    text = subprocess.run(
        ["openssl", "x509", "-in", str(files.cert), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "NIST CURVE: P-256" in text
    assert "IP Address:127.0.0.1" in text
    wire = TLSWire(certs.client_context(files.ca), "127.0.0.1")
    handshake(wire, server_object(files))
    assert wire.obj.version() in ("TLSv1.2", "TLSv1.3")
    # Another run's certificate is not trusted.
    other = certs.make(tmp_path / "b")
    wire = TLSWire(certs.client_context(other.ca), "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(wire, server_object(files))


def test_certs_trustme_without_openssl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("trustme")
    monkeypatch.setattr(certs.shutil, "which", lambda name: None)
    files = certs.make(tmp_path)
    assert files.made_by == "trustme"
    assert files.ca != files.cert
    wire = TLSWire(certs.client_context(files.ca), "localhost")
    handshake(wire, server_object(files))


def test_certs_neither_openssl_nor_trustme_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(certs, "maker", lambda: None)
    with pytest.raises(certs.CertError, match="apt-get install openssl"):
        certs.make(tmp_path)
    rc = cli.main(["keepalive", "--tls", "--quick", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err == f"c10k bench: {certs.MISSING}\n"


def test_tlswire_answers_the_servers_close_notify(tls_files: certs.TLSFiles) -> None:
    """The reply lighttpd waits for before its FIN (tlswire.py)."""
    server = server_object(tls_files)
    wire = TLSWire(certs.client_context(tls_files.ca), "127.0.0.1")
    handshake(wire, server)
    obj, inc, out = server
    obj.do_handshake()  # the client's Finished: done (TLS 1.3 tickets go out)
    obj.write(b"x" * 40000)  # three records
    with pytest.raises(ssl.SSLWantReadError):
        obj.unwrap()  # sends close_notify, waits for the client's
    buf = bytearray(256 * 1024)
    assert wire.decrypt_into(out.read(), buf) == 40000
    assert wire.closed
    inc.write(wire.pending_out())
    obj.unwrap()  # the client's close_notify arrived: done


# --- servers: configs and command lines --------------------------------------------------------


def test_nginx_conf_over_tls(tmp_path: Path, tls_files: certs.TLSFiles) -> None:
    plain = peers.nginx_conf(tmp_path, 8443, tmp_path / "www")
    assert "listen 127.0.0.1:8443 backlog=4096;" in plain
    assert "ssl" not in plain
    conf = peers.nginx_conf(tmp_path, 8443, tmp_path / "www", tls_files)
    assert "listen 127.0.0.1:8443 ssl backlog=4096;" in conf
    for line in (
        f"ssl_certificate {tls_files.cert};",
        f"ssl_certificate_key {tls_files.key};",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_cache shared:SSL:10m;",
        "ssl_session_tickets on;",
    ):
        assert line in conf
    argv = peers.PEERS["nginx"].build(8443, tmp_path / "www", tmp_path, tls_files)
    assert (tmp_path / "nginx-8443" / "nginx.conf").read_text() == peers.nginx_conf(
        tmp_path / "nginx-8443", 8443, tmp_path / "www", tls_files
    )
    if peers.nginx_binary() is None:
        return
    p = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def test_lighttpd_conf_plain_and_over_tls(tmp_path: Path, tls_files: certs.TLSFiles) -> None:
    root = tmp_path / "www"
    make_docroot(root)
    plain = peers.lighttpd_conf(tmp_path, 8080, root)
    for line in (
        f'server.document-root = "{root}"',
        'server.bind = "127.0.0.1"',
        "server.port = 8080",
        "server.max-worker = 0",
        "server.max-fds = 20000",
        f"server.max-keep-alive-idle = {peers.KEEPALIVE_S}",
        "server.max-keep-alive-requests = 65535",
    ):
        assert line in plain
    assert '"mod_accesslog"' not in plain
    assert "accesslog.filename" not in plain
    assert "ssl." not in plain
    assert "mod_openssl" not in plain
    conf = peers.lighttpd_conf(tmp_path, 8080, root, tls_files)
    for line in (
        'server.modules += ("mod_openssl")',
        'ssl.engine = "enable"',
        f'ssl.pemfile = "{tls_files.cert}"',
        f'ssl.privkey = "{tls_files.key}"',
        '"MinProtocol" => "TLSv1.2", "MaxProtocol" => "TLSv1.3"',
    ):
        assert line in conf
    spec = peers.PEERS["lighttpd"]
    if spec.check_for(True) is not None:
        return
    for tls in (None, tls_files):
        argv = spec.build(8080, root, tmp_path, tls)
        assert argv[1:3] == ["-D", "-f"]
        # -tt: load the modules (mod_openssl, the certificate) and check the config.
        p = subprocess.run([argv[0], "-tt", "-f", argv[3]], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr


def test_lighttpd_tls_module_missing_is_skipped_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(peers, "LIGHTTPD_MODULE_DIRS", ("/nonexistent",))
    spec = peers.PEERS["lighttpd"]
    monkeypatch.setattr(spec, "check", lambda: None)
    assert spec.check_for(False) is None
    assert spec.check_for(True) == (
        "lighttpd's TLS module mod_openssl is not installed: apt-get install lighttpd-mod-openssl"
    )


def test_c10k_uvicorn_aiohttp_take_the_certificate(
    tmp_path: Path, tls_files: certs.TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = str(tls_files.cert), str(tls_files.key)
    spec = peers.c10k_spec("epoll")
    argv = spec.build(8443, tmp_path, tmp_path, tls_files)
    assert argv[argv.index("--tls-cert") + 1] == cert
    assert argv[argv.index("--tls-key") + 1] == key
    assert argv[argv.index("--port") + 1] == "8443"
    assert "--tls-cert" not in spec.build(8443, tmp_path, tmp_path)
    monkeypatch.setattr(peers, "c10k_has_workers", lambda: True)
    multi = spec.multi_argv([8001, 8002], 2, tmp_path, tmp_path, tls_files)
    assert "tls:127.0.0.1:8001" in multi
    assert "tls:127.0.0.1:8002" in multi
    assert "--tls-cert" in multi
    uv = peers.PEERS["uvicorn"].build(8443, tmp_path, tmp_path, tls_files)
    assert uv[-4:] == ["--ssl-certfile", cert, "--ssl-keyfile", key]
    aio = peers.PEERS["aiohttp"].build(8443, tmp_path, tmp_path, tls_files)
    assert aio[-2:] == [cert, key]
    assert "ssl_context=tls" in (tmp_path / "c10k_bench_aiohttp.py").read_text()


def test_custom_server_takes_the_certificate_by_placeholders(
    tmp_path: Path, tls_files: certs.TLSFiles
) -> None:
    text = "x=srv --port {port} --cert {tls_cert} --key {tls_key} {listen_args}"
    spec = peers.custom_spec(text, 1, tls=True)
    assert spec.build(8443, tmp_path, tmp_path, tls_files) == [
        "srv",
        "--port",
        "8443",
        "--cert",
        str(tls_files.cert),
        "--key",
        str(tls_files.key),
        "--listen",
        "tls:127.0.0.1:8443",
    ]
    with pytest.raises(ValueError, match=r"x has no \{tls_cert\} and \{tls_key\} placeholders"):
        peers.custom_spec("x=srv --port {port}", 1, tls=True)
    with pytest.raises(ValueError, match="add --tls"):
        peers.custom_spec(text, 1, tls=False)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--peer", "http.server"], "c10k bench: --tls: http.server cannot serve TLS"),
        (["--server", "{python} -m http.server {port}"], "has no {tls_cert} and {tls_key}"),
    ],
)
def test_cli_refuses_a_server_that_cannot_take_the_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    rc = cli.main(["keepalive", "--tls", "--quick", "--out", str(tmp_path), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert says in err
    assert err.count("\n") == 1
    assert not (tmp_path / "results.json").exists()


def test_cli_poller_alone_refuses_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["poller", "--tls", "--quick", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "c10k bench: --tls does not apply to poller: it starts no server and opens no connection\n"
    )


def test_poller_in_a_tls_run_says_tls_does_not_apply(tmp_path: Path) -> None:
    """``c10k bench all --tls``: the poller runs as always and says the flag did not apply."""
    opts = Options(quick=True, tls=True, poller_sizes=[10], rounds=1)
    doc = runner.run(["poller"], [], opts, tmp_path, pin_enabled=False, say=lambda m: None)
    (entry,) = doc["scenarios"]
    assert entry["tls"] is False
    assert "over TLS" not in entry["title"]
    assert runs_of(doc)
    assert all(r["tls"] is False for r in runs_of(doc))
    assert runner.POLLER_TLS_NOTE in entry["notes"]
    assert doc["tls"] is True  # the run made its certificate: nothing used it


def test_titles_and_reports_tell_tls_from_plain() -> None:
    tls = Options(quick=True, tls=True)
    assert title(scenario("modem", quick=True), tls).endswith(" over TLS (--quick)")
    assert "TLS" not in title(scenario("poller", quick=True), tls)
    assert "TLS" not in title(scenario("modem", quick=True), Options(quick=True))
    doc = {
        "started": "t",
        "machine": {},
        "pinning": {"note": "p"},
        "options": {},
        "scenarios": [],
    }
    assert "- Transport: plain HTTP (no TLS)" in report.markdown(doc)
    assert "transport: plain HTTP (no TLS)" in report.terminal_table(doc)
    doc.update(tls=True, tls_certificate={"made_by": "openssl"})
    assert report.markdown(doc).startswith("# c10k bench results over TLS\n")
    assert "made for this run by openssl" in report.terminal_table(doc)


# --- over the wire: one quick run per generator kind -----------------------------------------


@needs_c10k
def test_wrk_over_tls(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    rc, doc, md = bench(tmp_path, "keepalive", "--connections", "4", "--generator", "wrk")
    assert rc == 0, doc["errors"]
    check_tls_doc(doc, md)
    (run,) = runs_of(doc)
    assert run["generator"] == "wrk"
    assert run["argv"][-1].startswith("https://127.0.0.1:")
    assert run["requests"] > 0
    assert run["error_total"] == 0, run["errors"]
    assert doc["servers"][0]["argv"][-4:-2] == ["--tls-cert", doc["tls_certificate"]["cert"]]
    try:
        from c10k.bench import plot
    except ImportError:  # pragma: no cover
        return
    if not plot.have_matplotlib():
        return
    titles: list[str] = []

    def inspect(name: str, fig: Any) -> None:
        titles.append(fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title())

    assert plot.render(doc, tmp_path / "png", inspect=inspect)
    assert all("over TLS" in t for t in titles), titles


@needs_c10k
@pytest.mark.parametrize("scenario_name", ["keepalive", "conn-rate"])
def test_python_generator_over_tls(tmp_path: Path, scenario_name: str) -> None:
    """Closed loop on kept-alive TLS connections, and a full handshake per request (the
    server's close_notify answered, its FIN awaited)."""
    rc, doc, md = bench(tmp_path, scenario_name, "--connections", "4", "--generator", "python")
    assert rc == 0, doc["errors"]
    check_tls_doc(doc, md)
    (run,) = runs_of(doc)
    assert run["generator"] == "python"
    assert run["requests"] > 10
    assert run["error_total"] == 0, run["errors"]
    if scenario_name == "keepalive":
        assert run["reconnects"] == 0
        assert "tls_handshakes" not in run  # all done before the window
    else:
        # A handshake per request, resumed from the tickets of earlier connections as
        # wrk and h2load resume them.
        assert run["tls_handshakes"] >= run["requests"]
        assert run["tls_resumed"] >= run["tls_handshakes"] - 8


@needs_c10k
def test_modem_users_over_tls(tmp_path: Path) -> None:
    rc, doc, md = bench(tmp_path, "modem")
    assert rc == 0, doc["errors"]
    check_tls_doc(doc, md)
    (run,) = runs_of(doc)
    assert run["started"] == run["score"] == 6
    assert run["failed"] == 0, run["failure_reasons"]
    assert run["mib_s"] > 0


@needs_c10k
def test_idle_holds_tls_connections(tmp_path: Path) -> None:
    rc, doc, md = bench(tmp_path, "idle")
    assert rc == 0, doc["errors"]
    check_tls_doc(doc, md)
    runs = {r["n"]: r for r in runs_of(doc)}
    assert runs[50]["held"] == 50
    assert runs[50]["errors"] == {}
    assert runs[0]["stopped_by"] is None
    assert runs[50]["active"]["requests"] > 0


@needs_c10k
def test_h2load_overload_over_tls(tmp_path: Path) -> None:
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed (apt-get install nghttp2-client)")
    rc, doc, md = bench(tmp_path, "overload", "--multipliers", "1", "--server-cpu", "none")
    assert rc == 0, doc["errors"]
    check_tls_doc(doc, md)
    (entry,) = doc["scenarios"]
    assert list(entry["variations"]) == ["peak", "1x"]
    for label, var in entry["variations"].items():
        (run,) = var["runs"]
        assert run["generator"] == "h2load"
        argvs = run["argv"] if label != "peak" else [run["argv"]]
        assert all(a[-1].startswith("https://") and "--h1" in a for a in argvs)
        assert run["requests"] > 0
        assert run["errors"].get("connect", 0) == 0, run["errors"]


@needs_c10k
def test_slowhttptest_over_tls(tmp_path: Path) -> None:
    if shutil.which("slowhttptest") is None:
        pytest.skip("slowhttptest is not installed (apt-get install slowhttptest)")
    rc, doc, md = bench(
        tmp_path,
        "slowhttp",
        "--slow-modes",
        "slowloris",
        "--slow-duration",
        "2",
        "--slow-conns",
        "20",
    )
    assert rc == 0, doc["errors"]
    check_tls_doc(doc, md)
    (run,) = runs_of(doc)
    assert run["attack_argv"][-1].startswith("https://127.0.0.1:")
    assert run["attack_seen"]["max_connected"] > 0  # its handshakes succeeded
    assert run["legit_success"] == 1.0
    assert run["error_total"] == 0, run["errors"]


@needs_c10k
def test_nginx_and_lighttpd_over_tls(tmp_path: Path) -> None:
    missing = [s for s in ("nginx", "lighttpd") if peers.PEERS[s].check_for(True) is not None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install it)")
    rc, doc, md = bench(
        tmp_path, "conn-rate", "--peer", "nginx", "--peer", "lighttpd", "--no-c10k",
        "--connections", "2", "--generator", "python",
    )  # fmt: skip
    assert rc == 0, doc["errors"]
    check_tls_doc(doc, md)
    runs = {r["server"]: r for r in runs_of(doc)}
    assert set(runs) == {"nginx", "lighttpd"}
    for r in runs.values():
        # Hundreds a second; lighttpd's 1 s wait for an unanswered close_notify gives ~2.
        assert r["requests"] > 50, r
        assert r["error_total"] == 0, r["errors"]
    work = tmp_path / "out" / "work"
    assert "ssl_session_tickets on;" in next(work.glob("nginx-*/nginx.conf")).read_text()
    assert 'ssl.engine = "enable"' in next(work.glob("lighttpd-*/lighttpd.conf")).read_text()


@needs_c10k
def test_python_generator_refuses_a_certificate_its_ca_did_not_sign(
    tmp_path: Path, tls_files: certs.TLSFiles
) -> None:
    """The server's certificate is checked: against another run's CA every handshake fails,
    and is counted as ``tls``."""
    root = tmp_path / "www"
    make_docroot(root)
    other = certs.make(tmp_path / "other")
    pin = Pinning.choose(False)
    with peers.RunningServer(peers.c10k_spec(), root, tmp_path, pin, tls=tls_files) as srv:
        cfg = {
            "mode": "closed",
            "host": srv.host,
            "port": srv.port,
            "path": "/small.bin",
            "conns": 2,
            "keepalive": False,
            "duration": 0.5,
            "warmup": 0.0,
            "timeout": 2.0,
            "max_lifetime": 30.0,
            "cafile": str(other.ca),
        }
        with client.LoadGenerator([cfg], tmp_path / "logs") as lg:
            lg.wait_all("ready", 10.0)
            lg.send({"cmd": "go"})
            (result,) = lg.wait_all("result", 20.0)
    assert result["ok"] == 0
    assert result["errors"]["tls"] > 0
    assert "certificate verify failed" in (tmp_path / "logs" / "generator-0.log").read_text()
