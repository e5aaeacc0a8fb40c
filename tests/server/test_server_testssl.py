"""testssl.sh against a c10k HTTPS server: nothing it rates NOT ok, HIGH, CRITICAL or
VULNERABLE (issue 14).

One server, epoll: the TLS settings (c10k.server.certs) and the record layer
(c10k.server.tls) are the same code in every mode, and testssl.sh takes ~25 s a run.
The checks (``TESTSSL_CHECKS``) are those about the server's own TLS: protocols (-p),
cipher categories (-s), forward secrecy and curves (-f), the server's picks and order (-P),
its defaults and certificate (-S), the response headers over TLS (-h) and every
vulnerability check (-U: Heartbleed, CCS, Ticketbleed, ROBOT, renegotiation, CRIME,
BREACH, POODLE, fallback SCSV, SWEET32, FREAK, DROWN, LOGJAM, BEAST, LUCKY13, RC4).
``--fast`` and ``--nodns none`` (with ``--ip``) keep it quick and off the network;
``--phone-out`` stays off, so no CRL or OCSP responder is asked.

The certificate is one an operator would deploy, not trustme's default (which testssl.sh
rightly rates HIGH: a 1000-year validity and no CRL/OCSP URI): a root CA, an intermediate
and a 90-day P-256 leaf for localhost/127.0.0.1 with a CRL distribution point, the
server given the leaf and the intermediate. testssl.sh trusts the root (``--add-ca``),
so its chain-of-trust check proves the server sends the whole chain.

Verdict: severities from the JSON file (``--jsonfile``); a finding fails the test when
rated HIGH or CRITICAL, or when its text says NOT ok or VULNERABLE (testssl.sh writes
"not vulnerable" in lower case). LOW and MEDIUM findings and testssl.sh's WARNs (its own
local limits, e.g. no RC4 in Debian's OpenSSL 3) are listed in the summary only.

Report: the full text report is written beside the JSON under the test's tmp dir, and a
compact summary (protocols, ciphers, every finding rated above OK) is printed, so it
shows in pytest's output when the test fails (and with ``-rP`` when it passes).
Skipped when testssl.sh is not installed (Debian package ``testssl.sh``, binary
``testssl``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import ServerProcess, make_docroot

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
pytestmark = [
    # testssl's own session-ticket check races under load (docs/ARCHITECTURE.md, "Tests").
    pytest.mark.alone,
    pytest.mark.skipif(
        TESTSSL is None, reason="testssl.sh is not installed (apt-get install -y testssl.sh)"
    ),
]

TESTSSL_CHECKS = ["-p", "-s", "-f", "-P", "-S", "-h", "-U"]
# A run takes ~25 s on 2 cores; a bounded wait so a hung openssl cannot hold CI.
TESTSSL_TIMEOUT = 240
BAD_SEVERITIES = {"HIGH", "CRITICAL"}
BAD_WORDS = re.compile(r"NOT ok|VULNERABLE")  # case-sensitive: "not vulnerable (OK)" is fine
# What the summary shows of the protocols and ciphers (the JSON ids of testssl.sh 3.0).
SUMMARY_IDS = re.compile(
    r"SSLv2|SSLv3|TLS1(_[123])?|ALPN|PFS_ciphers|PFS_ECDHE_curves|cipher_order"
    r"|protocol_negotiated|cipher_negotiated|cipherorder_.*"
)
HSTS_SECONDS = 31_536_000  # a year: Mozilla's recommendation (testssl.sh: >= 6 months)


def make_chain(d: Path) -> dict[str, Path]:
    """Root CA -> intermediate -> leaf (localhost, 127.0.0.1), P-256, written as PEM:
    ``ca`` (the root), ``chain`` (leaf + intermediate, what the server sends), ``key``."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> Any:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "c10k tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    def cert(
        subject: str, key: Any, issuer: str, issuer_key: Any, days: int, ca: bool, path_len: Any
    ) -> Any:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                False,
            )
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
        else:
            b = (
                b.add_extension(
                    x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                    True,
                )
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .add_extension(
                    x509.SubjectAlternativeName(
                        [
                            x509.DNSName("localhost"),
                            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        ]
                    ),
                    False,
                )
            )
        if subject != issuer:
            slug = issuer.replace(" ", "-")
            # The revocation info a public CA puts in what it issues (testssl.sh rates a
            # certificate with neither a CRL nor an OCSP URI HIGH); never fetched here.
            b = b.add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(f"http://crl.c10k.invalid/{slug}.crl")],
                            None,
                            None,
                            None,
                        )
                    ]
                ),
                False,
            )
        return b.sign(issuer_key, hashes.SHA256())

    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    root = cert("c10k test root", keys[0], "c10k test root", keys[0], 3650, True, 1)
    inter = cert("c10k test intermediate", keys[1], "c10k test root", keys[0], 1825, True, 0)
    leaf = cert("localhost", keys[2], "c10k test intermediate", keys[1], 90, False, None)
    pem = serialization.Encoding.PEM
    files = {"ca": d / "ca.pem", "chain": d / "chain.pem", "key": d / "key.pem"}
    files["ca"].write_bytes(root.public_bytes(pem))
    files["chain"].write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    files["key"].write_bytes(
        keys[2].private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_chain(tmp_path_factory.mktemp("testssl-certs"))


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory, chain: dict[str, Path]) -> Iterator[int]:
    root = make_docroot(tmp_path_factory.mktemp("testssl-root") / "www")
    srv = ServerProcess(
        root,
        "epoll",
        "--tls-cert",
        str(chain["chain"]),
        "--tls-key",
        str(chain["key"]),
        "--hsts",
        str(HSTS_SECONDS),
    )
    try:
        yield srv.port
    finally:
        code, _out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def run_testssl(
    port: int, ca: Path, out: Path, retries: int = 2
) -> tuple[list[dict[str, Any]], str]:
    """Run testssl.sh against https://localhost:port; return its JSON findings and text."""
    assert TESTSSL is not None
    out.mkdir(parents=True, exist_ok=True)
    jsonfile, logfile = out / "testssl.json", out / "testssl.txt"
    argv = [
        TESTSSL,
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "batch",
        "--fast",
        *TESTSSL_CHECKS,
        "--ip",
        "127.0.0.1",
        "--nodns",
        "none",
        "--connect-timeout",
        "10",
        "--openssl-timeout",
        "10",
        "--add-ca",
        str(ca),
        "--jsonfile",
        str(jsonfile),
        "--logfile",
        str(logfile),
        f"https://localhost:{port}/",
    ]
    # Its own session: testssl.sh is a bash script that runs openssl many times, so a
    # timeout ends the whole group it leads (its pid is the group id), nothing else.
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=out,
    )
    try:
        text, _ = proc.communicate(timeout=TESTSSL_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        text, _ = proc.communicate()
        pytest.fail(f"testssl.sh ran over {TESTSSL_TIMEOUT} s:\n{text.decode()[-5000:]}")
    report = text.decode(errors="replace")
    assert jsonfile.exists(), f"testssl.sh wrote no JSON:\n{report[-5000:]}"
    findings: list[dict[str, Any]] = json.loads(jsonfile.read_text())
    if proc.returncode != 0 and only_the_ticket_race(findings) and retries:
        # testssl's ticket check runs `openssl s_client -sess_out </dev/null`, which may exit
        # before the TLS 1.3 ticket (sent after the client's Finished) arrives, and then
        # reports "connect problem"; against any server, more often on a loaded machine
        # (twice in a row once in a whole-suite run, 2026-12-06). Up to two more runs;
        # every other finding fails at once, and a rerun must pass on every count.
        return run_testssl(port, ca, out.with_name(out.name + "-again"), retries - 1)
    assert proc.returncode == 0, f"testssl.sh exited {proc.returncode}:\n{report[-5000:]}"
    return findings, report


def only_the_ticket_race(findings: list[dict[str, Any]]) -> bool:
    """The ticket check hit its race (the rerun must then pass on every count)."""
    return any(
        f.get("id") == "sessionresumption_ticket" and "connect problem" in f.get("finding", "")
        for f in findings
    )


def bad_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        f
        for f in findings
        if f.get("severity") in BAD_SEVERITIES or BAD_WORDS.search(str(f.get("finding", "")))
    ]


