"""Summaries, ratios, the terminal table and the Markdown report, all from the JSON document.

Theory of operation
-------------------
Bare requests/second say more about the machine than about the server, so every figure is
shown next to its ratio to the *first* server measured in the same run (uvloop's echoclient
reports bare req/s; vmbench and vs-nginx report against a baseline).  Over several rounds the
figure is the median of the rounds (robust to one disturbed round), and the ratio is the ratio
of those medians.

For each scenario kind, ``METRICS`` lists what is summarised and ``COLUMNS`` what is shown;
ratio columns are marked.  A metric path ``"latency_ms.p99.9"`` means ``run["latency_ms"]
["p99.9"]`` (split at the first dot only).

Generator-bound figures
-----------------------
A run whose load generator's core was over 90 % busy carries ``generator_saturated``
(scenarios/common.py): its throughput may be the generator's ceiling, not the server's.  Such
a figure is marked ``MARK`` wherever it is shown (terminal table, results.md, plots), with
``LEGEND`` under the table.  The rules (``saturated``, ``table_rows``):

- a median over rounds is marked if *any* round it was taken over was saturated (one
  generator-bound round can be the median, and which one it is is not recorded);
- an overload level counts as saturated when the server's peak run was too, since the
  offered rate and goodput/peak are multiples of that peak;
- in a marked row, the rates, the latencies and the headline figure (the one with a ratio)
  are marked; counts (errors, fds, held connections) are not, the generator cannot inflate
  them;
- a ratio is marked when either side is: the server's figure or the first server's.
"""

from __future__ import annotations

from typing import Any

from c10k.bench.stats import fmt_si, median, ratio

METRICS: dict[str, list[str]] = {
    "http": [
        "rps",
        "req_per_busy_core_s",
        "req_per_server_cpu_s",
        "mib_s",
        "latency_ms.p50",
        "latency_ms.p90",
        "latency_ms.p99",
        "latency_ms.p99.9",
        "latency_ms.max",
        "error_total",
    ],
    "modem": ["score", "started", "failed", "mib_s", "server_cpu_per_user_ms"],
    "idle": [
        "held",
        "establish_s",
        "conn_per_s",
        "rss_per_conn_bytes",
        "client_rss_per_conn_bytes",
        "slab_per_conn_bytes",
        "kernel_tcp_mem_per_conn_bytes",
        "latency_ms.p50",
        "latency_ms.p99",
        "p99_vs_zero",
        "rps",
    ],
    "overload": [
        "offered_rps",
        "goodput_rps",
        "goodput_vs_peak",
        "share_503",
        "error_total",
        "error_rate",
        "not_served_rate",
        "latency_ms.p50",
        "latency_ms.p99",
        "req_per_busy_core_s",
    ],
    "slowhttp": [
        "legit_success",
        "requests",
        "error_total",
        "latency_ms.p50",
        "latency_ms.p99",
        "fds.before",
        "fds.during",
        "fds.after",
        "rss_bytes.before",
        "rss_bytes.during",
        "rss_bytes.after",
        "fds_after_minus_before",
        "rss_after_minus_before",
    ],
    "poller": ["wait_us", "us_per_event"],
}

