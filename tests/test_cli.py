"""The ``c10k`` command as users run it: every bad setting refused in one line, all at once,
with no traceback, from flags, a --config file and a SIGHUP reload alike (issue 19)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c10k.cli import _serve_parser, build_config
from c10k.server.config import ServerConfig
from c10k.server.process import per_process_cap
from c10k.server.settings import SETTINGS, toml_keys
from helpers import REPO

ENV = dict(os.environ, PYTHONPATH=str(REPO / "src"))


def c10k(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command. A bad value that slips through starts a server: the timeout
    turns that into a failure instead of a hang."""
    return subprocess.run(
        [sys.executable, "-m", "c10k", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=20,
    )


def refused(*args: str) -> list[str]:
    """``c10k serve ARGS`` must exit 2 without starting; its stderr lines."""
    try:
        r = c10k("serve", "-p", "0", *args) if "--listen" not in args else c10k("serve", *args)
    except subprocess.TimeoutExpired:
        pytest.fail(f"c10k serve {' '.join(args)} started instead of refusing")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines
    assert all(line.startswith("c10k serve: ") for line in lines), lines
    return lines


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--access-log", "/nonexistent-dir/x.log"], "no directory '/nonexistent-dir'"),
        (["--access-log", "/tmp"], "is a directory"),
        (["--admission-trace", "/nonexistent-dir/t.jsonl"], "no directory '/nonexistent-dir'"),
        (["--admission-trace", "/tmp"], "--admission-trace /tmp: is a directory"),
        (["--trusted-proxy", "10.0.0.0/33"], "'10.0.0.0/33' is not an IP address or CIDR"),
        (["--trusted-proxy", "lb.example"], "'lb.example' is not an IP address or CIDR"),
        (["--drain-delay", "-1"], "--drain-delay"),
        (["--cache-control", "max-age=60\nX: 1"], "printable ASCII"),
        (["--cache-control", "max-age=60, é"], "printable ASCII"),
        (["--charset", "utf-8\r\nX: 1"], "must be an HTTP token"),
        (["--header-timeout", "-5"], "--header-timeout -5: must be more than 0"),
        (["--keepalive-timeout", "-1"], "--keepalive-timeout -1: must be more than 0"),
        (["--send-timeout", "0"], "--send-timeout 0: must be more than 0"),
        (["--min-send-rate", "-1"], "--min-send-rate -1: must be at least 0"),
        (["--shutdown-timeout", "-1"], "--shutdown-timeout -1: must be at least 0"),
        (["--shed-503-lag", "-0.2"], "--shed-503-lag -0.2: must be more than 0"),
        (["--shed-keepalive-lag", "0.3"], "the shedding tiers must come in this order"),
        (["--header-timeout", "nan"], "must be a finite number"),
        (["--max-connections", "1.5"], "--max-connections 1.5: must be a whole number"),
        (["--workers", "many"], "--workers many: must be a whole number or auto"),
        (["--status-path", "nostartslash"], "--status-path nostartslash: must start with '/'"),
        (["--log-format", "xml"], "must be combined or json"),
        (["--max-buffer-bytes", "0"], "--max-buffer-bytes 0: must be at least 1"),
        (["--backlog", "0"], "--backlog 0: must be at least 1"),
        (["-p", "99999"], "-p 99999: must be a port number from 0 to 65535"),
        (["--io-threads", "2", "--backend", "threads"], "cannot honour --io-threads"),
        (["--limit-rate", "1.5m"], "--limit-rate 1.5m: must be a whole number of bytes"),
        (["--limit-rate", "fast"], "optionally with k, m or g (e.g. 64k)"),
        (["--limit-rate=-1k"], "--limit-rate -1k: must be a whole number"),
        (["--limit-rate-after", "1m"], "--limit-rate-after 1048576 does nothing without"),
        (["--limit-rate", "10k", "--backend", "threads"], "cannot honour --limit-rate"),
        (["--sndbuf", "1k"], "--sndbuf 1k: must be at least 4096"),
        (["-d", "/nonexistent-root"], "-d /nonexistent-root: is not a directory"),
        (["--fallback", "index.html"], "--fallback index.html: must start with '/'"),
        (["--error-page", "404"], "--error-page: '404': must be CODE=/PATH"),
        (["--error-page", "302=/x.html"], "'302' is not a status from 400 to 599"),
        (["--error-page", "404=404.html"], "must be a URL path starting with '/'"),
        (["--add-header", "X-A"], "--add-header: 'X-A': must be 'Name: value'"),
        (["--add-header", "X A: 1"], "'X A' is not a header name"),
        (["--add-header", "X-A: 1\r\nSet-Cookie: a=b"], "printable ASCII"),
        (["--add-header", "Content-Length: 0"], "Content-Length cannot be added"),
        (["--add-header", "Connection: close"], "hop-by-hop"),
        (["--add-header", "Server: nginx"], "Server cannot be added"),
        (["--compress-level", "0"], "--compress-level 0: must be from 1 to 9"),
        (["--compress-level", "10"], "--compress-level 10: must be from 1 to 9"),
        (["--compress-level", "best"], "--compress-level best: must be a whole number"),
        (["--compress-max-bytes", "big"], "--compress-max-bytes big: must be a whole number"),
        (["--compress-max-bytes=-1"], "--compress-max-bytes -1: must be a whole number"),
    ],
)
def test_cli_refuses_a_bad_value_in_one_line(args: list[str], expected: str) -> None:
    lines = refused(*args)
    assert len(lines) == 1, lines
    assert expected in lines[0], lines


