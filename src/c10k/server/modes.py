"""Server modes: the strategies of the C10K page that cannot be a readiness ``Backend``.

A readiness backend (select, poll, epoll, kqueue, /dev/poll, rtsig) plugs into the one
``Loop`` and is served by ``c10k.server.app.Server``. The strategies below drive I/O their
own way, so each is a whole server class with the same public face as ``Server``:

- ``uring``: completion-based I/O (io_uring): accept/recv/send submitted and reaped as
  completions (``c10k.server.uring_server``);
- ``threads``: one OS thread per client with blocking I/O (``c10k.server.threaded``);
- ``asyncio`` / ``uvloop``: coroutines on the event loops Python users already run
  (``c10k.server.aio``).

The face every mode shows (``ServerLike``): ``__init__(config, handler=None, sock=None)``,
``url``, ``address``, ``backend_name``, ``capacity``, ``capacity_reason``, ``nofile_soft``,
``nofile_hard``, ``requests``, ``install_signal_handlers()``, ``serve_forever(install_signals)``,
``stop()`` (thread-safe) and ``close()``; and a classmethod ``unavailable_reason() -> str |
None`` that says, without side effects, why the mode cannot run here.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

# name -> "module:Class", imported only when asked for, so a missing optional dependency
# (uvloop) or kernel feature (io_uring) costs nothing unless that mode is chosen.
SERVER_MODES: dict[str, str] = {
    "uring": "c10k.server.uring_server:UringServer",
    "threads": "c10k.server.threaded:ThreadedServer",
    "asyncio": "c10k.server.aio:AsyncioServer",
    "uvloop": "c10k.server.aio:UvloopServer",
}


class ServerLike(Protocol):
    requests: int
    capacity: int
    capacity_reason: str
    nofile_soft: int
    nofile_hard: int

    @property
    def url(self) -> str: ...

    @property
    def backend_name(self) -> str: ...

    def install_signal_handlers(self) -> None: ...

    def serve_forever(self, install_signals: bool = True) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class ModeUnavailable(Exception):
    """The mode cannot run here; the message says why and what to install or enable."""


def mode_class(name: str) -> Any:
    """The server class of mode ``name``.

    Raises:
        ModeUnavailable: the module is missing or the mode cannot run on this machine.
    """
    spec = SERVER_MODES[name]
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except Exception as exc:  # ImportError, or a module that fails while loading
        raise ModeUnavailable(f"server mode {name!r} is not available: {exc}") from exc
    reason = cls.unavailable_reason()
    if reason is not None:
        raise ModeUnavailable(f"server mode {name!r} cannot run here: {reason}")
    return cls


def mode_unavailable_reason(name: str) -> str | None:
    """None if mode ``name`` runs here, else why not."""
    try:
        mode_class(name)
    except ModeUnavailable as exc:
        return str(exc)
    return None


def available_modes() -> list[str]:
    return [n for n in SERVER_MODES if mode_unavailable_reason(n) is None]


def unavailable_modes() -> dict[str, str]:
    return {n: r for n in SERVER_MODES if (r := mode_unavailable_reason(n)) is not None}