# (metric, header, kind of format, show ratio to the first server)
COLUMNS: dict[str, list[tuple[str, str, str, bool]]] = {
    "http": [
        ("rps", "req/s", "si", True),
        ("req_per_busy_core_s", "req/busy-core-s", "si", True),
        ("req_per_server_cpu_s", "req/cpu-s", "si", False),
        ("mib_s", "MiB/s", "f1", False),
        ("latency_ms.p50", "p50 ms", "f3", False),
        ("latency_ms.p99", "p99 ms", "f3", False),
        ("latency_ms.p99.9", "p99.9 ms", "f3", False),
        ("error_total", "errors", "int", False),
    ],
    "modem": [
        ("score", "score (users)", "int", True),
        ("started", "started", "int", False),
        ("failed", "failed", "int", False),
        ("mib_s", "MiB/s", "f2", False),
        ("server_cpu_per_user_ms", "server cpu ms/user", "f2", False),
    ],
    "idle": [
        ("held", "held", "int", False),
        ("establish_s", "setup s", "f2", False),
        ("rss_per_conn_bytes", "server RSS B/conn", "int", True),
        ("client_rss_per_conn_bytes", "client RSS B/conn", "int", False),
        ("slab_per_conn_bytes", "slab B/conn (both sides)", "int", False),
        ("latency_ms.p50", "active p50 ms", "f3", False),
        ("latency_ms.p99", "active p99 ms", "f3", True),
        ("p99_vs_zero", "p99 / p99 at N=0", "f2", False),
    ],
    "overload": [
        ("offered_rps", "offered/s", "si", False),
        ("goodput_rps", "goodput/s", "si", True),
        ("goodput_vs_peak", "goodput/peak", "pct", False),
        ("share_503", "503s", "pct", False),
        ("error_rate", "errors", "pct", False),
        ("not_served_rate", "not served", "pct", False),
        ("latency_ms.p50", "admitted p50 ms", "f3", False),
        ("latency_ms.p99", "admitted p99 ms", "f3", False),
    ],
    "slowhttp": [
        ("legit_success", "legit success", "pct", False),
        ("latency_ms.p99", "legit p99 ms", "f3", True),
        ("fds.before", "fds before", "int", False),
        ("fds.during", "during", "int", False),
        ("fds.after", "after", "int", False),
        ("rss_bytes.before", "RSS before", "si", False),
        ("rss_bytes.during", "during", "si", False),
        ("rss_bytes.after", "after", "si", False),
    ],
    "poller": [
        ("wait_us", "µs per wait", "f2", True),
        ("us_per_event", "µs per event", "f2", False),
    ],
}


MARK = "\u2021"  # ‡, the double dagger: unlikely to be read as a footnote to a number
LEGEND = (
    f"{MARK} generator-bound: the load generator's core was >90 % busy in at least one "
    "round of the median (overload: or in that server's peak run); not a server figure"
)

# Metrics that are rates (events per second or per CPU-second): a saturated generator caps
# them, and their plots start the y-axis at 0.
RATE_METRICS = frozenset(
    {
        "rps",
        "req_per_busy_core_s",
        "req_per_server_cpu_s",
        "mib_s",
        "conn_per_s",
        "offered_rps",
        "goodput_rps",
    }
)


def saturated(entry: dict[str, Any], label: str, server: str) -> bool:
    """Whether any round of ``server`` at variation ``label`` had a saturated generator (for
    an overload level, or the server's peak run).

    >>> e = {"kind": "http", "variations": {"c=1": {"runs": [
    ...     {"server": "a", "generator_saturated": False},
    ...     {"server": "a", "generator_saturated": True}, {"server": "b"}]}}}
    >>> saturated(e, "c=1", "a"), saturated(e, "c=1", "b"), saturated(e, "c=9", "a")
    (True, False, False)
    """
    labels = [label]
    if entry.get("kind") == "overload" and label != "peak":
        labels.append("peak")
    return any(
        r.get("generator_saturated") is True
        for lb in labels
        for r in entry["variations"].get(lb, {}).get("runs", [])
        if r.get("server") == server and "skipped" not in r
    )


def _marks(metric: str, with_ratio: bool) -> bool:
    # What a saturated row marks (see the module comment): rates, latencies, the headline.
    return with_ratio or metric in RATE_METRICS or metric.startswith("latency_ms.")