def test_cli_reports_every_problem_at_once() -> None:
    lines = refused(
        "--header-timeout", "-5", "--send-timeout", "x", "--charset", "utf 8", "--workers", "-1"
    )
    assert len(lines) == 4, lines


def test_cli_pages_must_be_files_below_the_root(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "sub").mkdir()
    (root / ".404.html").write_text("x")
    (tmp_path / "outside.html").write_text("x")
    (root / "out.html").symlink_to(tmp_path / "outside.html")
    lines = refused(
        "-d",
        str(root),
        "--fallback",
        "/index.html",
        "--error-page",
        "404=/sub",
        "--error-page",
        "500,503=/out.html",
        "--error-page",
        "403=/.404.html",
    )
    assert lines == [
        f"c10k serve: --fallback: /index.html: no such file in {root}",
        "c10k serve: --error-page: /.404.html cannot name a file below the root (names "
        "starting with '.' need --dotfiles)",
        f"c10k serve: --error-page: /out.html leads out of the root {root}",
        "c10k serve: --error-page: /sub is not a regular file",
    ]


def test_cli_pages_and_headers_accepted(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    (tmp_path / ".404.html").write_text("x")
    r = c10k(
        "serve",
        str(tmp_path),
        "--fallback",
        "/index.html",
        "--dotfiles",
        "--error-page",
        "404,410=/.404.html",
        "--add-header",
        "X-Frame-Options: DENY",
        "--check-config",
    )
    assert r.returncode == 0, r.stderr


def test_cli_port_and_bind_with_listen_are_refused(tmp_path: Path) -> None:
    sock = str(tmp_path / "m.sock")
    lines = refused("-p", "8095", "-b", "127.0.0.1", "--listen", f"unix:{sock}")
    assert [line.split(" is not used")[0] for line in lines] == ["c10k serve: -p", "c10k serve: -b"]
    assert not Path(sock).exists()


def test_cli_hsts_refused_with_a_plain_listener(tmp_path: Path) -> None:
    import trustme

    leaf = trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--hsts", "60"]
    (line,) = refused(*tls, "--listen", "tls:127.0.0.1:0", "--listen", "127.0.0.1:0")
    assert "RFC 6797" in line
    (line,) = refused(*tls[:4], "--listen", "127.0.0.1:0")
    assert "say which listeners speak TLS: --listen tls:HOST:PORT" in line
    (line,) = refused("--hsts", "60")
    assert line.endswith("--hsts needs --tls-cert and --tls-key")


def test_cli_max_connections_more_than_one_process_holds() -> None:
    cap, _ = per_process_cap()
    (line,) = refused("--workers", "1", "--max-connections", str(cap + 1))
    assert f"more than one process can hold here ({cap:,}" in line
    assert "--workers 2 or more" in line


# -- --config ------------------------------------------------------------------------------
def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("max_connections = 1.5", "max_connections = 1.5: must be a whole number"),
        ("workers = true", "workers = True: must be a whole number"),
        ("keepalive_timeout = -1", "keepalive_timeout = -1: must be more than 0"),
        ("header_timeout = 'soon'", "must be a number"),
        ("dotfile = true", "unknown setting 'dotfile' (did you mean 'dotfiles'?)"),
        ("[cache_control]\n'.css' = 5", "'.css': must be a string"),
        ("[cache_control]\n'.css' = \"max-age=1\\nX: 2\"", "printable ASCII"),
        ("cache_control = 5", "must be a table"),
        ("listen = '127.0.0.1:80'", "must be a list of strings"),
        ("port = 70000", "must be a port number"),
        ("limit_rate = '2x'", "limit_rate = '2x': must be a whole number of bytes"),
        ("limit_rate = 1.5", "limit_rate = 1.5: must be a whole number"),
        ("sndbuf = 100", "sndbuf = 100: must be at least 4096"),
        ("status_path = 'x'", "must start with '/'"),
        ("index = '../x.html'", "must be a file name"),
        ("backend = 'nope'", "backend 'nope': must be one of"),
        ("this is not toml", "c.toml: "),
        ("fallback = 5", "fallback = 5: must be a string"),
        ("error_page = '404=/x.html'", "must be a list of strings"),
        ("error_page = ['404=/x.html']", "c.toml: error_page: /x.html: no such file"),
        ("add_header = ['Date: now']", "c.toml: add_header: 'Date: now': Date cannot be added"),
        ("add_header_paths = 5", 'e.g. [add_header_paths] "/assets/" = ['),
        ("[add_header_paths]\n'/a/' = 'X-A: 1'", "'/a/': must be a list of \"Name: value\""),
        ("[add_header_paths]\n'a/' = ['X-A: 1']", "'a/': a path prefix must start with '/'"),
        ("[add_header_paths]\n'/a/' = ['ETag: 1']", "'/a/': 'ETag: 1': ETag cannot be added"),
        ("compress = 'no'", "compress = 'no': must be true or false"),
        ("compress_level = 6.5", "compress_level = 6.5: must be a whole number"),
        ("compress-level = 0", "must be from 1 to 9"),
        ("compress_min_bytes = -1", "compress_min_bytes = -1: must be at least 0"),
        ("compress_max_bytes = '8x'", "must be a whole number of bytes"),
    ],
)
def test_cli_config_file_refuses_a_bad_value(tmp_path: Path, toml: str, expected: str) -> None:
    lines = refused("--config", write(tmp_path / "c.toml", toml))
    assert len(lines) == 1, lines
    assert expected in lines[0], lines


