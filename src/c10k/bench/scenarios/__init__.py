"""The scenarios: data entries (vmbench style) plus one measuring function per kind.

Theory of operation
-------------------
A scenario is a dict: ``name``, ``title``, what it ``measures``, its ``kind`` (which function
measures it), its parameters, its ``variations`` (one row each in the reports) and a
``quick`` override for CI.  The runner starts a server, hands it to the kind's function, which
returns ``{variation label: run}``, and stops the server; the reports read the runs.  Adding a
scenario is adding a dict.

Modules, one per concern:
    table.py      the dicts (``SCENARIOS``, ``ORDER``), ``MEASURE`` (kind -> function), the
                  docroot's files, each scenario's expected duration
    common.py     ``Options``, ``Context``, the Python generator run and the figures every
                  run records (shared by the kinds below)
    http_load.py  kind ``http``: conn-rate (Kegel's test 1), keepalive, bigfile
    modem.py      kind ``modem``: Kegel's test 2, scored like dkftpbench
    idle.py       kind ``idle``: held connections up to C1M (the plan, memory per connection)
    overload.py   kind ``overload``: open loop at multiples of the peak, h2load, the CPU cap
    slowhttp.py   kind ``slowhttp``: slowhttptest attacks against a legitimate client
    poller.py     kind ``poller``: no server, the poller curve (``c10k.bench.poller``)

This module re-exports the names the runner, the CLI and the tests use.
"""

from c10k.bench.scenarios.common import Context, Options
from c10k.bench.scenarios.idle import (
    PER_CLIENT_MAX,
    PER_WORKER_MAX,
    _per_conn,
    idle_plan,
    server_shape,
    stop_reason,
)
from c10k.bench.scenarios.modem import modem_plan
from c10k.bench.scenarios.modem import plan_of as modem_plan_of
from c10k.bench.scenarios.poller import run_poller
from c10k.bench.scenarios.table import (
    MEASURE,
    ORDER,
    SCENARIOS,
    expected_seconds,
    extra_files,
    make_docroot,
    scenario,
    title,
)

__all__ = [
    "MEASURE",
    "ORDER",
    "PER_CLIENT_MAX",
    "PER_WORKER_MAX",
    "SCENARIOS",
    "Context",
    "Options",
    "_per_conn",  # private, but tests/bench/test_bench_c1m.py tests it through this module
    "expected_seconds",
    "extra_files",
    "idle_plan",
    "make_docroot",
    "modem_plan",
    "modem_plan_of",
    "run_poller",
    "scenario",
    "server_shape",
    "stop_reason",
    "title",
]