def get_metric(run: dict[str, Any], path: str) -> float | None:
    """``get_metric({"latency_ms": {"p99.9": 2.0}}, "latency_ms.p99.9")`` -> 2.0"""
    head, _, tail = path.partition(".")
    v = run.get(head)
    if tail:
        v = v.get(tail) if isinstance(v, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summarize(entry: dict[str, Any], order: list[str]) -> None:
    """Add ``summary`` (median over rounds) and ``ratios`` (to the first server) per variation."""
    metrics = METRICS.get(entry["kind"], [])
    entry["order"] = order
    for var in entry["variations"].values():
        summary: dict[str, dict[str, float | None]] = {}
        for server in order:
            runs = [r for r in var["runs"] if r.get("server") == server and "skipped" not in r]
            if not runs:
                continue
            s: dict[str, float | None] = {}
            for m in metrics:
                vals = [v for r in runs if (v := get_metric(r, m)) is not None]
                s[m] = median(vals) if vals else None
            s["rounds"] = len(runs)
            # Rounds whose generator was saturated: the median is marked if any was.
            s["saturated_rounds"] = sum(1 for r in runs if r.get("generator_saturated") is True)
            summary[server] = s
        var["summary"] = summary
        base_name = next((s for s in order if s in summary), None)
        ratios: dict[str, dict[str, float | None]] = {}
        if base_name is not None:
            base = summary[base_name]
            for server, s in summary.items():
                ratios[server] = {m: ratio(s.get(m), base.get(m)) for m in metrics}
        var["baseline"] = base_name
        var["ratios"] = ratios


def _summary(entry: dict[str, Any], label: str, server: str) -> dict[str, Any]:
    s: dict[str, Any] = entry["variations"].get(label, {}).get("summary", {}).get(server, {})
    return s


def goals(entry: dict[str, Any]) -> list[str]:
    """One line per goal the issues set, per server: the figure, the goal, met or NOT met.

    - idle (issue 4): the active client's p99 at each level <= ``p99_goal`` x its p99 at N=0;
    - overload (issue 7): goodput at ``goal.multiplier`` x the peak >= ``goal.fraction`` of it;
    - slowhttp (issue 7): legitimate client 100 % served with p99 under ``goal.p99_ms``, and
      the server's fds back to where they were before the attack;
    - modem (issue 15): per round, what gave out first (``bound``, with its evidence).
    """
    params = entry.get("params", {})
    kind = entry["kind"]
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for server in entry.get("order", []):
        if kind == "idle":
            limit = params.get("p99_goal", 2.0)
            for label in entry["variations"]:
                r = _summary(entry, label, server).get("p99_vs_zero")
                if label != "N=0" and r is not None:
                    mark = MARK if saturated(entry, label, server) else ""
                    out.append(
                        f"{server} {label}: active p99 {r:.2f}x{mark} its p99 at N=0 "
                        f"(goal <= {limit:g}x): {verdict(r <= limit)}"
                    )
        elif kind == "overload" and params.get("goal"):
            g = params["goal"]
            label = f"{float(g['multiplier']):g}x"
            r = _summary(entry, label, server).get("goodput_vs_peak")
            if r is not None:
                mark = MARK if saturated(entry, label, server) else ""
                out.append(
                    f"{server}: goodput at {label} the peak is {r * 100:.0f}%{mark} of the peak "
                    f"(goal >= {g['fraction'] * 100:.0f}%): {verdict(r >= g['fraction'])}"
                )
        elif kind == "modem":
            out.extend(
                f"{server} {label} round {r.get('round')}: score {r['score']}, "
                f"bound by {r['bound']}"
                for label, v in entry["variations"].items()
                for r in v.get("runs", [])
                if r.get("server") == server and r.get("bound")
            )
        elif kind == "slowhttp" and params.get("goal"):
            g = params["goal"]
            for label in entry["variations"]:
                s = _summary(entry, label, server)
                ok_rate, p99 = s.get("legit_success"), s.get("latency_ms.p99")
                if ok_rate is None:
                    continue
                back = s.get("fds_after_minus_before")
                met = ok_rate >= g["success"] and p99 is not None and p99 < g["p99_ms"]
                out.append(
                    f"{server} {label}: legitimate client {ok_rate * 100:.1f}% served, p99 "
                    + ("-" if p99 is None else f"{p99:.1f} ms")
                    + (MARK if saturated(entry, label, server) else "")
                    + f" (goal {g['success'] * 100:.0f}%, < {g['p99_ms']:g} ms): {verdict(met)}"
                    + (
                        ""
                        if back is None
                        else f"; fds after - before: {back:+.0f} ({verdict(back <= 0)})"
                    )
                    + (
                        ""
                        if (rss := s.get("rss_after_minus_before")) is None
                        else f"; RSS after - before: {rss / 2**20:+.1f} MiB"
                    )
                )
    return out


def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "si":
        return fmt_si(v)
    if kind == "int":
        return f"{v:.0f}"
    if kind == "pct":
        return f"{v * 100:.1f}%"
    digits = int(kind[1:]) if kind.startswith("f") else 2
    return f"{v:.{digits}f}"


def table_rows(entry: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one scenario's table: variation, server, columns, ratios."""
    cols = COLUMNS.get(entry["kind"], [])
    header = ["", "backend" if entry["kind"] == "poller" else "server"]
    for _m, h, _k, with_ratio in cols:
        header.append(h)
        if with_ratio:
            header.append("/first")
    rows = []
    for label, var in entry["variations"].items():
        base_sat = saturated(entry, label, var.get("baseline") or "")
        for server in entry.get("order", []):
            s = var.get("summary", {}).get(server)
            if s is None:
                skipped = [r for r in var["runs"] if r.get("server") == server and "skipped" in r]
                if skipped:
                    rows.append([label, server, "skipped: " + skipped[0]["skipped"][:60]])
                continue
            row = [label, server]
            sat = saturated(entry, label, server)
            for m, _h, kind, with_ratio in cols:
                cell = _fmt(s.get(m), kind)
                row.append(cell + MARK if sat and cell != "-" and _marks(m, with_ratio) else cell)
                if with_ratio:
                    r = var.get("ratios", {}).get(server, {}).get(m)
                    cell = "-" if r is None else f"{r:.2f}"
                    row.append(cell + MARK if (sat or base_sat) and cell != "-" else cell)
            rows.append(row)
    return header, rows


def has_mark(rows: list[list[str]]) -> bool:
    """Whether any cell carries ``MARK`` (then the table gets ``LEGEND``)."""
    return any(MARK in c for r in rows for c in r)


def terminal_table(doc: dict[str, Any]) -> str:
    out = []
    for entry in doc["scenarios"]:
        header, rows = table_rows(entry)
        out.append(f"\n== {entry['name']}: {entry['title']}")
        if not rows:
            out.append("   (no results)")
        else:
            if has_mark(rows):
                # Unmarked figures get a space where the mark would be, so digits align.
                rows = [
                    [
                        c if i < 2 or c.endswith(MARK) or len(r) != len(header) else c + " "
                        for i, c in enumerate(r)
                    ]
                    for r in rows
                ]
                header = [h if i < 2 else h + " " for i, h in enumerate(header)]
            full = [r for r in rows if len(r) == len(header)]
            widths = [max(len(str(r[i])) for r in [header, *full]) for i in range(len(header))]
            out.append(
                "  ".join(
                    h.rjust(w) if i > 1 else h.ljust(w)
                    for i, (h, w) in enumerate(zip(header, widths, strict=True))
                )
            )
            for r in rows:
                if len(r) != len(header):
                    out.append("  ".join(r))
                    continue
                out.append(
                    "  ".join(
                        c.rjust(w) if i > 1 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))
                    )
                )
            if has_mark(rows):
                out.append(f"   {LEGEND}")
        if (cap := entry.get("server_cpu_cap")) and cap.get("applied"):
            out.append(f"   {cap['note']}")
        if line := overflow_line(doc, entry):
            out.append(f"   {line}")
        out.extend(f"   goal: {g}" for g in entry.get("goals", []))
        out.extend(
            f"   error: {e.get('server', '')} round {e.get('round', '')}: {e['error'][:200]}"
            for e in entry.get("errors", [])
        )
    gens = generators_used(doc)
    out.append("")
    out.append(f"transport: {transport_line(doc)}")
    out.append(f"pinning: {doc['pinning']['note']}")
    out.extend(f"server CPU cap: {line}" for line in cap_lines(doc))
    if gens:
        out.append("generators: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in gens.items()))
    out.extend(f"note: {n}" for n in doc.get("notes", []))
    out.extend(f"skipped {s['name']}: {s['reason']}" for s in doc.get("skipped", []))
    return "\n".join(out)


def overflow_line(doc: dict[str, Any], entry: dict[str, Any]) -> str | None:
    """Under the overload table: the kernel's answer to a handshake that finds the accept
    queue full, which moves the figures (half-open clients retrying vs reset at once).

    >>> doc = {"machine": {"sysctl": {"net.ipv4.tcp_abort_on_overflow": "0"}}}
    >>> overflow_line(doc, {"kind": "overload"})[:34]
    'net.ipv4.tcp_abort_on_overflow = 0'
    >>> overflow_line(doc, {"kind": "keepalive"}) is None
    True
    """
    if entry.get("kind") != "overload":
        return None
    value = ((doc.get("machine") or {}).get("sysctl") or {}).get("net.ipv4.tcp_abort_on_overflow")
    if value is None:
        return None
    what = (
        "a handshake that finds the accept queue full is reset at once"
        if str(value).strip() == "1"
        else "a handshake that finds the accept queue full has its ACK dropped: the client "
        "thinks it is connected and waits for a retransmission to find room"
    )
    return f"net.ipv4.tcp_abort_on_overflow = {str(value).strip()}: {what}"


def cap_lines(doc: dict[str, Any]) -> list[str]:
    """One line per scenario run under a server CPU cap (or meant to be and not).

    >>> cap_lines({"server_cpu_caps": {"overload": {"applied": True, "note": "capped"}}})
    ['overload: capped']
    """
    return [f"{name}: {cap['note']}" for name, cap in (doc.get("server_cpu_caps") or {}).items()]


def transport_line(doc: dict[str, Any]) -> str:
    """Plain HTTP or TLS, and with which certificate: at the top of every report, so that
    plain and TLS results are never read for one another (titles say "over TLS" too).

    >>> transport_line({})
    'plain HTTP (no TLS)'
    >>> transport_line({"tls": True, "tls_certificate": {"made_by": "openssl"}})[:44]
    'TLS: every server over HTTPS (TLS 1.2 and 1.'
    >>> transport_line({"tls": True, "tls_certificate": None, "options": {"url_ca": "c.pem"}})
    ... # doctest: +ELLIPSIS
    'TLS: every --url endpoint over HTTPS with its own certificate (... --url-ca c.pem), ...'
    """
    if not doc.get("tls"):
        return "plain HTTP (no TLS)"
    servers = doc.get("servers") or []
    urls = any(s.get("kind") == "url" for s in servers)
    ca = (doc.get("options") or {}).get("url_ca")
    theirs = (
        f"its own certificate (checked against {f'--url-ca {ca}' if ca else 'the system store'})"
    )
    cert = doc.get("tls_certificate")
    if cert is None:  # only --url endpoints: the bench made no certificate
        return f"TLS: every --url endpoint over HTTPS with {theirs}, every generator over TLS"
    started = "every server it started" if urls else "every server"
    also = f"; every --url endpoint with {theirs}" if urls else ""
    return (
        f"TLS: {started} over HTTPS (TLS 1.2 and 1.3) with one ECDSA P-256 certificate "
        f"made for this run by {cert.get('made_by', '?')}{also}, every generator over TLS"
    )


def generators_used(doc: dict[str, Any]) -> dict[str, list[str]]:
    """scenario name -> the generators that produced its figures (the Python one marked
    when it dropped bodies in the kernel: client.py, ``discard``)."""
    out: dict[str, list[str]] = {}
    for entry in doc["scenarios"]:
        gens = sorted(
            {
                r["generator"] + (" (bodies dropped in the kernel)" if r.get("discard") else "")
                for v in entry["variations"].values()
                for r in v["runs"]
                if r.get("generator")
            }
        )
        if gens:
            out[entry["name"]] = gens
    return out


def tcp_line(machine: dict[str, Any]) -> str:
    """The TCP congestion control and default qdisc the run had: with BBR and no fq, the
    kernel paces every socket with timers, which moves big-file figures by 2x
    (docs/BENCHMARKS.md, issue 15).

    >>> tcp_line({"sysctl": {"net.ipv4.tcp_congestion_control": "bbr",
    ...                       "net.core.default_qdisc": "pfifo_fast"}})
    'TCP congestion control bbr, default qdisc pfifo_fast'
    >>> tcp_line({})
    'TCP congestion control ?, default qdisc ?'
    """
    sysctls = machine.get("sysctl") or {}
    cc = sysctls.get("net.ipv4.tcp_congestion_control") or "?"
    qdisc = sysctls.get("net.core.default_qdisc") or "?"
    return f"TCP congestion control {cc}, default qdisc {qdisc}"


def markdown(doc: dict[str, Any], plots: list[str] | None = None) -> str:
    m = doc["machine"]
    lines = [
        "# c10k bench results" + (" over TLS" if doc.get("tls") else ""),
        "",
        f"Run started {doc['started']}: `{' '.join(doc.get('argv', []))}`",
        "",
        f"- Transport: {transport_line(doc)}",
        f"- Machine: {m.get('cpu_count')} CPUs ({m.get('cpu_model') or '?'}), "
        f"kernel {m.get('kernel')}, Python {m.get('python')}, "
        f"RLIMIT_NOFILE {m.get('rlimits', {}).get('RLIMIT_NOFILE')}, {tcp_line(m)}",
        f"- Pinning: {doc['pinning']['note']}",
        *(f"- Server CPU cap: {line}" for line in cap_lines(doc)),
        f"- Generators: {' '.join((m.get('wrk') or 'wrk not installed').split()[:2])}; "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in generators_used(doc).items()),
        f"- Options: {', '.join(f'{k}={v}' for k, v in doc['options'].items() if v is not None)}",
        f"- Ratios (/first) are to **{doc.get('baseline') or '-'}**, the first server of the run;"
        " figures are medians over rounds.",
        "",
    ]
    lines.extend(
        f"- `{s['name']}`: {s.get('version') or ''} {'; '.join(s.get('notes') or [])}".rstrip()
        for s in doc.get("servers", [])
    )
    lines.extend(f"- skipped `{s['name']}`: {s['reason']}" for s in doc.get("skipped", []))
    for entry in doc["scenarios"]:
        header, rows = table_rows(entry)
        lines += [
            "",
            f"## {entry['name']}: {entry['title']}",
            "",
            f"Measures: {entry['measures']}.",
            "",
        ]
        if rows:
            lines.append("| " + " | ".join(header) + " |")
            lines.append(
                "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"
            )
            for r in rows:
                r = r + [""] * (len(header) - len(r))
                lines.append("| " + " | ".join(r) + " |")
            if has_mark(rows):
                lines += ["", f"{LEGEND}."]
        else:
            lines.append("(no results)")
        if (cap := entry.get("server_cpu_cap")) and cap.get("applied"):
            lines += ["", f"- {cap['note']}"]
        if line := overflow_line(doc, entry):
            lines.append(f"- {line}")
        if entry.get("goals"):
            lines.append("")
            lines.extend(f"- goal: {g}" for g in entry["goals"])
        for e in entry.get("errors", []):
            lines.append(
                f"\n- error: {e.get('server', '')} round {e.get('round', '')}: {e['error'][:300]}"
            )
        for n in entry.get("notes", []):
            lines.append(f"\n- note: {n}")
        for p in plots or []:
            if p.startswith(entry["name"] + "-"):
                lines += ["", f"![{p}]({p})"]
    lines.append("")
    return "\n".join(lines)
