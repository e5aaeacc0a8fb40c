"""Server modes: the strategies of the C10K page that cannot be a readiness ``Backend``.

A readiness backend (select, poll, epoll, kqueue, /dev/poll, rtsig) plugs into the one
``Loop`` and is driven by ``c10k.server.readiness.Server``. The strategies below move
bytes their own way, so each is a driver class of its own:

- ``uring``: completion-based I/O (io_uring): accept/recv/send submitted and reaped as
  completions (``c10k.server.uring``);
- ``threads``: one OS thread per client with blocking I/O (``c10k.server.threaded``);
- ``asyncio`` / ``uvloop``: the event loops Python users already run (``c10k.server.aio``).

Every mode is a ``c10k.server.base.ServerBase`` running the same ``Session`` per
connection and the same per-process ``Policy``, so every feature works in every mode. A
setting a mode truly cannot honour is listed in its class's ``refused`` (setting name ->
why) and refused at start when it differs from the default (``refused_settings``):
nothing is silently ignored. ``unavailable_reason()`` says, without side effects, why a
mode cannot run on this machine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from c10k.server.config import ServerConfig

if TYPE_CHECKING:
    from c10k.server.base import ServerBase

# name -> "module:Class", imported only when asked for, so a missing optional dependency
# (uvloop) or kernel feature (io_uring) costs nothing unless that mode is chosen.
SERVER_MODES: dict[str, str] = {
    "uring": "c10k.server.uring:UringServer",
    "threads": "c10k.server.threaded:ThreadedServer",
    "asyncio": "c10k.server.aio:AsyncioServer",
    "uvloop": "c10k.server.aio:UvloopServer",
}


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


def server_class(backend: str) -> type[ServerBase]:
    """The driver class for ``backend``: a server mode's, or the readiness Server for a
    readiness backend (whose own availability the Loop checks when it is made).

    Raises:
        ModeUnavailable: a server mode that cannot run here.
    """
    if backend in SERVER_MODES:
        cls: type[ServerBase] = mode_class(backend)
        return cls
    from c10k.server.readiness import Server

    return Server


def refused_settings(config: ServerConfig) -> list[str]:
    """One line per setting ``config`` asks for that its mode cannot honour (empty: all
    is honoured). Only settings that differ from their defaults count."""
    cls = server_class(config.backend)
    defaults = ServerConfig()
    refused: dict[str, str] = getattr(cls, "refused", {})
    lines = [
        f"--backend {config.backend} cannot honour --{name.replace('_', '-')}: {why}"
        for name, why in refused.items()
        if getattr(config, name) != getattr(defaults, name)
    ]
    # The same settings inside a [[site]] table (c10k.server.sites), with the same reason.
    lines += [
        f"--backend {config.backend} cannot honour {name} in [[site]] {i}: {why}"
        for i, site in enumerate(config.site, 1)
        for name, why in refused.items()
        if name in site and site[name] != getattr(defaults, name)
    ]
    return lines


def check_settings(config: ServerConfig) -> None:
    """Raise now, before anything is bound or forked, if ``config.backend`` cannot run
    here or its mode cannot honour a setting asked for.

    Raises:
        BackendUnavailable: a readiness backend this machine lacks.
        ModeUnavailable: a server mode that cannot run here, or a refused setting.
    """
    if config.backend in SERVER_MODES:
        mode_class(config.backend)
    else:
        from c10k.core.registry import get_backend_class

        get_backend_class(config.backend)
    refused = refused_settings(config)
    if refused:
        raise ModeUnavailable("; ".join(refused))
