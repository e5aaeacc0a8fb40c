"""Each scenario in a tiny configuration against a real server subprocess.

Assertions are about shape (counts, no errors, files produced), never about speed.  The
stand-in server is ``python -m http.server`` through ``--server`` (c10k's own CLI is tested
when ``python -m c10k serve --help`` works; nginx when it is installed).
"""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from c10k.bench import cli, peers

HTTP_SERVER = "py={python} -m http.server {port} --bind {host} --directory {root}"
SLOW_SERVER = f"slow={{python}} {Path(__file__).parent / 'slow_server.py'} {{root}} {{port}}"


def bench(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "out"
    rc = cli.main([*args, "--quick", "--no-plots", "--out", str(out)])
    doc = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# c10k bench results")
    return rc, doc


def runs_of(doc: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    (entry,) = [s for s in doc["scenarios"] if s["name"] == scenario]
    return [r for v in entry["variations"].values() for r in v["runs"]]


def check_machine(doc: dict[str, Any]) -> None:
    m = doc["machine"]
    assert m["cpu_count"] >= 1
    assert m["kernel"]
    assert "RLIMIT_NOFILE" in m["rlimits"]
    assert doc["pinning"]["note"]


@pytest.mark.parametrize(
    ("scenario", "generator"),
    [
        ("conn-rate", "auto"),
        ("conn-rate", "python"),
        ("keepalive", "auto"),
        ("keepalive", "python"),
        ("bigfile", "auto"),
        ("bigfile", "wrk"),
    ],
)
def test_bench_http_scenarios_shape(tmp_path: Path, scenario: str, generator: str) -> None:
    rc, doc = bench(
        tmp_path, scenario, "--no-c10k", "--server", HTTP_SERVER, "--generator", generator
    )
    assert rc == 0, doc["errors"]
    check_machine(doc)
    runs = runs_of(doc, scenario)
    assert runs
    for r in runs:
        assert r["server"] == "py"
        assert r["requests"] > 0
        assert r["error_total"] == 0, r["errors"]
        assert r["generator"] in ("wrk", "python")
        if generator == "python":
            assert r["generator"] == "python"
        if scenario == "bigfile":  # the server sets the pace: bodies dropped in the kernel
            assert r["generator"] == ("wrk" if generator == "wrk" else "python")
            assert r.get("discard", False) is (generator != "wrk")
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
        assert r["cpu"]["window_s"] > 0
        assert r["req_per_server_cpu_s"] is None or r["req_per_server_cpu_s"] > 0
    (entry,) = doc["scenarios"]
    for var in entry["variations"].values():
        assert var["ratios"]["py"]["rps"] == 1.0


def test_bench_modem_shape(tmp_path: Path) -> None:
    rc, doc = bench(tmp_path, "modem", "--no-c10k", "--server", HTTP_SERVER)
    assert rc == 0, doc["errors"]
    (run,) = runs_of(doc, "modem")
    assert run["started"] == run["max_users"] == 6
    assert run["score"] == 6
    assert run["failed"] == 0, run["failure_reasons"]
    assert run["timeline"][-1][1] == 6
    assert run["mib_s"] > 0
    # With its evidence: the peak of kernel TCP memory and each side's core (test_bench_modem).
    assert run["bound"].startswith("not reached: all 6 users kept (raise --max-users); peak")
    limits = run["kernel"]["tcp_mem_limits"]
    assert len(limits) == 3
    assert 0 < limits[0] < limits[1] < limits[2]
    assert run["kernel"]["timeline"]
    assert all(p[2] >= 0 for p in run["kernel"]["timeline"])


def test_modem_user_announces_an_ethernet_mss() -> None:
    """The server's side of a modem user's connection segments at 1,460 bytes, not at
    loopback's 65,483 (client.py's module doc says why that matters)."""
    from c10k.bench.client import _new_socket

    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = _new_socket(None, 8192, "127.0.0.1", mss=1460)
        with c:
            c.setblocking(True)
            c.connect(srv.getsockname())
            conn, _ = srv.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) <= 1460
        plain = _new_socket(None, 8192, "127.0.0.1")
        with plain:
            plain.setblocking(True)
            plain.connect(srv.getsockname())
            conn, _ = srv.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) > 1460


