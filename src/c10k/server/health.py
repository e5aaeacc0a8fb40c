"""``/_c10k/health``: what a load balancer's health check asks (``--health``).

200 ``ok`` while the process serves; 503 ``draining`` from the moment it is told to stop,
including the ``--drain-delay`` window in which it still serves everything (with
``Connection: close``) so the balancer takes the host out before it stops accepting.
Two prebuilt responses, no disk, no allocation: a check every few hundred milliseconds
from each balancer costs what a cached file costs. They are not written to the access log
unless ``--log-health`` (a check every 2 s is 43,200 lines a day per balancer).
"""

from __future__ import annotations

from collections.abc import Callable

from c10k.http.events import Request
from c10k.http.writers import Response, build_response

HEALTH_PATH = b"/_c10k/health"
_FIELDS = [(b"Content-Type", b"text/plain"), (b"Cache-Control", b"no-store")]
OK = build_response(200, _FIELDS, b"ok\n")
DRAINING = build_response(503, [*_FIELDS, (b"Retry-After", b"5")], b"draining\n", close=True)


class HealthCheck:
    """Answers ``HEALTH_PATH`` in front of ``inner`` (a ``handle_fast``); ``failing()``
    says whether the process is on its way out."""

    __slots__ = ("failing", "inner")

    def __init__(
        self,
        failing: Callable[[], bool],
        inner: Callable[[Request, float], Response | None],
    ) -> None:
        self.failing = failing
        self.inner = inner

    def handle_fast(self, req: Request, now: float) -> Response | None:
        if req.target.partition(b"?")[0] == HEALTH_PATH:
            return DRAINING if self.failing() else OK
        return self.inner(req, now)


def is_health(resp: Response) -> bool:
    return resp is OK or resp is DRAINING
