"""The command line: ``c10k serve | bench``.

``serve`` also takes the flags users know from ``python -m http.server``: a positional
port, ``-b/--bind`` and ``-d/--directory``. With no directory it serves the current one
if it has an index.html, else the built-in welcome site shipped in the package.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from c10k.core.backend import BackendUnavailable
from c10k.core.registry import BACKENDS, available_backends, unavailable_backends
from c10k.server.modes import (
    SERVER_MODES,
    ModeUnavailable,
    ServerLike,
    available_modes,
    mode_class,
    unavailable_modes,
)

EMBEDDED_ROOT = Path(__file__).with_name("www")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve static files over HTTP/1.1",
        description="Serve a directory over HTTP/1.1 on one event loop.",
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
        help="directory to serve (default: current if it has "
        "an index.html, else the built-in welcome site)",
    )
    p.add_argument(
        "-b",
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to bind (default 127.0.0.1; 0.0.0.0 or :: for all)",
    )
    p.add_argument("-p", "--port", type=int, default=None, help="port (default 8000; 0 = any free)")
    names = ["auto", *BACKENDS, *SERVER_MODES]
    p.add_argument(
        "--backend",
        default="auto",
        choices=names,
        metavar="NAME",
        help=f"I/O strategy: a readiness backend ({', '.join(BACKENDS)}) or a server mode "
        f"({', '.join(SERVER_MODES)}); `c10k backends` says which run here",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="cap on open client connections (default: from RLIMIT_NOFILE)",
    )
    p.add_argument("--header-timeout", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--keepalive-timeout", type=float, default=75.0, metavar="SECONDS")
    p.add_argument("--send-timeout", type=float, default=60.0, metavar="SECONDS")
    p.add_argument(
        "--cache-max-file-bytes",
        type=int,
        default=16 * 1024,
        help="files up to this size are kept in memory (default 16384)",
    )
    p.add_argument("--cache-max-total-bytes", type=int, default=64 * 1024 * 1024)
    p.add_argument("--dotfiles", action="store_true", help="serve files whose name starts with '.'")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


def _serve(ns: argparse.Namespace) -> int:
    from c10k.server import Server, ServerConfig

    directory = ns.directory
    port = ns.port
    for arg in ns.args:
        if arg.isdigit() and port is None:
            port = int(arg)
        elif directory is None:
            directory = arg
        else:
            print(f"c10k serve: unexpected argument {arg!r}", file=sys.stderr)
            return 2
    if directory is None:
        directory = "." if Path("index.html").is_file() else str(EMBEDDED_ROOT)
    if not Path(directory).is_dir():
        print(f"c10k serve: {directory!r} is not a directory", file=sys.stderr)
        return 2
    config = ServerConfig(
        root=directory,
        host=ns.bind,
        port=8000 if port is None else port,
        backend=ns.backend,
        max_connections=ns.max_connections,
        header_timeout=ns.header_timeout,
        keepalive_timeout=ns.keepalive_timeout,
        send_timeout=ns.send_timeout,
        cache_max_file_bytes=ns.cache_max_file_bytes,
        cache_max_total_bytes=ns.cache_max_total_bytes,
        serve_dotfiles=ns.dotfiles,
    )
    try:
        if ns.backend in SERVER_MODES:
            server: ServerLike = mode_class(ns.backend)(config)
        else:
            server = Server(config)
    except (BackendUnavailable, ModeUnavailable) as exc:
        print(f"c10k serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"c10k serve: cannot listen on {ns.bind}:{config.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    server.install_signal_handlers()
    print(
        f"c10k serving {os.path.abspath(directory)} at {server.url}\n"
        f"  backend {server.backend_name}; capacity {server.capacity:,} connections "
        f"({server.capacity_reason}; RLIMIT_NOFILE soft {server.nofile_soft}, "
        f"hard {server.nofile_hard})",
        flush=True,
    )
    server.serve_forever(install_signals=False)
    print(f"c10k stopped after {server.requests:,} requests", flush=True)
    return 0


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
    parser = argparse.ArgumentParser(
        prog="c10k",
        description="A static HTTP/1.1 server for ten thousand clients and more, "
        "and the benchmark that proves it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    sub.add_parser("bench", help="run the benchmark scenarios (see `c10k bench --help`)")
    sub.add_parser("backends", help="list the readiness backends and which run here")
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
