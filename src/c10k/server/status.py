"""The status page: nginx stub_status text and Prometheus text from one set of counters.

``--status`` serves ``/_c10k/status`` (stub_status's layout first, so tools that parse
nginx's page parse ours, then our own counters) and ``/_c10k/status/metrics``
(Prometheus text format 0.0.4). Both are rendered from what ``Policy.counters()``
returns; the page is built at most every ``STATUS_TTL`` seconds, so a status page polled
hard costs little.

Under a supervisor the numbers are the whole server's, whichever worker answers: totals
over the live workers plus the counters of exited ones (``c10k.server.shared``), then one
series per live worker: ``c10k_worker_<metric>{worker="<slot>",pid="<pid>"}`` beside each
total in Prometheus text, one ``worker <slot>: pid=... name=value ...`` line each on the
text page (after stub_status's lines, so nginx parsers still read the totals). ``pid`` on
the text page is the process that answered. A process on its own (``--workers 1``) shows
its own numbers and no worker lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from c10k.http.events import Request
from c10k.http.writers import Response, build_response
from c10k.server.shared import FIELDS
from c10k.server.shared import GAUGES as SHARED_GAUGES

if TYPE_CHECKING:
    from c10k.server.shared import Record

Counters = tuple[dict[str, int], dict[int, int], Sequence["Record"]]

STATUS_TTL = 0.1
GAUGES = SHARED_GAUGES | {"uptime_seconds", "workers"}
# stub_status's own lines come first (render_stub); then every other field, in the
# records' order, so a counter added to the records shows here too.
STUB_FIELDS = ("active", "reading", "writing", "waiting", "accepts", "handled", "requests")
EXTRA_LINES = (*(f for f in FIELDS if f not in STUB_FIELDS), "uptime_seconds", "pid")
SERVER_LINES = ("workers", "workers_exited")  # under a supervisor only


def render_stub(
    st: dict[str, int], by_status: dict[int, int], workers: Sequence[Record] = ()
) -> str:
    text = (
        f"Active connections: {st['active']}\n"
        f"server accepts handled requests\n"
        f" {st['accepts']} {st['handled']} {st['requests']}\n"
        f"Reading: {st['reading']} Writing: {st['writing']} Waiting: {st['waiting']}\n"
    )
    text += "".join(f"{name}: {st[name]}\n" for name in EXTRA_LINES)
    text += "".join(f"status_{code}: {n}\n" for code, n in sorted(by_status.items()))
    text += "".join(f"{name}: {st[name]}\n" for name in SERVER_LINES if name in st)
    return text + "".join(_worker_line(w) for w in workers)


def _worker_line(w: Record) -> str:
    pairs = [f"pid={w.pid}", *(f"{k}={v}" for k, v in w.values.items())]
    pairs += [f"status_{code}={n}" for code, n in sorted(w.by_status.items())]
    return f"worker {w.slot}: {' '.join(pairs)}\n"


def render_prometheus(
    st: dict[str, int], by_status: dict[int, int], workers: Sequence[Record] = ()
) -> str:
    lines = []
    for name, value in st.items():
        if name == "pid":
            continue
        kind = "gauge" if name in GAUGES else "counter"
        suffix = "" if kind == "gauge" else "_total"
        lines.append(f"# TYPE c10k_{name}{suffix} {kind}\nc10k_{name}{suffix} {value}")
        per = [(w, w.values[name]) for w in workers if name in w.values]
        if per:
            lines.append(f"# TYPE c10k_worker_{name}{suffix} {kind}")
            lines += [f"c10k_worker_{name}{suffix}{{{_labels(w)}}} {v}" for w, v in per]
    lines.append("# TYPE c10k_responses_total counter")
    lines += [f'c10k_responses_total{{status="{c}"}} {n}' for c, n in sorted(by_status.items())]
    if workers:
        lines.append("# TYPE c10k_worker_responses_total counter")
        lines += [
            f'c10k_worker_responses_total{{{_labels(w)},status="{c}"}} {n}'
            for w in workers
            for c, n in sorted(w.by_status.items())
        ]
    return "\n".join(lines) + "\n"


def _labels(w: Record) -> str:
    return f'worker="{w.slot}",pid="{w.pid}"'


class StatusPage:
    """Answers the two status paths in front of ``inner`` (a ``handle_fast``)."""

    def __init__(
        self,
        path: str,
        counters: Callable[[], Counters],
        inner: Callable[[Request, float], Response | None],
    ) -> None:
        self.base = path.encode()
        self.metrics = self.base.rstrip(b"/") + b"/metrics"
        self.counters = counters
        self.inner = inner
        self._cache: tuple[float, bool, Response] | None = None

    def handle_fast(self, req: Request, now: float) -> Response | None:
        target = req.target.partition(b"?")[0]
        if target == self.base:
            return self.response(now, prometheus=False)
        if target == self.metrics:
            return self.response(now, prometheus=True)
        return self.inner(req, now)

    def response(self, now: float, prometheus: bool) -> Response:
        cached = self._cache
        if cached is not None and cached[1] == prometheus and now - cached[0] < STATUS_TTL:
            return cached[2]
        st, by_status, workers = self.counters()
        if prometheus:
            text = render_prometheus(st, by_status, workers)
            ctype = b"text/plain; version=0.0.4; charset=utf-8"
        else:
            text = render_stub(st, by_status, workers)
            ctype = b"text/plain; charset=utf-8"
        resp = build_response(
            200, [(b"Content-Type", ctype), (b"Cache-Control", b"no-store")], text.encode()
        )
        self._cache = (now, prometheus, resp)
        return resp
