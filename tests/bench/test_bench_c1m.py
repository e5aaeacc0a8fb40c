"""The C1M idle run, the slowhttp attacks and backends side by side (issues 4, 5, 7).

Pure parts (the plan that spreads connections over processes, ports and source addresses;
the stop reasons; the goal lines) are tested without sockets.  Real runs are small: a few
connections, a few seconds; the one exception is the scaled-down C1M run of issue 4 (30,000
connections over 2 server workers and 2 client processes), bounded at 60 s.
"""

import collections
import doctest
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from c10k.bench import cli, client, machine, peers, scenarios
from c10k.bench.machine import Pinning
from c10k.bench.report import goals, markdown, summarize, terminal_table
from c10k.bench.scenarios import idle_plan, make_docroot, stop_reason

HTTP_SERVER = "py={python} -m http.server {port} --bind {host} --directory {root}"


# The scenarios' doctests live in the modules of their kinds (c10k/bench/scenarios/):
# doctest.testmod only collects functions defined in the module it is given, so the package,
# which only re-exports them, would run none.
@pytest.mark.parametrize(
    "module", [scenarios.idle, scenarios.overload, scenarios.slowhttp, machine]
)
def test_bench_c1m_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


# -- the plan ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "levels", [[10_000, 100_000, 500_000, 1_000_000], [30_000], [19_000], [250_000]]
)
def test_idle_plan_respects_every_per_process_and_per_pair_limit(levels: list[int]) -> None:
    plan = idle_plan(levels, nofile=20_000)
    top = levels[-1]
    assert plan.top == top
    assert max(client.split_evenly(top, plan.clients)) <= scenarios.PER_CLIENT_MAX
    assert top / plan.workers <= scenarios.PER_WORKER_MAX
    assert plan.ports == (plan.workers if plan.workers > 1 else 1)
    assert len(set(plan.sources)) == len(plan.sources)
    assert all(s.startswith("127.0.0.") and s != "127.0.0.1" for s in plan.sources)
    # What the generators will really do: count connections per (source, port) pair.
    per_pair: collections.Counter[tuple[int, int]] = collections.Counter()
    for i, share in enumerate(client.split_evenly(top, plan.clients)):
        for j in range(share):
            per_pair[client.pair_for(j, len(plan.sources), plan.ports, i * 7919)] += 1
    assert sum(per_pair.values()) == top
    assert len(per_pair) == min(top, plan.pairs)  # every pair used
    assert max(per_pair.values()) <= client.PER_SOURCE_MAX


def test_idle_plan_small_nofile_and_explicit_counts() -> None:
    plan = idle_plan([5000], procs=1, nofile=4096)
    assert plan.clients == 2  # 1 asked, but 5,000 sockets do not fit in one process here
    assert plan.notes
    assert "--procs 1 raised to 2" in plan.notes[0]
    assert idle_plan([50, 10, 10]).levels == [10, 50]
    with pytest.raises(ValueError, match="no connection count"):
        idle_plan([0])
    with pytest.raises(ValueError, match="source addresses"):
        idle_plan([10**9], nofile=20_000, server_workers=1)


def test_server_shape_only_for_idle() -> None:
    opts = scenarios.Options(idle_counts=[30_000], server_workers=2)
    assert scenarios.server_shape(scenarios.scenario("idle"), opts) == (2, 2)
    assert scenarios.server_shape(scenarios.scenario("keepalive"), opts) == (1, 1)
    assert scenarios.server_shape(
        scenarios.scenario("idle"), scenarios.Options(idle_counts=[100])
    ) == (1, 1)


@pytest.mark.parametrize(
    ("errors", "pending", "closed", "server", "want"),
    [
        ({"emfile": 1, "connect": 9}, 0, 0, None, "EMFILE"),
        ({"enfile": 1}, 0, 0, None, "ENFILE"),
        ({"enomem": 2}, 5, 0, None, "ENOMEM"),
        ({}, 3, 0, None, "timeout"),
        ({"connect": 4}, 0, 0, None, "server error: connect 4"),
        ({}, 0, 7, None, "server error: 7 closed by the server"),
        ({"emfile": 1}, 0, 0, "exited with 1", "server error: exited with 1"),
        ({}, 0, 0, None, "unknown"),
    ],
)
def test_stop_reason(
    errors: dict[str, int], pending: int, closed: int, server: str | None, want: str
) -> None:
    assert stop_reason(errors, pending, closed, server).startswith(want)


