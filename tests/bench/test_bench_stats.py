"""Unit tests of the bench's pure parts: histogram, percentiles, wrk parsing, reports."""

import doctest
import random
from pathlib import Path

import pytest

from c10k.bench import cli, client, peers, poller, report, stats
from c10k.bench.stats import Histogram, bucket_bounds, bucket_index, parse_wrk_output

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("module", [stats, client, peers, report])
def test_bench_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0


def test_bucket_index_bounds_roundtrip() -> None:
    for v in [*range(2000), 10**4, 10**6 + 7, 2**31 - 1, 5 * 10**9]:
        lo, hi = bucket_bounds(bucket_index(v))
        assert lo <= v <= hi
        # 1/64 relative precision above the linear range
        assert hi - lo <= max(0, lo // 64)


def test_bucket_index_monotonic() -> None:
    prev = -1
    for v in range(0, 100_000, 7):
        i = bucket_index(v)
        assert i >= prev
        prev = i


def _nearest_rank(values: list[int], p: float) -> int:
    s = sorted(values)
    k = max(1, -(-round(p * 1000) * len(s) // 100_000))
    return s[k - 1]


@pytest.mark.parametrize("p", [50.0, 90.0, 99.0, 99.9, 100.0])
def test_histogram_percentile_within_precision(p: float) -> None:
    rnd = random.Random(7)
    values = [int(rnd.lognormvariate(6, 1.5)) for _ in range(20_000)]
    h = Histogram()
    for v in values:
        h.record(v)
    exact = _nearest_rank(values, p)
    got = h.percentile(p)
    assert exact <= got <= max(exact + exact / 64 + 1, exact)
    assert h.count == len(values)
    assert h.max == max(values)
    assert h.min == min(values)


def test_histogram_small_exact() -> None:
    h = Histogram()
    for v in (5, 1, 3, 2, 4):
        h.record(v)
    assert [h.percentile(p) for p in (20, 40, 60, 80, 100)] == [1, 2, 3, 4, 5]
    assert h.mean() == 3.0


def test_histogram_empty() -> None:
    h = Histogram()
    assert h.percentile(99) == 0
    assert h.summary_ms()["p99"] == 0
    assert h.mean() == 0.0


def test_histogram_merge_and_json_roundtrip() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for i in range(1000):
        (a if i % 2 else b).record(i * 13)
        both.record(i * 13)
    a.merge(Histogram.from_json(b.to_json()))
    assert a.buckets == both.buckets
    assert (a.count, a.min, a.max, a.total) == (both.count, both.min, both.max, both.total)
    assert a.summary_ms() == both.summary_ms()


def test_histogram_negative_counts_as_zero() -> None:
    h = Histogram()
    h.record(-5)
    assert h.min == 0
    assert h.max == 0
    assert h.count == 1


def test_parse_wrk_output_with_hook() -> None:
    out = parse_wrk_output((DATA / "wrk-hook.txt").read_text())
    assert out["requests"] == 1043
    assert out["bytes"] == 743659.0
    assert out["duration_s"] == pytest.approx(1.003821)
    assert out["rps"] == pytest.approx(1039.03)
    assert out["errors"] == {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    lat = out["latency_ms"]
    assert lat["p50"] == pytest.approx(2.838)
    assert lat["p99.9"] == pytest.approx(16.316)
    assert lat["max"] == pytest.approx(17.221)
    assert lat["p75"] == pytest.approx(5.64)  # from the text, the hook has no p75


def test_parse_wrk_output_text_only_with_errors() -> None:
    out = parse_wrk_output((DATA / "wrk-404.txt").read_text())
    assert out["requests"] == 1010
    assert out["errors"]["status"] == 1010
    assert out["latency_ms"]["p99"] == pytest.approx(14.10)
    assert out["latency_ms"]["max"] == pytest.approx(16.24)
    assert "p99.9" not in out["latency_ms"]
    assert out["bytes"] == pytest.approx(512.89 * 1024)


def test_parse_wrk_output_socket_errors() -> None:
    text = (
        "Running 1s test @ http://127.0.0.1:1/\n"
        "  1 threads and 10 connections\n"
        "  Latency   122.43us   57.30us   2.06s   92.14%\n"
        "  Latency Distribution\n     50%  111.00us\n     99%    1.50s\n"
        "  79696 requests in 1.00m, 56.30MB read\n"
        "  Socket errors: connect 3, read 4, write 5, timeout 6\n"
        "Requests/sec:  79683.53\n"
    )
    out = parse_wrk_output(text)
    assert out["duration_s"] == 60.0
    assert out["errors"] == {"connect": 3, "read": 4, "write": 5, "status": 0, "timeout": 6}
    assert out["latency_ms"]["p50"] == pytest.approx(0.111)
    assert out["latency_ms"]["p99"] == 1500.0
    assert out["latency_ms"]["max"] == 2060.0


def test_parse_wrk_output_failure() -> None:
    with pytest.raises(ValueError, match="requests in"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_median_and_ratio() -> None:
    assert stats.median([5.0]) == 5.0
    assert stats.ratio(2.0, 4.0) == 0.5
    assert stats.ratio(1.0, 0.0) is None
    assert stats.ratio(None, 1.0) is None


def test_parse_head_http10_keepalive_and_no_length() -> None:
    assert client.parse_head(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"
    ) == (200, 3, True, 62)
    # no length on a 200: delimited by close, so not reusable
    assert client.parse_head(b"HTTP/1.1 200 OK\r\n\r\n") == (200, -1, False, 19)
    assert client.parse_head(b"HTTP/1.1 304 Not Modified\r\n\r\n") == (304, 0, True, 29)


def test_summarize_ratios_to_first_server() -> None:
    entry = {
        "kind": "http",
        "variations": {
            "c=1": {
                "runs": [
                    {"server": "a", "round": 1, "rps": 100.0, "latency_ms": {"p99": 2.0}},
                    {"server": "b", "round": 1, "rps": 50.0, "latency_ms": {"p99": 4.0}},
                    {"server": "a", "round": 2, "rps": 300.0, "latency_ms": {"p99": 2.0}},
                    {"server": "b", "round": 2, "rps": 150.0, "latency_ms": {"p99": 4.0}},
                ]
            }
        },
    }
    report.summarize(entry, ["a", "b"])
    var = entry["variations"]["c=1"]
    assert var["summary"]["a"]["rps"] == 200.0
    assert var["summary"]["b"]["rounds"] == 2
    assert var["ratios"]["b"]["rps"] == 0.5
    assert var["ratios"]["b"]["latency_ms.p99"] == 2.0
    assert var["baseline"] == "a"
    header, rows = report.table_rows(entry)
    assert header[:4] == ["", "server", "req/s", "/first"]
    assert rows[1][:4] == ["c=1", "b", "100", "0.50"]  # median of 50 and 150


def test_poller_bench_one_counts_events() -> None:
    r = poller.bench_one(poller.EpollBackend, 50, 2, 0.01, max_iterations=50)
    assert r["events"] == r["iterations"] * 2
    assert r["n"] == 50
    assert r["wait_us"] > 0


def test_poller_select_refuses_high_fds() -> None:
    with pytest.raises(ValueError, match="FD_SETSIZE"):
        poller.bench_one(poller.SelectBackend, 1100, 1, 0.01)


def test_plan_processes_and_sources() -> None:
    assert client.plan_processes(1) == 1
    assert client.source_addresses(10_001) == ["127.0.0.2", "127.0.0.3"]
    assert sum(client.split_evenly(10_001, 3)) == 10_001


def test_c10k_spec_command_line() -> None:
    spec = peers.c10k_spec("epoll")
    argv = spec.build(8080, Path("/www"), Path("/tmp"))
    if peers.c10k_has_workers():
        # One process, like nginx with master_process off, whatever c10k's default.
        i = argv.index("--workers")
        assert argv[i + 1] == "1"
        del argv[i : i + 2]
    if peers.c10k_traces():
        # The admission trace the overload scenario reads (bench/admtrace.py).
        i = argv.index("--admission-trace")
        assert argv[i + 1] == "/tmp/c10k-admission-8080.jsonl"
        del argv[i : i + 2]
    assert argv[1:] == [
        "-m",
        "c10k",
        "serve",
        "/www",
        "--bind",
        "127.0.0.1",
        "--port",
        "8080",
        "--keepalive-timeout",
        str(peers.KEEPALIVE_S),
        "--backend",
        "epoll",
    ]
    assert spec.name == "c10k[epoll]"
    plain = peers.c10k_spec().build(1, Path("/r"), Path("/t"))
    assert "--backend" not in plain
    assert plain[plain.index("--port") + 1] == "1"


def test_nginx_config_generated(tmp_path: Path) -> None:
    argv = peers.PEERS["nginx"].build(8081, tmp_path / "www", tmp_path)
    conf = (tmp_path / "nginx-8081" / "nginx.conf").read_text()
    assert argv[-2:] == ["-c", str(tmp_path / "nginx-8081" / "nginx.conf")]
    for directive in (
        "worker_processes 1;",
        "master_process off;",
        "daemon off;",
        "sendfile on;",
        "tcp_nopush on;",
        "open_file_cache max=",
        "access_log off;",
        f"keepalive_timeout {peers.KEEPALIVE_S}s;",
        f"root {tmp_path / 'www'};",
        "listen 127.0.0.1:8081",
    ):
        assert directive in conf


def test_c10k_arg_goes_last_on_every_c10k_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--max-accept-wait", "0"]
    one = peers.c10k_spec("epoll", extra).build(8080, Path("/www"), Path("/tmp"))
    assert one[-2:] == extra
    multi = peers.c10k_spec(None, extra).multi_argv([8001, 8002], 2, Path("/www"), Path("/tmp"))
    assert multi[-2:] == extra
    assert peers.c10k_spec("epoll").build(8080, Path("/www"), Path("/tmp"))[-2:] != extra
    # With nothing of c10k's to pass it to, the argument is refused, not dropped.
    assert cli.main(["keepalive", "--no-c10k", "--peer", "nginx", "--c10k-arg=-x"]) == 2
    assert "--c10k-arg: c10k is not measured" in capsys.readouterr().err
