"""Listening sockets for ``c10k serve``: ``--listen`` parsing, binding, one set per worker slot.

Listeners (``parse_listen``, ``bind_listeners``)
- ``--listen`` takes ``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (all IPv4 interfaces, Go's and
  nginx's ``*:PORT``), ``PORT`` (on ``--bind``, loopback by default: a bare port should
  not expose a server) and ``unix:/path``. IPv6 sockets set IPV6_V6ONLY, so ``[::]:80``
  and ``0.0.0.0:80`` are two independent listeners, as in nginx (``ipv6only=on``).
- Before binding a fixed port with SO_REUSEPORT, we check nobody listens there: the
  kernel lets any socket of the same user with SO_REUSEPORT join the group, so a second
  ``c10k serve`` on the same port would silently take half the connections.
- Unix sockets: stale files are replaced, live ones refused, mode 0o666 (see
  c10k.core.listener), removed at exit by the process that bound them.
- Worker slots (``bind_slots``): with SO_REUSEPORT each slot has its own TCP socket per
  address (the kernel spreads connections over them by a 4-tuple hash: no thundering
  herd); Unix sockets, and everything without SO_REUSEPORT, are shared by all slots.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from c10k.core.listener import (
    UnixSocketIdentity,
    bind_socket,
    bind_unix_socket,
    remove_unix_socket,
    unix_socket_identity,
)
from c10k.server.config import ServerConfig

Address = tuple[str, int] | str  # (host, port) for TCP, a path for AF_UNIX


# -- listeners ---------------------------------------------------------------------------
def parse_listen(spec: str, default_host: str = "127.0.0.1") -> tuple[int, Address]:
    """Parse one ``--listen`` value into (address family, address).

    Args:
        spec: ``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (all IPv4 interfaces), ``PORT``
            (on ``default_host``) or ``unix:/path``. A host name is resolved here.
        default_host: the host of a bare ``PORT``.

    Raises:
        ValueError: the spec is malformed; the message says what was expected.

    >>> parse_listen("[::1]:8080")
    (<AddressFamily.AF_INET6: 10>, ('::1', 8080))
    >>> parse_listen(":80")
    (<AddressFamily.AF_INET: 2>, ('0.0.0.0', 80))
    >>> parse_listen("unix:/run/c10k.sock")
    (<AddressFamily.AF_UNIX: 1>, '/run/c10k.sock')
    """
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise ValueError(f"--listen {spec!r}: expected unix:/path/to/socket")
        if "\0" in path:
            raise ValueError(f"--listen {spec!r}: NUL byte in the socket path")
        return socket.AF_UNIX, path
    if spec.isdigit():
        return _tcp_address(spec, default_host, spec)
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError(f"--listen {spec!r}: expected [IPV6]:PORT, e.g. [::1]:8080")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"--listen {spec!r}: {host!r} is not an IPv6 address") from None
        return _tcp_address(port, host, spec, socket.AF_INET6)
    host, sep, port = spec.rpartition(":")
    if not sep:
        raise ValueError(f"--listen {spec!r}: expected HOST:PORT, [V6]:PORT, PORT or unix:/path")
    if ":" in host:
        raise ValueError(f"--listen {spec!r}: write an IPv6 address in brackets: [{host}]:{port}")
    return _tcp_address(port, host or "0.0.0.0", spec)


def _tcp_address(
    port_text: str, host: str, spec: str, family: int | None = None
) -> tuple[int, Address]:
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"--listen {spec!r}: the port must be a number from 0 to 65535")
    port = int(port_text)
    if family is not None:
        return family, (host, port)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValueError(f"--listen {spec!r}: cannot resolve {host!r}: {exc}") from None
        fam, _, _, _, sockaddr = infos[0]
        return fam, (str(sockaddr[0]), port)
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, port)


LISTEN_PREFIXES = ("tls:", "proxy:")


def listen_prefixes(spec: str) -> tuple[frozenset[str], str]:
    """``tls:`` (a TLS listener) and ``proxy:`` (a PROXY header first), in either order,
    before the address: (the words, the address spec).

    >>> words, address = listen_prefixes("proxy:tls:0.0.0.0:443")
    >>> sorted(words), address
    (['proxy', 'tls'], '0.0.0.0:443')
    """
    words: set[str] = set()
    while spec.startswith(LISTEN_PREFIXES):
        word, _, spec = spec.partition(":")
        words.add(word)
    return frozenset(words), spec


def strip_tls(spec: str) -> tuple[bool, str]:
    """Whether ``spec`` is a TLS listener, and its address spec (prefixes stripped).

    >>> strip_tls("tls:0.0.0.0:443"), strip_tls("[::1]:80")
    ((True, '0.0.0.0:443'), (False, '[::1]:80'))
    """
    words, address = listen_prefixes(spec)
    return "tls" in words, address


HTTP, HTTPS, REDIRECT = "http", "https", "redirect"  # what a listener serves


def listen_roles(config: ServerConfig) -> list[str]:
    """What each of ``listen_addresses`` serves, in the same order: plain HTTP, HTTPS
    (``tls:`` listeners; without --listen, the one address when there are
    certificates), or the --redirect-https listener (last)."""
    if config.listen:
        roles = [HTTPS if strip_tls(spec)[0] else HTTP for spec in config.listen]
    else:
        roles = [HTTPS if config.tls_cert else HTTP]
    return roles + [REDIRECT] * (config.redirect_https is not None)


def listen_proxied(config: ServerConfig) -> list[bool]:
    """Whether each of ``listen_addresses`` requires a PROXY header (``--proxy-protocol``
    for all of them, ``proxy:`` for one), in ``listen_roles`` order."""
    every = config.proxy_protocol
    if config.listen:
        marked = [every or "proxy" in listen_prefixes(spec)[0] for spec in config.listen]
    else:
        marked = [every]
    return marked + [every] * (config.redirect_https is not None)


def listen_addresses(config: ServerConfig) -> list[tuple[int, Address]]:
    """The addresses to listen on: ``config.listen``, or ``config.host``/``config.port``;
    then the --redirect-https port on ``config.host``."""
    host = config.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if config.listen:
        out = [parse_listen(strip_tls(spec)[1], config.host) for spec in config.listen]
    else:
        out = [parse_listen(f"{host}:{config.port}", config.host)]
    if config.redirect_https is not None:
        out.append(parse_listen(f"{host}:{config.redirect_https}", config.host))
    return out


def bind_listeners(
    config: ServerConfig,
    reuse_port: bool,
    addresses: list[tuple[int, Address]] | None = None,
    passed: Sequence[socket.socket] = (),
) -> list[socket.socket]:
    """Bind one listening socket per address (``addresses`` or ``listen_addresses``);
    the first ``len(passed)`` are sockets systemd passed (``systemd.listen_fds``), taken
    as they are.

    With ``reuse_port``, TCP sockets get SO_REUSEPORT, after a check that nothing already
    listens on a fixed port. On any failure the sockets bound so far are closed.

    Raises:
        OSError: a bind failed; ``exc.filename`` names the address.
    """
    socks: list[socket.socket] = []
    try:
        wanted = addresses if addresses is not None else listen_addresses(config)
        for i, (family, addr) in enumerate(wanted):
            if i < len(passed):
                socks.append(_tuned(config, passed[i]))
                continue
            try:
                if family == socket.AF_UNIX:
                    assert isinstance(addr, str)
                    socks.append(bind_unix_socket(addr, backlog=config.backlog))
                    continue
                assert isinstance(addr, tuple)
                host, port = addr
                if reuse_port and port != 0:
                    _check_port_free(family, host, port)
                socks.append(_bind_tcp(config, host, port, reuse_port))
            except OSError as exc:
                exc.filename = format_address(family, addr)
                raise
    except BaseException:
        _discard([s for s in socks if s not in passed])  # systemd's stay as they are
        raise
    return socks


DEFER_ACCEPT_SECONDS = 1


def _bind_tcp(config: ServerConfig, host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = bind_socket(host, port, backlog=config.backlog, reuse_port=reuse_port)
    try:
        return _tuned(config, sock)
    except OSError:
        sock.close()
        raise


def _tuned(config: ServerConfig, sock: socket.socket) -> socket.socket:
    """--sndbuf on a TCP listener: accepted sockets inherit it (nginx listen sndbuf=);
    and TCP_DEFER_ACCEPT (nginx listen deferred): a connection is accepted once its
    first bytes are there, so the loop answers it at once (``Transport.read_first``).
    A client that sends nothing is accepted after DEFER_ACCEPT_SECONDS (the kernel's
    SYN-ACK retransmission; then the header timeout runs as for any other)."""
    if sock.family == socket.AF_UNIX:
        return sock
    if config.sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.sndbuf)
    if hasattr(socket, "TCP_DEFER_ACCEPT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)
    return sock


def _discard(socks: list[socket.socket]) -> None:
    # Undo a partial bind: close, and remove the Unix socket files just created.
    files = unix_files([s for s in socks if s.fileno() >= 0])
    close_listeners(socks)
    remove_unix_files(files)


def _check_port_free(family: int, host: str, port: int) -> None:
    # Linux refuses bind() on a port in LISTEN state to a socket without SO_REUSEPORT,
    # SO_REUSEADDR or not: that is the probe.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((host, port))


def close_listeners(socks: list[socket.socket]) -> None:
    """Close listening sockets (those still open; each once)."""
    seen: set[int] = set()
    for s in socks:
        if id(s) not in seen and s.fileno() >= 0:
            s.close()
        seen.add(id(s))


def unix_files(socks: list[socket.socket]) -> list[tuple[str, UnixSocketIdentity | None]]:
    """(path, identity) of the Unix sockets among ``socks``, taken right after binding, so
    ``remove_unix_files`` removes only files this process created."""
    return [
        (s.getsockname(), unix_socket_identity(s.getsockname()))
        for s in socks
        if s.family == socket.AF_UNIX
    ]


def remove_unix_files(files: list[tuple[str, UnixSocketIdentity | None]]) -> None:
    for path, ident in files:
        remove_unix_socket(path, ident)


def format_address(family: int, addr: Address) -> str:
    if family == socket.AF_UNIX:
        return f"unix:{addr}"
    assert isinstance(addr, tuple)
    host, port = addr
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def listener_url(sock: socket.socket, role: str = HTTP) -> str:
    """``http://HOST:PORT/`` (``https://`` for TLS) of a TCP listener, ``unix:/path`` of a
    Unix one."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}" + (" (TLS)" if role == HTTPS else "")
    host, port = name[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    url = f"{'https' if role == HTTPS else 'http'}://{host}:{port}/"
    return url + (" (redirects to https)" if role == REDIRECT else "")


def bind_slots(
    config: ServerConfig,
    addresses: list[tuple[int, Address]],
    n: int,
    reuse: bool,
    passed: Sequence[socket.socket] = (),
) -> list[list[socket.socket]]:
    """One list of listening sockets per worker slot. With SO_REUSEPORT each slot has its
    own TCP socket per address (port 0 is resolved by the first slot, the others join its
    port); Unix sockets, sockets systemd passed, and everything without SO_REUSEPORT,
    are shared by all slots."""
    first = bind_listeners(config, reuse, addresses, passed)
    slots = [first]
    try:
        for _ in range(1, n):
            if not reuse:
                slots.append(first)
                continue
            socks: list[socket.socket] = []
            slots.append(socks)
            for s in first:
                if s.family == socket.AF_UNIX or s in passed:
                    socks.append(s)
                else:
                    host, port = s.getsockname()[:2]
                    try:
                        socks.append(_bind_tcp(config, host, port, True))
                    except OSError as exc:
                        exc.filename = format_address(s.family, (host, port))
                        raise
    except BaseException:
        _discard([s for slot in slots for s in slot if s not in passed])
        raise
    return slots


def serving_line(config: ServerConfig, socks: list[socket.socket]) -> str:
    urls = [listener_url(s, role) for s, role in zip(socks, listen_roles(config), strict=True)]
    from c10k.server.sites import served

    line = f"c10k serving {served(config)} at {urls[0]}"
    if len(urls) > 1:
        line += f" (also {', '.join(urls[1:])})"
    return line