def test__per_conn() -> None:
    base = {
        "server_rss": 1000,
        "client_rss": 0,
        "slab": {"Slab": 0, "tcp_mem_bytes": 0, "caches": {"TCP": 0}},
    }
    now = {
        "server_rss": 1000 + 300 * 10,
        "client_rss": 500 * 10,
        "slab": {"Slab": 4000 * 10, "tcp_mem_bytes": 40960, "caches": {"TCP": 23040}},
    }
    got = scenarios._per_conn(now, base, 10)
    assert got["rss_per_conn_bytes"] == 300
    assert got["client_rss_per_conn_bytes"] == 500
    assert got["slab_per_conn_bytes"] == 4000
    assert got["kernel_tcp_mem_per_conn_bytes"] == 4096
    assert got["slab_caches_per_conn_bytes"] == {"TCP": 2304.0}
    assert scenarios._per_conn(now, base, 0) == {}


def test_errno_kind_names_the_limit() -> None:
    import errno

    assert client.errno_kind(errno.EMFILE) == "emfile"
    assert client.errno_kind(errno.ENOBUFS) == "enomem"
    assert client.errno_kind(errno.ECONNREFUSED) == "connect"
    assert client.errno_kind(None) == "connect"


# -- reports -----------------------------------------------------------------------------


def _entry(kind: str, params: dict[str, Any], variations: dict[str, list[dict[str, Any]]]) -> Any:
    entry: dict[str, Any] = {
        "name": kind,
        "title": kind,
        "measures": "x",
        "kind": kind,
        "params": params,
        "variations": {k: {"runs": v} for k, v in variations.items()},
        "errors": [],
    }
    summarize(entry, ["a", "b"])
    entry["goals"] = goals(entry)
    return entry


def test_goals_idle_p99_ratio() -> None:
    entry = _entry(
        "idle",
        {"p99_goal": 2.0},
        {
            "N=0": [{"server": "a", "held": 0}, {"server": "b", "held": 0}],
            "N=1000": [
                {"server": "a", "held": 1000, "p99_vs_zero": 1.5},
                {"server": "b", "held": 1000, "p99_vs_zero": 2.5},
            ],
        },
    )
    assert entry["goals"] == [
        "a N=1000: active p99 1.50x its p99 at N=0 (goal <= 2x): met",
        "b N=1000: active p99 2.50x its p99 at N=0 (goal <= 2x): NOT met",
    ]


def test_goals_overload_and_rendering() -> None:
    entry = _entry(
        "overload",
        {"goal": {"multiplier": 3.0, "fraction": 0.9}},
        {
            "peak": [{"server": "a", "goodput_vs_peak": 1.0}],
            "3x": [
                {"server": "a", "goodput_vs_peak": 0.95, "share_503": 0.5},
                {"server": "b", "goodput_vs_peak": 0.5, "share_503": 0.0},
            ],
        },
    )
    assert entry["goals"] == [
        "a: goodput at 3x the peak is 95% of the peak (goal >= 90%): met",
        "b: goodput at 3x the peak is 50% of the peak (goal >= 90%): NOT met",
    ]
    doc = {
        "scenarios": [entry],
        "pinning": {"note": "n"},
        "machine": {},
        "started": "t",
        "options": {},
    }
    assert "   goal: b: goodput at 3x" in terminal_table(doc)
    md = markdown(doc)
    assert "- goal: a: goodput at 3x the peak is 95%" in md
    assert "| 3x | a |" in md
    assert "50.0%" in md  # share of 503s column


def test_goals_slowhttp() -> None:
    run = {
        "server": "a",
        "legit_success": 1.0,
        "latency_ms": {"p99": 12.0},
        "fds": {"before": 10, "during": 4010, "after": 10},
        "fds_after_minus_before": 0,
        "rss_after_minus_before": 3 * 2**19,
    }
    bad = {**run, "server": "b", "legit_success": 0.5, "fds_after_minus_before": 100}
    entry = _entry(
        "slowhttp", {"goal": {"success": 1.0, "p99_ms": 100.0}}, {"slowloris": [run, bad]}
    )
    assert entry["goals"][0] == (
        "a slowloris: legitimate client 100.0% served, p99 12.0 ms (goal 100%, < 100 ms): "
        "met; fds after - before: +0 (met); RSS after - before: +1.5 MiB"
    )
    assert "NOT met; fds after - before: +100 (NOT met)" in entry["goals"][1]


# -- servers on several ports ------------------------------------------------------------