def test_bench_modem_slow_server_fails_users(tmp_path: Path) -> None:
    """dkftpbench rules: a user below 3/4 of its rate fails and no more users are added."""
    rc, doc = bench(tmp_path, "modem", "--no-c10k", "--server", SLOW_SERVER, "--max-users", "40")
    assert rc == 0, doc["errors"]
    (run,) = runs_of(doc, "modem")
    assert run["first_failure"]["reason"] == "slow"
    assert run["failed"] >= 1
    assert run["started"] < 40  # stopped adding at the first failure
    assert run["score"] == run["started"] - run["failed"]
    # The slow server is not CPU-bound, but a neighbour (the suite's other worker) can keep
    # the pinned core busy, and then the bench rightly names the server's CPU.
    bounds = ("not identified: first failure slow", "kernel TCP memory", "server CPU: ")
    assert run["bound"].startswith(bounds), run["bound"]


def test_bench_idle_stops_when_server_does_not_hold(tmp_path: Path) -> None:
    """http.server speaks HTTP/1.0 and closes every connection: nothing can be held, so the
    run stops at the first level and says why."""
    rc, doc = bench(tmp_path, "idle", "--no-c10k", "--server", HTTP_SERVER)
    assert rc == 0, doc["errors"]
    runs = {r["n"]: r for r in runs_of(doc, "idle")}
    assert sorted(runs) == [0, 10]  # level 50 never tried
    assert runs[10]["held"] == 0
    assert runs[10]["closed_by_server"] == 10
    assert runs[0]["max_held"] == 0
    assert "closed by the server" in runs[0]["stopped_by"]
    for r in runs.values():
        assert r["active"]["requests"] > 0
        assert r["active"]["error_total"] == 0
    assert any("stopped by" in n for n in doc["notes"])


def test_bench_poller_shape(tmp_path: Path) -> None:
    rc, doc = bench(tmp_path, "poller", "--no-c10k")
    assert rc == 0
    runs = runs_of(doc, "poller")
    by = {(r["server"], r["n"]): r for r in runs}
    for n in (10, 100, 1000):
        for b in ("select", "poll", "epoll"):
            r = by[(b, n)]
            assert "skipped" in r or r["events"] >= r["iterations"] >= 10


def test_bench_overload_shape(tmp_path: Path) -> None:
    rc, doc = bench(tmp_path, "overload", "--no-c10k", "--server", HTTP_SERVER)
    assert rc == 0, doc["errors"]
    (entry,) = doc["scenarios"]
    assert list(entry["variations"]) == ["peak", "1x", "2x", "3x"]
    runs = {label: v["runs"][0] for label, v in entry["variations"].items()}
    for r in runs.values():
        assert r["requests"] > 0
        assert r["goodput_vs_peak"] is not None
        if r.get("offered_rps") is not None:
            assert r["offered_rps"] > 0
            assert r["goodput_rps"] <= r["offered_rps"] * 1.1
            assert 0 <= r["share_503"] <= 1
    assert runs["3x"]["goodput_vs_peak"] == pytest.approx(
        runs["3x"]["goodput_rps"] / runs["peak"]["goodput_rps"]
    )
    (goal,) = entry["goals"]
    assert goal.startswith("py: goodput at 3x the peak")
    assert goal.endswith((": met", ": NOT met"))


def test_bench_overload_multipliers(tmp_path: Path) -> None:
    rc, doc = bench(
        tmp_path, "overload", "--no-c10k", "--server", HTTP_SERVER, "--multipliers", "0.5,1.5"
    )
    assert rc == 0, doc["errors"]
    (entry,) = doc["scenarios"]
    assert list(entry["variations"]) == ["peak", "0.5x", "1.5x"]
    assert entry["goals"] == []  # no 3x run, so no verdict on the 3x goal