def summary(findings: list[dict[str, Any]]) -> str:
    lines = []
    for f in findings:
        sev, fid = f.get("severity", "?"), f.get("id", "?")
        if SUMMARY_IDS.fullmatch(fid) or sev not in ("OK", "INFO"):
            lines.append(f"  {fid:<28} {sev:<8} {f.get('finding', '')}")
    return "\n".join(lines)


def test__bad_findings() -> None:
    findings = [
        {"id": "TLS1", "severity": "INFO", "finding": "not offered"},
        {"id": "heartbleed", "severity": "OK", "finding": "not vulnerable, no heartbeat"},
        {"id": "RC4", "severity": "WARN", "finding": "RC4 ciphers not supported by local OpenSSL"},
        {"id": "DNS_CAArecord", "severity": "LOW", "finding": "--"},
        {"id": "cert_chain_of_trust", "severity": "CRITICAL", "finding": "failed"},
        {"id": "cipher_order", "severity": "HIGH", "finding": "no (NOT ok)"},
        {"id": "secure_client_renego", "severity": "MEDIUM", "finding": "VULNERABLE, DoS"},
    ]
    assert [f["id"] for f in bad_findings(findings)] == [
        "cert_chain_of_trust",
        "cipher_order",
        "secure_client_renego",
    ]


def test_testssl_finds_nothing_wrong(https: int, chain: dict[str, Path], tmp_path: Path) -> None:
    findings, _report = run_testssl(https, chain["ca"], tmp_path / "report")
    print(f"testssl.sh report: {tmp_path / 'report' / 'testssl.txt'}")
    print(summary(findings))
    ids = {f.get("id"): f for f in findings}
    # it really ran the checks (a run cut short leaves only a few ids behind)
    for fid in ("TLS1_2", "TLS1_3", "cipher_order", "cert_chain_of_trust", "heartbleed", "ROBOT"):
        assert fid in ids, f"testssl.sh did not report {fid}"
    assert ids["TLS1_3"]["finding"].startswith("offered"), ids["TLS1_3"]
    assert ids["cert_chain_of_trust"]["severity"] == "OK", ids["cert_chain_of_trust"]
    bad = bad_findings(findings)
    assert not bad, "testssl.sh findings:\n" + "\n".join(
        f"  {f.get('id')} {f.get('severity')}: {f.get('finding')}" for f in bad
    )
