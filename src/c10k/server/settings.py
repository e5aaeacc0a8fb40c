"""Every setting of ``c10k serve`` in one table: its type, its range, its flag and its help.

The command line, a ``--config`` TOML file and a SIGHUP reload all go through ``resolve``,
so a value refused in one is refused in all with the same words, and every problem is
reported at once, one line each (a file with three mistakes says three things, not one
per attempt). A TOML key may be the setting's name (``serve_dotfiles``) or its flag's
(``dotfiles``, ``max-connections``); an unknown key gets a "did you mean".

Values from the command line arrive as strings and are converted here, not by argparse,
so that two bad flags are both reported; values from TOML arrive typed and must have the
setting's type (``max_connections = 1.5`` is refused, not truncated).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c10k.http.forwarded import parse_networks
from c10k.server.clientlimit import parse_rate
from c10k.server.config import ServerConfig
from c10k.server.sites import check_unknown_host, parse_sites, rate_paths, site_problems
from c10k.server.words import plural
from c10k.static.headers import check_prefix, parse_header
from c10k.static.pages import error_pages_from, page_problem, parse_error_page

Check = Callable[[Any], str | None]  # a value's problem, or None
STATUS_DEFAULT_PATH = "/_c10k/status"
HTTPS_DEFAULT_PORT = 8443  # with certificates and no -p (8000 stays plain HTTP's)
# RFC 9110 token characters (a charset name is a token)
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


# -- checks: each returns what is wrong, in words, or None ---------------------------------
def above(low: float) -> Check:
    return lambda v: None if v > low else f"must be more than {low:g}"


def between(low: int, high: int) -> Check:
    return lambda v: None if low <= v <= high else f"must be from {low} to {high}"


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def port_number(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number from 0 to 65535"


def header_text(v: str | None) -> str | None:
    """A value that goes into a response header as it is: printable ASCII, no CR/LF."""
    if v is None:
        return None
    if not v.strip():
        return "must not be empty"
    if any(not " " <= c <= "~" for c in v):
        return "must be printable ASCII (no line breaks or control characters)"
    return None


def token_or_empty(v: str) -> str | None:
    bad = sorted({c for c in v if c not in _TOKEN})
    return None if not bad else f"must be an HTTP token such as utf-8 ({bad[0]!r} is not allowed)"


def one_of(*names: str) -> Check:
    return lambda v: None if v in names else f"must be {' or '.join(names)}"


def url_path(v: str | None) -> str | None:
    if v is None:
        return None
    if not v.startswith("/"):
        return f"must start with '/', e.g. /{v}"
    if any(c in v for c in "?# ") or any(not " " < c <= "~" for c in v):
        return "must be a plain path (printable ASCII, no spaces, '?' or '#')"
    return None


def file_name(v: str) -> str | None:
    return None if v and "/" not in v and v not in (".", "..") else "must be a file name"


def cache_table(v: dict[str, str]) -> str | None:
    for ext, value in v.items():
        if not isinstance(value, str):
            return f'{ext!r}: must be a string such as "max-age=3600", not {value!r}'
        problem = header_text(value)
        if problem:
            return f"{ext!r}: {problem}"
    return None


def error_pages(v: list[str]) -> str | None:
    """Each ``CODE[,CODE]=/PATH`` well formed (that the file exists: ``_page_problems``)."""
    for spec in v:
        try:
            parse_error_page(spec)
        except ValueError as exc:
            return str(exc)
    return None


def header_lines(v: list[str]) -> str | None:
    for line in v:
        try:
            parse_header(line)
        except ValueError as exc:
            return str(exc)
    return None


def header_paths(v: dict[str, Any]) -> str | None:
    """``"/prefix/" = ["Name: value", ...]`` entries."""
    for prefix, lines in v.items():
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            return f'{prefix!r}: must be a list of "Name: value" strings, not {lines!r}'
        try:
            check_prefix(prefix)
        except ValueError as exc:
            return str(exc)
        problem = header_lines(lines)
        if problem:
            return f"{prefix!r}: {problem}"
    return None


def log_target(v: str | None) -> str | None:
    """``-`` (stderr), or a file we can open for appending: its directory must exist."""
    if v is None or v == "-":
        return None
    path = Path(v)
    if path.is_dir():
        return "is a directory; give a file path"
    if path.exists():
        return None if os.access(path, os.W_OK) else "is not writable"
    parent = path.parent
    if not parent.is_dir():
        return f"cannot be created: no directory {str(parent)!r}"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be created in {parent}"


def readable_file(v: str) -> str | None:
    if not Path(v).is_file():
        return "no such file"
    return None if os.access(v, os.R_OK) else "is not readable"


def readable_files(v: list[str]) -> str | None:
    for path in v:
        problem = readable_file(path)
        if problem:
            return f"{path}: {problem}"
    return None


def networks(v: list[str]) -> str | None:
    try:
        parse_networks(v)
    except ValueError as exc:
        return str(exc)
    return None


def request_rate(v: str | None) -> str | None:
    return None if v is None else parse_rate(v)[1]


def directory(v: str) -> str | None:
    if not Path(v).is_dir():
        return "is not a directory"
    return None if os.access(v, os.R_OK | os.X_OK) else "is not readable"


# -- the table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    name: str  # the ServerConfig field
    kind: str  # int, float, str, bool, workers, list, table, size (bytes: 64k, 1m)
    flag: str | None = None  # "--max-connections"; None: TOML only
    metavar: str | None = None
    help: str = ""
    check: Check | None = None
    optional: bool = False  # None is a valid value (the default)
    aliases: tuple[str, ...] = ()  # more TOML keys
    example: str = '[cache_control] ".css" = "max-age=3600"'  # a table's TOML shape


# Defaults live in ServerConfig, each next to its precedent; the help repeats them.
SETTINGS: tuple[Setting, ...] = (
    Setting("root", "str", None, None, "directory to serve", directory, aliases=("directory",)),
    Setting("host", "str", None, None, "address to bind", aliases=("bind",)),
    Setting("port", "int", None, None, "port", port_number),
    Setting("backend", "str"),
    Setting("listen", "list"),
    Setting(
        "max_connections",
        "int",
        "--max-connections",
        "N",
        "cap on open client connections per worker (default: from RLIMIT_NOFILE)",
        at_least(1),
        optional=True,
    ),
    Setting(
        "workers",
        "workers",
        "--workers",
        "N|auto",
        "worker processes, one loop and SO_REUSEPORT listener each (default auto: one "
        "per core; 1 = a single process, no supervisor)",
        at_least(0),
    ),
    Setting(
        "shutdown_timeout",
        "float",
        "--shutdown-timeout",
        "SECONDS",
        "graceful stop: finish in-flight responses for at most this long (default 10)",
        at_least(0),
    ),
    Setting(
        "header_timeout",
        "float",
        "--header-timeout",
        "SECONDS",
        "a request head must arrive within this (default 60, nginx); else 408",
        above(0),
    ),
    Setting(
        "keepalive_timeout",
        "float",
        "--keepalive-timeout",
        "SECONDS",
        "idle keep-alive connections close after this (default 75, nginx)",
        above(0),
    ),
    Setting(
        "send_timeout",
        "float",
        "--send-timeout",
        "SECONDS",
        "a client that reads nothing for this long is dropped (default 60, nginx)",
        above(0),
    ),
    Setting(
        "min_send_rate",
        "int",
        "--min-send-rate",
        "BYTES/S",
        "a response slower than this on average over send-timeout is dropped (default "
        "1024; 0 = no rate check)",
        at_least(0),
    ),
    Setting(
        "limit_rate",
        "size",
        "--limit-rate",
        "BYTES/S",
        "throttle each connection to this many bytes a second, suffixes k and m allowed "
        "(nginx limit_rate; default 0: off; not with --backend threads)",
        at_least(0),
    ),
    Setting(
        "limit_rate_after",
        "size",
        "--limit-rate-after",
        "BYTES",
        "the first BYTES of each response go unthrottled (nginx limit_rate_after; default 0)",
        at_least(0),
    ),
    Setting(
        "limit_conn_per_ip",
        "int",
        "--limit-conn-per-ip",
        "N",
        "connections per client address (IPv6: per /64), held across workers: the first "
        "request of one more gets 503 and the connection closes (nginx limit_conn; default "
        "0: off)",
        at_least(0),
    ),
    Setting(
        "limit_req",
        "str",
        "--limit-req",
        "RATE",
        "requests per client address as 20/s or 600/m, held across workers: a leaky bucket "
        "(nginx limit_req burst=N nodelay); beyond the burst 429 with Retry-After "
        "(default: off)",
        request_rate,
        optional=True,
    ),
    Setting(
        "limit_req_burst",
        "int",
        "--limit-req-burst",
        "N",
        "requests over --limit-req a client may make at once, answered at once (nginx "
        "burst=N nodelay; default 0: one per 1/RATE)",
        at_least(0),
    ),
    Setting(
        "sndbuf",
        "size",
        "--sndbuf",
        "BYTES",
        "SO_SNDBUF of the listeners, so of every connection (nginx listen sndbuf=; "
        "default: the kernel's autotuning)",
        at_least(4096),
        optional=True,
    ),
    Setting(
        "max_pipelined",
        "int",
        "--max-pipelined",
        "N",
        "pipelined requests answered per read before the rest wait (default 64)",
        at_least(1),
    ),
    Setting(
        "max_buffer_bytes",
        "int",
        "--max-buffer-bytes",
        "BYTES",
        "bytes read at a time and held unanswered per connection (default 65536)",
        at_least(1),  # 0 would read nothing, ever
    ),
    Setting(
        "cache_max_file_bytes",
        "int",
        "--cache-max-file-bytes",
        "BYTES",
        "files up to this size are served from memory (default 16384)",
        at_least(0),
    ),
    Setting(
        "cache_max_total_bytes",
        "int",
        "--cache-max-total-bytes",
        "BYTES",
        "memory cache bound (default 64 MiB)",
        at_least(0),
    ),
    Setting(
        "io_threads",
        "int",
        "--io-threads",
        "N",
        "threads for disk work off the loop: open/stat/read of cold files and cold chunks "
        "of file bodies (default 4; 0: all on the loop, a baseline; not with --backend threads)",
        at_least(0),
    ),
    Setting(
        "charset",
        "str",
        "--charset",
        "NAME",
        "charset added to text types (default utf-8; '' for none)",
        token_or_empty,
    ),
    Setting(
        "cache_control_default",
        "str",
        "--cache-control",
        "VALUE",
        "Cache-Control for every file (per extension: the TOML cache_control table)",
        header_text,
        optional=True,
    ),
    Setting(
        "access_log",
        "str",
        "--access-log",
        "PATH",
        "access log file ('-' for stderr; default off; SIGHUP reopens it)",
        log_target,
        optional=True,
    ),
    Setting(
        "log_format",
        "str",
        "--log-format",
        "combined|json",
        "access log format (default combined)",
        one_of("combined", "json"),
    ),
    Setting(
        "status_path",
        "str",
        "--status-path",
        "PATH",
        f"serve counters at this path, e.g. {STATUS_DEFAULT_PATH} (default off)",
        url_path,
        optional=True,
    ),
    Setting(
        "backlog",
        "int",
        "--backlog",
        "N",
        "listen backlog, capped by net.core.somaxconn (default 4096)",
        at_least(1),
    ),
    Setting(
        "max_accept_wait",
        "float",
        "--max-accept-wait",
        "SECONDS",
        "under a connection flood, drop new SYNs at random to hold the accept queue at a "
        "quarter of this many seconds of waiting (backlog shrunk to half of it as a "
        "backstop) and reset connections that waited longer; 0 = off (default 1.0)",
        at_least(0),
    ),
    Setting(
        "admission_trace",
        "str",
        "--admission-trace",
        "PATH",
        "append admission's readings and decisions, one JSON line per check (default off)",
        log_target,
        optional=True,
    ),
    Setting(
        "shed_keepalive_lag",
        "float",
        "--shed-keepalive-lag",
        "SECONDS",
        "loop lag above which new responses close their connection (default 0.05)",
        above(0),
    ),
    Setting(
        "shed_503_lag",
        "float",
        "--shed-503-lag",
        "SECONDS",
        "loop lag above which new requests get 503 + Retry-After (default 0.2)",
        above(0),
    ),
    Setting(
        "shed_accept_lag",
        "float",
        "--shed-accept-lag",
        "SECONDS",
        "loop lag above which new connections are closed at accept (default 0.5)",
        above(0),
    ),
    Setting("serve_dotfiles", "bool", "--dotfiles", None, "serve files whose name starts with '.'"),
    Setting("autoindex", "bool", "--autoindex", None, "list directories that have no index.html"),
    Setting("precompressed", "bool", "--no-precompressed", None, "do not serve x.gz/x.br siblings"),
    Setting(
        "compress",
        "bool",
        "--no-compress",
        None,
        "do not gzip (or, with the brotli package, br) text-like files on the fly",
    ),
    Setting(
        "compress_level",
        "int",
        "--compress-level",
        "N",
        "gzip level and brotli quality for on-the-fly compression, 1-9 (default 6)",
        between(1, 9),
    ),
    Setting(
        "compress_max_bytes",
        "size",
        "--compress-max-bytes",
        "BYTES",
        "larger files are sent uncompressed (default 8m; suffixes k, m, g)",
        at_least(0),
    ),
    Setting(
        "tls_cert",
        "list",
        "--tls-cert",
        "FILE",
        "certificate chain (PEM) for HTTPS; repeatable, each with its --tls-key; the first "
        "is the default, the others are chosen by SNI from their names",
        readable_files,
    ),
    Setting(
        "tls_key",
        "list",
        "--tls-key",
        "FILE",
        "private key (PEM) of the --tls-cert given in the same position",
        readable_files,
    ),
    Setting(
        "tls_client_ca",
        "str",
        "--tls-client-ca",
        "FILE",
        "require client certificates signed by these CAs (mutual TLS; default off)",
        readable_file,
        optional=True,
    ),
    Setting(
        "redirect_https",
        "int",
        "--redirect-https",
        "PORT",
        "answer plain HTTP on this port with 301 to the https URL (default off)",
        port_number,
        optional=True,
    ),
    Setting(
        "hsts",
        "int",
        "--hsts",
        "SECONDS",
        "send Strict-Transport-Security: max-age=SECONDS over HTTPS (default off)",
        at_least(0),
        optional=True,
    ),
    Setting(
        "proxy_protocol",
        "bool",
        "--proxy-protocol",
        None,
        "every listener requires a PROXY protocol header (v1 or v2) from a balancer and "
        "serves the client it names; one listener: --listen proxy:HOST:PORT (default off)",
    ),
    Setting(
        "trusted_proxy",
        "list",
        "--trusted-proxy",
        "CIDR",
        "believe Forwarded / X-Forwarded-For from these peers (repeatable; an address or a "
        "network): the access log shows the client they name, read right to left",
        networks,
    ),
    Setting(
        "health",
        "bool",
        "--health",
        None,
        "answer /_c10k/health: 200 while serving, 503 once told to stop (default off)",
    ),
    Setting("log_health", "bool", "--log-health", None, "write health checks to the access log"),
    Setting(
        "fallback",
        "str",
        "--fallback",
        "PATH",
        "answer a GET/HEAD of a path that does not exist with this file, status 200 (nginx "
        "try_files $uri $uri/ /index.html, for single-page apps); files and directories "
        "that exist win, refusals (dotfiles, traversal) stay errors; the file must exist "
        "below the root at start (default off)",
        url_path,
        optional=True,
    ),
    Setting(
        "error_page",
        "list",
        "--error-page",
        "CODE=PATH",
        "send this file (below the root, checked at start) for these statuses, keeping "
        "the status (nginx error_page; repeatable; CODE 400-599, several as 404,410=PATH); "
        "covers the file handler's errors and the server's own (400, 408, 414, 431, "
        "429, 503 ...); a page gone later gives the built-in one",
        error_pages,
    ),
    Setting(
        "add_header",
        "list",
        "--add-header",
        "'NAME: VALUE'",
        "add this header to 200, 206, 304 and 301 responses, not to errors (nginx "
        "add_header without always; repeatable; per path prefix: the TOML "
        "add_header_paths table); fields c10k sets itself are refused",
        header_lines,
    ),
    Setting(
        "drain_delay",
        "float",
        "--drain-delay",
        "SECONDS",
        "on SIGTERM, fail /_c10k/health and close connections after their response for "
        "this long while still serving, then drain (default 0)",
        at_least(0),
    ),
    # TOML only: the limits below have held up against every client we know of.
    Setting("linger_timeout", "float", check=above(0)),
    Setting("max_header_bytes", "int", check=at_least(1024)),
    Setting("max_fields", "int", check=at_least(1)),
    Setting("max_pending_output_bytes", "int", check=at_least(1024)),
    Setting("revalidate_seconds", "float", check=at_least(0)),
    Setting("open_file_idle", "float", check=at_least(0)),
    Setting("index", "str", check=file_name),
    Setting("reuse_port", "bool"),
    Setting("cache_control", "table", check=cache_table),
    Setting("compress_min_bytes", "size", check=at_least(0)),
    Setting(
        "add_header_paths",
        "table",
        check=header_paths,
        example='[add_header_paths] "/assets/" = ["Cache-Control: immutable"]',
    ),
    # Virtual hosts and per-path pacing (c10k.server.sites), TOML only.
    Setting("site", "sites"),  # [[site]] tables: checked by sites.parse_sites in resolve
    Setting("unknown_host", "choice", check=check_unknown_host),
    Setting(
        "limit_rate_paths",
        "table",
        check=rate_paths,
        example='[limit_rate_paths] "/downloads/" = "100k"',
    ),
)
BY_NAME = {s.name: s for s in SETTINGS}
assert set(BY_NAME) == {f.name for f in dataclasses.fields(ServerConfig)}, "a setting is missing"


def toml_keys() -> dict[str, Setting]:
    """Every key a --config file may use: names, flags without dashes, aliases."""
    keys: dict[str, Setting] = {}
    for s in SETTINGS:
        keys[s.name] = s
        for alias in s.aliases:
            keys[alias] = s
    for s in SETTINGS:  # a flag's name where no setting has it (cache_control: the table)
        if s.flag and not s.flag.startswith("--no-"):  # no_precompressed = false: no
            keys.setdefault(s.flag[2:].replace("-", "_"), s)
    return keys


# -- one value from the command line or from TOML ----------------------------------------
@dataclass
class Given:
    """A value as the user gave it, and where, for the messages."""

    name: str  # the setting
    value: Any
    where: str  # "--header-timeout" or "site.toml: header_timeout"
    text: bool = False  # a command-line string, still to convert


SIZE_SUFFIXES = {"k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(raw: str) -> tuple[int | None, str | None]:
    """``512``, ``64k``, ``1m``, ``2g`` (nginx's units: k = 1024) to bytes.

    >>> parse_size("64k"), parse_size("1M"), parse_size("1.5m")[0]
    ((65536, None), (1048576, None), None)
    """
    text = raw.strip().lower()
    unit = SIZE_SUFFIXES.get(text[-1:], 1) if text else 1
    digits = text[:-1] if unit != 1 else text
    if not digits.isdigit():
        return None, "must be a whole number of bytes, optionally with k, m or g (e.g. 64k)"
    return int(digits) * unit, None


def _convert_text(s: Setting, raw: str) -> tuple[Any, str | None]:
    """A command-line string to the setting's type."""
    if s.kind == "workers" and raw == "auto":
        return 0, None
    if s.kind == "size":
        return parse_size(raw)
    if s.kind in ("int", "workers"):
        try:
            return int(raw), None
        except ValueError:
            more = " or auto" if s.kind == "workers" else ""
            return None, f"must be a whole number{more}"
    if s.kind == "float":
        try:
            value = float(raw)
        except ValueError:
            return None, "must be a number"
        return (value, None) if math.isfinite(value) else (None, "must be a finite number")
    return raw, None


def _check_type(s: Setting, value: Any) -> tuple[Any, str | None]:
    """A TOML value against the setting's type; ints widen to floats, nothing else."""
    if value is None and s.optional:
        return None, None
    kind = "int" if s.kind == "workers" else s.kind
    if kind == "size" and isinstance(value, str):
        return parse_size(value)
    if kind == "size":
        kind = "int"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, "must be a whole number"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, "must be a number"
        if not math.isfinite(value):
            return None, "must be a finite number"
        value = float(value)
    elif kind == "str" and not isinstance(value, str):
        return None, "must be a string"
    elif kind == "bool" and not isinstance(value, bool):
        return None, "must be true or false"
    elif kind == "list" and (
        not isinstance(value, list) or not all(isinstance(v, str) for v in value)
    ):
        return None, "must be a list of strings"
    elif kind == "table" and not isinstance(value, dict):
        return None, f"must be a table, e.g. {s.example}"
    return value, None


def typed(given: Given) -> tuple[Any, str | None]:
    """The value in the setting's type and range, or what is wrong with it."""
    s = BY_NAME[given.name]
    if s.kind == "workers" and given.value == "auto":
        value, problem = 0, None
    elif given.text:
        value, problem = _convert_text(s, given.value)
    else:
        value, problem = _check_type(s, given.value)
    if problem is None and s.check is not None and value is not None:
        problem = s.check(value)
    return value, problem


def describe(given: Given, problem: str) -> str:
    """One line: where the value came from, the value, what is wrong."""
    value = given.value
    shown = value if given.text and value and value.isprintable() else repr(value)
    if isinstance(value, list):  # the check names the item
        return f"{given.where}: {problem}"
    if given.text:  # "--header-timeout -5", "port 99999"
        return f"{given.where} {shown}: {problem}"
    return f"{given.where} = {shown}: {problem}"


def unknown_key(key: str, where: str, known: Iterable[str]) -> str:
    near = difflib.get_close_matches(key.replace("-", "_"), list(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{where}: unknown setting {key!r}{hint}"


# -- a whole configuration ---------------------------------------------------------------
def from_toml(data: dict[str, Any], path: str) -> tuple[list[Given], list[str]]:
    """The values of a parsed --config file, and the problems of its keys."""
    keys = toml_keys()
    given: list[Given] = []
    problems: list[str] = []
    for key, value in data.items():
        where = f"{path}: {key}"
        name = key.replace("-", "_")
        if name == "status" and isinstance(value, bool):  # status = true: the --status flag
            given.append(Given("status_path", STATUS_DEFAULT_PATH if value else None, where))
        elif name == "cache_control" and isinstance(value, str):  # --cache-control's name
            given.append(Given("cache_control_default", value, where))
        elif name == "tls":  # [[tls]] cert = "...", key = "..."
            pairs, problem = _tls_tables(value)
            if problem:
                problems.append(f"{where}: {problem}")
            else:
                given.append(Given("tls_cert", [c for c, _ in pairs], where))
                given.append(Given("tls_key", [k for _, k in pairs], where))
        elif name in keys:
            given.append(Given(keys[name].name, value, where))
        else:
            problems.append(unknown_key(key, path, [*keys, "status", "tls"]))
    return given, problems


def _tls_tables(value: Any) -> tuple[list[tuple[str, str]], str | None]:
    """``[[tls]]`` tables, each with ``cert`` and ``key`` (strings, nothing else)."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        return [], 'must be [[tls]] tables with cert = "FILE" and key = "FILE"'
    pairs = []
    for i, table in enumerate(value, 1):
        cert, key = table.get("cert"), table.get("key")
        extra = sorted(set(table) - {"cert", "key"})
        if not isinstance(cert, str) or not isinstance(key, str) or extra:
            return [], f'table {i} must have cert = "FILE" and key = "FILE" and nothing else'
        pairs.append((cert, key))
    return pairs, None


def resolve(given: list[Given]) -> tuple[ServerConfig | None, list[str]]:
    """ServerConfig from the values in order (a later one wins), or every problem.

    Each value is checked on its own and then against the others (``--listen`` with
    ``-p``, the shedding lags in order, what the mode and this machine can do)."""
    values: dict[str, Any] = {}
    sources: dict[str, Given] = {}
    problems: list[str] = []
    bad: set[str] = set()
    for g in given:
        if g.name == "site":  # [[site]] tables: every problem at once, one line each
            value, more = parse_sites(g.value, g.where)
            problems += more
            if more:
                bad.add(g.name)
                continue
            problem = None
        else:
            value, problem = typed(g)
        if problem is not None:
            problems.append(describe(g, problem))
            bad.add(g.name)
        else:
            values[g.name] = value
            sources[g.name] = g
    config = ServerConfig(**{k: v for k, v in values.items() if k not in bad})
    if config.tls_cert and not config.listen and "port" not in sources:
        config.port = HTTPS_DEFAULT_PORT
    problems += _together(config, sources, bad)
    return (None, problems) if problems else (config, [])


def _together(config: ServerConfig, sources: dict[str, Given], bad: set[str]) -> list[str]:
    """Problems of settings that are each fine alone (``bad``: names that are not, whose
    combinations are not judged)."""
    problems = _listen_problems(config, sources)
    lags = ["shed_keepalive_lag", "shed_503_lag", "shed_accept_lag"]
    for low, high in itertools.pairwise(lags):
        if low in bad or high in bad:
            continue
        if getattr(config, low) > getattr(config, high):
            problems.append(
                f"{_flag(low)} {getattr(config, low):g} is above {_flag(high)} "
                f"{getattr(config, high):g}: the shedding tiers must come in this order: "
                "keep-alive, 503, accept"
            )
    if config.limit_rate_after and not config.limit_rate and not bad & {"limit_rate"}:
        problems.append(
            f"--limit-rate-after {config.limit_rate_after} does nothing without --limit-rate"
        )
    if config.limit_req_burst and config.limit_req is None and not bad & {"limit_req"}:
        problems.append(
            f"--limit-req-burst {config.limit_req_burst} does nothing without --limit-req"
        )
    if not bad & {"root", "serve_dotfiles", "site"} and not config.site:
        problems += _page_problems(config, sources, bad)  # with sites: each site's, below
    if config.site and not bad & {"site", "fallback", "error_page", "serve_dotfiles"}:
        problems += site_problems(config, sources["site"].where)
    if not bad & {"tls_cert", "tls_key", "tls_client_ca", "listen", "redirect_https"}:
        problems += _tls_problems(config)
    mode = None if bad & {"backend", "io_threads"} else _mode_problem(config)
    if mode:
        problems.append(mode)
    elif bad & {"workers", "max_connections"}:
        pass
    elif config.workers == 1 and config.max_connections is not None:
        problems += _one_process_cap(config)
    return problems


def _page_problems(config: ServerConfig, sources: dict[str, Given], bad: set[str]) -> list[str]:
    """The fallback and error pages must be readable files below the root, now."""
    wanted = []
    if config.fallback and "fallback" not in bad:
        wanted.append(("fallback", config.fallback))
    if "error_page" not in bad:
        pages = sorted(set(error_pages_from(config.error_page).values()))
        wanted += [("error_page", path) for path in pages]
    problems = []
    for name, path in wanted:
        problem = page_problem(config.root, path, config.serve_dotfiles)
        if problem:
            problems.append(f"{sources[name].where}: {problem}")
    return problems


def _flag(name: str) -> str:
    return BY_NAME[name].flag or name


def _listen_problems(config: ServerConfig, sources: dict[str, Given]) -> list[str]:
    from c10k.server.listeners import parse_listen, strip_tls

    problems = [
        f"{sources[name].where} is not used with --listen: put the address in --listen "
        f"(e.g. --listen {config.host}:{config.port})"
        for name in ("port", "host")
        if config.listen and name in sources
    ]
    for spec in config.listen:
        try:
            parse_listen(strip_tls(spec)[1], config.host)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def _mode_problem(config: ServerConfig) -> str | None:
    """The backend or server mode cannot run here, or cannot honour a setting."""
    from c10k.core.backend import BackendUnavailable
    from c10k.core.registry import BACKENDS
    from c10k.server.modes import SERVER_MODES, ModeUnavailable, check_settings

    names = ("auto", *BACKENDS, *SERVER_MODES)
    if config.backend not in names:
        return f"backend {config.backend!r}: must be one of {', '.join(names)}"
    try:
        check_settings(config)
    except (BackendUnavailable, ModeUnavailable) as exc:
        return str(exc)
    return None


def _one_process_cap(config: ServerConfig) -> list[str]:
    from c10k.server.base import FD_RESERVE
    from c10k.server.process import per_process_cap

    cap, hard = per_process_cap(config.backend)
    wanted = config.max_connections or 0
    if wanted <= cap:
        return []
    need = math.ceil(wanted / cap)
    return [
        f"--max-connections {wanted:,} is more than one process can hold here ({cap:,}: "
        f"RLIMIT_NOFILE hard limit {hard:,} minus {FD_RESERVE} kept for the server); use "
        f"--workers {need} or more (or auto), or raise the hard limit"
    ]


def _tls_problems(config: ServerConfig) -> list[str]:
    from c10k.server.certs import CertError, load
    from c10k.server.listeners import listen_roles, strip_tls

    if len(config.tls_cert) != len(config.tls_key):
        return [
            f"{plural(len(config.tls_cert), 'certificate')} (--tls-cert) and "
            f"{plural(len(config.tls_key), 'key')} (--tls-key): they come in pairs"
        ]
    marked = [spec for spec in config.listen if strip_tls(spec)[0]]
    if not config.tls_cert:
        needs = [f"--listen {marked[0]}"] if marked else []
        needs += ["--redirect-https"] * (config.redirect_https is not None)
        needs += ["--tls-client-ca"] * (config.tls_client_ca is not None)
        needs += ["--hsts"] * (config.hsts is not None)
        return [f"{what} needs --tls-cert and --tls-key" for what in needs]
    if config.hsts is not None and "http" in listen_roles(config):
        return [
            "--hsts needs every listener that serves files to be HTTPS (RFC 6797 section "
            "7.2: no Strict-Transport-Security over plain HTTP); answer plain HTTP with "
            "--redirect-https instead"
        ]
    if config.listen and not marked:
        return [
            "with --listen, say which listeners speak TLS: --listen tls:HOST:PORT "
            f"(e.g. --listen tls:{strip_tls(config.listen[0])[1]})"
        ]
    try:
        load(list(zip(config.tls_cert, config.tls_key, strict=True)), config.tls_client_ca)
    except CertError as exc:
        return [str(exc)]
    return []
