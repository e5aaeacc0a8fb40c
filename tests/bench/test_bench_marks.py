"""Generator-bound figures are marked everywhere they are shown, plot axes follow their
rules, and titles name the counts a run used (issue 19).

Everything here renders synthetic or recorded JSON: no server, no generator.  The plot tests
need matplotlib (an optional extra) and are skipped without it.
"""

import copy
import doctest
from pathlib import Path
from typing import Any

import pytest

from c10k.bench import plot, report, runner
from c10k.bench.report import LEGEND, MARK
from c10k.bench.scenarios import Options, scenario, table, title

DOCS_BENCH = Path(__file__).resolve().parents[2] / "docs" / "bench"


def _run(server: str, rnd: int, rps: float, saturated: bool = False, **more: Any) -> dict[str, Any]:
    return {
        "server": server,
        "round": rnd,
        "rps": rps,
        "req_per_busy_core_s": rps * 1.01,
        "mib_s": rps / 2048,
        "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "p99.9": 40.0},
        "error_total": 0,
        "generator_saturated": saturated,
        **more,
    }


def _http_entry(sat_b: bool = True, sat_a: bool = False) -> dict[str, Any]:
    """keepalive at 100, 1,000 and 10,000 connections; server b's generator saturated in
    round 2 only at c=1000 (when ``sat_b``), a's in round 1 at c=10000 (when ``sat_a``)."""
    variations: dict[str, Any] = {}
    for c in (100, 1000, 10000):
        variations[f"c={c}"] = {
            "runs": [
                _run("a", 1, 100.0, sat_a and c == 10000),
                _run("b", 1, 150.0),
                _run("a", 2, 110.0),
                _run("b", 2, 170.0, sat_b and c == 1000),
            ]
        }
    entry: dict[str, Any] = {
        "name": "keepalive",
        "title": "Keep-alive: 512-byte file at 100, 1,000 and 10,000 connections",
        "measures": "requests per second",
        "kind": "http",
        "params": {},
        "variations": variations,
        "errors": [],
    }
    report.summarize(entry, ["a", "b"])
    entry["goals"] = report.goals(entry)
    return entry


def _doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "started": "2026-12-05T00:00:00+00:00",
        "argv": ["c10k", "bench", "keepalive"],
        "machine": {"cpu_count": 2, "kernel": "6.18", "python": "3.11.7", "rlimits": {}},
        "pinning": {"note": "server pinned to CPU 0, load generator to CPU 1"},
        "options": {"quick": False},
        "servers": [],
        "baseline": "a",
        "skipped": [],
        "scenarios": list(entries),
        "notes": [],
    }


def _row(rows: list[list[str]], label: str, server: str) -> list[str]:
    (row,) = [r for r in rows if r[0] == label and r[1] == server]
    return row


@pytest.mark.parametrize("module", [report, plot, table])
def test_bench_marks_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_summarize_counts_saturated_rounds() -> None:
    var = _http_entry()["variations"]
    assert var["c=1000"]["summary"]["b"]["saturated_rounds"] == 1
    assert var["c=100"]["summary"]["b"]["saturated_rounds"] == 0


def test_table_rows_mark_saturated_median_and_its_ratio() -> None:
    # b's c=1000 median is over two rounds, one saturated: its rates, latencies and ratios
    # are marked, its error count is not; a's row and b's other rows are not marked.
    header, rows = report.table_rows(_http_entry())
    b = _row(rows, "c=1000", "b")
    cols = dict(zip(header[2:], b[2:], strict=False))
    assert cols["req/s"] == "160" + MARK
    assert b[header.index("req/s") + 1] == "1.52" + MARK  # its ratio to a
    assert cols["p99 ms"].endswith(MARK)
    assert b[-1] == "0"  # errors: a count, not generator-bound
    for label, server in [("c=1000", "a"), ("c=100", "b"), ("c=10000", "b")]:
        assert not any(MARK in c for c in _row(rows, label, server))


