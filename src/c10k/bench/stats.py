"""Latency histograms, percentiles, and parsing of wrk's output.

Theory of operation
-------------------
A load generator records one latency per request, millions per run, spread over several
processes.  Keeping every sample would cost memory and a sort; averaging them would hide the
tail that matters (Gil Tene, "How NOT to measure latency").  So, like HdrHistogram and wrk's
own ``stats.c``, each process counts samples into buckets and the parent adds the buckets up.

Bucketing (log-linear, integer microseconds, no floating point on the hot path):

- values below 128 µs get one bucket each (exact);
- above that, a value ``v`` with ``e = v.bit_length() - 7`` falls into the bucket of
  ``v >> e``, which is in ``[64, 128)``: 64 sub-buckets per power of two, so any reported
  value is within 1/64 (1.6 %) of the truth.  HdrHistogram with 2 significant digits gives
  1 %; wrk keeps exact microseconds up to its timeout.  1.6 % is below run-to-run noise on
  this box.

Percentiles use the nearest-rank definition (the smallest value with at least p % of the
samples at or below it), reported as the bucket's highest equivalent value and clamped to the
exact maximum seen, as HdrHistogram's ``getValueAtPercentile`` does.

wrk prints only p50/p75/p90/p99 with ``--latency``; ``WRK_LUA`` is a ``done()`` hook that
prints one ``C10K-JSON {...}`` line with p50/p90/p99/p99.9/max and the error counts, and
``parse_wrk_output`` reads both (the text alone suffices when the hook's line is missing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)

# Sub-bucket precision: 2**_SUB_BITS buckets per power of two above 2**(_SUB_BITS + 1) µs.
_SUB_BITS = 6
_SUB = 1 << _SUB_BITS  # 64
_LINEAR = _SUB * 2  # 128: below this every microsecond is its own bucket


def bucket_index(v: int) -> int:
    """Map a non-negative integer (µs) to its bucket.

    >>> [bucket_index(v) for v in (0, 1, 127, 128, 129, 130, 255, 256, 260)]
    [0, 1, 127, 128, 128, 129, 191, 192, 193]
    """
    if v < _LINEAR:
        return v if v > 0 else 0
    e = v.bit_length() - (_SUB_BITS + 1)
    return _LINEAR + (e - 1) * _SUB + ((v >> e) - _SUB)


def bucket_bounds(i: int) -> tuple[int, int]:
    """Lowest and highest value (inclusive) that land in bucket ``i``.

    >>> bucket_bounds(5), bucket_bounds(128), bucket_bounds(192)
    ((5, 5), (128, 129), (256, 259))
    """
    if i < _LINEAR:
        return i, i
    e = (i - _LINEAR) // _SUB + 1
    lo = ((i - _LINEAR) % _SUB + _SUB) << e
    return lo, lo + (1 << e) - 1


class Histogram:
    """Counts of latencies in microseconds, mergeable across processes.

    >>> h = Histogram()
    >>> for v in range(1, 101):
    ...     h.record(v)
    >>> h.count, h.percentile(50), h.percentile(99), h.max
    (100, 50, 99, 100)
    """

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, us: int) -> None:
        """Add one sample, in integer microseconds (negative values count as 0)."""
        if us < 0:
            us = 0
        i = bucket_index(us)
        b = self.buckets
        b[i] = b.get(i, 0) + 1
        if self.count == 0 or us < self.min:
            self.min = us
        if us > self.max:
            self.max = us
        self.count += 1
        self.total += us

    def record_seconds(self, s: float) -> None:
        self.record(int(s * 1e6))

    def merge(self, other: Histogram) -> None:
        """Add another histogram's counts into this one."""
        if other.count == 0:
            return
        b = self.buckets
        for i, n in other.buckets.items():
            b[i] = b.get(i, 0) + n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def percentile(self, p: float) -> int:
        """Nearest-rank percentile ``p`` (0 < p <= 100) in µs; 0 for an empty histogram."""
        if self.count == 0:
            return 0
        # Nearest rank: ceil(p/100 * n), at least 1.  Integer arithmetic avoids 99.9 % of
        # 1000 samples becoming rank 1000.0000001.
        rank = max(1, -(-round(p * 1000) * self.count // 100_000))
        seen = 0
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen >= rank:
                return min(bucket_bounds(i)[1], self.max)
        return self.max

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary_ms(self) -> dict[str, float]:
        """p50/p90/p99/p99.9/max/mean in milliseconds, the shape every report uses."""
        out = {_pkey(p): self.percentile(p) / 1000.0 for p in PERCENTILES}
        out["max"] = self.max / 1000.0
        out["mean"] = round(self.mean() / 1000.0, 6)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": "us",
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "total": self.total,
            # Sparse [bucket, count] pairs; bucket_bounds() turns an index back into values.
            "buckets": sorted([i, n] for i, n in self.buckets.items()),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Histogram:
        h = cls()
        h.buckets = {int(i): int(n) for i, n in d.get("buckets", [])}
        h.count = int(d.get("count", 0))
        h.min = int(d.get("min", 0))
        h.max = int(d.get("max", 0))
        h.total = int(d.get("total", 0))
        return h


def _pkey(p: float) -> str:
    """Key for a percentile in JSON: 50 -> "p50", 99.9 -> "p99.9"."""
    return f"p{p:g}"


def median(values: Iterable[float]) -> float:
    """Median of the values (mean of the middle two for an even count); 0.0 when empty.

    >>> median([3, 1, 2]), median([1, 2, 3, 4]), median([])
    (2, 2.5, 0.0)
    """
    v = sorted(values)
    if not v:
        return 0.0
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None when either is missing or the base is zero."""
    if value is None or base is None or base == 0:
        return None
    return value / base


# --------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------

# wrk's done() hook: latency values are µs; summary.duration is µs.
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'C10K-JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p99.9": %d, "max": %d, "mean": %f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_COUNT_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}


def _wrk_ms(text: str) -> float:
    """wrk time string to milliseconds.

    >>> _wrk_ms("122.43us"), _wrk_ms("2.06ms"), _wrk_ms("1.50s"), _wrk_ms("1.00m")
    (0.12243, 2.06, 1500.0, 60000.0)
    """
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return round(float(m.group(1)) * _TIME_UNITS[m.group(2)], 6)


def _wrk_bytes(text: str) -> float:
    """wrk size string (binary units) to bytes.

    >>> _wrk_bytes("56.30MB"), _wrk_bytes("512.00B")
    (59034828.8, 512.0)
    """
    m = re.fullmatch(r"([\d.]+)([KMGT]?B)", text.strip())
    if not m:
        raise ValueError(f"not a wrk size: {text!r}")
    return round(float(m.group(1)) * _SIZE_UNITS[m.group(2)], 1)


def parse_wrk_output(text: str) -> dict[str, Any]:
    """Parse the stdout of ``wrk --latency [-s hook.lua]``.

    Args:
        text: wrk's standard output.

    Returns:
        ``requests``, ``duration_s``, ``rps``, ``bytes``, ``errors`` (connect, read, write,
        status, timeout) and ``latency_ms`` (p50, p90, p99, p99.9 when the Lua hook ran, max,
        mean). Exact figures from the hook's ``C10K-JSON`` line win over the rounded text.

    Raises:
        ValueError: when the text has no "N requests in" line (wrk failed to run).
    """
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+[KMGT]?B) read", text)
    if not m:
        raise ValueError("wrk output has no 'requests in' line: " + text[-300:])
    out: dict[str, Any] = {
        "requests": int(m.group(1)),
        "duration_s": _wrk_ms(m.group(2)) / 1000.0,
        "bytes": _wrk_bytes(m.group(3)),
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(rps.group(1)) if rps else out["requests"] / max(out["duration_s"], 1e-9)
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if se:
        for k, g in zip(("connect", "read", "write", "timeout"), se.groups(), strict=True):
            errors[k] = int(g)
    st = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if st:
        errors["status"] = int(st.group(1))
    latency: dict[str, float] = {}
    lat = re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", text)
    if lat:
        latency["mean"] = _wrk_ms(lat.group(1))
        latency["max"] = _wrk_ms(lat.group(3))
    for pct, val in re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+([\d.]+\w+)\s*$", text, re.M):
        latency[_pkey(float(pct))] = _wrk_ms(val)
    hook = re.search(r"^C10K-JSON (\{.*\})\s*$", text, re.M)
    if hook:
        j = json.loads(hook.group(1))
        out["requests"] = int(j["requests"])
        out["duration_s"] = j["duration_us"] / 1e6
        out["bytes"] = float(j["bytes"])
        errors.update({k: int(v) for k, v in j["errors"].items()})
        latency.update({k: v / 1000.0 for k, v in j["latency_us"].items()})
    out["errors"] = errors
    out["latency_ms"] = {k: latency[k] for k in _LAT_ORDER if k in latency}
    out["latency_ms"].update({k: v for k, v in latency.items() if k not in _LAT_ORDER})
    return out


_LAT_ORDER: Sequence[str] = ("p50", "p75", "p90", "p99", "p99.9", "max", "mean")


def fmt_si(x: float | None, digits: int = 3) -> str:
    """Short human figure: 12345 -> '12.3k'.

    >>> fmt_si(12345), fmt_si(0.5), fmt_si(2_500_000), fmt_si(None)
    ('12.3k', '0.5', '2.5M', '-')
    """
    if x is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"
