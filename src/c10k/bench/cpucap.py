"""Cap the server under test to a fraction of one core with a cgroup CPU quota.

Theory of operation
-------------------
**Why.**  On loopback the TCP handshake and most per-connection kernel work run in softirq on
the *sender's* core, i.e. the load generator's.  With new connections, one generator core
saturates at ~16k conn/s (h2load) while one uncapped server core does ~19k, so no generator
on one core can offer 3x an uncapped server (issue 7's overload goal).  Capping the server
(and every peer alike) to, say, 10 % of its core makes the server the bottleneck again, and
the same one-core generator can then offer 3x its (capped) peak.

**How.**  A per-run cgroup ``c10k-bench-<pid>`` with a CFS quota: cgroup v2 writes
``"QUOTA PERIOD"`` to ``cpu.max`` (after ``+cpu`` in the parent's ``cgroup.subtree_control``
if the controller is not yet enabled there); cgroup v1 writes ``cpu.cfs_period_us`` and
``cpu.cfs_quota_us`` in the ``cpu`` hierarchy.  The period is 10 ms (v1 refuses quotas under
1 ms, so a smaller fraction gets a longer period).  v2 is used when a cgroup2 mount lists
``cpu`` in ``cgroup.controllers``, else a v1 mount of the ``cpu`` controller.

The server joins the cgroup *before* it execs (``preexec_fn`` writes ``0``, "the writing
task", to ``cgroup.procs``), so every worker it forks and every thread it starts inherits the
cgroup; the parent then checks ``/proc/PID/cgroup`` and, should anything have escaped, moves
it.  The cgroup is removed (``rmdir``) once the server has exited, also on errors and
Ctrl-C; cgroups of bench processes that no longer exist are removed when a new one is made.

If no cgroup can be made (not root, read-only, no cpu controller) the run goes on uncapped and
the report says why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERIOD_US = 10_000
MIN_QUOTA_US = 1_000  # cgroup v1's floor for cpu.cfs_quota_us (v2's is 1 ms as well)
MAX_PERIOD_US = 1_000_000
PREFIX = "c10k-bench-"


def quota_for(fraction: float, period_us: int = PERIOD_US) -> tuple[int, int]:
    """(quota, period) in µs for ``fraction`` of one core; the period grows past 10 ms only
    when the quota would fall under the 1 ms floor.

    >>> quota_for(0.1), quota_for(0.05), quota_for(1.5)
    ((1000, 10000), (1000, 20000), (15000, 10000))
    """
    if fraction <= 0:
        raise ValueError(f"CPU fraction must be > 0: {fraction}")
    period = period_us
    if fraction * period < MIN_QUOTA_US:
        period = min(MAX_PERIOD_US, -(-MIN_QUOTA_US * 1000 // round(fraction * 1000)))
    return max(MIN_QUOTA_US, round(fraction * period)), period


def parse_mounts(text: str) -> list[tuple[str, str, list[str]]]:
    r"""``/proc/self/mounts`` -> [(mount point, fs type, options)] of cgroup file systems.

    >>> parse_mounts("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\nproc /proc proc rw 0 0\n"
    ...              "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    [('/sys/fs/cgroup/cpu', 'cgroup', ['rw', 'cpu']), ('/sys/fs/cgroup/unified', 'cgroup2', ['rw'])]
    """
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("cgroup", "cgroup2"):
            # Mount points escape blanks as \040.
            out.append((f[1].replace("\\040", " "), f[2], f[3].split(",")))
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def find_cpu_controller(mounts_text: str) -> tuple[int, Path] | str:
    """(cgroup version, mount point) of a hierarchy with the cpu controller, or why none.

    v2 is preferred when its ``cgroup.controllers`` lists ``cpu``; else v1's ``cpu`` mount
    (also a combined ``cpu,cpuacct`` one) if it has ``cpu.cfs_quota_us``.
    """
    mounts = parse_mounts(mounts_text)
    reasons = []
    for point, fstype, _opts in mounts:
        if fstype != "cgroup2":
            continue
        controllers = _read(Path(point) / "cgroup.controllers")
        if controllers is not None and "cpu" in controllers.split():
            return 2, Path(point)
        reasons.append(f"the cgroup2 mount {point} has no cpu controller")
    for point, fstype, opts in mounts:
        if fstype == "cgroup" and "cpu" in opts:
            if (Path(point) / "cpu.cfs_quota_us").exists():
                return 1, Path(point)
            reasons.append(f"{point} has no cpu.cfs_quota_us (kernel without CFS bandwidth)")
    if not mounts:
        return "no cgroup file system is mounted"
    return "; ".join(reasons) or "no cgroup hierarchy has the cpu controller"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parent: Path) -> list[str]:
    """rmdir ``c10k-bench-PID`` cgroups under ``parent`` whose PID is gone (empty ones only:
    the kernel refuses to remove a cgroup that still has tasks)."""
    removed: list[str] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        pid = name[len(PREFIX) :]
        if name.startswith(PREFIX) and pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                _rmdir(parent / name)
                removed.append(name)
    return removed


def _rmdir(path: Path) -> None:
    """rmdir a cgroup.  A cgroupfs directory goes with its control files in it (EBUSY while
    it has tasks); ENOTEMPTY means a plain directory tree (the tests' fake one): empty it."""
    try:
        os.rmdir(path)
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            raise
        for p in path.iterdir():
            if p.is_file():
                p.unlink()
        os.rmdir(path)


@dataclass
class CpuCap:
    """One cgroup with a CPU quota; ``create()`` it, start servers in it, ``remove()`` it."""

    version: int
    mount: Path
    fraction: float
    name: str = ""
    quota_us: int = 0
    period_us: int = PERIOD_US

    def __post_init__(self) -> None:
        self.name = self.name or f"{PREFIX}{os.getpid()}"
        self.quota_us, self.period_us = quota_for(self.fraction, self.period_us)

    @property
    def path(self) -> Path:
        return self.mount / self.name

    @property
    def setting(self) -> str:
        """What was written, as it reads in the cgroup's files."""
        if self.version == 2:
            return f"cpu.max {self.quota_us} {self.period_us}"
        return f"cpu.cfs_quota_us {self.quota_us}, cpu.cfs_period_us {self.period_us}"

    def create(self) -> None:
        """Make the cgroup and set its quota; raises OSError (and leaves nothing) on failure."""
        remove_stale(self.mount)
        # One of our name is a leftover of a dead process that had our PID (a killed bench
        # run's, or a test worker's): remove_stale keeps it, as the PID is alive. An empty
        # one goes; one with tasks in it raises (EBUSY): that run's server still runs.
        with contextlib.suppress(FileNotFoundError):
            _rmdir(self.path)
        if self.version == 2:
            control = self.mount / "cgroup.subtree_control"
            enabled = (_read(control) or "").split()
            if "cpu" not in enabled:
                control.write_text("+cpu")
        os.mkdir(self.path)
        try:
            if self.version == 2:
                (self.path / "cpu.max").write_text(f"{self.quota_us} {self.period_us}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
                (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        except BaseException:
            with contextlib.suppress(OSError):
                _rmdir(self.path)
            raise

    def preexec(self) -> None:
        """For ``Popen(preexec_fn=...)``: the child moves itself in before it execs."""
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def add_task(self, tid: int) -> None:
        """Move one thread: v1 takes a tid in ``tasks``; v2 moves whole processes only."""
        if self.version == 1:
            (self.path / "tasks").write_text(str(tid))
        else:
            (self.path / "cgroup.procs").write_text(str(tid))

    def member_path(self, cgroup_text: str) -> str | None:
        """This hierarchy's path in ``/proc/PID/cgroup`` text.

        >>> cap = CpuCap(1, Path("/x"), 0.1, name="c")
        >>> cap.member_path("4:memory:/a\\n2:cpu,cpuacct:/c\\n0::/\\n")
        '/c'
        >>> CpuCap(2, Path("/x"), 0.1, name="c").member_path("1:cpu:/\\n0::/c\\n")
        '/c'
        """
        for line in cgroup_text.splitlines():
            hid, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if self.version == 2 and hid == "0" and controllers == "":
                return path
            if self.version == 1 and "cpu" in controllers.split(","):
                return path
        return None

    def holds(self, pid: int, tid: int | None = None) -> bool:
        """Whether process ``pid`` (or its thread ``tid``) is in this cgroup."""
        where = f"/proc/{pid}/task/{tid}/cgroup" if tid else f"/proc/{pid}/cgroup"
        text = _read(Path(where))
        if text is None:
            return True  # gone: nothing left to cap
        path = self.member_path(text)
        return path is not None and path.rstrip("/").endswith("/" + self.name)

    def enforce(self, pids: list[int]) -> list[int]:
        """Check every thread of ``pids``; move any outside the cgroup in.  Returns the tids
        that had to be moved (empty when everything inherited the cgroup, as it should)."""
        moved = []
        for pid in pids:
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in tids:
                if not self.holds(pid, tid):
                    with contextlib.suppress(OSError):
                        self.add_task(tid)
                        moved.append(tid)
        return moved

    def throttling(self) -> dict[str, float]:
        """``cpu.stat``: periods, throttled periods and throttled seconds so far."""
        out: dict[str, float] = {}
        for line in (_read(self.path / "cpu.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if not value.strip().isdigit():
                continue
            v = int(value)
            if key in ("nr_periods", "nr_throttled"):
                out[key] = v
            elif key == "throttled_time":  # v1: ns
                out["throttled_s"] = v / 1e9
            elif key == "throttled_usec":  # v2: µs
                out["throttled_s"] = v / 1e6
        return out

    def remove(self, timeout: float = 5.0) -> None:
        """rmdir the cgroup, waiting up to ``timeout`` for exiting tasks to leave it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def to_json(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "quota_us": self.quota_us,
            "period_us": self.period_us,
            "cgroup_version": self.version,
            "cgroup": str(self.path),
            "setting": self.setting,
        }


def make_cap(fraction: float, mounts_text: str | None = None) -> tuple[CpuCap | None, str | None]:
    """Create a cgroup capping to ``fraction`` of a core: (cap, None) or (None, why not)."""
    if mounts_text is None:
        mounts_text = _read(Path("/proc/self/mounts")) or ""
    found = find_cpu_controller(mounts_text)
    if isinstance(found, str):
        return None, found
    version, mount = found
    cap = CpuCap(version, mount, fraction)
    try:
        cap.create()
    except OSError as e:
        what = "root is needed" if isinstance(e, PermissionError) else e.strerror or str(e)
        return None, f"cannot create a cgroup under {mount} (cgroup v{version}): {what} ({e})"
    return cap, None


def cap_note(cap: CpuCap, server_cpu: int | None, purpose: str = "") -> str:
    """The line the report prints under the table.

    >>> cap_note(CpuCap(2, Path("/x"), 0.1, name="c"), 0, "so that X")
    'server capped to 10 % of CPU 0 by a cgroup CPU quota (cpu.max 1000 10000) so that X; \
peers capped alike'
    """
    where = f"CPU {server_cpu}" if server_cpu is not None else "one core"
    return (
        f"server capped to {cap.fraction * 100:g} % of {where} by a cgroup CPU quota "
        f"({cap.setting})" + (f" {purpose}" if purpose else "") + "; peers capped alike"
    )
