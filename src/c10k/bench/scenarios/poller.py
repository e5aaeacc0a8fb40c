"""Kind ``poller``: the poller curve (``c10k.bench.poller``), time per wait call with one
active fd among N, per backend.  No server is started: the runner calls ``run_poller``
instead of a ``MEASURE`` function.
"""

from __future__ import annotations

from typing import Any

from c10k.bench.poller import all_backends, bench_one, plan_sizes
from c10k.bench.scenarios.common import Context


def run_poller(scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The poller scenario: no server; rows are sizes, columns are backends."""
    sizes, notes = plan_sizes(ctx.opts.poller_sizes or scen["sizes"], scen["active"])
    backend_notes: list[str] = []
    backends = all_backends(backend_notes)
    for text in notes + backend_notes:
        ctx.note("poller: " + text)
    out: dict[str, Any] = {}
    for n in sizes:
        label = f"N={n}"
        runs = []
        for name, make in backends.items():
            ctx.progress(f"poller {label} {name}")
            try:
                r = bench_one(make, n, scen["active"], scen["seconds"])
            except ValueError as e:
                r = {"backend": name, "n": n, "skipped": str(e)}
            r["server"] = name
            r["round"] = 1
            runs.append(r)
        out[label] = runs
    return out
