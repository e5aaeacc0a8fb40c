"""c10k.http: sans-I/O HTTP/1.1. Bytes in, events out; no sockets, no clock."""

from c10k.http.connection import CONNECTION_CLOSED, HTTPConnection, Limits, method_status
from c10k.http.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from c10k.http.events import NEED_DATA, PAUSED, Request
from c10k.http.readers import parse_head
from c10k.http.writers import Response, build_response, error_response, http_date

__all__ = [
    "CONNECTION_CLOSED",
    "NEED_DATA",
    "PAUSED",
    "HTTPConnection",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "build_response",
    "error_response",
    "http_date",
    "method_status",
    "parse_head",
]
