"""c10k doctor: the real run checked against /proc itself, and the advice logic driven by
fake /proc contents (every fact goes through ``Sources.read``)."""

from __future__ import annotations

import json
import math
import os
import resource
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from c10k import doctor
from c10k.core.registry import available_backends, unavailable_backends
from c10k.doctor import LIMIT, OK, WARN, Sources, collect

TOP_KEYS = {
    "schema",
    "target",
    "loopback",
    "verdict",
    "ok",
    "in_the_way",
    "machine",
    "limits",
    "backends",
    "modes",
    "io_uring",
    "ktls",
    "compression",
    "capacity",
}
LIMIT_KEYS = {
    "value",
    "status",
    "meaning",
    "needed",
    "fix",
    "needs_root",
    "raisable",
    "workaround",
    "blocked_by",
}
SRC = Path(__file__).resolve().parents[1] / "src"


def _proc_int(name: str) -> list[int]:
    return [int(x) for x in Path("/proc/sys", name.replace(".", "/")).read_text().split()]


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = doctor.main(["--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command: ``python -m c10k doctor ARGS`` from this source tree."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    argv = [sys.executable, "-m", "c10k", "doctor", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


# -- the real machine -----------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/sys/fs/file-max").exists(), reason="needs Linux /proc")
def test_doctor_main_json_matches_proc(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _run_json(capsys, "--connections", "1000000")
    assert set(report) == TOP_KEYS
    assert report["schema"] == 1
    assert report["target"] == 1_000_000
    assert code == 0  # --json exits 0 and says the verdict inside
    assert report["ok"] is (report["verdict"] == OK)
    limits = report["limits"]
    for name, lim in limits.items():
        assert set(lim) == LIMIT_KEYS, name
        assert lim["status"] in ("OK", "LIMIT", "WARN", "INFO"), name
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    assert limits["RLIMIT_NOFILE"]["value"] == {
        "soft": None if soft == inf else soft,
        "hard": None if hard == inf else hard,
    }
    for name in (
        "fs.file-max",
        "fs.nr_open",
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_fin_timeout",
        "net.core.netdev_max_backlog",
        "kernel.threads-max",
        "kernel.pid_max",
        "vm.max_map_count",
    ):
        assert limits[name]["value"] == _proc_int(name)[0], name
    for name in ("net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
        assert limits[name]["value"] == _proc_int(name), name
    lo, hi = _proc_int("net.ipv4.ip_local_port_range")
    assert limits["net.ipv4.ip_local_port_range"]["value"] == [lo, hi]
    assert report["capacity"]["loopback"]["ports_per_tuple"] == hi - lo + 1
    meminfo = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
    }
    assert report["machine"]["mem_total"] == meminfo["MemTotal"]
    assert report["machine"]["cores"] == len(os.sched_getaffinity(0))
    assert report["machine"]["euid"] == os.geteuid()
    assert report["backends"] == {
        "available": available_backends(),
        "unavailable": unavailable_backends(),
    }
    assert set(report["modes"]) == {"available", "unavailable"}
    seccomp = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("Seccomp:")
    )
    assert report["io_uring"]["seccomp"] == seccomp
    ulp = Path("/proc/sys/net/ipv4/tcp_available_ulp")
    if ulp.exists():
        assert report["ktls"]["tcp_available_ulp"] == ulp.read_text().split()
    assert report["ktls"]["ssl_op_enable_ktls"] is hasattr(ssl, "OP_ENABLE_KTLS")
    # capacity terms follow from the limits
    per_process = (hard if hard != inf else _proc_int("fs.nr_open")[0]) - doctor.FD_RESERVE
    cap = report["capacity"]
    assert cap["fds_per_process"] == per_process
    assert cap["server"]["terms"]["fds_per_process_x_workers"] == per_process * cap["workers"]
    assert cap["server"]["connections"] == min(cap["server"]["terms"].values())
    assert report["in_the_way"] == sorted(n for n, v in limits.items() if v["status"] == LIMIT)


def test_doctor_main_text_small_target_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    # 100 connections fit on any machine that runs the test suite.
    code = doctor.main(["--connections", "100"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: OK" in out
    assert "RLIMIT_NOFILE" in out
    assert "capacity" in out


def test_doctor_main_rejects_zero_target() -> None:
    with pytest.raises(SystemExit):
        doctor.main(["--connections", "0"])


# -- advice logic on fake /proc --------------------------------------------------------------
LIMITS_HEAD = "Limit                     Soft Limit           Hard Limit           Units     \n"


def fake(
    *,
    nofile: tuple[str, str] = ("1048576", "1048576"),
    nproc: tuple[str, str] = ("unlimited", "unlimited"),
    cap_eff: str = "000001ffffffffff",
    euid: int = 0,
    cores: int = 2,
    mem_kb: int = 24 * 1024 * 1024,
    sysctls: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
    read_only: bool = False,
    ktls: bool = False,
    brotli: bool = True,
) -> Sources:
    values = {
        "fs.nr_open": "1048576",
        "fs.file-max": "9223372036854775807",
        "fs.file-nr": "1000\t0\t9223372036854775807",
        "net.core.somaxconn": "4096",
        "net.ipv4.tcp_max_syn_backlog": "4096",
        "net.ipv4.tcp_syncookies": "1",
        "net.core.netdev_max_backlog": "1000",
        "net.ipv4.ip_local_port_range": "32768\t60999",
        "net.ipv4.tcp_tw_reuse": "2",
        "net.ipv4.tcp_fin_timeout": "60",
        "net.ipv4.tcp_mem": "3000000 4000000 6000000",
        "net.ipv4.tcp_rmem": "4096 131072 6291456",
        "net.ipv4.tcp_wmem": "4096 16384 4194304",
        "kernel.threads-max": "192730",
        "kernel.pid_max": "4194304",
        "vm.max_map_count": "65530",
        "kernel.io_uring_disabled": "0",
    }
    values.update(sysctls or {})
    files = {doctor.sysctl_path(k): v + "\n" for k, v in values.items()}
    files["/proc/self/limits"] = (
        LIMITS_HEAD
        + f"Max processes             {nproc[0]:<21}{nproc[1]:<21}processes \n"
        + f"Max open files            {nofile[0]:<21}{nofile[1]:<21}files     \n"
    )
    files["/proc/meminfo"] = f"MemTotal:       {mem_kb} kB\nMemAvailable:   {mem_kb} kB\n"
    files["/proc/self/status"] = f"Seccomp:\t0\nCapEff:\t{cap_eff}\n"
    files.update(extra or {})
    return Sources(
        read=files.get,
        writable=lambda path: not read_only,
        cores=lambda: cores,
        euid=lambda: euid,
        backends=lambda: (["epoll", "poll"], {"kqueue": "BSD only"}),
        modes=lambda: ([], {"uring": "not here"}),
        ssl_ktls=lambda: ktls,
        brotli=lambda: brotli,
        page_size=4096,
    )


def test_doctor_big_machine_root_everything_ok() -> None:
    report = collect(1_000_000, src=fake())
    assert report["verdict"] == OK, report["in_the_way"]
    assert report["limits"]["RLIMIT_NOFILE"]["status"] == OK
    assert report["capacity"]["server"]["connections"] >= 1_000_000


def test_doctor_container_hard_nofile_cannot_be_raised_but_workers_can() -> None:
    # Docker's default: root, but no CAP_SYS_RESOURCE (bit 24), hard limit 20000.
    src = fake(
        nofile=("20000", "20000"),
        cap_eff="000001fffeffffff",
        extra={"/.dockerenv": ""},
    )
    report = collect(1_000_000, src=src)
    lim = report["limits"]["RLIMIT_NOFILE"]
    assert lim["status"] == LIMIT
    assert lim["raisable"] is False
    assert lim["needs_root"] is True
    assert report["machine"]["container"] == "docker"
    assert report["machine"]["cap_sys_resource"] is False
    need = math.ceil(1_000_000 / 2) + doctor.FD_RESERVE
    assert lim["needed"] == need
    assert f"`docker run --ulimit nofile={need}:{need}`" in " ".join(lim["fix"])
    assert f"LimitNOFILE={need}" in " ".join(lim["fix"])
    workers = math.ceil(1_000_000 / (20000 - doctor.FD_RESERVE))
    assert lim["workaround"] == [
        f"c10k serve --workers {workers}  ({20000 - doctor.FD_RESERVE:,} connections per worker)"
    ]
    assert report["verdict"] == LIMIT
    assert report["in_the_way"] == ["RLIMIT_NOFILE"]
    assert report["capacity"]["server"]["bound_by"] == "fds_per_process_x_workers"
    assert report["capacity"]["server"]["connections"] == 2 * (20000 - doctor.FD_RESERVE)
    # with more worker processes the fd limit drops out and memory binds
    mem = 24 * 1024**3
    any_server = report["capacity"]["server_any_workers"]
    assert any_server["bound_by"] == "memory"
    assert any_server["connections"] == mem // (
        doctor.SERVER_PY_BYTES_PER_CONN + doctor.KERNEL_BYTES_PER_SOCKET
    )
    any_loop = report["capacity"]["loopback_any_workers"]
    assert any_loop["connections"] == mem // (
        doctor.SERVER_PY_BYTES_PER_CONN
        + 2 * doctor.KERNEL_BYTES_PER_SOCKET
        + doctor.CLIENT_PY_BYTES_PER_CONN
    )
    text = doctor.render_text(report)
    assert "LIMIT RLIMIT_NOFILE" in text
    assert "cannot be done from here" in text


def test_doctor_root_with_cap_can_raise_nofile_needs_nr_open_first() -> None:
    # One core, 3M connections: the one process needs more fds than fs.nr_open allows.
    src = fake(nofile=("1024", "4096"), cores=1, mem_kb=64 * 1024 * 1024)
    report = collect(3_000_000, src=src)
    lim = report["limits"]["RLIMIT_NOFILE"]
    need = 3_000_000 + doctor.FD_RESERVE
    assert lim["status"] == LIMIT
    assert lim["raisable"] is True
    assert lim["fix"][0] == f"sysctl -w fs.nr_open={need}  # the ceiling of any hard limit"
    assert lim["fix"][1].startswith(f"ulimit -Hn {need} && ulimit -Sn {need}")
    nr_open = report["limits"]["fs.nr_open"]
    assert nr_open["status"] == LIMIT
    assert nr_open["fix"] == [
        f"sysctl -w fs.nr_open={need}",
        f"echo 'fs.nr_open = {need}' >> /etc/sysctl.d/60-c10k.conf",
    ]
    assert report["in_the_way"] == ["RLIMIT_NOFILE", "fs.nr_open"]


def test_doctor_soft_below_need_but_hard_enough_is_ok() -> None:
    lim = collect(1_000_000, src=fake(nofile=("1024", "1048576")))["limits"]["RLIMIT_NOFILE"]
    assert lim["status"] == OK
    assert lim["fix"] == ["ulimit -n 1048576  # for other programs; c10k does it itself"]


def test_doctor_unlimited_rlimits_parse_as_none() -> None:
    rl = doctor.read_rlimits(fake(nproc=("unlimited", "unlimited")))
    assert rl["Max processes"] == (None, None)
    assert rl["Max open files"] == (1048576, 1048576)


def test_doctor_file_max_loopback_counts_both_ends() -> None:
    sysctls = {"fs.file-max": "1500000", "fs.file-nr": "2000\t0\t1500000"}
    server = collect(1_000_000, src=fake(sysctls=sysctls))
    assert server["limits"]["fs.file-max"]["status"] == OK
    lb = collect(1_000_000, loopback=True, src=fake(sysctls=sysctls))
    lim = lb["limits"]["fs.file-max"]
    assert lim["status"] == LIMIT
    assert lim["needed"] == 2_002_000
    assert lim["fix"][0] == "sysctl -w fs.file-max=2502500"
    assert lb["capacity"]["loopback"]["terms"]["fs.file-max"] == (1_500_000 - 2000) // 2


def test_doctor_read_only_proc_sys_in_container() -> None:
    src = fake(sysctls={"net.core.somaxconn": "128"}, read_only=True, extra={"/.dockerenv": ""})
    lim = collect(1000, src=src)["limits"]["net.core.somaxconn"]
    assert lim["status"] == WARN
    assert lim["raisable"] is False
    assert lim["fix"][-1] == (
        "/proc/sys is read-only here: set it on the host or "
        "`docker run --sysctl net.core.somaxconn=4096`"
    )


def test_doctor_syn_backlog_matters_only_without_syncookies() -> None:
    small = {"net.ipv4.tcp_max_syn_backlog": "512"}
    assert (
        collect(1000, src=fake(sysctls=small))["limits"]["net.ipv4.tcp_max_syn_backlog"]["status"]
        == OK
    )
    off = {**small, "net.ipv4.tcp_syncookies": "0"}
    lim = collect(1000, src=fake(sysctls=off))["limits"]["net.ipv4.tcp_max_syn_backlog"]
    assert lim["status"] == WARN
    assert lim["fix"][0] == "sysctl -w net.ipv4.tcp_max_syn_backlog=4096"


def test_doctor_loopback_ports_and_tw_reuse() -> None:
    src = fake(sysctls={"net.ipv4.tcp_tw_reuse": "0"})
    report = collect(100_000, loopback=True, src=src)
    ports = report["limits"]["net.ipv4.ip_local_port_range"]
    assert ports["status"] == WARN
    assert ports["fix"][0] == 'sysctl -w net.ipv4.ip_local_port_range="1024 65535"'
    assert ports["fix"][1] == (
        "echo 'net.ipv4.ip_local_port_range = 1024 65535' >> /etc/sysctl.d/60-c10k.conf"
    )
    assert report["capacity"]["loopback"]["tuples_needed"] == math.ceil(100_000 / 28232)
    assert report["limits"]["net.ipv4.tcp_tw_reuse"]["status"] == WARN
    # server side: clients come from many hosts, the port range is not ours to spend
    server = collect(100_000, src=src)
    assert server["limits"]["net.ipv4.ip_local_port_range"]["status"] == OK
    assert server["limits"]["net.ipv4.tcp_tw_reuse"]["status"] == OK


def test_doctor_memory_is_not_raisable() -> None:
    report = collect(1_000_000, src=fake(mem_kb=1024 * 1024))  # 1 GiB
    lim = report["limits"]["memory"]
    per_conn = doctor.SERVER_PY_BYTES_PER_CONN + doctor.KERNEL_BYTES_PER_SOCKET
    assert lim["status"] == LIMIT
    assert lim["raisable"] is False
    assert lim["needed"] == 1_000_000 * per_conn
    assert report["capacity"]["server"]["bound_by"] == "memory"
    assert report["capacity"]["server"]["connections"] == 1024**3 // per_conn


def test_doctor_conntrack_only_when_tracking() -> None:
    idle = {"net.netfilter.nf_conntrack_max": "262144", "net.netfilter.nf_conntrack_count": "0"}
    assert (
        collect(1_000_000, src=fake(sysctls=idle))["limits"]["net.netfilter.nf_conntrack_max"][
            "status"
        ]
        == OK
    )
    busy = {**idle, "net.netfilter.nf_conntrack_count": "12"}
    report = collect(1_000_000, src=fake(sysctls=busy))
    lim = report["limits"]["net.netfilter.nf_conntrack_max"]
    assert lim["status"] == LIMIT
    assert lim["fix"][0] == "sysctl -w net.netfilter.nf_conntrack_max=1250000"
    assert report["capacity"]["server"]["bound_by"] == "net.netfilter.nf_conntrack_max"


def test_doctor_tcp_mem_warns_for_busy_sockets_only() -> None:
    small = {"net.ipv4.tcp_mem": "1000 2000 3000"}  # 12 MB of buffers
    lim = collect(100_000, src=fake(sysctls=small))["limits"]["net.ipv4.tcp_mem"]
    assert lim["status"] == WARN  # a warning: idle connections hold no buffers
    pages = math.ceil(100_000 * 8192 / 4096)
    assert lim["fix"][0] == f'sysctl -w net.ipv4.tcp_mem="{pages // 2} {pages * 3 // 4} {pages}"'


def test_doctor_threads_mode_capacity_from_thread_limits() -> None:
    src = fake(sysctls={"kernel.pid_max": "32768", "vm.max_map_count": "262144"})
    report = collect(1_000_000, src=src)
    assert report["capacity"]["threads_mode"]["bound_by"] == "kernel.pid_max"
    assert report["capacity"]["threads_mode"]["connections"] == 32768
    lim = report["limits"]["kernel.pid_max"]
    assert lim["status"] == "INFO"  # never in the way of the epoll server
    assert lim["fix"][0] == "sysctl -w kernel.pid_max=1010000"


def test_doctor_io_uring_disabled_and_seccomp() -> None:
    src = fake(
        sysctls={"kernel.io_uring_disabled": "2"},
        extra={"/proc/self/status": "Seccomp:\t2\nCapEff:\t000001ffffffffff\n"},
    )
    report = collect(1000, src=src)
    u = report["io_uring"]
    assert u["allowed"] is False
    assert u["io_uring_disabled"] == 2
    assert u["seccomp"] == 2
    assert "seccomp" in u["note"]
    assert report["limits"]["kernel.io_uring_disabled"]["fix"][0] == (
        "sysctl -w kernel.io_uring_disabled=0"
    )
    # 1: root with CAP_SYS_ADMIN still may
    ok = collect(1000, src=fake(sysctls={"kernel.io_uring_disabled": "1"}))
    assert ok["io_uring"]["allowed"] is True
    # 1: a user without it may not, unless in kernel.io_uring_group
    user = {"/proc/self/status": "Seccomp:\t0\nCapEff:\t0\nGid:\t1000\t1000\t1000\t1000\n"}
    no = collect(1000, src=fake(euid=1000, sysctls={"kernel.io_uring_disabled": "1"}, extra=user))
    assert no["io_uring"]["allowed"] is False
    group = {"kernel.io_uring_disabled": "1", "kernel.io_uring_group": "1000"}
    yes = collect(1000, src=fake(euid=1000, sysctls=group, extra=user))
    assert yes["io_uring"]["allowed"] is True


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs Linux /proc")
def test_doctor_measure_runs_a_real_server_and_cleans_up() -> None:
    # Small N: this checks the method (server started, connections held, server stopped),
    # not the figure, which needs 10,000 connections to be stable.
    before = set(os.listdir("/proc/self/fd"))
    result = doctor.measure(200)
    assert result["connections"] == 200
    assert set(result) == {
        "connections",
        "server_sockets",
        "server_rss_bytes_per_conn",
        "slab_bytes_per_socket",
        "client_rss_bytes_per_conn",
        "method",
        "notes",
    }
    assert result["server_sockets"] >= 200
    for key in ("server_rss_bytes_per_conn", "slab_bytes_per_socket", "client_rss_bytes_per_conn"):
        # a figure, or None with a note saying so: never a silent 0
        assert result[key] is None or result[key] > 0, key
    server = result["server_rss_bytes_per_conn"]
    assert server is None or server < 100_000  # not a page per connection
    nones = [k for k, v in result.items() if v is None]
    assert len(result["notes"]) == len(nones)
    assert set(os.listdir("/proc/self/fd")) == before  # every socket and pipe closed


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs Linux /proc")
def test_doctor_cli_measure_reads_the_process_holding_the_connections() -> None:
    # Issue 19: `--measure 3000` said 0 bytes per connection: it read the VmRSS of the
    # supervisor `c10k serve` starts by default, which holds no connection.
    run = _cli("--measure", "1000", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert isinstance(result["server_rss_bytes_per_conn"], int)
    assert 0 < result["server_rss_bytes_per_conn"] < 100_000
    assert result["server_sockets"] >= 1000  # the process measured held them all


def test__per() -> None:
    floor = doctor.MIN_GROWTH_PAGES * doctor.PAGE
    notes: list[str] = []
    assert doctor._per("Slab", 4 * floor, 100, 2, 5000, notes) == round(4 * floor / 200)
    assert notes == []
    for growth in (0, -doctor.PAGE, floor - 1):  # too little (or shrunk): None and why
        assert doctor._per("the server's VmRSS", growth, 50, 1, 400, notes) is None
    assert len(notes) == 3
    assert "50 connections are too few to measure it; try --measure" in notes[0]


@pytest.mark.parametrize("n", ["0", "-5", "1000000000"])
def test_doctor_cli_measure_refuses_non_positive_and_absurd_counts(n: str) -> None:
    # 0 was a ZeroDivisionError traceback, -5 was measured, 10**9 ran out of fds midway
    run = _cli(f"--measure={n}")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("c10k doctor: ")
    assert "--measure" in lines[0]


def test_doctor_cli_help_says_when_it_exits_1() -> None:
    run = _cli("--help")
    assert run.returncode == 0
    help_text = " ".join(run.stdout.split())
    assert "1 a LIMIT is in the way of the target (text output only)" in help_text
    assert "With --json the exit status is 0" in help_text
    assert "jq -e .ok" in help_text


def test_doctor_cli_json_exits_0_with_the_verdict_inside() -> None:
    # A trillion connections: something (memory at least) is in the way on any machine.
    run = _cli("--json", "--connections", str(10**12))
    assert run.returncode == 0, run.stderr  # `set -o pipefail` pipelines go on
    report = json.loads(run.stdout)
    assert report["ok"] is False
    assert report["verdict"] == LIMIT
    assert "memory" in report["in_the_way"]
    # text output keeps exit 1, for `c10k doctor && c10k serve`
    assert _cli("--connections", str(10**12)).returncode == 1


# -- root without the capability ------------------------------------------------------------
def _tag_line(text: str, name: str) -> str:
    after = text[text.index(f" {name} ") :]
    return after[after.index("to raise it") :].split(":\n")[0]


def test_doctor_root_without_cap_sys_resource_names_the_capability() -> None:
    # euid 0 in docker: root, but CAP_SYS_RESOURCE (bit 24) is not in CapEff
    src = fake(nofile=("20000", "20000"), cap_eff="000001fffeffffff", extra={"/.dockerenv": ""})
    report = collect(1_000_000, src=src)
    tag = _tag_line(doctor.render_text(report), "RLIMIT_NOFILE")
    assert "needs root" not in tag
    assert tag == "to raise it (cannot be done from here: root, but CapEff lacks CAP_SYS_RESOURCE)"
    lim = report["limits"]["RLIMIT_NOFILE"]
    assert lim["raisable"] is False
    assert lim["blocked_by"] == "root, but CapEff lacks CAP_SYS_RESOURCE"
    # not root: root is what is missing, and it says so as before
    user = collect(1_000_000, src=fake(nofile=("20000", "20000"), euid=1000, cap_eff="0"))
    assert user["limits"]["RLIMIT_NOFILE"]["blocked_by"] is None
    tag = _tag_line(doctor.render_text(user), "RLIMIT_NOFILE")
    assert tag == "to raise it (needs root, cannot be done from here)"


RO_PROC_SYS = "proc /proc proc rw,relatime 0 0\nproc /proc/sys proc ro,nosuid,relatime 0 0\n"


@pytest.mark.parametrize(
    ("cap_eff", "extra", "why"),
    [
        (
            "00000000a80425fb",  # docker's default set: no CAP_SYS_ADMIN (bit 21)
            {"/proc/self/mounts": RO_PROC_SYS},
            "/proc/sys is mounted read-only, and CapEff lacks CAP_SYS_ADMIN to remount it",
        ),
        (
            "000001ffffffffff",
            {"/proc/self/mounts": RO_PROC_SYS},
            "/proc/sys is mounted read-only (mount -o remount,rw /proc/sys)",
        ),
        (
            "00000000a80425fb",
            {"/proc/self/mounts": "proc /proc proc rw 0 0\n"},
            "root, but CapEff lacks CAP_SYS_ADMIN",
        ),
        (
            "000001ffffffffff",
            {"/proc/self/uid_map": "         0     100000      65536\n"},
            "root of a user namespace (/proc/self/uid_map), not of the host",
        ),
    ],
    ids=["ro-no-cap", "ro-cap", "no-cap", "userns"],
)
def test_doctor_root_cannot_write_sysctl_says_why(
    cap_eff: str, extra: dict[str, str], why: str
) -> None:
    src = fake(sysctls={"net.core.somaxconn": "128"}, cap_eff=cap_eff, extra=extra, read_only=True)
    report = collect(1000, src=src)
    tag = " ".join(_tag_line(doctor.render_text(report), "net.core.somaxconn").split())
    assert tag == f"to raise it (cannot be done from here: {why})"
    lim = report["limits"]["net.core.somaxconn"]
    assert lim["raisable"] is False
    assert lim["blocked_by"] == why


def test_doctor_root_in_user_namespace_cannot_raise_hard_nofile() -> None:
    # CAP_SYS_RESOURCE in CapEff, but of a user namespace: setrlimit checks the host's
    userns = {"/proc/self/uid_map": "         0       1000          1\n"}
    report = collect(1_000_000, src=fake(nofile=("20000", "20000"), extra=userns))
    lim = report["limits"]["RLIMIT_NOFILE"]
    assert lim["raisable"] is False
    assert lim["blocked_by"] == (
        "root of a user namespace: its CAP_SYS_RESOURCE does not count on the host"
    )
    assert report["machine"]["user_namespace"] is True


# -- kTLS (informational) -------------------------------------------------------------------
DEP = "kernel/net/tls/tls.ko.zst: \nkernel/net/ipv4/tcp_bbr.ko.zst:\n"


@pytest.mark.parametrize(
    ("files", "python", "module", "why"),
    [
        # this machine: only mptcp, a kernel without loadable modules, Python 3.11
        (
            {},
            False,
            "no-module-support",
            "the kernel offers no tls ULP (tcp_available_ulp lists mptcp); this kernel loads "
            "no modules (no /proc/modules); this Python's ssl has no OP_ENABLE_KTLS "
            "(Python 3.12+)",
        ),
        (
            {"/proc/modules": "nf_tables 1 0 - Live\n", "/lib/modules/6.8.0/modules.dep": DEP},
            True,
            "loadable",
            "the kernel offers no tls ULP (tcp_available_ulp lists mptcp); the tls module is "
            "not loaded: modprobe tls (needs root)",
        ),
        (
            {"/proc/modules": "", "/lib/modules/6.8.0/modules.dep": "kernel/fs/x.ko:\n"},
            True,
            "absent",
            "the kernel offers no tls ULP (tcp_available_ulp lists mptcp); no tls module in "
            "/lib/modules/6.8.0",
        ),
        (
            {"/proc/modules": ""},
            True,
            "unknown",
            "the kernel offers no tls ULP (tcp_available_ulp lists mptcp); no "
            "/lib/modules/6.8.0/modules.dep to tell if a tls module exists",
        ),
        (
            {"/proc/modules": "", "/proc/sys/kernel/modules_disabled": "1\n"},
            True,
            "modules-disabled",
            "the kernel offers no tls ULP (tcp_available_ulp lists mptcp); module loading is "
            "off (kernel.modules_disabled=1)",
        ),
        (
            {"/proc/sys/net/ipv4/tcp_available_ulp": "mptcp tls\n"},
            False,
            "no-module-support",
            "this Python's ssl has no OP_ENABLE_KTLS (Python 3.12+)",
        ),
    ],
    ids=["here", "loadable", "absent", "no-lib-modules", "modules-disabled", "old-python"],
)
def test_doctor_ktls_not_available_says_why(
    files: dict[str, str], python: bool, module: str, why: str
) -> None:
    extra = {
        "/proc/sys/net/ipv4/tcp_available_ulp": "mptcp\n",
        "/proc/sys/kernel/osrelease": "6.8.0\n",
        **files,
    }
    report = collect(1000, src=fake(extra=extra, ktls=python))
    k = report["ktls"]
    assert k["available"] is False
    assert k["tls_module"] == module
    assert k["ssl_op_enable_ktls"] is python
    assert k["why"] == why
    assert report["ok"] is True  # informational: never in the way
    text = " ".join(doctor.render_text(report).split())
    assert f"kTLS: not available: {why}" in text


@pytest.mark.parametrize(
    ("brotli", "codings", "line"),
    [
        (True, ["br", "gzip"], "on-the-fly compression: br, gzip"),
        (False, ["gzip"], "on-the-fly compression: gzip (br: pip install 'c10k[brotli]')"),
    ],
)
def test_doctor_compression_says_what_to_install(
    brotli: bool, codings: list[str], line: str
) -> None:
    report = collect(1000, src=fake(brotli=brotli))
    assert report["compression"]["codings"] == codings
    assert (report["compression"]["install"] is None) is brotli
    assert line in doctor.render_text(report).splitlines()


def test_doctor_ktls_available_with_ulp_and_python_flag() -> None:
    ulp = {"/proc/sys/net/ipv4/tcp_available_ulp": "mptcp tls\n", "/proc/modules": "tls 1 0\n"}
    report = collect(1000, src=fake(extra=ulp, ktls=True))
    assert report["ktls"] == {
        "available": True,
        "tcp_available_ulp": ["mptcp", "tls"],
        "tls_module": "loaded",
        "ssl_op_enable_ktls": True,
        "why": None,
    }
    assert "kTLS" not in report["limits"]
    assert "\nkTLS: available\n" in doctor.render_text(report)


def test_doctor_checks_table_covers_every_limit() -> None:
    # collect is the table walked in order: the report's limits are the checks' union
    ctx = doctor.Context(1_000_000, False, fake())
    names = [name for check in doctor.CHECKS for name in check(ctx)]
    assert names == list(collect(1_000_000, src=fake())["limits"])
    assert len(names) == len(set(names))  # no two checks own one limit


def test_doctor_constants_match_the_server() -> None:
    # Repeated in doctor.py so reading limits does not import the server; kept in step here.
    from c10k.server.base import FD_RESERVE
    from c10k.server.config import ServerConfig

    assert doctor.FD_RESERVE == FD_RESERVE
    assert ServerConfig().backlog == doctor.SERVER_BACKLOG
