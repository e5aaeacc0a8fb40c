"""Certificates and the TLS settings of a listener: contexts, SNI, protocol versions.

Built once per configuration, in the supervisor before the workers fork, so every worker
shares the contexts' session-ticket keys, and their session-ID cache lives in memory shared
across the fork (sessioncache.py): a client resumes on whichever worker SO_REUSEPORT
gives it, by ticket or by ID. A reload (SIGHUP) builds new contexts for the new workers; a bad
new file is refused with the reason and the old workers keep theirs.

Choices (Mozilla "intermediate", version 5.7): TLS 1.2 and 1.3 only; for 1.2 the ECDHE
AEAD suites (the DHE ones need a DH parameter file, which nothing here asks for); the
server's cipher order (Python sets OP_CIPHER_SERVER_PREFERENCE; every suite in the list is
strong, so the order only prefers AES-GCM); ALPN ``http/1.1``; renegotiation off;
one TLS 1.3 ticket per handshake instead of OpenSSL's two (each costs a ticket encryption
and a record, and a browser uses one).

SNI: each certificate is served for the names it carries (subject alternative names,
DNS and IP; the common name only when there are no DNS names), ``*.example.com``
covering one label; a name no certificate carries gets the first pair.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass, field

from c10k.server.sessioncache import share_sessions

log = logging.getLogger("c10k.server")

INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


class CertError(Exception):
    """A certificate, key or CA file that cannot be used; the message says which and why."""


@dataclass
class Certificates:
    """The contexts for one configuration; ``default`` is the one handshakes start on."""

    default: ssl.SSLContext
    by_name: dict[str, ssl.SSLContext] = field(default_factory=dict)
    wildcards: dict[str, ssl.SSLContext] = field(default_factory=dict)  # ".example.com"
    names: list[list[str]] = field(default_factory=list)  # per pair, for the banner

    def for_name(self, name: str | None) -> ssl.SSLContext:
        if not name:
            return self.default
        name = name.lower().rstrip(".")
        ctx = self.by_name.get(name)
        if ctx is None and "." in name:
            ctx = self.wildcards.get(name[name.index(".") :])
        return ctx or self.default


def load(
    pairs: list[tuple[str, str]], client_ca: str | None = None, share: bool = False
) -> Certificates:
    """Contexts for (certificate chain file, key file) pairs; the first is the default.
    ``share``: the contexts' session caches are shared with the processes forked after
    this (c10k.server.sessioncache); made in the supervisor, before the workers.

    Raises:
        CertError: a file is missing, unreadable, not PEM, or the key does not match.
    """
    if not pairs:
        raise CertError("no certificate given")
    contexts = [_context(cert, key, client_ca) for cert, key in pairs]
    certs = Certificates(contexts[0])
    for ctx, (cert, _key) in zip(contexts, pairs, strict=True):
        names = cert_names(cert)
        certs.names.append(names)
        for name in names:
            if name.startswith("*."):
                certs.wildcards.setdefault(name[1:], ctx)
            else:
                certs.by_name.setdefault(name, ctx)
    if len(contexts) > 1:
        certs.default.sni_callback = _sni(certs)
    if share:
        why = share_sessions(contexts)
        if why is not None:
            log.warning(
                "TLS session IDs resume only on the worker that made them (%s); "
                "session tickets resume on every worker",
                why,
            )
    return certs


def _sni(certs: Certificates):  # type: ignore[no-untyped-def]
    def choose(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        ctx = certs.for_name(name)
        if ctx is not sslobj.context:
            sslobj.context = ctx
        return None

    return choose


def _context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.num_tickets = 1
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise CertError(f"{exc.filename}: no such file") from None
    except PermissionError as exc:
        raise CertError(f"{exc.filename}: not readable") from None
    except ssl.SSLError as exc:
        raise CertError(f"{cert} / {key}: {_why(exc)}") from None
    if client_ca:
        try:
            ctx.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise CertError(f"--tls-client-ca {client_ca}: {_why(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "the key does not belong to the certificate"
        if exc.reason in ("NO_START_LINE", "NO_CERTIFICATE_OR_CRL_FOUND") or "PEM" in str(exc):
            return "not a PEM certificate/key file"
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def cert_names(path: str) -> list[str]:
    """The names a certificate file's first certificate is valid for, lowercased."""
    try:
        info = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as exc:
        raise CertError(f"{path}: {_why(exc)}") from None
    names = [v.lower() for k, v in info.get("subjectAltName", ()) if k == "DNS"]
    for k, v in info.get("subjectAltName", ()):
        if k == "IP Address":
            try:
                names.append(str(ipaddress.ip_address(v.strip())))
            except ValueError:
                pass
    if not any(k == "DNS" for k, _ in info.get("subjectAltName", ())):
        names += [v.lower() for rdn in info.get("subject", ()) for k, v in rdn if k == "commonName"]
    return names
