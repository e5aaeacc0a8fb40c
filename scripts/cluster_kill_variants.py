"""How many requests a SIGKILLed host costs behind HAProxy with retries off, per HAProxy
setting: many kills of one host under the cluster bench's load (issue 17).

One kill is a handful of failures whose number swings with timing (which pooled
connections HAProxy picks in the milliseconds before it notices), so a setting is judged
on many kills, not one run. Each kill: SIGKILL host 1 and close its socket (a power cut),
wait 0.5 s, start it again, wait until HAProxy has it back, 0.5 s of steady load.

    flock /tmp/c10k-cpu.lock .venv/bin/python scripts/cluster_kill_variants.py \
        --kills 10 layer4 layer7 nopool

Variants (changes to ``c10k bench cluster``'s HAProxy configuration):
  layer4   as generated: ``observe layer4 error-limit 1 on-error mark-down``
  layer7   ``observe layer7``: HTTP errors (a 502 from a broken response) count too
  nopool   ``pool-max-conn 0``: no idle server connections, a new connect per request
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from c10k.bench import cluster as C
from c10k.bench.cluster_logs import haproxy_unanswered
from c10k.bench.peers import free_port

CHANGES = {
    "layer4": ("", ""),
    "layer7": ("observe layer4", "observe layer7"),
    "nopool": ("on-error mark-down", "on-error mark-down pool-max-conn 0"),
}


def run(variant: str, kills: int) -> None:
    old, new = CHANGES[variant]
    generated = C.haproxy_config
    C.haproxy_config = lambda *a: generated(*a).replace(old, new) if old else generated(*a)
    tmp = Path(tempfile.mkdtemp(prefix="c10k-kills-"))
    (tmp / "www").mkdir()
    (tmp / "www" / "small.bin").write_bytes(C.SMALL)
    port, lb_port = free_port("127.0.0.11"), free_port("127.0.0.1")
    hosts = C.make_hosts(C.Options(), tmp / "www", port, proxy=True)
    for h in hosts:
        h.start()
    lb = C.Balancer("haproxy", hosts, lb_port, tmp, retries=False)
    load = C.Load(lb_port, C.Options().clients)
    rows = []
    try:
        lb.wait_ready()
        load.run()
        time.sleep(1)
        for i in range(kills):
            load.phase, before = f"kill{i}", lb.counters()
            hosts[0].crash()
            hosts[0].wait()
            time.sleep(0.5)
            after = lb.counters()
            hosts[0].start()
            C._wait_until(lambda: lb.up() == len(hosts), 20)
            load.phase = "steady"
            time.sleep(0.5)
            failed = sum(1 for f in load.failures if f[1] == f"kill{i}")
            rows.append((failed, haproxy_unanswered(before, after, "h0")["unanswered"]))
    finally:
        C.stop_all(load, lb, hosts)
        C.haproxy_config = generated
    rate = len(load.events) / max(e[0] for e in load.events)
    fails = [r[0] for r in rows]
    print(
        f"{variant}: failed per kill {fails} (median {statistics.median(fails)}, total "
        f"{sum(fails)}); HAProxy's count on the killed host {[r[1] for r in rows]}; "
        f"{rate:.0f} req/s over the run"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", choices=sorted(CHANGES))
    ap.add_argument("--kills", type=int, default=10)
    args = ap.parse_args()
    for v in args.variants:
        run(v, args.kills)


if __name__ == "__main__":
    main()
