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

from c10k.bench import cluster_logs
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
    # no more than HAProxy sent to the killed host and got no answer for (its counters)
    assert phases["kill"]["failed"] <= run["kill"]["on_killed_host"]["unanswered"], run["kill"]
    assert code == 0, doc["goals"]
    assert (tmp_path / "results.md").read_text().count("| haproxy | off |") == 5


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_cluster_nginx_strict_loses_nothing_to_restarts_and_reloads(tmp_path: Path) -> None:
    # nginx has no health check: a restart is lossless only because the host's listening
    # socket is held across it (as a systemd socket unit does), so connects wait in its
    # queue; without that, every request nginx sent as the host stopped accepting failed
    code, doc = cluster(tmp_path, "--balancer", "nginx", "--retries", "off")
    (run,) = doc["runs"]  # type: ignore[misc]
    phases = run["phases"]
    assert phases["restart"]["failed"] == 0, run["balancer_log"]
    assert phases["reload"]["failed"] == 0, run["balancer_log"]
    assert phases["kill"]["failed"] <= run["kill"]["on_killed_host"]["unanswered"], run["kill"]
    assert code == 0, doc["goals"]


def test_cluster_refuses_bad_values(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "c10k", "bench", "cluster", "--hosts", "0"],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "--hosts: expected a number above 0: '0'" in r.stderr


def test_cluster_logs_nginx_unanswered_counts_attempts_on_the_host(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        "10.0|1|127.0.0.11:80|200|200|0.001\n"  # answered
        "10.1|2|127.0.0.11:80|502|502|0.001\n"  # failed, no retry
        "10.2|3|127.0.0.11:80, 127.0.0.12:80|502, 200|200|0.002\n"  # retried elsewhere
        "10.3|4|127.0.0.12:80|502|502|0.001\n"  # another host
        "12.0|5|127.0.0.11:80|502|502|0.001\n"  # after the window
    )
    got = cluster_logs.nginx_unanswered(log, "127.0.0.11:80", 10.0, 11.0)
    assert got == {"stot": 3, "unanswered": 2}
    assert len(cluster_logs.notable("nginx", tmp_path)) == 4  # all but the plain 200


def test_cluster_logs_haproxy_unanswered_is_refused_plus_response_errors() -> None:
    before = {"h0": dict.fromkeys(cluster_logs.COUNTERS, 1)}
    after = {"h0": {**before["h0"], "econ": 3, "eresp": 6, "stot": 20}}
    got = cluster_logs.haproxy_unanswered(before, after, "h0")
    assert (got["econ"], got["eresp"], got["unanswered"], got["stot"]) == (2, 5, 7, 19)
