"""The command line: ``c10k serve | bench``.

``serve`` also takes the flags users know from ``python -m http.server``: a positional
port, ``-b/--bind`` and ``-d/--directory``. With no directory it serves the current one
if it has an index.html, else the built-in welcome site shipped in the package.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

from c10k.core.registry import BACKENDS, available_backends, unavailable_backends
from c10k.server.config import ServerConfig
from c10k.server.modes import (
    SERVER_MODES,
    available_modes,
    unavailable_modes,
)

EMBEDDED_ROOT = Path(__file__).with_name("www")


def workers_arg(value: str) -> int:
    """``--workers``: a count, or ``auto`` (= 0, one per core)."""
    if value == "auto":
        return 0
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


# Flags that map one-to-one onto ServerConfig fields: (flag, field, type, metavar, help).
# Defaults come from ServerConfig (each cites its precedent there); a TOML file given with
# --config sets the same fields by name, and flags given on the command line win over it.
CONFIG_FLAGS: list[tuple[str, str, Any, str | None, str]] = [
    (
        "--max-connections",
        "max_connections",
        int,
        "N",
        "cap on open client connections per worker (default: from RLIMIT_NOFILE)",
    ),
    (
        "--workers",
        "workers",
        workers_arg,
        "N|auto",
        "worker processes, one loop and SO_REUSEPORT listener each (default auto: one "
        "per core; 1 = a single process, no supervisor)",
    ),
    (
        "--shutdown-timeout",
        "shutdown_timeout",
        float,
        "SECONDS",
        "graceful stop: finish in-flight responses for at most this long (default 10)",
    ),
    (
        "--header-timeout",
        "header_timeout",
        float,
        "SECONDS",
        "a request head must arrive within this (default 60, nginx); else 408",
    ),
    (
        "--keepalive-timeout",
        "keepalive_timeout",
        float,
        "SECONDS",
        "idle keep-alive connections close after this (default 75, nginx)",
    ),
    (
        "--send-timeout",
        "send_timeout",
        float,
        "SECONDS",
        "a client that reads nothing for this long is dropped (default 60, nginx)",
    ),
    (
        "--min-send-rate",
        "min_send_rate",
        int,
        "BYTES/S",
        "a response slower than this on average over send-timeout is dropped (default 1024)",
    ),
    (
        "--max-pipelined",
        "max_pipelined",
        int,
        "N",
        "pipelined requests answered per read before the rest wait (default 64)",
    ),
    (
        "--max-buffer-bytes",
        "max_buffer_bytes",
        int,
        "BYTES",
        "bytes read at a time and held unanswered per connection (default 65536)",
    ),
    (
        "--cache-max-file-bytes",
        "cache_max_file_bytes",
        int,
        "BYTES",
        "files up to this size are served from memory (default 16384)",
    ),
    (
        "--cache-max-total-bytes",
        "cache_max_total_bytes",
        int,
        "BYTES",
        "memory cache bound (default 64 MiB)",
    ),
    (
        "--io-threads",
        "io_threads",
        int,
        "N",
        "threads for cold-file open/stat/read off the loop (default 4; not with --backend threads)",
    ),
    (
        "--charset",
        "charset",
        str,
        "NAME",
        "charset added to text types (default utf-8; '' for none)",
    ),
    (
        "--cache-control",
        "cache_control_default",
        str,
        "VALUE",
        "Cache-Control for every file (per extension: the TOML cache_control table)",
    ),
    ("--access-log", "access_log", str, "PATH", "access log file ('-' for stderr; default off)"),
    ("--log-format", "log_format", str, "combined|json", "access log format (default combined)"),
    (
        "--status-path",
        "status_path",
        str,
        "PATH",
        "serve counters at this path, e.g. /_c10k/status (default off)",
    ),
    (
        "--backlog",
        "backlog",
        int,
        "N",
        "listen backlog, capped by net.core.somaxconn (default 4096)",
    ),
    (
        "--max-accept-wait",
        "max_accept_wait",
        float,
        "SECONDS",
        "under a connection flood, drop new SYNs at random to hold the accept queue at a "
        "tenth of this many seconds of accepts (backlog shrunk to half of it as a "
        "backstop) and reset connections that waited longer; 0 = off (default 1.0)",
    ),
    (
        "--shed-keepalive-lag",
        "shed_keepalive_lag",
        float,
        "SECONDS",
        "loop lag above which new responses close their connection (default 0.05)",
    ),
    (
        "--shed-503-lag",
        "shed_503_lag",
        float,
        "SECONDS",
        "loop lag above which new requests get 503 + Retry-After (default 0.2)",
    ),
    (
        "--shed-accept-lag",
        "shed_accept_lag",
        float,
        "SECONDS",
        "loop lag above which new connections are closed at accept (default 0.5)",
    ),
]
BOOL_FLAGS: list[tuple[str, str, str]] = [
    ("--dotfiles", "serve_dotfiles", "serve files whose name starts with '.'"),
    ("--autoindex", "autoindex", "list directories that have no index.html"),
    ("--no-precompressed", "precompressed", "do not serve x.gz/x.br siblings"),
    ("--status", "status_path", "serve counters at /_c10k/status"),
]


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve static files over HTTP/1.1",
        description="Serve a directory over HTTP/1.1. Every option can also be set in a TOML "
        "file (--config) under its ServerConfig name, e.g. keepalive_timeout = 5.",
    )
    p.add_argument(
        "args",
        nargs="*",
        metavar="DIR|PORT",
        help="directory to serve and/or port (http.server style: `c10k serve 8080`)",
    )
    p.add_argument(
        "-d",
        "--directory",
        default=argparse.SUPPRESS,
        help="directory to serve (default: current if it has "
        "an index.html, else the built-in welcome site)",
    )
    p.add_argument(
        "-b",
        "--bind",
        dest="host",
        default=argparse.SUPPRESS,
        metavar="ADDR",
        help="address to bind (default 127.0.0.1; 0.0.0.0 or :: for all)",
    )
    p.add_argument(
        "-p", "--port", type=int, default=argparse.SUPPRESS, help="port (default 8000; 0 = any)"
    )
    p.add_argument(
        "--listen",
        action="append",
        default=argparse.SUPPRESS,
        metavar="ADDR",
        help="listen here (repeatable): HOST:PORT, [V6]:PORT or unix:/path",
    )
    names = ["auto", *BACKENDS, *SERVER_MODES]
    p.add_argument(
        "--backend",
        default=argparse.SUPPRESS,
        choices=names,
        metavar="NAME",
        help=f"I/O strategy: a readiness backend ({', '.join(BACKENDS)}) or a server mode "
        f"({', '.join(SERVER_MODES)}); `c10k backends` says which run here (default auto)",
    )
    p.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")
    for flag, field_name, kind, metavar, help_text in CONFIG_FLAGS:
        p.add_argument(
            flag,
            dest=field_name,
            type=kind,
            metavar=metavar,
            default=argparse.SUPPRESS,
            help=help_text,
        )
    for flag, field_name, help_text in BOOL_FLAGS:
        if flag == "--status":
            p.add_argument(
                flag,
                dest=field_name,
                action="store_const",
                const="/_c10k/status",
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            p.add_argument(
                flag,
                dest=field_name,
                action="store_false" if flag.startswith("--no-") else "store_true",
                default=argparse.SUPPRESS,
                help=help_text,
            )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


class ConfigError(Exception):
    """A bad --config file or value; the message names the key and the problem."""


def load_toml(path: str) -> dict[str, Any]:
    """Read a --config file: keys are ServerConfig field names (dashes allowed)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name == "directory":
            name = "root"
        if name not in fields:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        default = getattr(ServerConfig(), name)
        numeric = isinstance(default, float) and isinstance(value, int)
        if default is not None and not isinstance(value, type(default)) and not numeric:
            raise ConfigError(f"{path}: {key} must be {type(default).__name__}, got {value!r}")
        out[name] = value
    return out