def test_cli_config_file_pages_and_headers(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    (tmp_path / "404.html").write_text("x")
    cfg = write(
        tmp_path / "c.toml",
        'fallback = "/index.html"\nerror_page = ["404=/404.html"]\n'
        'add-header = ["X-A: 1"]\n[add_header_paths]\n"/assets/" = ["Cache-Control: immutable"]\n',
    )
    parser = argparse.ArgumentParser()
    _serve_parser(parser.add_subparsers(dest="command"))
    config = build_config(parser.parse_args(["serve", str(tmp_path), "--config", cfg]))
    assert (config.fallback, config.error_page, config.add_header) == (
        "/index.html",
        ["404=/404.html"],
        ["X-A: 1"],
    )
    assert config.add_header_paths == {"/assets/": ["Cache-Control: immutable"]}


def test_cli_compression_settings(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    _serve_parser(parser.add_subparsers(dest="command"))
    config = build_config(parser.parse_args(["serve", str(tmp_path)]))
    assert (config.compress, config.compress_level) == (True, 6)  # on by default
    assert (config.compress_min_bytes, config.compress_max_bytes) == (1024, 8 << 20)
    flags = ["--no-compress", "--compress-level", "9", "--compress-max-bytes", "2m"]
    config = build_config(parser.parse_args(["serve", str(tmp_path), *flags]))
    assert (config.compress, config.compress_level, config.compress_max_bytes) == (
        False,
        9,
        2 << 20,
    )
    cfg = write(
        tmp_path / "c.toml",
        "compress = false\ncompress_level = 1\ncompress_min_bytes = '2k'\n"
        "compress-max-bytes = 65536\n",
    )
    config = build_config(parser.parse_args(["serve", str(tmp_path), "--config", cfg]))
    assert (config.compress, config.compress_level) == (False, 1)
    assert (config.compress_min_bytes, config.compress_max_bytes) == (2048, 65536)


def test_cli_config_file_reports_every_problem(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "max_connections = 1.5\nkeepalive = 5\nsend_timeout = -1\n")
    assert len(refused("--config", cfg)) == 3


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.flag], ids=lambda s: s.name)
def test_cli_config_keys_are_the_flag_names_too(setting: object) -> None:
    keys = toml_keys()
    flag = getattr(setting, "flag")  # noqa: B009 - the parameter is typed object for ids
    name = getattr(setting, "name")  # noqa: B009
    assert keys[name].name == name
    key = flag[2:].replace("-", "_")
    if name == "cache_control_default":  # the key is the per-extension table's name
        assert keys[key].name == "cache_control"
    elif not flag.startswith("--no-"):
        assert keys[key].name == name


