"""h2load as the overload generator, and the cgroup CPU cap: pure parts against captured
output and fake cgroup trees, then one real run of the overload scenario against c10k."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from c10k.bench import cli, cpucap, h2load, peers
from c10k.bench.cpucap import CpuCap, find_cpu_controller, make_cap, quota_for
from c10k.bench.machine import Pinning
from c10k.bench.scenarios.common import Context, Options
from c10k.bench.scenarios.overload import _generator_context

DATA = Path(__file__).parent / "data"


# --- h2load output -------------------------------------------------------------------------


def test_parse_summary_of_a_captured_closed_loop_run() -> None:
    s = h2load.parse_summary((DATA / "h2load-peak.txt").read_text())
    assert s is not None
    assert (s["total"], s["started"], s["done"], s["succeeded"]) == (2000, 2000, 2000, 2000)
    assert (s["failed"], s["errored"], s["timeout"]) == (0, 0, 0)
    assert s["status"] == {"2xx": 2000, "3xx": 0, "4xx": 0, "5xx": 0}
    assert s["finished_s"] == pytest.approx(0.20247)
    assert s["connect_ms"] == {"min": 0.057, "max": 2.45, "mean": 0.96}


def test_parse_summary_of_an_overloaded_rate_run() -> None:
    s = h2load.parse_summary((DATA / "h2load-rate-overload.txt").read_text())
    assert s is not None
    assert (s["total"], s["started"], s["done"], s["errored"], s["timeout"]) == (
        15780,
        10380,
        7286,
        8494,
        2789,
    )
    assert s["finished_s"] == 5.93
    assert s["connect_ms"]["max"] == 1040.0


def test_parse_summary_none_without_a_requests_line() -> None:
    assert h2load.parse_summary("starting benchmark...\nprogress: 10% done\n") is None


def test_rate_figures_from_a_log_and_summary() -> None:
    entries = h2load.parse_log((DATA / "h2load-rate.tsv").read_text())
    assert len(entries) == 17
    summary = {
        "total": 30,
        "started": 26,
        "done": 17,
        "succeeded": 14,
        "failed": 16,
        "errored": 13,
        "timeout": 5,
        "status": {"2xx": 14, "3xx": 0, "4xx": 1, "5xx": 1},
    }
    plan = h2load.RatePlan(per_period=1, period_ms=100, ticks=30, shares=(1,))
    assert plan.window_s == 3.0
    f = h2load.rate_figures(entries, summary, plan, 2.0, peak_rps=4.0)
    # 12 fast 2xx in the window; one 2xx late (2.5 s), one in time but ending after the window.
    assert f["requests"] == 12
    assert f["goodput_rps"] == pytest.approx(4.0)
    assert f["goodput_all_rps"] == pytest.approx(13 / 3)
    assert f["served_after_window"] == 1
    assert f["goodput_vs_peak"] == pytest.approx(1.0)
    assert f["offered_rps"] == pytest.approx(10.0)
    assert f["connected_rps"] == pytest.approx(26 / 3)
    assert f["errors"] == {
        "503": 1,
        "eof": 1,
        "late": 1,
        "status": 1,
        "timeout": 5,
        "connect": 4,
        "error": 3,
    }
    assert f["share_503"] == pytest.approx(1 / 30)
    # failures: everything but the 503 and the late one
    assert f["error_rate"] == pytest.approx(14 / 30)
    # not served: no 2xx within the deadline at all (13 were, one of them after the window)
    assert f["not_served_rate"] == pytest.approx(17 / 30)
    assert f["unfinished"] == 0
    assert f["latency_ms"]["max"] == pytest.approx(11.367)
    assert f["h2load_stopped_at_timeout"] is False
    # Steady state: only completions from 1 s after the first request count, per second
    # of the 2 s left; what counted from the start is still reported apart.
    log = [(0, 200, 1000), (500_000, 200, 1000), (1_500_000, 200, 1000)]
    log += [(2_500_000, 200, 1000), (2_999_000, 200, 5000)]  # the last ends after 3 s
    g = h2load.rate_figures(log, None, plan, 2.0, peak_rps=4.0, settle_s=1.0)
    assert g["requests"] == 2
    assert g["goodput_rps"] == pytest.approx(1.0)
    assert g["goodput_from_start_rps"] == pytest.approx(4 / 3)
    assert g["goodput_all_rps"] == pytest.approx(5 / 3)


def test_rate_figures_when_h2load_was_stopped_at_its_timeout() -> None:
    entries = h2load.parse_log((DATA / "h2load-rate.tsv").read_text())
    plan = h2load.RatePlan(per_period=1, period_ms=100, ticks=30, shares=(1,))
    f = h2load.rate_figures(entries, None, plan, 2.0, peak_rps=4.0)
    assert f["h2load_stopped_at_timeout"] is True
    assert f["unfinished"] == 30 - 17
    assert f["goodput_rps"] == pytest.approx(4.0)
    assert "timeout" not in f["errors"]


def test_peak_figures_shape_is_what_reports_read() -> None:
    text = (DATA / "h2load-peak.txt").read_text()
    entries = [(1, 200, 500)] * 1990 + [(1, 503, 10)] * 10
    f = h2load.peak_figures(entries, h2load.parse_summary(text), 9.9)
    assert f["requests"] == 1990
    assert f["window_s"] == pytest.approx(0.20247, abs=1e-4)
    assert f["rps"] == pytest.approx(1990 / 0.20247)
    assert f["errors"] == {"503": 10}
    for key in ("latency_ms", "histogram", "error_total", "generator"):
        assert key in f


def test_argv_units_and_one_request_per_connection() -> None:
    argv = h2load.rate_argv("h2load", "http://h:1/s", 30, 250, 600, 1.5, Path("/t/l.tsv"))
    assert argv[argv.index("--rate-period") + 1] == "250ms"
    assert argv[argv.index("-c") + 1] == argv[argv.index("-n") + 1] == "600"
    assert argv[argv.index("-T") + 1] == argv[argv.index("-N") + 1] == "1.5"
    assert "-D" not in argv  # -D with Connection: close never ends in h2load 1.52
    assert "--log-file=/t/l.tsv" in argv
    peak = h2load.peak_argv("h2load", "http://h:1/s", 10, 64)
    assert peak[peak.index("-n") + 1] == "64"  # h2load needs -n >= -c
    assert "-D" not in peak


def test_plan_rate_splits_over_processes_past_the_fd_budget() -> None:
    one = h2load.plan_rate(2000, 5.0, 2.0, 20000)
    assert one.shares == (20,)
    assert (one.total, one.window_s, one.rate) == (10000, 5.0, 2000.0)
    # 12,000/s x 2 s x 1.2 = 28,800 fds > 20,000 - 256: two processes, same total rate.
    two = h2load.plan_rate(12000, 5.0, 2.0, 20000)
    assert two.shares == (60, 60)
    assert sum(two.conns(i) for i in range(2)) == two.total == 60000
    for i in range(2):
        assert two.shares[i] * 100 * 2.0 * 1.2 <= 20000 - h2load.FD_MARGIN
    three = h2load.plan_rate(12000, 5.0, 2.0, 12000)
    assert len(three.shares) == 3
    assert sum(three.shares) == 120
    # A low rate gets a longer period rather than a rate rounded by more than 2.5 %.
    low = h2load.plan_rate(12, 2.0, 1.0, 20000)
    assert low.per_period >= h2load.MIN_PER_PERIOD
    assert low.rate == pytest.approx(12, rel=0.025)
    for target in (1668, 1741, 5004, 7463):
        assert h2load.plan_rate(target, 10.0, 2.0, 20000).rate == pytest.approx(target, rel=0.025)


def test_merge_summaries_adds_and_gives_up_on_a_missing_one() -> None:
    s = h2load.parse_summary((DATA / "h2load-rate-ok.txt").read_text())
    assert s is not None
    both = h2load.merge_summaries([s, s])
    assert both is not None
    assert both["total"] == 2 * s["total"]
    assert both["status"]["2xx"] == 2 * s["status"]["2xx"]
    assert h2load.merge_summaries([s, None]) is None


# --- cgroup CPU cap --------------------------------------------------------------------------


def test_quota_for_keeps_the_1ms_floor() -> None:
    assert quota_for(0.1) == (1000, 10000)
    assert quota_for(0.02) == (1000, 50000)
    with pytest.raises(ValueError, match="must be > 0"):
        quota_for(0)


def _v1_tree(tmp_path: Path, quota_file: bool = True) -> tuple[Path, str]:
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    for name in ("cgroup.procs", "tasks", "cpu.cfs_period_us", "cpu.stat"):
        (cpu / name).write_text("")
    if quota_file:
        (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    mounts = (
        f"tmpfs {tmp_path} tmpfs rw 0 0\n"
        f"cgroup {cpu} cgroup rw,relatime,cpu 0 0\n"
        f"cgroup {tmp_path}/memory cgroup rw,memory 0 0\n"
    )
    return cpu, mounts


def _v2_tree(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> tuple[Path, str]:
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("memory\n")
    return root, f"cgroup2 {root} cgroup2 rw,nsdelegate 0 0\n"


def test_cgroup_v1_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, mounts = _v1_tree(tmp_path)
    assert find_cpu_controller(mounts) == (1, cpu)
    # The kernel creates the control files in a new cgroup; a plain mkdir does not.
    real_mkdir = os.mkdir

    def mkdir(path: os.PathLike[str] | str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        for name in ("cgroup.procs", "tasks", "cpu.cfs_period_us", "cpu.cfs_quota_us"):
            Path(path, name).write_text("")

    monkeypatch.setattr(cpucap.os, "mkdir", mkdir)
    cap, why = make_cap(0.1, mounts)
    assert why is None
    assert cap is not None
    assert cap.path == cpu / f"c10k-bench-{os.getpid()}"
    assert (cap.path / "cpu.cfs_period_us").read_text() == "10000"
    assert (cap.path / "cpu.cfs_quota_us").read_text() == "1000"
    assert cap.to_json()["cgroup_version"] == 1
    assert "cpu.cfs_quota_us 1000" in cap.setting
    cap.remove()
    assert not cap.path.exists()


def test_cgroup_v2_layout_enables_the_cpu_controller(tmp_path: Path) -> None:
    root, mounts = _v2_tree(tmp_path)
    _v1, v1_mounts = _v1_tree(tmp_path)
    assert find_cpu_controller(v1_mounts + mounts) == (2, root)  # v2 preferred
    cap, why = make_cap(0.25, mounts)
    assert why is None
    assert cap is not None
    assert (root / "cgroup.subtree_control").read_text() == "+cpu"
    assert (cap.path / "cpu.max").read_text() == "2500 10000"
    assert cap.setting == "cpu.max 2500 10000"
    cap.remove()
    assert not cap.path.exists()


def test_cgroup_left_by_a_dead_process_with_our_pid_is_replaced(tmp_path: Path) -> None:
    root, mounts = _v2_tree(tmp_path)
    left = root / f"c10k-bench-{os.getpid()}"
    left.mkdir()
    (left / "cpu.max").write_text("max 100000")
    cap, why = make_cap(0.25, mounts)
    assert why is None
    assert cap is not None
    assert cap.path == left
    assert (cap.path / "cpu.max").read_text() == "2500 10000"
    cap.remove()


def test_cgroup_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _root, v2_no_cpu = _v2_tree(tmp_path, controllers="memory pids")
    assert make_cap(0.1, v2_no_cpu) == (None, f"the cgroup2 mount {_root} has no cpu controller")
    cpu, v1 = _v1_tree(tmp_path, quota_file=False)
    cap, why = make_cap(0.1, v1)
    assert cap is None
    assert why is not None
    assert "cpu.cfs_quota_us" in why
    assert make_cap(0.1, "proc /proc proc rw 0 0\n") == (None, "no cgroup file system is mounted")
    # Present but not writable (not root, read-only): the reason is kept, nothing is left.
    (cpu / "cpu.cfs_quota_us").write_text("-1")

    def denied(path: object, mode: int = 0o777) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cpucap.os, "mkdir", denied)
    cap, why = make_cap(0.1, v1)
    assert cap is None
    assert why is not None
    assert "root is needed" in why
    assert not [p for p in cpu.iterdir() if p.name.startswith("c10k-bench-")]


def test_stale_cgroups_of_dead_bench_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"c10k-bench-{dead.pid}").mkdir()
    (tmp_path / f"c10k-bench-{os.getpid()}").mkdir()  # ours: alive, kept
    (tmp_path / "other").mkdir()
    assert cpucap.remove_stale(tmp_path) == [f"c10k-bench-{dead.pid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"c10k-bench-{os.getpid()}", "other"]
    )


def test_member_path_reads_proc_cgroup() -> None:
    v1 = CpuCap(1, Path("/sys/fs/cgroup/cpu"), 0.1, name="c10k-bench-1")
    assert v1.member_path("3:cpuset:/\n1:cpu:/c10k-bench-1\n0::/\n") == "/c10k-bench-1"
    v2 = CpuCap(2, Path("/sys/fs/cgroup"), 0.1, name="c10k-bench-1")
    assert v2.member_path("0::/c10k-bench-1\n") == "/c10k-bench-1"
    assert v2.member_path("1:cpu:/x\n") is None


# --- --generator-on-server-core -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["conn-rate"], "is for the overload scenario"),
        (["overload", "--no-pin"], "nothing is pinned"),
        (["overload", "--server-cpu", "none"], "needs a CPU cap under one core"),
        (["overload", "--server-cpu", "1"], "needs a CPU cap under one core"),
    ],
)
def test_generator_on_server_core_refused_at_start(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "--generator-on-server-core"]) == 2
    assert message in capsys.readouterr().err


def _ctx(tmp_path: Path, spill: bool, cap: CpuCap | None) -> Context:
    pin = Pinning(0, [1], "server pinned to CPU 0, load generator to CPU 1")
    opts = Options(generator_on_server_core=spill)
    return Context(opts, pin, tmp_path, tmp_path, cap=cap)


def test_generator_context_spreads_the_generator_over_the_capped_core(tmp_path: Path) -> None:
    cap = CpuCap(2, Path("/sys/fs/cgroup"), 0.25, name="c10k-bench-1")
    ctx = _ctx(tmp_path, True, cap)
    spread = _generator_context(ctx)
    # No busy-core figure is the server's any more; the generator's share is of both cores.
    assert (spread.pin.server_cpu, spread.pin.generator_cpus) == (None, [1, 0])
    assert spread.cap is cap
    assert spread.notes is ctx.notes
    assert "--generator-on-server-core" in ctx.notes[0]
    assert ctx.pin.server_cpu == 0  # the run's own context is untouched


def test_generator_context_keeps_its_core_without_the_flag_or_a_cap(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, False, CpuCap(2, Path("/sys/fs/cgroup"), 0.25, name="c10k-bench-1"))
    assert _generator_context(ctx) is ctx
    uncapped = _ctx(tmp_path, True, None)  # the cgroup could not be made: say so, keep apart
    assert _generator_context(uncapped) is uncapped
    assert "not applied: no CPU cap is in force" in uncapped.notes[0]


# --- the real thing ----------------------------------------------------------------------------


def _cannot_run_e2e() -> str | None:
    if h2load.h2load_binary() is None:
        return "h2load is not installed (apt install nghttp2-client)"
    if peers.c10k_check():
        return f"c10k serve does not run here: {peers.c10k_check()}"
    cap, why = make_cap(0.1)
    if cap is None:
        return f"no writable cgroup with the cpu controller: {why}"
    cap.remove()
    return None


def _overload_run(tmp_path: Path, *args: str) -> dict[str, Any]:
    """One real ``c10k bench overload`` against c10k (one round of 1 s levels, no warm-up):
    its results.json, after checking it exited 0; skips where it cannot run."""
    reason = _cannot_run_e2e()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "out"
    argv = ["overload", "--rounds", "1", "--duration", "1", "--warmup", "0", *args]
    rc = cli.main([*argv, "--no-plots", "--out", str(out)])
    doc: dict[str, Any] = json.loads((out / "results.json").read_text())
    assert rc == 0, doc["errors"]
    return doc


needs_h2load = pytest.mark.skipif(
    shutil.which("h2load") is None, reason="h2load is not installed (apt install nghttp2-client)"
)


@needs_h2load
def test_overload_with_h2load_against_capped_c10k(tmp_path: Path) -> None:
    args = ["--multipliers", "1,3", "--server-cpu", "0.1", "--repeat-peak"]
    doc = _overload_run(tmp_path, *args)
    (entry,) = doc["scenarios"]
    cap = entry["server_cpu_cap"]
    assert cap["applied"] is True
    assert (cap["fraction"], cap["quota_us"], cap["period_us"]) == (0.1, 1000, 10000)
    assert doc["server_cpu_caps"]["overload"] == cap
    assert not Path(cap["cgroup"]).exists()  # removed after the run
    assert list(entry["variations"]) == ["peak", "1x", "3x", "peak again"]
    runs = {label: v["runs"][0] for label, v in entry["variations"].items()}
    assert all(r["generator"] == "h2load" for r in runs.values())
    assert runs["peak"]["requests"] > 0
    assert runs["peak"]["rps"] > 0
    # The cap binds: the cgroup was throttled while the peak was measured.
    assert runs["peak"]["cgroup_throttled"]["nr_throttled"] > 0
    for label in ("1x", "3x"):
        r = runs[label]
        for key in ("offered_rps", "goodput_rps", "goodput_vs_peak", "share_503", "error_rate"):
            assert r[key] is not None, (label, key)
        assert r["offered_rps"] == pytest.approx(runs["peak"]["rps"] * float(label[:-1]), rel=0.1)
        assert r["goodput_rps"] <= r["offered_rps"] * 1.05
        assert "p99" in r["latency_ms"]
    assert runs["1x"]["goodput_vs_peak"] > 0.5
    # The goodput timeline and c10k's admission trace (--admission-trace) of each level.
    for label in ("1x", "3x"):
        r = runs[label]
        assert sum(r["timeline"]["good_rps"]) > 0
        trace = r["admission_trace"]
        assert trace, label
        assert {"t", "qlen", "accepted", "wait_min_ms", "drop", "backlog"} <= set(trace[0])
        assert sum(x["accepted"] for x in trace) > 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert "Server CPU cap: overload: server capped to 10 % of" in text
    assert (entry["goals"] or [""])[0].startswith("c10k: goodput at 3x the peak")
    # --repeat-peak: the peak again after the last level, as a share of the first (how far
    # the server's own speed moved while it was offered multiples of the first).
    again = runs["peak again"]
    assert again["requests"] > 0
    assert again["cgroup_throttled"]["nr_throttled"] > 0  # measured under the same cap
    assert again["goodput_vs_peak"] == pytest.approx(again["rps"] / runs["peak"]["rps"])
    assert "peak again" in entry["title"]
    assert "| peak again | c10k |" in text


@needs_h2load
def test_overload_generator_on_server_core(tmp_path: Path) -> None:
    args = ["--multipliers", "1", "--server-cpu", "0.25", "--generator-on-server-core"]
    doc = _overload_run(tmp_path, *args)
    (entry,) = doc["scenarios"]
    runs = {label: v["runs"][0] for label, v in entry["variations"].items()}
    pin = doc["pinning"]
    for r in runs.values():
        # h2load may run on both cores; the server's busy core is not its own, so no
        # per-busy-core figure, and the generator's busy share is of the two cores.
        assert r["generator_cpus"] == [*pin["generator_cpus"], pin["server_cpu"]]
        assert r["req_per_busy_core_s"] is None
    assert runs["1x"]["goodput_vs_peak"] > 0.5
    assert any("--generator-on-server-core" in n for n in entry["notes"])


def test_repeat_peak_refused_outside_overload(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["conn-rate", "--repeat-peak"]) == 2
    assert "--repeat-peak is for the overload scenario" in capsys.readouterr().err