def build_config(ns: argparse.Namespace) -> ServerConfig:
    """ServerConfig from defaults < --config file < command-line flags.

    Raises:
        ConfigError: a bad file, key, value or positional argument.
    """
    settings: dict[str, Any] = {}
    if ns.config:
        settings.update(load_toml(ns.config))
    given = vars(ns)
    for key in ("host", "port", "listen", "backend"):
        if key in given:
            settings[key] = given[key]
    if "directory" in given:
        settings["root"] = given["directory"]
    for _, field_name, *_rest in CONFIG_FLAGS:
        if field_name in given:
            settings[field_name] = given[field_name]
    for _, field_name, _ in BOOL_FLAGS:
        if field_name in given:
            settings[field_name] = given[field_name]
    for arg in ns.args:
        if arg.isdigit() and "port" not in given:
            settings["port"] = int(arg)
            given["port"] = True
        elif "directory" not in given:
            settings["root"] = arg
            given["directory"] = True
        else:
            raise ConfigError(f"unexpected argument {arg!r}")
    if "root" not in settings:
        settings["root"] = "." if Path("index.html").is_file() else str(EMBEDDED_ROOT)
    config = ServerConfig(**settings)
    if not Path(config.root).is_dir():
        raise ConfigError(f"{config.root!r} is not a directory")
    if config.log_format not in ("combined", "json"):
        raise ConfigError(f"--log-format must be combined or json, not {config.log_format!r}")
    if config.backend not in ("auto", *BACKENDS, *SERVER_MODES):
        raise ConfigError(f"unknown backend {config.backend!r}")
    for name in ("workers", "io_threads", "max_pipelined", "max_buffer_bytes", "max_accept_wait"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0")
    if config.max_connections is not None and config.max_connections < 1:
        raise ConfigError("max_connections must be >= 1")
    if config.backlog < 1:
        raise ConfigError("backlog must be >= 1")
    return config


def _serve(ns: argparse.Namespace) -> int:
    # build_config marks positional arguments in ``ns`` as it reads them; a SIGHUP reload
    # re-reads --config and the flags from a pristine copy.
    pristine = copy.copy(ns)
    try:
        config = build_config(ns)
    except (ConfigError, TypeError) as exc:
        print(f"c10k serve: {exc}", file=sys.stderr)
        return 2
    # The server (one process, or a supervisor and its workers): c10k.server.process.
    import importlib

    process = importlib.import_module("c10k.server.process")
    return int(
        process.serve(
            config, announce=print, reload_config=lambda: build_config(copy.copy(pristine))
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``c10k`` command and ``python -m c10k``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        try:
            from c10k.bench.cli import main as bench_main
        except ImportError as exc:  # pragma: no cover - the package ships bench
            print(f"c10k bench is unavailable: {exc}", file=sys.stderr)
            return 2
        return bench_main(argv[1:])
    if argv[:1] == ["doctor"]:
        import importlib

        doctor = importlib.import_module("c10k.doctor")
        return int(doctor.main(argv[1:]))
    parser = argparse.ArgumentParser(
        prog="c10k",
        description="A static HTTP/1.1 server for ten thousand clients and more, "
        "and the benchmark that proves it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    sub.add_parser("bench", help="run the benchmark scenarios (see `c10k bench --help`)")
    sub.add_parser("backends", help="list the readiness backends and which run here")
    sub.add_parser("doctor", help="what this machine allows, and how to raise each limit")
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(ns, "verbose", False) else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if ns.command == "serve":
        return _serve(ns)
    if ns.command == "backends":
        for name in available_backends():
            print(f"{name:10} runs here (readiness backend)")
        for name in available_modes():
            print(f"{name:10} runs here (server mode)")
        for name, reason in {**unavailable_backends(), **unavailable_modes()}.items():
            print(f"{name:10} unavailable: {reason}")
        return 0
    parser.print_help()
    return 2
