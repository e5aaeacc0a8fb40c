"""Virtual hosts: ``[[site]]`` tables, and the handler that picks one per request.

Theory of operation
-------------------
A site is the server's static settings with some of them replaced: its ``names``, its
``root``, and any setting the static handler is built from (``per_site_settings``), plus
the pacing ones (``limit_rate``, ``limit_rate_after``, ``limit_rate_paths``). What a site
does not set it inherits from the top level. Which settings are per-site is not a list
kept by hand: it is every ``ServerConfig`` field that ``policy.static_files`` reads,
recorded once by building a handler from a recording config, so a new static setting is
per-site the day it is wired into ``static_files``. The rest (listeners, timeouts,
workers, TLS, logs) belong to the server and are refused inside a site, one line each.

Where the site is chosen: ``Sites.handle_fast`` / ``Sites.handle`` are the Policy's
handler; they read the request's Host (for an absolute-form target the parser has put
the target's authority there, RFC 9112 section 3.2.2), find its site (a memo of raw
Host bytes to site, bounded, then ``hosts.HostTable``) and call that site's own
``StaticFiles``. Each site has its own handler, cache and pre-rendered Responses, so the
engine's wire memo, keyed by Response identity, can never give one site's bytes for
another's request: the same path on two sites is two cache entries and two Response
objects. A Host that matches no site goes to the first site, or (``unknown_host = 421``
or ``404``) gets that status: 421 Misdirected Request (RFC 9110 section 15.5.20) tells a
client it reached a server that does not serve that name.

Pacing per site and per path (issue 15): a site (or the top level, without sites) whose
rate differs from the server's, or that has a ``limit_rate_paths`` table, answers
through ``Paced``, which gives each response a ``Pace`` (a copy of the Response: such
responses skip the wire memo anyway); the Session's pacer applies it. Paths are matched
on the decoded path (``/down%6Coads/`` is ``/downloads/``), the longest prefix winning.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

from c10k.http.events import Request
from c10k.http.writers import Pace, Response, error_response
from c10k.server.config import ServerConfig
from c10k.server.hosts import HostTable, check_name, host_key
from c10k.static.pages import error_pages_from, page_problem
from c10k.static.resolve import ResolveError, decode_path, split_target

PACING = ("limit_rate", "limit_rate_after", "limit_rate_paths")
UNKNOWN_HOST = ("first", 421, 404)
HOST_MEMO_MAX = 1024  # distinct Host values remembered; cleared when full (a flood of names)
PATH_MEMO_MAX = 4096


class _Recorder:
    # A ServerConfig stand-in that notes which fields are read (see per_site_settings).
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._config = ServerConfig(root=os.sep)

    def __getattr__(self, name: str) -> Any:
        self.seen.add(name)
        return getattr(self._config, name)


@functools.cache
def per_site_settings() -> frozenset[str]:
    """The settings a ``[[site]]`` may set: what ``static_files`` reads, and pacing."""
    from c10k.server.policy import static_files

    recorder = _Recorder()
    static_files(recorder)  # type: ignore[arg-type]
    return frozenset(recorder.seen | set(PACING))


# -- [[site]] tables in, checked ---------------------------------------------------------
def parse_sites(tables: Any, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``[[site]]`` tables as ``{"names": [...], setting: typed value, ...}``, or every
    problem (one line each): a site without names or root, a root that is not a
    directory, a bad or repeated name, an unknown key, a key that is not per site."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        return [], [f'{where}: must be [[site]] tables with names = [...] and root = "DIR"']
    sites, problems = [], []
    owner: dict[str, int] = {}
    for i, table in enumerate(tables, 1):
        label = f"{where} {i}"
        site, more = _one_site(table, label)
        problems += more
        for name in site.get("names", []):
            if owner.get(name, i) != i:  # (twice in one site is harmless)
                problems.append(f"{label}: name {name!r} is already site {owner[name]}'s")
            owner.setdefault(name, i)
        sites.append(site)
    return (sites, []) if not problems else ([], problems)


def _one_site(table: dict[str, Any], label: str) -> tuple[dict[str, Any], list[str]]:
    from c10k.server.settings import Given, describe, toml_keys, typed, unknown_key

    site: dict[str, Any] = {}
    problems: list[str] = []
    names = table.get("names")
    if isinstance(names, str):
        names = [names]
    if not names or not isinstance(names, list):
        problems.append(f'{label}: needs names = ["example.com", "*.example.com", ...]')
    else:
        checked = [check_name(n) for n in names]
        problems += [f"{label}: names: {why}" for _, why in checked if why]
        site["names"] = list(dict.fromkeys(n for n, why in checked if not why))
    if "root" not in table and "directory" not in table:
        problems.append(f'{label}: needs root = "DIR", the directory it serves')
    keys = toml_keys()
    allowed = per_site_settings()
    for key, value in table.items():
        name = key.replace("-", "_")
        if name == "names":
            continue
        if name == "cache_control" and isinstance(value, str):
            name = "cache_control_default"  # --cache-control's name, as at the top level
        elif name in keys:
            name = keys[name].name
        else:
            near = sorted({*allowed, "names"})
            problems.append(unknown_key(key, label, near))
            continue
        if name not in allowed:
            problems.append(f"{label}: {key} is not a per-site setting; set it at the top level")
            continue
        given = Given(name, value, f"{label}: {key}")
        typed_value, problem = typed(given)
        if problem is not None:
            problems.append(describe(given, problem))
        else:
            site[name] = typed_value
    return site, problems


def site_configs(config: ServerConfig) -> list[ServerConfig]:
    """Each site's whole configuration: the top level with the site's own settings."""
    return [
        dataclasses.replace(config, site=[], **{k: v for k, v in s.items() if k != "names"})
        for s in config.site
    ]


def site_problems(config: ServerConfig, where: str) -> list[str]:
    """Problems only the whole site shows: its fallback and error pages (its own or
    inherited) must be files below its root now, as the top level's are."""
    problems = []
    for i, site in enumerate(site_configs(config), 1):
        paths = [site.fallback] if site.fallback else []
        paths += sorted(set(error_pages_from(site.error_page).values()))
        for path in paths:
            problem = page_problem(site.root, path, site.serve_dotfiles)
            if problem:
                problems.append(f"{where} {i} ({site.root}): {problem}")
    return problems


