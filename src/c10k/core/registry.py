"""Backend names -> classes, and which of them run here.

Preference order for ``auto``: the O(1) kernels first (epoll, kqueue, /dev/poll), then
poll, then select. Level-triggered epoll is preferred over edge-triggered: for a server
whose responses almost always fit the socket buffer, LT never calls epoll_ctl after
registration either, and ET costs an extra wakeup per response from EPOLLOUT edges (see
docs/ARCHITECTURE.md for the measurement). The same goes for kqueue and its EV_CLEAR
variant, so neither ``epoll-et`` nor ``kqueue-et`` is in AUTO_ORDER: they run when named,
and ``available_backends()`` lists them after the ones ``auto`` picks from.
"""

from __future__ import annotations

from c10k.core.backend import Backend, BackendUnavailable
from c10k.core.io_epoll import EpollBackend, EpollETBackend
from c10k.core.io_kqueue import KqueueBackend, KqueueEdgeBackend
from c10k.core.io_poll import DevpollBackend, PollBackend
from c10k.core.io_rtsig import RtsigBackend
from c10k.core.io_select import SelectBackend

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        EpollBackend,
        EpollETBackend,
        KqueueBackend,
        KqueueEdgeBackend,
        DevpollBackend,
        PollBackend,
        SelectBackend,
        RtsigBackend,
    )
}
AUTO_ORDER = ("epoll", "kqueue", "devpoll", "poll", "select")


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine, in preference order."""
    order = [*AUTO_ORDER, *(n for n in BACKENDS if n not in AUTO_ORDER)]
    return [n for n in order if BACKENDS[n].unavailable_reason() is None]


def unavailable_backends() -> dict[str, str]:
    """Name -> reason, for the backends that cannot run here."""
    return {n: r for n, cls in BACKENDS.items() if (r := cls.unavailable_reason()) is not None}


def get_backend_class(name: str) -> type[Backend]:
    """Resolve a name (or ``auto``) to a backend class that runs here.

    Raises:
        BackendUnavailable: unknown name, or the backend cannot run on this machine.
    """
    if name == "auto":
        return BACKENDS[available_backends()[0]]
    cls = BACKENDS.get(name)
    if cls is None:
        # List only what runs here: offering kqueue on Linux would just fail next.
        raise BackendUnavailable(
            f"unknown backend {name!r}; available here: auto, {', '.join(available_backends())}"
        )
    reason = cls.unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(
            f"backend {name!r} cannot run here: {reason}. "
            f"Available: {', '.join(available_backends())}"
        )
    return cls


def make_backend(name: str = "auto") -> Backend:
    """Instantiate the named backend (see ``get_backend_class``)."""
    return get_backend_class(name)()
