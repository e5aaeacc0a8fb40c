"""What the sans-I/O parser hands out: a parsed request head, and sentinels.

A ``Request`` is one parsed request head. Header names are lower-cased bytes; repeated
fields are combined with ``", "`` as RFC 9110 section 5.3 allows (the fields that must not
repeat, Host and Content-Length, are rejected by the parser instead).
"""


class _Sentinel(type):
    def __repr__(cls) -> str:
        return cls.__name__


class NEED_DATA(metaclass=_Sentinel):
    """The buffered bytes do not yet hold a complete request head."""


class PAUSED(metaclass=_Sentinel):
    """A response is owed before more requests are parsed (the connection will close)."""


class Request:
    """One request head.

    Attributes:
        method: e.g. ``b"GET"``.
        target: the request-target as sent (origin-form ``/a%20b?x``; absolute-form is
            reduced to its path and query by the parser).
        minor: HTTP/1.minor, 0 or 1.
        headers: lower-cased name -> value.
        keep_alive: whether the client allows the connection to stay open after the
            response (RFC 9112 section 9.3).
        has_body: the request announced a body (Content-Length > 0 or Transfer-Encoding).
    """

    __slots__ = ("has_body", "headers", "keep_alive", "method", "minor", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        minor: int,
        headers: dict[bytes, bytes],
        keep_alive: bool,
        has_body: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.minor = minor
        self.headers = headers
        self.keep_alive = keep_alive
        self.has_body = has_body

    def __repr__(self) -> str:
        return (
            f"Request({self.method!r}, {self.target!r}, HTTP/1.{self.minor}, "
            f"{self.headers!r}, keep_alive={self.keep_alive})"
        )
