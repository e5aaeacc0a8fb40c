"""HTTP protocol errors (h11 style).

``RemoteProtocolError``: the peer sent something we will not accept; ``error_status_hint``
is the 4xx/5xx the server should answer with before closing. ``LocalProtocolError``: our own
code tried to emit something invalid (a header value with CR/LF, say): a bug, never the
peer's fault.
"""


class ProtocolError(Exception):
    def __init__(self, msg: str, error_status_hint: int = 400) -> None:
        super().__init__(msg)
        self.error_status_hint = error_status_hint


class LocalProtocolError(ProtocolError):
    pass


class RemoteProtocolError(ProtocolError):
    pass
