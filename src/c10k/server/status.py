"""The status page: nginx stub_status text and Prometheus text from one set of counters.

``--status`` serves ``/_c10k/status`` (stub_status's layout first, so tools that parse
nginx's page parse ours, then our own counters) and ``/_c10k/status/metrics``
(Prometheus text format 0.0.4). Both are rendered from the dict ``Policy.status()``
returns; the page is built at most every ``STATUS_TTL`` seconds, so a status page polled
hard costs little.
"""

from __future__ import annotations

from collections.abc import Callable

from c10k.http.events import Request
from c10k.http.writers import Response, build_response

STATUS_TTL = 0.1
GAUGES = frozenset(
    (
        "active",
        "reading",
        "writing",
        "waiting",
        "shed_level",
        "backlog",
        "syn_drop_percent",
        "uptime_seconds",
    )
)
# Lines after stub_status's own, in this order.
EXTRA_LINES = (
    "bytes_sent",
    "timeouts",
    "offloaded",
    "shed_level",
    "shed_503",
    "shed_accepts",
    "shed_stale",
    "backlog",
    "syn_drop_percent",
    "access_log_dropped",
    "uptime_seconds",
    "pid",
)


def render_stub(st: dict[str, int], by_status: dict[int, int]) -> str:
    text = (
        f"Active connections: {st['active']}\n"
        f"server accepts handled requests\n"
        f" {st['accepts']} {st['handled']} {st['requests']}\n"
        f"Reading: {st['reading']} Writing: {st['writing']} Waiting: {st['waiting']}\n"
    )
    text += "".join(f"{name}: {st[name]}\n" for name in EXTRA_LINES)
    text += "".join(f"status_{code}: {n}\n" for code, n in sorted(by_status.items()))
    return text


def render_prometheus(st: dict[str, int], by_status: dict[int, int]) -> str:
    lines = []
    for name, value in st.items():
        if name == "pid":
            continue
        kind = "gauge" if name in GAUGES else "counter"
        metric = f"c10k_{name}" + ("" if kind == "gauge" else "_total")
        lines.append(f"# TYPE {metric} {kind}\n{metric} {value}")
    lines.append("# TYPE c10k_responses_total counter")
    lines += [f'c10k_responses_total{{status="{c}"}} {n}' for c, n in sorted(by_status.items())]
    return "\n".join(lines) + "\n"


class StatusPage:
    """Answers the two status paths in front of ``inner`` (a ``handle_fast``)."""

    def __init__(
        self,
        path: str,
        counters: Callable[[], tuple[dict[str, int], dict[int, int]]],
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
        st, by_status = self.counters()
        if prometheus:
            text = render_prometheus(st, by_status)
            ctype = b"text/plain; version=0.0.4; charset=utf-8"
        else:
            text = render_stub(st, by_status)
            ctype = b"text/plain; charset=utf-8"
        resp = build_response(
            200, [(b"Content-Type", ctype), (b"Cache-Control", b"no-store")], text.encode()
        )
        self._cache = (now, prometheus, resp)
        return resp