def served(config: ServerConfig) -> str:
    """What the banner says is served: the root, or each site's first name and root."""
    if not config.site:
        return os.path.abspath(config.root)
    each = [f"{s['names'][0]} {os.path.abspath(s['root'])}" for s in config.site]
    return f"{len(each)} sites ({', '.join(each)})"


def check_unknown_host(value: Any) -> str | None:
    if value in UNKNOWN_HOST or (isinstance(value, str) and value in ("421", "404")):
        return None
    return 'must be "first" (the first [[site]] answers), 421 or 404'


def rate_paths(table: dict[str, Any]) -> str | None:
    """``"/prefix/" = "100k"`` entries (limit_rate_paths)."""
    from c10k.server.settings import parse_size
    from c10k.static.headers import check_prefix

    for prefix, rate in table.items():
        try:
            check_prefix(prefix)
        except ValueError as exc:
            return str(exc)
        if isinstance(rate, str):
            value, problem = parse_size(rate)
        elif isinstance(rate, int) and not isinstance(rate, bool):
            value, problem = rate, None
        else:
            value, problem = None, "must be bytes a second, e.g. 100k"
        if problem or value is None or value < 0:
            return f"{prefix!r} = {rate!r}: {problem or 'must be at least 0'}"
    return None


# -- the handlers --------------------------------------------------------------------------
Handle = Callable[[Request, float], Response]
HandleFast = Callable[[Request, float], Response | None]
Defer = Callable[[Callable[[], None]], object]


class Paced:
    """A handler whose responses carry a ``Pace``: ``pace`` for every path, or the
    rate of the longest ``paths`` prefix that matches (see the module comment)."""

    def __init__(self, handler: Any, pace: Pace | None, paths: dict[str, Pace]) -> None:
        self._handle: Handle = handler.handle
        self._handle_fast: HandleFast = handler.handle_fast
        self._inner = handler
        self._pace = pace
        self._paths = sorted(paths.items(), key=lambda p: -len(p[0]))  # longest first
        self._memo: dict[bytes, Pace | None] = {}

    def handle(self, req: Request, now: float) -> Response:
        return self._with_pace(req, self._handle(req, now))

    def handle_fast(self, req: Request, now: float) -> Response | None:
        resp = self._handle_fast(req, now)
        return None if resp is None else self._with_pace(req, resp)

    # The server's own errors are not paced: they are the handler's pages as they are.
    def error_page(self, *args: Any) -> Response:
        resp: Response = self._inner.error_page(*args)
        return resp

    def page_for(self, *args: Any) -> Response | None:
        resp: Response | None = self._inner.page_for(*args)
        return resp

    def _with_pace(self, req: Request, resp: Response) -> Response:
        pace = self._pace_of(req.target) if self._paths else self._pace
        if pace is None:
            return resp
        return Response(resp.status, resp.head, resp.body, resp.close, pace)

    def _pace_of(self, target: bytes) -> Pace | None:
        memo = self._memo
        try:
            return memo[target]
        except KeyError:
            pass
        raw_path = split_target(target)[0]
        try:
            segments = decode_path(raw_path, True)
        except ResolveError:
            return self._pace  # the handler refuses it anyway
        path = "/" + "/".join(segments) + ("/" if segments and raw_path.endswith(b"/") else "")
        pace = next((p for prefix, p in self._paths if path.startswith(prefix)), self._pace)
        if len(memo) >= PATH_MEMO_MAX:
            memo.clear()
        memo[target] = pace
        return pace