def test_bench_unknown_peer_skipped_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "nginx_binary", lambda: None)
    rc, doc = bench(
        tmp_path,
        "keepalive",
        "--peer",
        "nginx",
        "--no-c10k",
        "--server",
        HTTP_SERVER,
        "--connections",
        "2",
    )
    assert rc == 0
    assert doc["skipped"] == [
        {"name": "nginx", "reason": "nginx is not installed: apt-get install nginx"}
    ]
    assert doc["baseline"] == "py"


def test_bench_no_server_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["keepalive", "--no-c10k", "--quick"])
    assert rc == 2
    assert "no server" in capsys.readouterr().err


def test_bench_help_lists_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["idle", "--help"])
    text += capsys.readouterr().out
    for name in (
        "conn-rate",
        "keepalive",
        "bigfile",
        "modem",
        "idle",
        "poller",
        "overload",
        "slowhttp",
        "all",
        "plot",
        "--levels",
        "--multipliers",
        "--c10k-backends",
    ):
        assert name in text


@pytest.mark.skipif(
    peers.nginx_binary() is None or shutil.which("wrk") is None,
    reason="nginx and wrk not installed (apt-get install nginx wrk)",
)
def test_bench_nginx_side_by_side(tmp_path: Path) -> None:
    rc, doc = bench(
        tmp_path,
        "keepalive",
        "--peer",
        "nginx",
        "--no-c10k",
        "--server",
        HTTP_SERVER,
        "--connections",
        "4",
    )
    assert rc == 0, doc["errors"]
    (var,) = doc["scenarios"][0]["variations"].values()
    assert set(var["summary"]) == {"nginx", "py"}
    assert var["baseline"] == "nginx"
    assert var["ratios"]["py"]["rps"] is not None


def _c10k_serve_works() -> str | None:
    p = subprocess.run(
        [sys.executable, "-m", "c10k", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1]


@pytest.mark.parametrize("scenario", ["keepalive", "modem"])
def test_bench_c10k_shape(tmp_path: Path, scenario: str) -> None:
    reason = _c10k_serve_works()
    if reason:
        pytest.skip(f"`python -m c10k serve --help` fails: {reason}")
    rc, doc = bench(tmp_path, scenario)
    assert rc == 0, doc["errors"]
    runs = runs_of(doc, scenario)
    assert runs
    assert all(r["server"] == "c10k" for r in runs)
    for r in runs:
        assert r.get("error_total", 0) == 0
        assert r.get("failed", 0) == 0


def test_bench_plot_from_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _rc, _doc = bench(tmp_path, "poller", "--no-c10k")
    rc = cli.main(["plot", str(tmp_path / "out" / "results.json")])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert rc == 1
        assert "pip install 'c10k[plot]'" in capsys.readouterr().err
    else:
        assert rc == 0
        assert (tmp_path / "out" / "poller-time-per-event.png").stat().st_size > 0


def test_bench_plot_overload_from_recorded_run(tmp_path: Path) -> None:
    # The overload plot (goodput as a share of each server's peak per multiple, rounds as
    # dots, the goal line) from the run recorded in docs/bench/overload.
    pytest.importorskip("matplotlib")
    recorded = Path(__file__).resolve().parents[2] / "docs" / "bench" / "overload" / "results.json"
    (tmp_path / "results.json").write_text(recorded.read_text())
    assert cli.main(["plot", str(tmp_path / "results.json")]) == 0
    assert (tmp_path / "overload-goodput.png").stat().st_size > 10_000


def test_bench_server_without_port_placeholder(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["keepalive", "--no-c10k", "--quick", "--server", "python -m http.server"])
    assert rc == 2
    assert "{port}" in capsys.readouterr().err
