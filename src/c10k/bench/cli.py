"""``c10k bench``: command-line front end of the benchmark.

    c10k bench SCENARIO [--peer nginx] [--server '[NAME=]CMD {port} {root}'] [options]
    c10k bench all --peer nginx --out bench-results/today
    c10k bench plot bench-results/today/results.json

    c10k bench idle --levels 10000,100000,500000,1000000          (C1M, issue 4)
    c10k bench keepalive --c10k-backends epoll,epoll-et,poll,uring  (side by side, issue 5)
    c10k bench conn-rate --tls --peer nginx --peer lighttpd         (over TLS)
    c10k bench cluster [--balancer haproxy] [--retries off]        (hosts behind a balancer)
    c10k bench keepalive --url lb=http://127.0.0.1:8080/index.html  (any endpoint, not started)

Scenarios: conn-rate, keepalive, bigfile, modem, idle, poller, overload, slowhttp, all.  c10k
itself is measured as ``python -m c10k serve ROOT --bind 127.0.0.1 --port PORT [--backend B]``
unless ``--no-c10k``; peers that are not installed are skipped with what to install, and so
is a c10k backend that ``c10k backends`` says cannot run here.  Results go to ``--out``
(default ``bench-results/<time>``): results.json, results.md and PNG plots.

``--tls``: every server over HTTPS with one certificate made for the run, every generator
over TLS (peers.py and client.py say how); a server that cannot take the certificate
(http.server, a ``--server`` line without ``{tls_cert}``/``{tls_key}``) is refused with the
reason, and so is the poller scenario alone, which has no server.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from c10k.bench import certs, cluster
from c10k.bench.endpoint import REFUSED, Endpoint, modem_refusal, parse_url, start_probe, url_spec
from c10k.bench.peers import (
    PEERS,
    ServerError,
    ServerSpec,
    c10k_backend_names,
    c10k_spec,
    custom_spec,
)
from c10k.bench.plot import MISSING, have_matplotlib, render
from c10k.bench.report import markdown, terminal_table
from c10k.bench.runner import load_json, run, write_json
from c10k.bench.scenarios import ORDER, SCENARIOS, Options, modem_plan_of, scenario

# scenario -> server name -> why that server is not measured in it (a --url in idle...).
Refused = dict[str, dict[str, str]]


def _int_list(text: str) -> list[int]:
    try:
        return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text!r}") from None


def _cpu_fraction(text: str) -> float:
    """``--server-cpu``: a fraction of one core, ``N%``, or 0/none/off for no cap.

    >>> _cpu_fraction("0.1"), _cpu_fraction("25%"), _cpu_fraction("none")
    (0.1, 0.25, 0.0)
    """
    t = text.strip().lower()
    if t in ("none", "off", "no", "0"):
        return 0.0
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction of a core: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a fraction >= 0: {text!r}")
    return v


def _url(text: str) -> Endpoint:
    """``--url [NAME=]URL``: a bad URL is an argparse error (exit status 2)."""
    try:
        return parse_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("servers")
    g.add_argument(
        "--peer",
        action="append",
        default=[],
        choices=sorted(PEERS),
        help="a peer to measure alongside c10k (repeatable); ratios are to the "
        "first server measured: peers in the order given, then --server, "
        "then c10k",
    )
    g.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="[NAME=]CMD",
        help="any other server command line, with {port} and {root} (also {host}, "
        "{python}) placeholders (repeatable)",
    )
    g.add_argument(
        "--backend",
        action="append",
        default=[],
        help="c10k event backend (repeatable: one c10k server per backend)",
    )
    g.add_argument(
        "--c10k-backends",
        type=_name_list,
        metavar="B,B,...|all",
        help="one c10k server per backend or server mode, side by side in one interleaved "
        "run (e.g. epoll,epoll-et,poll,select,rtsig,uring,threads,asyncio,uvloop); 'all' "
        "means every name `c10k backends` lists; those that cannot run here are skipped "
        "with the reason",
    )
    g.add_argument(
        "--c10k-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for every c10k server's command line, after the bench's "
        "own (repeatable, one word each: --c10k-arg=--max-accept-wait --c10k-arg=0); "
        "results.json records the command line",
    )
    g.add_argument(
        "--no-c10k",
        action="store_true",
        help="do not measure c10k itself (the default with --url)",
    )
    g.add_argument(
        "--url",
        action="append",
        default=[],
        type=_url,
        metavar="[NAME=]URL",
        help="measure an HTTP(S) endpoint the bench does not start (a balancer, another "
        "host) as one more server, named NAME (default: the URL without its scheme); "
        "repeatable; every scenario requests the URL's own path; not pinned or capped, so "
        "its CPU figures are not measured; idle and poller do not take it; with --url, c10k "
        "itself is measured only with --c10k (or --backend/--c10k-backends)",
    )
    g.add_argument(
        "--url-ca",
        type=Path,
        metavar="FILE",
        help="CA certificates (PEM) to verify https --url endpoints against (default: the "
        "system's trust store)",
    )
    g.add_argument(
        "--c10k",
        action="store_true",
        help="with --url: measure c10k itself as well (after the endpoints)",
    )
    g.add_argument(
        "--tls",
        action="store_true",
        help="over TLS: one P-256 certificate made for the run (openssl, else trustme), "
        "every server over HTTPS with it (TLS 1.2 and 1.3), every generator over TLS; a "
        "--server command line takes it by {tls_cert} and {tls_key}; not for poller",
    )
    g = p.add_argument_group("run")
    g.add_argument("--duration", type=float, help="seconds per measurement (default 10; quick 1)")
    g.add_argument(
        "--warmup",
        type=float,
        help="seconds of warm-up before each measurement (default 2; quick 0)",
    )
    g.add_argument("--rounds", type=int, help="interleaved rounds per server (default 2; quick 1)")
    g.add_argument(
        "--connections",
        type=_int_list,
        metavar="N,N,...",
        help="override the connection counts of conn-rate/keepalive/bigfile",
    )
    g.add_argument(
        "--max-users",
        type=_positive(int),
        help="modem: stop adding users here (default 3000; beyond ~19,000 the server gets one "
        "worker and port per 19,000 users, the generator a process per 8,000)",
    )
    g.add_argument(
        "--levels",
        "--idle-counts",
        dest="idle_counts",
        type=_int_list,
        metavar="N,N,...",
        help="idle: checkpoints, connection counts to hold (default 10000,100000,500000,"
        "1000000; spread over processes, ports and source addresses as needed)",
    )
    g.add_argument(
        "--server-workers",
        type=int,
        help="idle and modem: server workers (= ports when > 1); default: enough for the "
        "top level (idle) or --max-users (modem) at 19,000 connections each",
    )
    g.add_argument(
        "--idle-time-limit",
        type=float,
        metavar="S",
        help="idle: stop after this many seconds (default 1800; quick 120)",
    )
    g.add_argument(
        "--multipliers",
        type=_float_list,
        metavar="M,M,...",
        help="overload: offered load as multiples of the measured peak (default 1,2,3)",
    )
    g.add_argument(
        "--repeat-peak",
        action="store_true",
        help="overload: measure each server's closed-loop peak again after its last level; "
        "the row 'peak again' shows how far the server's own speed moved during the round "
        "(the levels were offered multiples of the first peak)",
    )
    g.add_argument("--slow-conns", type=int, help="slowhttp: attack connections (default 4000)")
    g.add_argument(
        "--slow-duration", type=float, metavar="S", help="slowhttp: seconds per attack (30)"
    )
    g.add_argument(
        "--slow-modes",
        type=_name_list,
        metavar="M,M,...",
        help="slowhttp: attacks among slowloris,slowread,range (default all three)",
    )
    g.add_argument(
        "--poller-sizes", type=_int_list, metavar="N,N,...", help="poller: numbers of watched fds"
    )
    g.add_argument(
        "--generator",
        choices=["auto", "wrk", "h2load", "python"],
        default="auto",
        help="auto: wrk for conn-rate and keepalive and h2load for overload when installed, "
        "else the Python one; bigfile: the Python one, dropping bodies in the kernel (so the "
        "server sets the pace)",
    )
    g.add_argument(
        "--server-cpu",
        type=_cpu_fraction,
        metavar="FRACTION|none",
        help="cap every server to this fraction of one core with a cgroup CPU quota (e.g. "
        "0.1; 0 or none: no cap); default: 0.1 for overload (so one generator core can offer "
        "3x the peak), no cap for the other scenarios",
    )
    g.add_argument("--procs", type=int, help="at most this many generator processes")
    g.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds before a request counts as a timeout (default 5)",
    )
    g.add_argument(
        "--quick", action="store_true", help="tiny configuration (seconds): for CI and smoke tests"
    )
    g.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and the generator to separate cores",
    )
    g.add_argument(
        "--generator-on-server-core",
        action="store_true",
        help="overload, with a CPU cap: the generator's processes may also run on the "
        "server's core, in the time the cap leaves it (for a share, e.g. 0.25, at which one "
        "generator core cannot offer 3x the peak); the busy-core figures then include the "
        "generator, and the generator-bound mark means both cores were busy",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        type=Path,
        help="directory for results.json, results.md and PNGs (default bench-results/<time>)",
    )
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c10k bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="scenario", metavar="SCENARIO", required=True)
    common = _common()
    for name in ORDER:
        s = SCENARIOS[name]
        sub.add_parser(
            name,
            parents=[common],
            help=f"{s['title']} ({s['measures']})",
            description=f"{s['title']}: measures {s['measures']}.",
        )
    sub.add_parser("all", parents=[common], help="every scenario above, in that order")
    _cluster_parser(sub)
    pp = sub.add_parser("plot", help="render PNG plots (and results.md) from a results.json")
    pp.add_argument("results", type=Path)
    pp.add_argument("--out", type=Path, help="directory for the PNGs (default: beside the JSON)")
    return parser


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected a number above 0: {text!r}")
        return v

    return parse


def _cluster_parser(sub: Any) -> None:
    cp = sub.add_parser(
        "cluster",
        help="c10k hosts behind HAProxy and nginx, restarted, reloaded and killed under load "
        "(failed requests per phase)",
        description=cluster.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cp.add_argument("--hosts", type=_positive(int), default=3, help="c10k hosts (default 3)")
    cp.add_argument("--workers", type=_positive(int), default=2, help="workers per host (2)")
    cp.add_argument(
        "--balancer", action="append", choices=("haproxy", "nginx"),
        help="balancer (repeatable; default both)",
    )  # fmt: skip
    cp.add_argument("--retries", choices=("off", "on", "both"), default="both")
    cp.add_argument("--clients", type=_positive(int), default=8, help="client threads (8)")
    cp.add_argument("--phase-seconds", type=_positive(float), default=3.0, help="(3)")
    cp.add_argument("--drain-delay", type=_positive(float), default=1.0, help="hosts' (1)")
    cp.add_argument("--quick", action="store_true", help="2 hosts, 1 s phases: for CI")
    cp.add_argument("--out", type=Path, help="directory for results.json/md and the plot")
    cp.add_argument("--no-plots", action="store_true")


def _cluster_options(args: argparse.Namespace) -> cluster.Options:
    retries = ("off", "on") if args.retries == "both" else (args.retries,)
    out = args.out or Path("bench-results") / time.strftime("cluster-%Y%m%d-%H%M%S")
    opts = cluster.Options(
        hosts=args.hosts, workers=args.workers, retries=retries, clients=args.clients,
        phase_seconds=args.phase_seconds, drain_delay=args.drain_delay, out=out,
        balancers=tuple(dict.fromkeys(args.balancer or ("haproxy", "nginx"))),
    )  # fmt: skip
    if args.quick:
        opts.hosts, opts.workers, opts.phase_seconds, opts.clients = 2, 1, 1.0, 4
    return opts


def _specs(args: argparse.Namespace) -> list[ServerSpec]:
    specs = [PEERS[p] for p in dict.fromkeys(args.peer)]
    specs += [custom_spec(text, i + 1, args.tls) for i, text in enumerate(args.server)]
    specs += [url_spec(ep) for ep in args.url]
    backends = list(args.backend)
    for name in args.c10k_backends or []:
        backends += c10k_backend_names() if name == "all" else [name]
    backends = list(dict.fromkeys(backends))
    # With --url, c10k is measured only when asked for (--c10k or its backends).
    if not args.no_c10k and (not args.url or args.c10k or backends):
        extra = args.c10k_arg
        specs += [c10k_spec(b, extra) for b in backends] if backends else [c10k_spec(None, extra)]
    if args.c10k_arg and not any(s.kind == "c10k" for s in specs):
        raise ValueError(
            "--c10k-arg: c10k is not measured in this run (--no-c10k, or --url without "
            "--c10k), so the argument would go nowhere"
        )
    names = [s.name for s in specs]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"two servers named {', '.join(dupes)}: name a --url NAME=URL")
    return specs


def _check_urls(args: argparse.Namespace, names: list[str], specs: list[ServerSpec]) -> Refused:
    """Refuse at start what --url cannot do (ValueError, one line); sets ``args.tls`` for
    https endpoints alone; probes every endpoint.  Returns the scenarios that run without
    an endpoint (``all``), with the reason."""
    eps: list[Endpoint] = args.url
    if not eps:
        if args.url_ca or args.c10k:
            raise ValueError(f"{'--url-ca' if args.url_ca else '--c10k'} is for runs with --url")
        return {}
    if args.scenario in REFUSED:
        raise ValueError(f"--url does not apply to {args.scenario}: {REFUSED[args.scenario]}")
    _url_transport(args, eps, started=any(s.kind != "url" for s in specs))
    refused: Refused = {n: {ep.name: REFUSED[n] for ep in eps} for n in names if n in REFUSED}
    for ep in eps:
        try:
            body = start_probe(ep, args.url_ca)
        except ServerError as e:
            raise ValueError(f"--url {e}") from None
        why = modem_refusal(scenario("modem", args.quick), body) if "modem" in names else None
        if why and args.scenario == "modem":
            raise ValueError(f"--url {ep.name}: {why}")
        if why:
            refused.setdefault("modem", {})[ep.name] = why
        spec = next(s for s in specs if s.name == ep.name)
        spec.notes.append(f"GET {ep.target} answered 200 with {body:,} body bytes at start")
    return refused


def _check_spill(args: argparse.Namespace, names: list[str]) -> None:
    """What ``--generator-on-server-core`` needs, refused at start (ValueError, one line)."""
    if "overload" not in names:
        raise ValueError("--generator-on-server-core is for the overload scenario")
    if args.no_pin:
        raise ValueError(
            "--generator-on-server-core with --no-pin: nothing is pinned, so the generator "
            "already runs on every core"
        )
    if args.server_cpu is not None and not 0 < args.server_cpu < 1:
        raise ValueError(
            "--generator-on-server-core needs a CPU cap under one core (--server-cpu, e.g. "
            "0.25): an uncapped server would share its core with the generator"
        )


def _url_transport(args: argparse.Namespace, eps: list[Endpoint], started: bool) -> None:
    """A run is plain or TLS throughout: https endpoints need --tls beside started servers,
    imply it alone; --url-ca is for https."""
    https = {ep.tls for ep in eps}
    if not started and len(https) > 1:
        raise ValueError("--url: http:// and https:// endpoints in one run; bench them apart")
    if not started and not args.tls:
        args.tls = https.pop()
    for ep in eps:
        if ep.tls != args.tls:
            hint = (
                "the servers the bench starts serve plain HTTP: add --tls"
                if ep.tls
                else ("--tls makes every server of the run HTTPS: give an https:// URL")
            )
            raise ValueError(f"--url {ep.name} is {ep.scheme}://, but {hint}")
    if args.url_ca and not args.tls:
        raise ValueError("--url-ca is for https:// endpoints")
    if args.url_ca and not args.url_ca.is_file():
        raise ValueError(f"--url-ca {args.url_ca}: no such file")


def _check_tls(names: list[str], specs: list[ServerSpec]) -> None:
    """What ``--tls`` cannot do, as one line (raises ValueError)."""
    if names == ["poller"]:
        raise ValueError(
            "--tls does not apply to poller: it starts no server and opens no connection"
        )
    for spec in specs:
        if spec.no_tls:
            raise ValueError(f"--tls: {spec.no_tls}")
    if certs.maker() is None and any(s.kind != "url" for s in specs):
        raise ValueError(certs.MISSING)


def _options(args: argparse.Namespace) -> Options:
    q = args.quick

    def pick(value: float | int | None, full: float | int, quick: float | int) -> float:
        return float(value if value is not None else (quick if q else full))

    return Options(
        duration=pick(args.duration, 10.0, 1.0),
        warmup=pick(args.warmup, 2.0, 0.0),
        rounds=int(pick(args.rounds, 2, 1)),
        quick=q,
        generator=args.generator,
        procs=args.procs,
        timeout=args.timeout,
        connections=args.connections,
        max_users=args.max_users,
        idle_counts=args.idle_counts,
        poller_sizes=args.poller_sizes,
        server_workers=args.server_workers,
        idle_time_limit=args.idle_time_limit,
        multipliers=args.multipliers,
        slow_conns=args.slow_conns,
        slow_duration=args.slow_duration,
        slow_modes=args.slow_modes,
        server_cpu=args.server_cpu,
        tls=args.tls,
        url_ca=str(args.url_ca) if args.url_ca else None,
        generator_on_server_core=args.generator_on_server_core,
        repeat_peak=args.repeat_peak,
    )


def _finish(doc: dict[str, Any], out: Path, plots: bool) -> list[str]:
    names: list[str] = []
    if plots:
        if have_matplotlib():
            names = render(doc, out)
        else:
            print(MISSING, file=sys.stderr)
    (out / "results.md").write_text(markdown(doc, names))
    return names


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``c10k bench ...``. Returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.scenario == "cluster":
        return cluster.main(_cluster_options(args), plots=not args.no_plots)
    if args.scenario == "plot":
        doc = load_json(args.results)
        out = args.out or args.results.parent
        if not have_matplotlib():
            print(MISSING, file=sys.stderr)
            return 1
        names = render(doc, out)
        (out / "results.md").write_text(markdown(doc, names))
        print("\n".join(str(out / n) for n in names))
        return 0
    names = ORDER if args.scenario == "all" else [args.scenario]
    try:
        specs = _specs(args)
        refused = _check_urls(args, names, specs)
        opts = _options(args)
        if args.generator_on_server_core:
            _check_spill(args, names)
        if args.repeat_peak and "overload" not in names:
            raise ValueError("--repeat-peak is for the overload scenario")
        if args.tls:
            _check_tls(names, specs)
        if "modem" in names:
            modem_plan_of(scenario("modem", args.quick), opts)  # bad --procs: one line
    except ValueError as e:
        print(f"c10k bench: {e}", file=sys.stderr)
        return 2
    needs_server = any(SCENARIOS[n]["kind"] != "poller" for n in names)
    runnable = [s for s in specs if s.check_for(args.tls) is None]
    if needs_server and not runnable:
        for s in specs:
            print(f"c10k bench: cannot run {s.name}: {s.check_for(args.tls)}", file=sys.stderr)
        print("c10k bench: no server to measure (add --peer, --server or --url)", file=sys.stderr)
        return 2
    out = args.out or Path("bench-results") / time.strftime("%Y%m%d-%H%M%S")
    try:
        doc = run(
            names,
            specs,
            opts,
            out,
            pin_enabled=not args.no_pin,
            argv=["c10k", "bench", *(argv if argv is not None else sys.argv[1:])],
            refused=refused,
        )
    except certs.CertError as e:
        print(f"c10k bench: {e}", file=sys.stderr)
        return 2
    write_json(doc, out / "results.json")
    plots = _finish(doc, out, not args.no_plots)
    print(terminal_table(doc))
    print(
        f"\nwrote {out / 'results.json'}, {out / 'results.md'}"
        + (f" and {len(plots)} plots" if plots else "")
    )
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
