"""``c10k bench --url``: any HTTP(S) endpoint (a balancer, another host) as one more server.

Theory of operation
-------------------
A ``--url [NAME=]URL`` is measured like a server the bench starts, with what the bench
cannot do to it left out and said so:

- nothing is started, pinned or capped: ``ExternalServer`` has the interface of
  ``peers.RunningServer`` (host, port, url, probe) but no process; before each round it
  waits until a GET of the URL answers 200 (``start_probe``, as a started server's
  readiness probe);
- every scenario fetches the URL's own path (and query), not the bench's generated files,
  so the figures are of whatever the endpoint serves there (the start probe records its
  size); Host is the URL's authority as written, the TLS server name its host;
- CPU: the endpoint's processes are not ours, so its CPU time, the busy time of a core it
  runs on and every per-CPU-second figure are not measured (``uncharge`` sets them to
  null); what is measured is what a client sees: requests, req/s, MiB/s, latency, errors
  (and the generator's own core, to mark generator-bound figures);
- scenarios (``REFUSED``): idle measures the server's memory per held connection and
  spreads a million connections over server ports the bench opens, and poller starts no
  server, so neither takes a URL; modem needs a body long enough to judge a slow user
  (``modem_refusal``); the rest take the URL's path as given.

Over TLS (an ``https://`` URL) the probe and the Python generator verify the endpoint's
certificate against ``--url-ca`` or else the system's trust store; wrk, h2load and
slowhttptest check none (as in ``--tls`` runs).
"""

from __future__ import annotations

import copy
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from c10k.bench.certs import client_context
from c10k.bench.peers import RunningServer, ServerError, ServerSpec, probe

SCHEMES = {"http": 80, "https": 443}

# Scenarios a --url cannot take, and why (the CLI refuses them at start).
REFUSED = {
    "idle": "idle measures the server's memory per held connection (the RSS of its processes) "
    "and spreads up to a million connections over server ports and workers the bench starts; "
    "a --url endpoint has neither",
    "poller": "poller starts no server and opens no connection",
}

CPU_NOTE = (
    "{name} ({url}) is an endpoint the bench did not start: not pinned, not capped, its "
    "processes unseen, so its CPU time, busy-core time and every per-CPU-second figure are "
    "not measured (null in results.json, '-' in the tables); its figures are what a client "
    "sees: requests, req/s, MiB/s, latency and errors.  If it runs on this machine it shares "
    "the cores with the load generator"
)


@dataclass(frozen=True)
class Endpoint:
    """One ``--url``: its name in the results and the parts of its URL."""

    name: str
    url: str
    scheme: str
    host: str  # as written, without IPv6 brackets
    port: int
    authority: str  # the Host header: host[:port] as written
    target: str  # path and query: what is requested

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_url(text: str) -> Endpoint:
    """``[NAME=]URL`` -> Endpoint; ValueError with one line for a URL the bench cannot use.

    >>> e = parse_url("lb=http://127.0.0.1:8080/a?b=c")
    >>> e.name, e.host, e.port, e.target, e.authority
    ('lb', '127.0.0.1', 8080, '/a?b=c', '127.0.0.1:8080')
    >>> parse_url("https://[::1]/").name, parse_url("https://[::1]/").port
    ('[::1]/', 443)
    """
    name, url = _split_name(text.strip())
    if "://" not in url:
        raise ValueError(f"{url!r} has no scheme: write http://HOST[:PORT]/PATH or https://...")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"{url!r}: unsupported scheme {parts.scheme!r} (http or https)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: credentials in the URL are not supported")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: bad port (a number from 1 to 65535)") from None
    if port == 0:
        raise ValueError(f"{url!r}: bad port 0 (a number from 1 to 65535)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(
        name=name or f"{parts.netloc}{target}",
        url=url,
        scheme=scheme,
        host=parts.hostname,
        port=port or SCHEMES[scheme],
        authority=parts.netloc,
        target=target,
    )


def _split_name(text: str) -> tuple[str, str]:
    """``NAME=URL`` -> (NAME, URL); a URL alone -> ("", URL) (its query may hold '=')."""
    head, sep, rest = text.partition("=")
    if sep and head and not any(c in head for c in ":/?#[]@ "):
        return head, rest
    return "", text