def test_running_server_fans_out_over_ports(tmp_path: Path) -> None:
    """A spec without a multi-port command line runs once per port in one session."""
    make_docroot(tmp_path / "www")
    spec = peers.custom_spec(HTTP_SERVER, 1)
    pin = Pinning(None, None, "not pinned")
    with peers.RunningServer(spec, tmp_path / "www", tmp_path, pin, ports=3) as srv:
        assert len(set(srv.ports)) == 3
        assert srv.argv[:2] == ["sh", "-c"]
        for port in srv.ports:
            assert peers.probe(srv.host, port) == peers.PROBE_SIZE
        pids = machine.session_pids(srv.sid)
        assert len(pids) == 4  # sh + 3 servers
        assert machine.pids_fd_count(pids) > 3
        assert machine.pids_rss_bytes(pids) > 0
    assert machine.session_pids(srv.sid, live=True) == []


def test_c10k_multi_port_command_line() -> None:
    spec = peers.c10k_spec("poll")
    argv = spec.multi_argv([8001, 8002], 2, Path("/www"), Path("/tmp"))
    if peers.c10k_has_workers():
        assert argv[1:] == [
            "-m",
            "c10k",
            "serve",
            "/www",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:8001",
            "--listen",
            "127.0.0.1:8002",
            "--keepalive-timeout",
            str(peers.KEEPALIVE_S),
            "--backend",
            "poll",
        ]
    else:
        assert argv[:2] == ["sh", "-c"]
        assert argv[2].count("--backend poll") == 2


# -- real runs against c10k --------------------------------------------------------------


def _c10k_reason() -> str | None:
    return peers.c10k_check()


def _bench(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "out"
    rc = cli.main([*args, "--quick", "--no-plots", "--out", str(out)])
    doc = json.loads((out / "results.json").read_text())
    return rc, doc


def _runs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for s in doc["scenarios"] for v in s["variations"].values() for r in v["runs"]]


@pytest.mark.parametrize("shape", [[], ["--server-workers", "2", "--procs", "2"]])
def test_bench_idle_c10k_small(tmp_path: Path, shape: list[str]) -> None:
    if reason := _c10k_reason():
        pytest.skip(reason)
    rc, doc = _bench(tmp_path, "idle", "--levels", "20,60", *shape)
    assert rc == 0, doc["errors"]
    runs = {r["n"]: r for r in _runs(doc)}
    assert sorted(runs) == [0, 20, 60]
    zero = runs[0]
    assert zero["stopped_by"] is None
    assert zero["max_held"] == 60
    want_workers = 2 if shape else 1
    assert zero["plan"]["server_workers"] == want_workers
    assert zero["plan"]["server_ports"] == want_workers
    assert zero["memory"]["server_processes"] >= want_workers
    assert zero["timeline"][0] == [0.0, 0]
    for n in (20, 60):
        r = runs[n]
        assert r["held"] == n
        assert r["served"] == n
        assert r["errors"] == {}
        assert r["pending"] == 0
        assert r["active"]["requests"] > 0
        assert r["p99_vs_zero"] > 0
        assert r["memory"]["server_fds"] >= n
        assert r["establish_s"] > 0
    (entry,) = doc["scenarios"]
    assert len(entry["goals"]) == 2


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 16_500,
    reason="needs a hard RLIMIT_NOFILE of 16,500+ (15,000 sockets per process)",
)
def test_bench_idle_c10k_30k_two_workers(tmp_path: Path) -> None:
    """Issue 4's CI run: 30,000 held keep-alive connections over 2 server workers (2 ports)
    and 2 generator processes, each connection having completed one request."""
    if reason := _c10k_reason():
        pytest.skip(reason)
    rc, doc = _bench(
        tmp_path,
        "idle",
        "--levels",
        "30000",
        "--server-workers",
        "2",
        "--procs",
        "2",
        "--idle-time-limit",
        "50",
        "--no-pin",
    )
    assert rc == 0, doc["errors"]
    runs = {r["n"]: r for r in _runs(doc)}
    assert runs[0]["stopped_by"] is None, runs[0]["stopped_by"]
    r = runs[30_000]
    assert r["held"] == 30_000
    assert r["served"] == 30_000
    assert r["errors"] == {}
    assert r["memory"]["server_fds"] >= 30_000
    assert r["active"]["error_total"] == 0
    assert r["rss_per_conn_bytes"] > 0


def test_bench_c10k_backends_side_by_side(tmp_path: Path) -> None:
    if reason := _c10k_reason():
        pytest.skip(reason)
    rc, doc = _bench(
        tmp_path,
        "keepalive",
        "--c10k-backends",
        "epoll,poll,no-such-backend",
        "--connections",
        "2",
        "--generator",
        "python",
    )
    assert rc == 0, doc["errors"]
    assert [s["name"] for s in doc["servers"]] == ["c10k[epoll]", "c10k[poll]"]
    assert doc["servers"][0]["argv"][-2:] == ["--backend", "epoll"]
    (skipped,) = doc["skipped"]
    assert skipped["name"] == "c10k[no-such-backend]"
    assert "does not list 'no-such-backend'" in skipped["reason"]
    (var,) = doc["scenarios"][0]["variations"].values()
    assert set(var["summary"]) == {"c10k[epoll]", "c10k[poll]"}


