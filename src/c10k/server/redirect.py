"""The ``--redirect-https`` listener's handler: every request gets 301 to the https URL.

The host comes from the request's Host header without its port (RFC 9110 section 7.2),
checked to be a plain host name or address so that no client can make us write a header
of its choosing; a request without a usable Host gets 400. The https port is left out of
the URL when it is 443. GET and HEAD get 301 (nginx's ``return 301``); other methods never
get here: the engine answers them 405 as on every listener of a static server.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from c10k.http.events import Request
from c10k.http.writers import Response, build_response
from c10k.server.wire import PlainResponse

# A reg-name or IPv4 (letters, digits, '-', '.') or a bracketed IPv6 literal; then a port.
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d*)?")


def redirect_handler(https_port: int) -> Callable[[Request, float], Response]:
    """``handler(request, now)`` answering with the https URL of the same target."""
    suffix = b"" if https_port == 443 else b":%d" % https_port

    def handle(req: Request, now: float) -> Response:
        m = _HOST.fullmatch(req.headers.get(b"host", b""))
        if m is None:
            body = b"A Host header is needed to redirect to https.\n"
            return build_response(400, [(b"Content-Type", b"text/plain")], body)
        target = req.target if req.target.startswith(b"/") else b"/"
        location = b"https://" + m.group(1).lower() + suffix + target
        status = 301
        body = b"" if req.method == b"HEAD" else b"Moved to " + location + b"\n"
        return build_response(
            status,
            [(b"Location", location), (b"Content-Type", b"text/plain")],
            body if req.method != b"HEAD" else None,
            content_length=len(b"Moved to " + location + b"\n"),
        )

    def plain(req: Request, now: float) -> Response:
        resp = handle(req, now)
        return PlainResponse(resp.status, resp.head, resp.body, resp.close)

    return plain