def test_cli_config_flag_names_reach_the_server(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    cfg = write(
        tmp_path / "c.toml",
        'dotfiles = true\nstatus = true\nworkers = "auto"\n"max-connections" = 100\n'
        'cache-control = "max-age=5"\n',
    )
    r = c10k("serve", str(tmp_path), "--config", cfg, "--check-config")
    assert r.returncode == 0, r.stderr
    assert "the configuration is valid" in r.stdout
    parser = argparse.ArgumentParser()
    _serve_parser(parser.add_subparsers(dest="command"))
    config = build_config(parser.parse_args(["serve", str(tmp_path), "--config", cfg]))
    assert (config.serve_dotfiles, config.status_path, config.workers) == (
        True,
        "/_c10k/status",
        0,
    )
    assert (config.max_connections, config.cache_control_default) == (100, "max-age=5")
    assert config.keepalive_timeout == ServerConfig().keepalive_timeout


def test_cli_sighup_reload_uses_the_same_checks(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    cfg = tmp_path / "c.toml"
    cfg.write_text("keepalive_timeout = 5\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "c10k",
            "serve",
            str(tmp_path),
            "-p",
            "0",
            "--workers",
            "2",
            "--config",
            str(cfg),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        assert "serving" in proc.stdout.readline()
        cfg.write_text("keepalive_timeout = -5\nmax_connections = 1.5\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # time to log the refusal; checked below, not timed
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    refusal = [line for line in err.splitlines() if "configuration is invalid" in line]
    assert len(refusal) == 1, err[-3000:]
    assert "keepalive_timeout = -5: must be more than 0" in refusal[0]
    assert "max_connections = 1.5: must be a whole number" in refusal[0]
    assert "Traceback" not in err


# -- the command itself ---------------------------------------------------------------------
def test_cli_version() -> None:
    from c10k import __version__

    r = c10k("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"c10k {__version__}"


def test_cli_check_config_does_not_serve(tmp_path: Path) -> None:
    r = c10k("serve", str(tmp_path), "-p", "0", "--check-config")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"c10k serve: the configuration is valid (serving {tmp_path})"


def _help_flags() -> set[str]:
    text = c10k("serve", "--help").stdout
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", text.split("options:")[1]))


def _readme_flags() -> set[str]:
    readme = (REPO / "README.md").read_text()
    table = readme.split("| flag | default | meaning |")[1].split("\n\n")[0]
    rows = [re.split(r"(?<!\\)\|", row) for row in table.splitlines()[2:] if row.startswith("|")]
    first_cells = [cells[1] for cells in rows]
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", " ".join(first_cells)))


def test_cli_readme_flag_table_matches_help() -> None:
    help_flags = _help_flags() - {"-h", "--help"}
    readme = _readme_flags()
    assert help_flags - readme == set(), "flags missing from README's table"
    assert readme - help_flags == set(), "README's table names flags the command lacks"


def test_cli_more_workers_than_cores_is_said_before_forking(tmp_path: Path) -> None:
    cap, _ = per_process_cap()
    cores = len(os.sched_getaffinity(0))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "c10k",
            "serve",
            str(tmp_path),
            "-p",
            "0",
            "--max-connections",
            str(cap * cores + 1),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        assert "serving" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    first = err.splitlines()[0]
    assert first.startswith(f"c10k serve: note: starting {cores + 1} workers, not one per core")
