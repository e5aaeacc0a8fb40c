"""``c10k bench --url`` (issue 17): refusals at start, and one quick run through a URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from c10k.bench import cli
from helpers import REPO, ServerProcess, local_ca


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8080/x", "has no scheme"),
        ("ftp://127.0.0.1/x", "unsupported scheme"),
        ("http:///x", "has no host"),
        ("http://127.0.0.1:99999/", "bad port"),
        ("http://127.0.0.1:0/", "bad port 0"),
    ],
)
def test_bad_url_is_exit_2(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["keepalive", "--url", url, "--quick"])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("scenario", ["idle", "poller"])
def test_refused_scenario_says_why(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([scenario, "--url", "http://127.0.0.1:9/", "--quick"]) == 2
    assert f"--url does not apply to {scenario}:" in capsys.readouterr().err


def test_url_that_does_not_answer_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keepalive", "--url", "dead=http://127.0.0.1:9/", "--quick"]) == 2
    assert "dead: GET http://127.0.0.1:9/ did not answer 200" in capsys.readouterr().err


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_keepalive_through_url_measures_the_endpoint(tmp_path: Path, scheme: str) -> None:
    """Load through --url: a c10k server this test starts (the bench starts nothing),
    measured by name; requests counted, no errors, and no CPU figure charged to it. Over
    https its certificate is checked against --url-ca, and the report says so."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "small.bin").write_bytes(b"x" * 512)
    tls = scheme == "https"
    server = ServerProcess(root, "epoll", tls=tls)
    out = tmp_path / "out"
    url = f"{scheme}://127.0.0.1:{server.port}/small.bin"
    try:
        argv = [sys.executable, "-m", "c10k", "bench", "keepalive", "--quick", "--no-plots"]
        argv += ["--url", f"ep={url}", "--out", str(out)]
        argv += ["--url-ca", str(local_ca()["dir"] / "ca.pem")] if tls else []
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    runs = [
        run
        for scen in doc["scenarios"]
        for variation in scen["variations"].values()
        for run in variation["runs"]
        if run["server"] == "ep"
    ]
    assert len(runs) == 2, doc["scenarios"]  # c=4 and c=16, quick
    if doc["pinning"]["generator_cpus"]:  # the endpoint is not ours to pin: not said to be
        assert doc["pinning"]["note"].endswith("--url endpoints are not pinned by the bench")
    for run in runs:
        assert run["requests"] > 0, run
        assert run["error_total"] == 0, run
        assert run["argv"][-1] == url  # its own path
        assert run["tls"] is tls, run
        assert run["cpu"]["server_cpu_s"] is None, run  # nothing of ours to charge
        assert run["req_per_busy_core_s"] is None, run
    if tls:  # no certificate was made for the run: the endpoint's own was checked
        assert (
            "with its own certificate (checked against --url-ca" in (out / "results.md").read_text()
        )


def test_slowhttp_through_unnamed_url_runs(tmp_path: Path) -> None:
    """slowhttp through a --url with no NAME=: the endpoint's default name holds its path
    ("127.0.0.1:PORT/small.bin"), which once went into a file name as a directory."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "small.bin").write_bytes(b"x" * 512)
    server = ServerProcess(root, "epoll")
    out = tmp_path / "out"
    try:
        argv = [sys.executable, "-m", "c10k", "bench", "slowhttp", "--quick", "--no-plots"]
        argv += ["--slow-modes", "slowloris", "--slow-conns", "10", "--slow-duration", "1"]
        argv += ["--url", f"http://127.0.0.1:{server.port}/small.bin", "--out", str(out)]
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert not doc["errors"], doc["errors"]
    (scen,) = doc["scenarios"]
    assert [run["server"] for v in scen["variations"].values() for run in v["runs"]] == [
        f"127.0.0.1:{server.port}/small.bin"
    ]