def url_spec(ep: Endpoint) -> ServerSpec:
    """The ServerSpec of a --url: kind "url", no command line (``body_bytes``: what its
    start probe read, said in its notes)."""
    return ServerSpec(
        ep.name,
        "url",
        lambda port, root, workdir, tls=None: [],
        notes=[f"--url {ep.url}: not started, pinned or capped by the bench"],
        url=ep.url,
    )


def resolve(ep: Endpoint) -> str:
    """The address the bench connects to (the first one the resolver gives)."""
    try:
        infos = socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ServerError(f"{ep.name}: cannot resolve {ep.host!r}: {e.strerror}") from None
    return str(infos[0][4][0])


def start_probe(ep: Endpoint, ca: Path | None, wait: float = 5.0) -> int:
    """Wait up to ``wait`` s for a GET of the URL to answer 200; its body's length.

    Raises:
        ServerError: it does not, with the last reason (one line).
    """
    address = resolve(ep)
    tls = client_context(ca) if ep.tls else None
    deadline = time.perf_counter() + wait
    while True:
        try:
            return probe(address, ep.port, ep.target, 2.0, tls, ep.authority, ep.host)
        except (OSError, ServerError, ValueError) as e:
            if time.perf_counter() >= deadline:
                raise ServerError(f"{ep.name}: GET {ep.url} did not answer 200: {e}") from None
        time.sleep(0.1)


def modem_refusal(scen: dict[str, Any], body: int) -> str | None:
    """Why modem cannot judge users of a URL serving ``body`` bytes (None: it can)."""
    need = (scen["grace_packets"] + 1) * scen["packet"]
    if body >= need:
        return None
    return (
        f"modem judges a user's rate after its first {scen['grace_packets']} packets of "
        f"{scen['packet']} bytes in one download, so the URL must serve at least {need:,} "
        f"bytes; it served {body:,}"
    )


def for_endpoint(scen: dict[str, Any], ep: Endpoint) -> dict[str, Any]:
    """The scenario as a --url endpoint runs it: every request for the URL's own target."""
    s = copy.deepcopy(scen)
    s["path"] = s["url_path"] = ep.target
    return s


def uncharge(run: dict[str, Any]) -> dict[str, Any]:
    """Null every server-CPU figure of a run against a --url endpoint (module doc)."""
    cpu = run.get("cpu") or {}
    for key in ("server_cpu_s", "server_core_busy_s"):
        if key in cpu:
            cpu[key] = None
    for key in (
        "req_per_server_cpu_s",
        "req_per_busy_core_s",
        "server_core_busy_fraction",
        "downloads_per_server_cpu_s",
        "server_cpu_per_user_ms",
    ):
        if key in run:
            run[key] = None
    run["server_cpu"] = "not measured: --url endpoint"
    return run


class ExternalServer(RunningServer):
    """A --url endpoint seen through RunningServer's interface; no process is ours."""

    external = True

    def __init__(self, spec: ServerSpec, ep: Endpoint, ca: Path | None, wait: float) -> None:
        self.spec = spec
        self.endpoint = ep
        self.ca = ca
        self.body_bytes = start_probe(ep, ca, wait)
        self.host = resolve(ep)
        self.port = ep.port
        self.ports = [ep.port]
        self.workers = 1
        self.scheme = ep.scheme
        self.tls = None  # the run's certificate: never this endpoint's
        self.client_tls = client_context(ca) if ep.tls else None
        self.cap = None
        self.cap_moved = []
        self.sid = 0  # no session of ours: CpuSnapshot reads no server CPU for 0

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.endpoint.authority}{path}"

    def probe(self, path: str = "", timeout: float = 1.0) -> int:
        ep = self.endpoint
        return probe(
            self.host, self.port, path or ep.target, timeout, self.client_tls, ep.authority, ep.host
        )

    def generator_target(self) -> dict[str, Any]:
        ep = self.endpoint
        tls = {"tls": True, "cafile": str(self.ca) if self.ca else None} if ep.tls else {}
        return {"authority": ep.authority, "server_name": ep.host, **tls}

    def pids(self, live: bool = False) -> list[int]:
        return []

    def log_tail(self, n: int = 600) -> str:
        return ""

    def alive(self) -> bool:
        return True

    def stop(self, timeout: float = 5.0) -> None:
        return None