def test_table_rows_mark_ratio_to_saturated_baseline() -> None:
    # a (the first server) saturated at c=10000: b's figures stand, b's ratio to a does not.
    header, rows = report.table_rows(_http_entry(sat_b=False, sat_a=True))
    b = _row(rows, "c=10000", "b")
    i = header.index("req/s")
    assert b[i] == "160"
    assert b[i + 1] == "1.52" + MARK
    assert _row(rows, "c=10000", "a")[i] == "105" + MARK


def test_terminal_table_marks_and_explains() -> None:
    text = report.terminal_table(_doc(_http_entry()))
    assert "160" + MARK in text
    assert LEGEND in text
    assert "generator-bound" in LEGEND
    assert "not a server figure" in LEGEND
    clean = report.terminal_table(_doc(_http_entry(sat_b=False)))
    assert MARK not in clean
    assert LEGEND not in clean


def test_markdown_marks_and_explains() -> None:
    md = report.markdown(_doc(_http_entry()))
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| c=1000 | b |")]
    assert "160" + MARK in line
    assert "1.52" + MARK in line
    assert LEGEND + "." in md
    clean = report.markdown(_doc(_http_entry(sat_b=False)))
    assert MARK not in clean
    assert LEGEND not in clean


def _overload_entry(peak_saturated: bool) -> dict[str, Any]:
    def run(server: str, goodput: float, sat: bool = False) -> dict[str, Any]:
        return {
            "server": server,
            "round": 1,
            "goodput_rps": goodput,
            "offered_rps": goodput,
            "goodput_vs_peak": goodput / 1000,
            "generator_saturated": sat,
        }

    entry: dict[str, Any] = {
        "name": "overload",
        "title": "Overload",
        "measures": "goodput",
        "kind": "overload",
        "params": {"goal": {"multiplier": 3.0, "fraction": 0.9}},
        "variations": {
            "peak": {"runs": [run("a", 1000.0, peak_saturated), run("b", 1000.0)]},
            "3x": {"runs": [run("a", 950.0), run("b", 950.0)]},
        },
        "errors": [],
    }
    report.summarize(entry, ["a", "b"])
    entry["goals"] = report.goals(entry)
    return entry


def test_overload_level_marked_when_its_peak_was_saturated() -> None:
    # goodput/peak and the offered rate are multiples of the peak run: a saturated peak
    # marks every level of that server, and the goal line quoting it.
    header, rows = report.table_rows(_overload_entry(peak_saturated=True))
    i = header.index("goodput/s")
    assert _row(rows, "3x", "a")[i] == "950" + MARK
    assert _row(rows, "3x", "b")[i] == "950"
    assert _row(rows, "3x", "b")[i + 1] == "1.00" + MARK  # a ratio to a's marked figure
    goal_a, goal_b = _overload_entry(peak_saturated=True)["goals"]
    assert f"95%{MARK} of the peak" in goal_a
    assert MARK not in goal_b
    assert not report.has_mark(report.table_rows(_overload_entry(peak_saturated=False))[1])


def test_recorded_keepalive_run_is_marked() -> None:
    # docs/bench/keepalive.json: c10k's generator was saturated at c=100 (both rounds), and
    # every server's at c=10000 in some round.
    recorded = DOCS_BENCH / "keepalive.json"
    if not recorded.exists():
        pytest.skip(f"{recorded} is not in this checkout")
    doc = runner.load_json(recorded)
    header, rows = report.table_rows(doc["scenarios"][0])
    i = header.index("req/s")
    assert _row(rows, "c=100", "c10k")[i].endswith(MARK)
    assert not _row(rows, "c=100", "nginx")[i].endswith(MARK)
    assert LEGEND in report.markdown(doc)


def test_title_names_quick_counts() -> None:
    assert title(scenario("keepalive", quick=True), Options(quick=True)) == (
        "Keep-alive: 512-byte file at 4 and 16 connections (--quick)"
    )
    full = title(scenario("keepalive"), Options())
    assert "100, 1,000 and 10,000 connections" in full
    assert "--quick" not in full
    assert "10 and 50 held" in title(scenario("idle", quick=True), Options(quick=True))
    assert "at 4 keep-alive connections" in title(
        scenario("bigfile", quick=True), Options(quick=True)
    )
    assert "100 connections each" in title(scenario("slowhttp", quick=True), Options(quick=True))
    assert "288 kbit/s" in title(scenario("modem", quick=True), Options(quick=True))
    assert "1.5x and 3x" in title(scenario("overload"), Options(multipliers=[1.5, 3.0]))
    # --connections replaces the counts, quick or not
    assert "at 7 connections" in title(scenario("keepalive"), Options(connections=[7]))