class _Refuse:
    # The handler for Hosts that match no site under unknown_host = 421 or 404: that
    # status, with the first site's error page for it if it has one (nginx's
    # default_server answers such a request, with its error_page).
    def __init__(self, status: int, first: Any) -> None:
        self.response = error_response(status)
        self.head = Response(status, self.response.head, None)
        self._first = first
        self.error_page = first.error_page

    def handle(self, req: Request, now: float) -> Response:
        head = req.method == b"HEAD"
        resp: Response | None = self._first.page_for(
            self.head if head else self.response, head, now, False
        )
        assert resp is not None  # the slow path always answers
        return resp

    def handle_fast(self, req: Request, now: float) -> Response | None:
        head = req.method == b"HEAD"
        resp: Response | None = self._first.page_for(
            self.head if head else self.response, head, now, True
        )
        return resp


class Sites:
    """The handler of a server with ``[[site]]`` tables: picks the site by Host, then
    answers with that site's handler (see the module comment)."""

    def __init__(self, handlers: list[tuple[list[str], Any]], unknown: Any) -> None:
        self._table: HostTable[Any] = HostTable(
            (name, handler) for names, handler in handlers for name in names
        )
        self._unknown = unknown  # the first site's handler, or a _Refuse
        self._first = handlers[0][1]
        self._memo: dict[bytes | None, Any] = {}

    def site(self, raw_host: bytes | None) -> Any:
        """The handler for a raw Host value (None: the request had none)."""
        try:
            return self._memo[raw_host]
        except KeyError:
            pass
        handler = self._table.match(host_key(raw_host))
        if handler is None:
            handler = self._unknown
        memo = self._memo
        if len(memo) >= HOST_MEMO_MAX:
            memo.clear()
        memo[raw_host] = handler
        return handler

    def handle(self, req: Request, now: float) -> Response:
        handler = self.site(req.headers.get(b"host"))
        response: Response = handler.handle(req, now)
        return response

    def handle_fast(self, req: Request, now: float) -> Response | None:
        handler = self.site(req.headers.get(b"host"))
        response: Response | None = handler.handle_fast(req, now)
        return response

    def error_page(
        self, response: Response, head: bool, now: float, defer: Defer, req: Request | None = None
    ) -> Response:
        """The server's own error with its site's page: the Host's site, or the first
        site's when there is no request to tell (a malformed head's 400, a 408)."""
        handler = self._first if req is None else self.site(req.headers.get(b"host"))
        paged: Response = handler.error_page(response, head, now, defer)
        return paged


def server_pace(config: ServerConfig) -> Pace:
    """The server's own pace (--limit-rate), for responses that carry none."""
    return Pace(config.limit_rate, config.limit_rate_after)


def _paced(config: ServerConfig, server: ServerConfig, files: Any) -> Any:
    # ``files`` under ``config``'s pacing, where it is not the server's (``server``).
    own = server_pace(config)
    same = (own.rate, own.after) == (server.limit_rate, server.limit_rate_after)
    if same and not config.limit_rate_paths:
        return files
    paths = {}
    for prefix, rate in config.limit_rate_paths.items():
        from c10k.server.settings import parse_size

        value = parse_size(rate)[0] if isinstance(rate, str) else rate
        paths[prefix] = Pace(value or 0, config.limit_rate_after)
    return Paced(files, None if same else own, paths)


def build_handler(config: ServerConfig) -> Any:
    """The default handler: ``static_files(config)``, or with ``[[site]]`` tables a
    ``Sites`` of one per site; paced per site and path where that differs."""
    from c10k.server.policy import static_files

    if not config.site:
        return _paced(config, config, static_files(config))
    handlers = [
        (site["names"], _paced(sc, config, static_files(sc)))
        for site, sc in zip(config.site, site_configs(config), strict=True)
    ]
    unknown = str(config.unknown_host)
    fallback = handlers[0][1] if unknown == "first" else _Refuse(int(unknown), handlers[0][1])
    return Sites(handlers, fallback)
