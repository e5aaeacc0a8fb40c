"""ServerConfig: every knob of the server, each default next to its precedent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServerConfig:
    root: str = "."
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "auto"
    # None: derive from RLIMIT_NOFILE (raised to the hard limit) minus FD_RESERVE, and from
    # the backend's own fd limit (select: FD_SETSIZE).
    max_connections: int | None = None
    # nginx client_header_timeout 60s; Apache RequestReadTimeout header=20-40.
    header_timeout: float = 60.0
    # nginx keepalive_timeout 75s; Apache KeepAliveTimeout 5s; node 5s.
    keepalive_timeout: float = 75.0
    # nginx send_timeout 60s (between two successive writes, not the whole response).
    send_timeout: float = 60.0
    # nginx lingering_timeout 5s / lingering_time 30s: after answering a request whose
    # body we did not read, keep reading and discarding so our response is not destroyed
    # by a RST, for at most this long.
    linger_timeout: float = 5.0
    # 8 KiB: see c10k.http.connection for the precedents.
    max_header_bytes: int = 8192
    max_fields: int = 100
    # Output queued on one connection before we stop parsing its pipelined requests.
    # h2o/nginx stop reading while a response is pending; we allow a little pipelining.
    max_pending_output_bytes: int = 256 * 1024
    # Static files: lwan MMAP_SIZE_THRESHOLD 16 KiB; nginx open_file_cache_valid 60s (we
    # trust a stat for 1 s so edits show up at once for people editing a site).
    cache_max_file_bytes: int = 16 * 1024
    cache_max_total_bytes: int = 64 * 1024 * 1024
    revalidate_seconds: float = 1.0
    # A big file's fd stays open this long after its last download (c10k.static.sharedfd),
    # checked once a second; 0: closed at that check. Short (nginx open_file_cache
    # inactive=60s): it is for back-to-back downloads of a hot file, and a deleted file's
    # space comes back within two seconds.
    open_file_idle: float = 1.0
    serve_dotfiles: bool = False
    index: str = "index.html"
    backlog: int = 4096
    reuse_port: bool = False

    # -- listeners and processes (c10k.server.process) --------------------------------
    # Extra listeners: "HOST:PORT", "[V6]:PORT" or "unix:/path". Empty: host/port above.
    listen: list[str] = field(default_factory=list)
    # Worker processes, each with its own loop and SO_REUSEPORT listener (nginx
    # worker_processes auto). 0 = one per core; 1 = no supervisor, serve in this process.
    workers: int = 0
    # SIGTERM/SIGINT: stop accepting, finish in-flight responses, close idle keep-alives,
    # exit by this deadline (gunicorn graceful_timeout 30 s; nginx worker_shutdown_timeout
    # unset). A second signal stops at once.
    shutdown_timeout: float = 10.0

    # -- static files (c10k.static) ----------------------------------------------------
    autoindex: bool = False  # nginx autoindex off
    # Serve x.br / x.gz siblings when Accept-Encoding allows (nginx gzip_static, Caddy
    # precompressed; both opt-in there, on here: a sibling exists only if someone made it).
    precompressed: bool = True
    # On-the-fly compression of text-like files, once per file version (issue 16;
    # c10k.static.compress): gzip, and br with the brotli package. nginx gzip is off by
    # default; Caddy's encode is one line; on here, since it costs one compression per
    # file version, not one per request. Level: what nginx users set for gzip_comp_level
    # (its default is 1), ngx_brotli brotli_comp_level's default. Sizes: 1 KiB (nginx
    # gzip_min_length 20, Caddy minimum_length 512, Akamai 860); above 8 MiB a file is
    # sent as it is (it would be held in memory, and compressing it takes a second).
    compress: bool = True
    compress_level: int = 6
    compress_min_bytes: int = 1024
    compress_max_bytes: int = 8 * 1024 * 1024
    # Cache-Control per file extension (".css" -> "max-age=3600"); default for the rest.
    cache_control: dict[str, str] = field(default_factory=dict)
    cache_control_default: str | None = None
    charset: str = "utf-8"  # added to text/* and JS/JSON types (nginx charset off)
    # What nginx users configure every day (issue 16), each a URL path below the root:
    # - a file answering (200) every GET/HEAD of a path that does not exist, as nginx
    #   `try_files $uri $uri/ /index.html` does for single-page apps;
    fallback: str | None = None
    # - "CODE[,CODE]=/PATH": that page, with the original status (nginx error_page);
    error_page: list[str] = field(default_factory=list)
    # - "Name: value" lines added to 200/206/304/301 (nginx add_header without `always`),
    #   everywhere, and per decoded URL path prefix ("/assets/" -> [...]).
    add_header: list[str] = field(default_factory=list)
    add_header_paths: dict[str, list[str]] = field(default_factory=dict)
    # Virtual hosts (c10k.server.sites; TOML [[site]] tables): each a dict of "names" and
    # the settings it replaces (root, and any static or pacing setting), checked at start.
    # Empty: one site, the settings above. A Host no site has goes to the first site
    # (nginx's default server), or gets 421 (RFC 9110 section 15.5.20) or 404.
    site: list[dict[str, Any]] = field(default_factory=list)
    unknown_host: str | int = "first"
    # Threads that open/stat/read cold files so a slow disk never stalls the loop (the
    # page's AMPED note; nginx aio threads default pool: 32 threads).
    io_threads: int = 4

    # -- logs and metrics ----------------------------------------------------------------
    access_log: str | None = None  # None: off; "-": stderr; else a file path
    log_format: str = "combined"  # or "json"
    status_path: str | None = None  # e.g. "/_c10k/status" (nginx stub_status: off)

    # -- overload and hostile clients (issue 7) ---------------------------------------
    # Shedding tiers on the smoothed loop lag, in seconds (Envoy overload manager style):
    # stop keep-alive, then 503 + Retry-After, then close new connections at accept.
    shed_keepalive_lag: float = 0.050
    shed_503_lag: float = 0.200
    shed_accept_lag: float = 0.500
    # Pipelined requests answered per read before the rest wait (h2o/nginx: 1 at a time).
    max_pipelined: int = 64
    # Bytes buffered per connection (an unfinished head plus pipelined requests).
    max_buffer_bytes: int = 64 * 1024
    # Whole response for a stalled sendfile/slow reader: at least this many bytes/second
    # averaged over send_timeout, or the connection closes (nginx send_lowat-like).
    min_send_rate: int = 1024
    # Throttling (nginx limit_rate, limit_rate_after; thttpd throttles): bytes a second
    # per connection once the first limit_rate_after bytes of a response went. 0: off.
    limit_rate: int = 0
    limit_rate_after: int = 0
    # ... per decoded URL path prefix ("/downloads/" -> "100k"; the longest prefix wins),
    # like nginx's limit_rate inside a location (TOML only; also per [[site]]).
    limit_rate_paths: dict[str, str | int] = field(default_factory=dict)
    # Per-client limits, held across workers in shared memory (c10k.server.clientlimit;
    # nginx limit_conn / limit_req keyed by $binary_remote_addr, IPv6 by /64). Connections
    # counted from their first request: the one over this gets 503 and is closed. 0: off.
    limit_conn_per_ip: int = 0
    # Requests per key as "20/s" or "600/m" (nginx limit_req rate=); None: off. A leaky
    # bucket with --limit-req-burst excess requests answered at once (nginx burst=N
    # nodelay; nginx's default burst is 0); beyond it 429 with Retry-After.
    limit_req: str | None = None
    limit_req_burst: int = 0
    # SO_SNDBUF of the listeners, inherited by accepted sockets (nginx listen sndbuf=).
    # None: the kernel's autotuning (net.ipv4.tcp_wmem).
    sndbuf: int | None = None
    # Longest a new connection may wait in the kernel's accept queue under overload: the
    # backlog shrinks to half this many seconds of accepts, and older connections are
    # reset unread at accept. 0: off (the queue is --backlog long, FIFO).
    max_accept_wait: float = 1.0
    # Admission's readings and decisions, one JSON line per check (c10k.server.admission),
    # appended to this file; None: off. For the overload bench and for tuning.
    admission_trace: str | None = None

    # -- TLS (c10k.server.tls, c10k.server.certs) ----------------------------------------
    # Certificate chain and key files, in pairs; the first pair is the default, the others
    # are chosen by SNI from their certificates' names (nginx: one server block each).
    tls_cert: list[str] = field(default_factory=list)
    tls_key: list[str] = field(default_factory=list)
    # CA bundle for client certificates: set, every client must present one it signed
    # (nginx ssl_verify_client on).
    tls_client_ca: str | None = None
    # A plain-HTTP listener on this port answering 301 to the https URL (nginx: a server
    # block with `return 301 https://$host$request_uri`).
    redirect_https: int | None = None
    # Strict-Transport-Security max-age on responses (off by default, as in nginx: it is a
    # promise browsers keep for that long).
    hsts: int | None = None

    # -- behind a balancer (c10k.server.proxylayer) -------------------------------------
    # Every listener requires a PROXY protocol header (v1 or v2) first, naming the client
    # (HAProxy send-proxy-v2; nginx `listen ... proxy_protocol`). One listener alone:
    # `--listen proxy:HOST:PORT` (or `proxy:tls:HOST:PORT`).
    proxy_protocol: bool = False
    # Peers (CIDRs) whose Forwarded / X-Forwarded-For headers name the client (nginx
    # set_real_ip_from + real_ip_recursive on): walked right to left past trusted hops.
    trusted_proxy: list[str] = field(default_factory=list)
    # /_c10k/health for the balancer's checks: 200 while serving, 503 once told to stop.
    health: bool = False
    log_health: bool = False  # write the checks to the access log too
    # On SIGTERM, first fail the health check and close every connection after its next
    # response, still serving and accepting, for this long; then drain as always (the
    # balancer takes the host out before it stops accepting: no failed request in a
    # rolling restart). Kubernetes' preStop sleep, HAProxy's agent "drain".
    drain_delay: float = 0.0