def test_runner_entry_title_is_the_quick_title(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner writes title() into the document (which the table, results.md and the plots
    # show); the poller measurement itself is replaced, so nothing is measured.
    monkeypatch.setattr(
        runner,
        "run_poller",
        lambda scen, ctx: {"N=10": [{"server": "poll", "wait_us": 1.0, "us_per_event": 1.0}]},
    )
    opts = Options(quick=True, poller_sizes=[10, 20])
    doc = runner.run(["poller"], [], opts, tmp_path, pin_enabled=False, argv=[], say=print)
    (entry,) = doc["scenarios"]
    assert (
        entry["title"]
        == "Poller bench: time per event at 10 and 20 watched fds, per backend (--quick)"
    )
    assert entry["title"] in report.terminal_table(doc)
    assert f"## poller: {entry['title']}" in report.markdown(doc)


# ---------------------------------------------------------------------------------------
# plots (matplotlib)


def _render(doc: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """name -> {"axes": [(xscale, yscale, ylim bottom, legend texts, title)], "lines": ...}"""
    pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'c10k[plot]'")
    seen: dict[str, Any] = {}

    def inspect(name: str, fig: Any) -> None:
        axes = []
        for ax in fig.axes:
            leg = ax.get_legend()
            axes.append(
                {
                    "xscale": ax.get_xscale(),
                    "yscale": ax.get_yscale(),
                    "bottom": ax.get_ylim()[0],
                    "legend": [t.get_text() for t in leg.get_texts()] if leg else [],
                    "hollow": sum(
                        1
                        for ln in ax.get_lines()
                        if ln.get_markerfacecolor() == "white" and ln.get_xdata().size
                    ),
                    "hatched": sum(1 for p in ax.patches if p.get_hatch()),
                    "ticks": [t.get_text() for t in ax.get_xticklabels()],
                }
            )
        title = fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()
        seen[name] = {"axes": axes, "title": title}

    written = plot.render(doc, tmp_path, inspect=inspect)
    assert sorted(written) == sorted(seen)
    return seen


def test_plot_http_rates_from_zero_log_connections_marked(tmp_path: Path) -> None:
    seen = _render(_doc(_http_entry()), tmp_path)
    rps = seen["keepalive-rps.png"]
    assert "100, 1,000 and 10,000 connections" in rps["title"]
    for ax in rps["axes"]:
        assert ax["bottom"] == 0  # a rate
        assert ax["xscale"] == "log"  # 100..10,000 connections
        assert ax["hollow"] == 1  # b at c=1000
        assert plot.SATURATED_LABEL in ax["legend"]
    (lat,) = seen["keepalive-latency.png"]["axes"]
    assert lat["yscale"] == "log"
    assert f"b{MARK}\nc=1000" in lat["ticks"]
    assert "a\nc=1000" in lat["ticks"]


def test_plot_http_unmarked_has_no_saturated_legend(tmp_path: Path) -> None:
    seen = _render(_doc(_http_entry(sat_b=False)), tmp_path)
    for ax in seen["keepalive-rps.png"]["axes"]:
        assert ax["hollow"] == 0
        assert plot.SATURATED_LABEL not in ax["legend"]


def test_plot_http_single_variation_bars_hatched(tmp_path: Path) -> None:
    entry = _http_entry()
    entry["variations"] = {"c=1000": entry["variations"]["c=1000"]}
    (ax, _ax2) = _render(_doc(entry), tmp_path)["keepalive-rps.png"]["axes"]
    assert ax["bottom"] == 0
    assert ax["hatched"] == 1
    assert ax["ticks"] == ["a", f"b{MARK}"]
    assert plot.SATURATED_LABEL in ax["legend"]


def test_plot_quick_span_is_linear(tmp_path: Path) -> None:
    # --quick's 4 and 16 connections span less than a decade: a linear axis, from 0.
    entry = _http_entry(sat_b=False)
    entry["variations"] = {
        "c=4": entry["variations"]["c=100"],
        "c=16": entry["variations"]["c=1000"],
    }
    for ax in _render(_doc(entry), tmp_path)["keepalive-rps.png"]["axes"]:
        assert ax["xscale"] == "linear"
        assert ax["bottom"] == 0


def test_plot_overload_marked_from_zero(tmp_path: Path) -> None:
    (ax,) = _render(_doc(_overload_entry(peak_saturated=True)), tmp_path)["overload-goodput.png"][
        "axes"
    ]
    assert ax["bottom"] == 0
    assert ax["hollow"] == 1
    assert plot.SATURATED_LABEL in ax["legend"]


def test_plot_idle_log_counts_from_zero(tmp_path: Path) -> None:
    runs = []
    variations: dict[str, Any] = {}
    for n in (0, 10_000, 100_000, 1_000_000):
        runs = [
            {
                "server": "a",
                "round": 1,
                "held": n,
                "rss_per_conn_bytes": 3000.0 + n / 1000,
                "latency_ms": {"p50": 1.0, "p99": 2.0},
                "generator_saturated": n == 100_000,
            }
        ]
        variations[f"N={n}"] = {"runs": copy.deepcopy(runs)}
    entry: dict[str, Any] = {
        "name": "idle",
        "title": "Idle",
        "measures": "",
        "kind": "idle",
        "params": {},
        "variations": variations,
        "errors": [],
    }
    report.summarize(entry, ["a"])
    seen = _render(_doc(entry), tmp_path)
    for name in ("idle-memory.png", "idle-latency.png"):
        (ax,) = seen[name]["axes"]
        assert ax["xscale"] == "log"
        assert ax["bottom"] == 0
        assert ax["hollow"] == 1
        assert plot.SATURATED_LABEL in ax["legend"]


def test_plot_modem_saturated_dashed_from_zero(tmp_path: Path) -> None:
    def run(server: str, sat: bool) -> dict[str, Any]:
        return {
            "server": server,
            "round": 1,
            "score": 5,
            "started": 6,
            "timeline": [[0.0, 0], [1.0, 6], [2.0, 5]],
            "generator_saturated": sat,
        }

    entry: dict[str, Any] = {
        "name": "modem",
        "title": "Kegel test 2",
        "measures": "",
        "kind": "modem",
        "params": {},
        "variations": {"28.8k": {"runs": [run("a", False), run("b", True)]}},
        "errors": [],
    }
    report.summarize(entry, ["a", "b"])
    (ax,) = _render(_doc(entry), tmp_path)["modem-users.png"]["axes"]
    assert ax["bottom"] == 0
    assert ax["legend"][0] == "a (score 5)"
    assert ax["legend"][1].startswith(f"b (score 5{MARK}, dashed: generator-bound")


def test_markdown_names_the_congestion_control() -> None:
    """Big-file figures move 2x with BBR's per-socket pacing: the report must say which."""
    doc = _doc(_http_entry())
    doc["machine"]["sysctl"] = {
        "net.ipv4.tcp_congestion_control": "bbr",
        "net.core.default_qdisc": "pfifo_fast",
    }
    assert "TCP congestion control bbr, default qdisc pfifo_fast" in report.markdown(doc)
    del doc["machine"]["sysctl"]
    assert "TCP congestion control ?, default qdisc ?" in report.markdown(doc)


def test_generators_used_says_when_bodies_were_dropped() -> None:
    """bigfile's Python generator drops bodies in the kernel: results.md must say so."""
    entry = _http_entry()
    for var in entry["variations"].values():
        for r in var["runs"]:
            r["generator"] = "python"
            r["discard"] = r["server"] == "a"
    used = report.generators_used(_doc(entry))
    assert used == {"keepalive": ["python", "python (bodies dropped in the kernel)"]}
