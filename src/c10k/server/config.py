"""ServerConfig: every knob of the server, each default next to its precedent."""

from __future__ import annotations

from dataclasses import dataclass


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
    serve_dotfiles: bool = False
    index: str = "index.html"
    backlog: int = 4096
    reuse_port: bool = False