def test_c10k_backend_check_uses_c10k_backends() -> None:
    if reason := _c10k_reason():
        pytest.skip(reason)
    out = subprocess.run(
        [sys.executable, "-m", "c10k", "backends"], capture_output=True, text=True, timeout=30
    ).stdout
    listed = peers.parse_backends(out)
    assert listed["epoll"] is None
    assert peers.c10k_backend_check("epoll") is None
    assert peers.c10k_backend_names() == list(listed)
    for name, why in listed.items():
        if why is not None:
            assert peers.c10k_backend_check(name) == why


@pytest.mark.skipif(shutil.which("slowhttptest") is None, reason="apt-get install slowhttptest")
def test_bench_slowhttp_c10k(tmp_path: Path) -> None:
    if reason := _c10k_reason():
        pytest.skip(reason)
    rc, doc = _bench(tmp_path, "slowhttp", "--slow-duration", "3")
    assert rc == 0, doc["errors"]
    runs = {r["mode"]: r for r in _runs(doc)}
    assert sorted(runs) == ["range", "slowloris", "slowread"]
    for mode, r in runs.items():
        assert r["requests"] > 0, mode
        # Issue 7, scaled to CI: every legitimate request served (latency is not asserted:
        # no timing assertions on a shared machine), and the fds back to the baseline.
        assert r["legit_success"] == 1.0, (mode, r["errors"])
        assert r["fds"]["after"] <= r["fds"]["before"], (mode, r["fds"])
        assert r["fds"]["during"] > r["fds"]["before"] or mode == "range", (mode, r["fds"])
        assert r["attack_seen"]["max_connected"] > 0, (mode, r["attack_exit"])
        assert r["fds"]["before"] > 0
        assert r["rss_bytes"]["before"] > 0
        assert any(a.endswith("slowhttptest") for a in r["attack_argv"])
    (entry,) = doc["scenarios"]
    assert len(entry["goals"]) == 3


def test_bench_slowhttp_without_slowhttptest_is_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        return None if name == "slowhttptest" else real_which(name, *args, **kwargs)

    # Patches the shutil module's which() itself, as before scenarios became a package:
    # scenarios/slowhttp.py is the module that looks slowhttptest up (shutil.which), and
    # every other name passes through to the real which.
    monkeypatch.setattr("c10k.bench.scenarios.slowhttp.shutil.which", which)
    rc, doc = _bench(tmp_path, "slowhttp", "--no-c10k", "--server", HTTP_SERVER)
    assert rc == 0, doc["errors"]
    assert _runs(doc) == []
    assert any("apt-get install slowhttptest" in n for n in doc["notes"])


def test_bench_idle_stops_at_a_server_cap_with_timeout(tmp_path: Path) -> None:
    """A server capped at 30 connections: the kernel's backlog completes the rest of the
    handshakes, but their requests are never answered, so level 60 times out, the run
    stops there, bounded by --idle-time-limit, and reports the highest count held."""
    if reason := _c10k_reason():
        pytest.skip(reason)
    capped = (
        "capped={python} -m c10k serve {root} --bind {host} --port {port} "
        "--max-connections 30 --keepalive-timeout 3600 --header-timeout 3600"
    )
    rc, doc = _bench(
        tmp_path,
        "idle",
        "--no-c10k",
        "--server",
        capped,
        "--levels",
        "20,60,100",
        "--idle-time-limit",
        "6",
    )
    assert rc == 0, doc["errors"]
    runs = {r["n"]: r for r in _runs(doc)}
    assert sorted(runs) == [0, 20, 60]
    assert runs[20]["held"] == 20
    assert runs[60]["held"] < 60
    assert runs[60]["pending"] > 0
    zero = runs[0]
    assert zero["max_held"] == runs[60]["held"]
    assert zero["stopped_by"].startswith("timeout")


def test_pingpong_control_measures_round_trips() -> None:
    """The C1M control (c10k.bench.pingpong): real processes, a real loopback socket."""
    from c10k.bench import pingpong

    got = pingpong.round_trips(None, None, 0.3)
    assert got["round_trips"] > 100
    assert 0 < got["p50_ms"] <= got["p99_ms"] < 100
