"""The run's TLS certificate (``c10k bench --tls``): one made per run, never checked in.

Theory of operation
-------------------
Every server of a TLS run serves the same certificate and key, so no server is favoured by
its key type or size: one P-256 (ECDSA) pair, what ``scripts/tls_vs_nginx.py`` and the
server's TLS tests use, and what browsers negotiate most.  It is valid for ``127.0.0.1`` and
``localhost`` (subjectAltName), for two days.

How it is made, in order of preference (the bench is runtime code, so no test-only
dependency is required):

1. ``openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 ...``: a self-signed
   certificate, which is then its own CA: clients trust exactly that certificate.  OpenSSL
   is on every machine that has nginx or lighttpd with TLS.
2. ``trustme`` when it is importable (the test extra has it): a CA and a leaf it signed.
3. Neither: ``CertError`` with one line naming what to install.

Clients that can verify (the Python generator, the readiness probe) are given ``ca`` and
check the server's certificate and name against it; see ``client_context``.
"""

from __future__ import annotations

import importlib.util
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMES = ("127.0.0.1", "localhost")
MISSING = (
    "--tls needs openssl to make the run's certificate: apt-get install openssl "
    "(or pip install trustme)"
)


class CertError(ValueError):
    """The run's certificate could not be made (the message is one line)."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of the run: the server's certificate chain and key, and what clients trust."""

    cert: Path
    key: Path
    ca: Path  # the CA that signed ``cert`` (``cert`` itself when self-signed)
    made_by: str  # "openssl" or "trustme"

    def to_json(self) -> dict[str, Any]:
        return {
            "cert": str(self.cert),
            "key": str(self.key),
            "ca": str(self.ca),
            "made_by": self.made_by,
            "key_type": "ECDSA P-256",
            "names": list(NAMES),
        }


def maker() -> str | None:
    """What will make the certificate ("openssl" or "trustme"), or None if nothing can."""
    if shutil.which("openssl"):
        return "openssl"
    if importlib.util.find_spec("trustme") is not None:
        return "trustme"
    return None


def make(directory: Path) -> TLSFiles:
    """Make the run's certificate and key in ``directory``.

    Raises:
        CertError: neither openssl nor trustme is available, or making it failed.
    """
    how = maker()
    if how is None:
        raise CertError(MISSING)
    directory.mkdir(parents=True, exist_ok=True)
    return _by_openssl(directory) if how == "openssl" else _by_trustme(directory)


def openssl_argv(cert: Path, key: Path) -> list[str]:
    """The one openssl command that makes a self-signed P-256 certificate and its key.

    keyUsage and extendedKeyUsage are there because the certificate is both the trust
    anchor and the server's: OpenSSL's strict mode (Python 3.13's default context) wants a
    CA to say it may sign, and a server certificate to say it may serve.
    """
    san = ",".join(f"IP:{n}" if n[0].isdigit() else f"DNS:{n}" for n in NAMES)
    return [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        "2",
        "-subj",
        "/CN=c10k bench",
        "-addext",
        f"subjectAltName={san}",
        "-addext",
        "keyUsage=critical,digitalSignature,keyCertSign",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ]


def _by_openssl(d: Path) -> TLSFiles:
    cert, key = d / "cert.pem", d / "key.pem"
    try:
        p = subprocess.run(openssl_argv(cert, key), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CertError(f"--tls: openssl could not make the certificate: {e}") from e
    if p.returncode != 0 or not cert.exists() or not key.exists():
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise CertError(f"--tls: openssl req failed (exit {p.returncode}): {last}")
    return TLSFiles(cert, key, cert, "openssl")


def _by_trustme(d: Path) -> TLSFiles:
    import trustme  # type: ignore[import-not-found, unused-ignore]

    ca = trustme.CA()
    leaf = ca.issue_cert(*NAMES)
    files = TLSFiles(d / "cert.pem", d / "key.pem", d / "ca.pem", "trustme")
    leaf.private_key_pem.write_to_path(str(files.key))
    files.cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


def client_context(cafile: str | Path | None) -> ssl.SSLContext:
    """A client context that trusts only ``cafile`` (None: the system's trust store, for
    an https ``--url`` given without ``--url-ca``) and checks the server's name.

    Built from ``PROTOCOL_TLS_CLIENT`` rather than ``create_default_context`` so that the
    same flags hold on every Python (3.13 turned on VERIFY_X509_STRICT there).  TLS 1.2 and
    1.3, as every peer is configured; ALPN ``http/1.1`` as wrk, h2load ``--h1`` and
    browsers offer it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cafile is None:
        ctx.load_default_certs()
    else:
        ctx.load_verify_locations(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
