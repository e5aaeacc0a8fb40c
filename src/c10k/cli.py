"""The command line: ``c10k serve | bench``.

``serve`` also takes the flags users know from ``python -m http.server``: a positional
port, ``-b/--bind`` and ``-d/--directory``. With no directory it serves the current one
if it has an index.html, else the built-in welcome site shipped in the package.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

from c10k import __version__
from c10k.core.registry import BACKENDS, available_backends, unavailable_backends
from c10k.server.config import ServerConfig
from c10k.server.modes import (
    SERVER_MODES,
    available_modes,
    unavailable_modes,
)
from c10k.server.settings import (
    SETTINGS,
    STATUS_DEFAULT_PATH,
    Given,
    from_toml,
    resolve,
)

EMBEDDED_ROOT = Path(__file__).with_name("www")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve static files over HTTP/1.1",
        description="Serve a directory over HTTP/1.1. Every option can also be set in a TOML "
        "file (--config), under its flag's name (max_connections = 5000, dotfiles = true) "
        "or its ServerConfig name; flags on the command line win over the file.",
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
    p.add_argument("-p", "--port", default=argparse.SUPPRESS, help="port (default 8000; 0 = any)")
    p.add_argument(
        "--listen",
        action="append",
        default=argparse.SUPPRESS,
        metavar="ADDR",
        help="listen here (repeatable): HOST:PORT, [V6]:PORT or unix:/path; tls:HOST:PORT "
        "for HTTPS (with --tls-cert)",
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
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="read settings from a TOML file (re-read on SIGHUP when there are workers)",
    )
    for s in SETTINGS:
        if s.flag is None:
            continue
        if s.kind == "list":  # repeatable
            p.add_argument(
                s.flag,
                dest=s.name,
                action="append",
                metavar=s.metavar,
                default=argparse.SUPPRESS,
                help=s.help,
            )
        elif s.kind == "bool":
            action = "store_false" if s.flag.startswith("--no-") else "store_true"
            p.add_argument(
                s.flag, dest=s.name, action=action, default=argparse.SUPPRESS, help=s.help
            )
        else:  # a string: settings.typed converts it, so every bad flag is reported
            p.add_argument(
                s.flag, dest=s.name, metavar=s.metavar, default=argparse.SUPPRESS, help=s.help
            )
    p.add_argument(
        "--status",
        dest="status_path",
        action="store_const",
        const=STATUS_DEFAULT_PATH,
        default=argparse.SUPPRESS,
        help=f"serve counters at {STATUS_DEFAULT_PATH}",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="check every setting (flags and --config, TLS files, addresses) without "
        "binding or starting anything; print the problems (exit 1) or that it is valid",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages (and tracebacks)"
    )


class ConfigError(Exception):
    """Bad settings: one line per problem in the message."""


def load_toml(path: str) -> tuple[list[Given], list[str]]:
    """The values of a --config file (see c10k.server.settings for the keys)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        return [], [f"cannot read {path}: {exc.strerror}"]
    except tomllib.TOMLDecodeError as exc:
        return [], [f"{path}: {exc}"]
    return from_toml(data, path)


def build_config(ns: argparse.Namespace) -> ServerConfig:
    """ServerConfig from defaults < --config file < command-line flags.

    Raises:
        ConfigError: every problem found, one per line.
    """
    given, problems = load_toml(ns.config) if ns.config else ([], [])
    flags = vars(ns)
    for name, where in (("host", "-b"), ("port", "-p"), ("root", "-d")):
        key = "directory" if name == "root" else name
        if key in flags:
            given.append(Given(name, flags[key], where, text=True))
    for name in ("listen", "backend"):
        if name in flags:
            given.append(Given(name, flags[name], f"--{name}"))
    for s in SETTINGS:
        if s.flag and s.name in flags:
            given.append(Given(s.name, flags[s.name], s.flag, text=s.kind not in ("bool", "list")))
    problems += _positional(ns.args, flags, given)
    if not any(g.name == "root" for g in given):
        root = "." if Path("index.html").is_file() else str(EMBEDDED_ROOT)
        given.insert(0, Given("root", root, "the default directory", text=True))
    config, more = resolve(given)
    problems += more
    if problems or config is None:
        raise ConfigError("\n".join(problems))
    return config


def _positional(args: list[str], flags: dict[str, Any], given: list[Given]) -> list[str]:
    """http.server style: `c10k serve 8080`, `c10k serve DIR`, `c10k serve DIR 8080`."""
    has_port, has_dir = "port" in flags, "directory" in flags
    for arg in args:
        if arg.isdigit() and not has_port:
            given.append(Given("port", arg, "port", text=True))
            has_port = True
        elif not has_dir:
            given.append(Given("root", arg, "directory", text=True))
            has_dir = True
        else:
            return [f"unexpected argument {arg!r}"]
    return []


def _serve(ns: argparse.Namespace) -> int:
    # The server (one process, or a supervisor and its workers): c10k.server.process.
    import importlib

    process = importlib.import_module("c10k.server.process")
    # --check-config exits 1 on a problem, as `nginx -t` does, so scripts can tell "the
    # file is wrong" from a start refused (2); a normal start keeps its 2.
    refuse = 1 if ns.check_config else 2
    try:
        config = build_config(ns)
    except ConfigError as exc:
        return _refused(str(exc).splitlines(), refuse)
    if ns.check_config:
        problems = process.preflight(config)
        if problems:
            return _refused(problems, refuse)
        from c10k.server.sites import served

        print(f"c10k serve: the configuration is valid (serving {served(config)})")
        return 0
    return int(process.serve(config, announce=print, reload_config=lambda: _reload(ns)))


def _refused(problems: list[str], status: int) -> int:
    for line in problems:
        print(f"c10k serve: {line}", file=sys.stderr)
    return status


def _reload(ns: argparse.Namespace) -> ServerConfig:
    """SIGHUP: the flags and the --config file again; the problems on one log line."""
    try:
        return build_config(ns)
    except ConfigError as exc:
        raise ConfigError("; ".join(str(exc).splitlines())) from None


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
    parser.add_argument("--version", action="version", version=f"c10k {__version__}")
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
