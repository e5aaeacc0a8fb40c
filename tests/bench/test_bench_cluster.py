"""``c10k bench cluster --quick`` (issue 17): real balancers in front of c10k hosts that are
restarted, reloaded and killed under load; the run's own goals must hold."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

ENV = dict(os.environ, PYTHONPATH=str(REPO / "src"))


def cluster(out: Path, *args: str) -> tuple[int, dict[str, object]]:
    r = subprocess.run(
        [sys.executable, "-m", "c10k", "bench", "cluster", "--quick", "--no-plots",
         "--out", str(out), *args],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads((out / "results.json").read_text())


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_cluster_haproxy_strict_loses_nothing_to_restarts_and_reloads(tmp_path: Path) -> None:
    code, doc = cluster(tmp_path, "--balancer", "haproxy", "--retries", "off")
    (run,) = doc["runs"]  # type: ignore[misc]
    phases = run["phases"]
    assert phases["steady"]["requests"] > 100
    assert phases["restart"]["failed"] == 0, phases["restart"]
    assert phases["reload"]["failed"] == 0, phases["reload"]
    # at most one per client in flight, plus the one that found the host dead first
    assert phases["kill"]["failed"] <= 5, phases["kill"]
    assert code == 0, doc["goals"]
    assert (tmp_path / "results.md").read_text().count("| haproxy | off |") == 5


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_cluster_nginx_with_retries_loses_nothing(tmp_path: Path) -> None:
    code, doc = cluster(tmp_path, "--balancer", "nginx", "--retries", "on")
    (run,) = doc["runs"]  # type: ignore[misc]
    assert all(p["failed"] == 0 for p in run["phases"].values()), run["phases"]
    assert code == 0, doc["goals"]


def test_cluster_refuses_bad_values(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "c10k", "bench", "cluster", "--hosts", "0"],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "--hosts: expected a number above 0: '0'" in r.stderr
