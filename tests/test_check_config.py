"""``c10k serve --check-config`` (issue 16, nginx -t): every setting checked as a start
would check it, every problem named at once, exit status 1 (a refused start is 2), and
nothing bound or started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import REPO, free_port

ENV = dict(os.environ, PYTHONPATH=str(REPO / "src"))


def c10k(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command; the timeout turns a server that started by mistake into a
    failure, not a hang."""
    return subprocess.run(
        [sys.executable, "-m", "c10k", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=20,
    )


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_check_config_valid_says_so_in_one_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'keepalive_timeout = 5\nworkers = 2\nlog_format = "json"\n')
    r = c10k(
        "serve", str(tmp_path), "--config", cfg, "--access-log", str(tmp_path / "a.log"),
        "--check-config",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.splitlines() == [f"c10k serve: the configuration is valid (serving {tmp_path})"]
    assert not (tmp_path / "a.log").exists()  # checked, not opened


def test_check_config_binds_nothing(tmp_path: Path) -> None:
    # A port someone else holds: a start would fail to bind it (exit 1); the check does
    # not try. A Unix socket's file would appear if it were bound.
    port = free_port()
    sock = tmp_path / "c.sock"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        args = ["--listen", f"127.0.0.1:{port}", "--listen", f"unix:{sock}", "--workers", "2"]
        r = c10k("serve", str(tmp_path), *args, "--check-config")
        assert r.returncode == 0, r.stderr
        assert "valid" in r.stdout
        assert not sock.exists()
        started = c10k("serve", str(tmp_path), *args)  # the control: a start does bind
        assert started.returncode == 1, started.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in started.stderr


def test_check_config_names_every_problem_and_exits_1(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        'keepalive_timout = 5\nheader_timeout = -1\nlog_format = "xml"\n',
    )
    bad_pem = write(tmp_path / "bad.pem", "not a certificate\n")
    args = [
        "serve", str(tmp_path), "--config", cfg, "--charset", "utf 8",
        "--tls-cert", bad_pem, "--tls-key", bad_pem,
        "--listen", "tls:127.0.0.1:99999", "--listen", "unix:",
    ]  # fmt: skip
    r = c10k(*args, "--check-config")
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert all(line.startswith("c10k serve: ") for line in lines), lines
    expected = [
        "unknown setting 'keepalive_timout' (did you mean 'keepalive_timeout'?)",
        "header_timeout = -1: must be more than 0",
        "log_format = 'xml': must be combined or json",
        "--charset utf 8: must be an HTTP token",
        "--listen '127.0.0.1:99999': the port must be a number from 0 to 65535",
        "--listen 'unix:': expected unix:/path/to/socket",
        f"{bad_pem} / {bad_pem}: not a PEM certificate/key file",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert len(lines) == len(expected), lines
    assert c10k(*args).returncode == 2  # a start refuses the same settings with 2


def test_check_config_checks_what_serve_checks_before_binding(tmp_path: Path) -> None:
    # More connections than 256 auto workers hold: serve's worker plan refuses it (after
    # the settings are resolved); the check must too.
    r = c10k("serve", str(tmp_path), "--max-connections", "1000000000", "--check-config")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "needs" in r.stderr
    assert "raise the hard limit instead" in r.stderr
    assert r.stdout == ""


def test_check_config_names_every_site_problem_at_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    cfg = write(
        tmp_path / "c.toml",
        f"""
unknown_host = 500
[[site]]
names = ["a.example", "a.*.example"]
root = "{tmp_path / "a"}"
workers = 2
[[site]]
names = ["A.example."]
root = "{tmp_path / "nope"}"
autoindx = true
""",
    )
    r = c10k("serve", str(tmp_path), "--config", cfg, "--check-config")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 6, lines
    for want in (
        "unknown_host = 500: must be",
        "site 1: names: 'a.*.example': a wildcard is",
        "site 1: workers is not a per-site setting",
        f"site 2: root = '{tmp_path / 'nope'}': is not a directory",
        "site 2: unknown setting 'autoindx' (did you mean 'autoindex'?)",
        "site 2: name 'a.example' is already site 1's",
    ):
        assert sum(want in line for line in lines) == 1, (want, lines)
