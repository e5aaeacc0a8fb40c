"""Run scenarios against servers, interleaved, and gather one JSON document.

Theory of operation
-------------------
vmbench's ``run_benchmarks`` shape: for each scenario, start a server, probe it, warm up,
measure, stop it, and move on; everything measured goes into one JSON document, written
after every scenario so an interrupted run keeps what it had.  Reports and plots are rendered
from that document alone (``report.py``, ``plot.py``).

Interleaving: a machine drifts (thermal state, page cache, other tenants), so measuring all
rounds of server A and then all of server B would charge the drift to one of them.  Rounds
alternate the order, ABBA style (round 1: A B, round 2: B A, ...), and each server is started
fresh for each round.  Every figure is then reported as the median over rounds and as a ratio
to the first server of the run (``--peer`` order, then ``--server``, then c10k), which is how
figures are judged here (vs-nginx).

Everything is bounded: each server must answer within 20 s, each generator process reports
within fixed time-outs, and each worker exits by itself after its ``max_lifetime``.

TLS (``--tls``): one certificate is made per run (``certs.make``, before any server starts)
and handed to every server and generator through the ``Context``; the document records it
(``tls``, ``tls_certificate``, ``tls`` on every scenario and run, "over TLS" in titles) so
that plain and TLS figures cannot be confused.  The poller scenario has no server: its
runs say ``tls: false`` and a note says the flag did not apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from c10k.bench import certs
from c10k.bench.client import WorkerError
from c10k.bench.cpucap import CpuCap, cap_note, make_cap
from c10k.bench.endpoint import CPU_NOTE, ExternalServer, for_endpoint, parse_url, uncharge
from c10k.bench.machine import Pinning, describe, raise_nofile
from c10k.bench.peers import RunningServer, ServerError, ServerSpec
from c10k.bench.report import goals, summarize
from c10k.bench.scenarios import (
    MEASURE,
    Context,
    Options,
    expected_seconds,
    extra_files,
    make_docroot,
    run_poller,
    scenario,
    server_shape,
    title,
)

SCHEMA = "c10k-bench/1"

# What checks the run's certificate, and what cannot (recorded in a --tls run's notes).
TLS_VERIFY_NOTE = (
    "over TLS: the readiness probe and the Python generator verify every server's "
    "certificate against the run's CA; wrk, h2load and slowhttptest accept any certificate "
    "(none has an option to verify one), after the probe verified it"
)
POLLER_URL_NOTE = "poller: --url does not apply (it starts no server and opens no connection)"
# Appended to a scenario's title when a --url endpoint is measured in it.
URL_TITLE = "; --url endpoints: their URL's own path"
URL_CAP_NOTE = (
    "the server CPU cap applies to the servers the bench starts, not to --url endpoints: "
    "their figures are uncapped and not comparable with the capped ones"
)
# How long a --url endpoint may take to answer its probe before each round.
URL_WAIT_S = 5.0
POLLER_TLS_NOTE = (
    "poller: --tls does not apply (it starts no server and opens no connection); its figures "
    "are what they are without it"
)


class Progress:
    """One line per step on stderr, with the step count and the time left (estimated)."""

    def __init__(self, total_s: float, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.total_s = max(total_s, 1.0)
        self.step = 0

    def __call__(self, msg: str) -> None:
        self.step += 1
        elapsed = time.perf_counter() - self.t0
        frac = min(elapsed / self.total_s, 0.99)
        bar = "#" * int(frac * 20)
        left = max(0.0, self.total_s - elapsed)
        print(
            f"[{bar:<20}] {elapsed:6.1f}s (~{left:.0f}s left) {msg}", file=self.stream, flush=True
        )


def _param_view(scen: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in scen.items()
        if k not in ("variations", "title", "measures", "name", "kind")
    }


def run(
    names: list[str],
    specs: list[ServerSpec],
    opts: Options,
    out_dir: Path,
    pin_enabled: bool = True,
    argv: list[str] | None = None,
    say: Callable[[str], None] | None = None,
    refused: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Run the named scenarios against the runnable specs (but not a server in ``refused``
    [scenario][server name], which says why); returns the results document."""
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    soft, hard = raise_nofile()
    pin = Pinning.choose(pin_enabled)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = (out_dir / "work").resolve()
    root = workdir / "www"
    workdir.mkdir(parents=True, exist_ok=True)
    # Raises certs.CertError (one line) before anything starts; none for --url alone.
    started = any(s.kind != "url" for s in specs)
    if not started and pin.generator_cpus:  # the server core holds nothing of the bench's
        cpus = ", ".join(map(str, pin.generator_cpus))
        note = f"load generator pinned to CPU {cpus}; --url endpoints are not pinned by the bench"
        pin = dataclasses.replace(pin, note=note)
    tls = certs.make(workdir / "tls") if opts.tls and started else None
    servers: list[ServerSpec] = []
    skipped = []
    for spec in specs:
        reason = spec.check_for(opts.tls)
        if reason:
            say(f"skipping {spec.name}: {reason}")
            skipped.append({"name": spec.name, "reason": reason})
        else:
            servers.append(spec)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "argv": argv if argv is not None else sys.argv,
        "machine": describe(),
        "pinning": pin.to_json(),
        "options": asdict(opts),
        "tls": opts.tls,
        "tls_certificate": tls.to_json() if tls else None,
        "servers": [s.to_json(tls=tls) for s in servers],
        "baseline": servers[0].name if servers else None,
        "skipped": skipped,
        "scenarios": [],
        "notes": [],
        "errors": [],
        # scenario name -> the CPU cap its servers ran under (cpucap.py)
        "server_cpu_caps": {},
    }
    load1 = float((doc["machine"].get("loadavg_at_start") or "0").split()[0])
    if load1 > 0.5:
        doc["notes"].append(
            f"load average was {load1:.2f} when the run started: other "
            "processes may share the pinned cores and inflate busy-core time"
        )
        say("warning: " + doc["notes"][-1])
    say(
        f"c10k bench: {pin.note}; RLIMIT_NOFILE {soft}/{hard}; "
        f"servers: {', '.join(s.name for s in servers) or '(none)'}"
    )
    total = sum(
        expected_seconds(scenario(n, opts.quick), opts, max(1, len(servers))) for n in names
    )
    progress = Progress(total)
    ctx = Context(opts=opts, pin=pin, workdir=workdir, root=root, progress=progress, tls=tls)
    if tls:
        doc["notes"].append(TLS_VERIFY_NOTE)
    doc["notes"].extend(url_notes(servers, opts))
    make_docroot(root)
    for name in names:
        scen = scenario(name, opts.quick)
        make_docroot(root, extra_files(scen))
        entry: dict[str, Any] = {
            "name": name,
            # The counts this run used (--quick and the count options change them).
            "title": title(scen, opts),
            "measures": scen["measures"],
            "kind": scen["kind"],
            "params": _param_view(scen),
            "tls": opts.tls and scen["kind"] != "poller",
            "variations": {},
            "errors": [],
        }
        measured = _measured_by(name, servers, refused or {}, ctx)
        if any(sp.kind == "url" for sp in measured):
            entry["title"] += URL_TITLE
        if scen["kind"] == "poller":
            if opts.tls:  # (a poller-only run makes no certificate: still say so)
                ctx.note(POLLER_TLS_NOTE)
            if any(sp.kind == "url" for sp in servers):
                ctx.note(POLLER_URL_NOTE)
            for label, runs in run_poller(scen, ctx).items():
                entry["variations"][label] = {"runs": [{**r, "tls": False} for r in runs]}
            order = list(
                dict.fromkeys(r["server"] for v in entry["variations"].values() for r in v["runs"])
            )
        else:
            order = [s.name for s in measured]
            if not servers:
                entry["errors"].append({"error": "no runnable server"})
            started = any(sp.kind != "url" for sp in measured)
            cap, entry["server_cpu_cap"] = (
                _make_cap(scen, opts, pin, say) if started else (None, None)
            )
            if entry["server_cpu_cap"] and any(sp.kind == "url" for sp in measured):
                ctx.note(URL_CAP_NOTE)
            if entry["server_cpu_cap"] and cap is None:
                ctx.note(entry["server_cpu_cap"]["note"])
            ctx.cap = cap
            try:
                for rnd in range(opts.rounds):
                    seq = measured if rnd % 2 == 0 else list(reversed(measured))
                    for spec in seq:
                        _run_one(spec, scen, ctx, entry, rnd + 1, root, workdir, say)
            finally:
                ctx.cap = None
                if cap is not None:
                    try:
                        cap.remove()
                    except OSError as e:
                        say(f"warning: could not remove the cgroup {cap.path}: {e}")
                        entry["errors"].append({"error": f"cgroup {cap.path} left behind: {e}"})
            if entry["server_cpu_cap"]:
                doc["server_cpu_caps"][name] = entry["server_cpu_cap"]
        summarize(entry, order)
        entry["goals"] = goals(entry)
        entry["notes"] = [n for n in ctx.notes if n not in doc["notes"]]
        doc["notes"].extend(entry["notes"])
        doc["errors"].extend({"scenario": name, **e} for e in entry["errors"])
        doc["scenarios"].append(entry)
        doc["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        write_json(doc, out_dir / "results.json")
    return doc


def _make_cap(
    scen: dict[str, Any], opts: Options, pin: Pinning, say: Callable[[str], None]
) -> tuple[CpuCap | None, dict[str, Any] | None]:
    """The scenario's server CPU cap (``--server-cpu``, else its ``server_cpu``): the cgroup
    made and its JSON record, or (None, a record of why not), or (None, None) for no cap."""
    fraction = opts.server_cpu if opts.server_cpu is not None else scen.get("server_cpu", 0.0)
    if not fraction:
        return None, None
    purpose = scen.get("server_cpu_purpose", "")
    cap, why = make_cap(float(fraction))
    if cap is None:
        note = f"server NOT capped to {fraction * 100:g} % of a core: {why}; running uncapped" + (
            ", so the 3x figure is limited by the generator (on loopback its core does "
            "most of the per-connection kernel work)"
            if scen["kind"] == "overload"
            else ""
        )
        say("warning: " + note)
        return None, {"fraction": fraction, "applied": False, "reason": why, "note": note}
    note = cap_note(cap, pin.server_cpu, purpose)
    say(f"{scen['name']}: {note}")
    return cap, {**cap.to_json(), "applied": True, "note": note}


def _run_one(
    spec: ServerSpec,
    scen: dict[str, Any],
    ctx: Context,
    entry: dict[str, Any],
    rnd: int,
    root: Path,
    workdir: Path,
    say: Callable[[str], None],
) -> None:
    try:
        with _start(spec, scen, ctx, root, workdir) as srv:
            if srv.cap_moved:
                ctx.note(
                    f"{spec.name}: {len(srv.cap_moved)} threads were outside the CPU cap's "
                    "cgroup after start and were moved in"
                )
            runs = MEASURE[scen["kind"]](srv, *_as_measured(srv, scen, ctx))
            died = (
                None if srv.alive() else f"exited with {srv.proc.returncode}: {srv.log_tail(300)}"
            )
    except (ServerError, WorkerError, RuntimeError, OSError, ValueError) as e:
        say(f"  {spec.name} round {rnd}: {e}")
        entry["errors"].append({"server": spec.name, "round": rnd, "error": str(e)[:2000]})
        return
    if died:
        say(f"  {spec.name} round {rnd}: server {died}")
        entry["errors"].append(
            {"server": spec.name, "round": rnd, "error": f"server {died}"[:2000]}
        )
    for label, run_ in runs.items():
        run_["server"] = spec.name
        run_["round"] = rnd
        run_["tls"] = srv.scheme == "https"
        if srv.external:
            uncharge(run_)
        entry["variations"].setdefault(label, {"runs": []})["runs"].append(run_)
        say(f"  {scen['name']} {label} {spec.name} round {rnd}: {_one_line(run_)}")


def _start(
    spec: ServerSpec, scen: dict[str, Any], ctx: Context, root: Path, workdir: Path
) -> RunningServer:
    """Start the server of ``spec`` (or, for a --url, wait until its endpoint answers)."""
    if spec.kind == "url":
        ep = dataclasses.replace(parse_url(spec.url), name=spec.name)
        ca = Path(ctx.opts.url_ca) if ctx.opts.url_ca else None
        return ExternalServer(spec, ep, ca, wait=URL_WAIT_S)
    ports, workers = server_shape(scen, ctx.opts)
    return RunningServer(
        spec,
        root,
        workdir,
        ctx.pin,
        ports=ports,
        workers=workers,
        start_timeout=20.0 + workers,
        cap=ctx.cap,
        tls=ctx.tls,
    )


def _as_measured(
    srv: RunningServer, scen: dict[str, Any], ctx: Context
) -> tuple[dict[str, Any], Context]:
    """The scenario and context a server is measured with: a --url endpoint requests its own
    path and has no pinned core and no cap (endpoint.py), so no busy-core figure either."""
    if not isinstance(srv, ExternalServer):
        return scen, ctx
    pin = Pinning(None, ctx.pin.generator_cpus, ctx.pin.note)
    return for_endpoint(scen, srv.endpoint), dataclasses.replace(ctx, pin=pin, cap=None)


def _measured_by(
    name: str, servers: list[ServerSpec], refused: dict[str, dict[str, str]], ctx: Context
) -> list[ServerSpec]:
    """The servers of scenario ``name``: all but those ``refused`` (scenario -> server ->
    why: a --url endpoint where the scenario cannot apply; the CLI refuses such a scenario
    when it is asked for by name), each with a note."""
    out = []
    for spec in servers:
        why = refused.get(name, {}).get(spec.name)
        if why:
            ctx.note(f"{name}: {spec.name} not measured: {why}")
        else:
            out.append(spec)
    return out


def url_notes(servers: list[ServerSpec], opts: Options) -> list[str]:
    """What a run with --url endpoints must say once: what is not measured, and TLS trust."""
    notes = [CPU_NOTE.format(name=s.name, url=s.url) for s in servers if s.kind == "url"]
    if any(s.url.lower().startswith("https:") for s in servers):
        trust = f"--url-ca {opts.url_ca}" if opts.url_ca else "the system's trust store"
        notes.append(
            "https --url endpoints: the probe and the Python generator verify their "
            f"certificate against {trust}; wrk, h2load and slowhttptest verify none"
        )
    return notes


def _one_line(run_: dict[str, Any]) -> str:
    parts = []
    if "score" in run_:
        parts.append(f"score {run_['score']} of {run_['started']} started")
    if "held" in run_ and run_.get("n"):
        parts.append(f"held {run_['held']}")
        if run_.get("rss_per_conn_bytes") is not None:
            parts.append(f"{run_['rss_per_conn_bytes'] / 1024:.1f} KiB RSS/conn")
    if run_.get("stopped_by"):
        parts.append(f"stopped by {run_['stopped_by']}")
    if run_.get("legit_success") is not None:
        parts.append(f"legit success {run_['legit_success'] * 100:.1f}%")
        fds = run_["fds"]
        if fds["before"] is not None:
            parts.append(f"server fds {fds['before']}/{fds['during']}/{fds['after']}")
    if "offered_rps" in run_ and run_["offered_rps"] is not None:
        parts.append(f"offered {run_['offered_rps']:.0f}/s")
    if "rps" in run_:
        parts.append(f"{run_['rps']:.0f} req/s")
    if run_.get("req_per_busy_core_s"):
        parts.append(f"{run_['req_per_busy_core_s']:.0f} req/busy-core-s")
    lat = run_.get("latency_ms") or {}
    if "p99" in lat:
        parts.append(f"p99 {lat['p99']:.2f} ms")
    if run_.get("error_total"):
        parts.append(f"errors {run_['errors']}")
    if run_.get("generator_saturated"):
        parts.append("GENERATOR SATURATED")
    return ", ".join(parts)


def write_json(doc: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=str))
    tmp.replace(path)


def load_json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA:
        with contextlib.suppress(Exception):
            print(
                f"warning: {path} has schema {doc.get('schema')!r}, expected {SCHEMA!r}",
                file=sys.stderr,
            )
    return doc
