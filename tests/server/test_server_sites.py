"""Virtual hosts without sockets (c10k.server.hosts, c10k.server.sites): names checked,
Hosts matched, [[site]] tables parsed and refused one line per problem, the Sites handler
and per-response pacing driven through a Session on a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_server_pacing import TimerLoop, wire
from test_server_session import FakeTransport, statuses

from c10k.http.events import Request
from c10k.http.writers import Pace, build_response
from c10k.server.config import ServerConfig
from c10k.server.hosts import HostTable, check_name, host_key
from c10k.server.pacing import Pacer
from c10k.server.policy import Policy
from c10k.server.session import IDLE, WRITING, Session
from c10k.server.settings import from_toml, resolve
from c10k.server.sites import Paced, per_site_settings


# -- names and Hosts -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("example.com", "example.com"),
        ("WWW.Example.COM.", "www.example.com"),
        ("*.example.com", "*.example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("under_score.example", "under_score.example"),
    ],
)
def test_check_name_accepts_and_normalises(name: str, normal: str) -> None:
    assert check_name(name) == (normal, None)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("*", "a wildcard is '*.' then a name"),
        ("a.*.com", "a wildcard is '*.' then a name"),
        ("*.*.com", "a wildcard is '*.' then a name"),
        ("*example.com", "a wildcard is '*.' then a name"),
        ("*.", "a wildcard is '*.' then a name"),
        ("example.com:8080", "names take no port"),
        ("[::1]:80", "names take no port"),
        ("[zz]", "not an IPv6 address"),
        ("a b.example", "not a host name"),
        ("a..example", "not a host name"),
        ("-a.example", "not a host name"),
        ("", "not a host name"),
        ("bücher.example", "'xn--bcher-kva.example'"),
        (5, "must be a string"),
    ],
)
def test_check_name_refuses_with_a_reason(name: Any, why: str) -> None:
    normal, problem = check_name(name)
    assert normal == ""
    assert problem is not None
    assert why in problem


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"A.Example.COM", "a.example.com"),
        (b"a.example.com.", "a.example.com"),
        (b"a.example.com:8080", "a.example.com"),
        (b"a.example.com.:8080", "a.example.com"),
        (b"[::1]:8080", "[::1]"),
        (b"[::1]", "[::1]"),
        (b"127.0.0.1:80", "127.0.0.1"),
        (b"", ""),
        (None, ""),
    ],
)
def test_host_key(raw: bytes | None, key: str) -> None:
    assert host_key(raw) == key


def test_host_table_exact_wins_then_the_longest_wildcard() -> None:
    names = ["a.example", "*.example", "*.b.example", "b.example"]
    table = HostTable(zip(names, ["exact", "short", "long", "b"], strict=True))
    assert table.match("a.example") == "exact"
    assert table.match("x.example") == "short"
    assert table.match("x.y.example") == "short"  # any depth, as nginx
    assert table.match("x.b.example") == "long"
    assert table.match("x.y.b.example") == "long"
    assert table.match("b.example") == "b"
    assert table.match("example") is None  # a wildcard never matches the bare name
    assert table.match(".example") is None
    assert table.match("other") is None
    assert table.match("") is None


# -- [[site]] tables -----------------------------------------------------------------------
def config_of(toml: dict[str, Any]) -> tuple[ServerConfig | None, list[str]]:
    given, problems = from_toml(toml, "c.toml")
    config, more = resolve(given)
    return config, problems + more


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, letter in ((a, "A"), (b, "B")):
        d.mkdir()
        (d / "x.txt").write_text(letter * 5)
        (d / "index.html").write_text(f"<p>{letter}</p>")
    return a, b


def test_sites_parse_with_inheritance(roots: tuple[Path, Path]) -> None:
    a, b = roots
    config, problems = config_of(
        {
            "autoindex": True,
            "add_header": ["X-Top: 1"],
            "site": [
                {"names": ["A.example.", "a.example"], "root": str(a)},
                {
                    "names": "b.example",
                    "directory": str(b),
                    "autoindex": False,
                    "cache-control": "max-age=60",
                    "fallback": "/index.html",
                    "limit_rate": "100k",
                    "limit_rate_paths": {"/big/": "10k"},
                },
            ],
        }
    )
    assert problems == []
    assert config is not None
    assert config.site == [
        {"names": ["a.example"], "root": str(a)},
        {
            "names": ["b.example"],
            "root": str(b),
            "autoindex": False,
            "cache_control_default": "max-age=60",
            "fallback": "/index.html",
            "limit_rate": 100 * 1024,
            "limit_rate_paths": {"/big/": "10k"},
        },
    ]


def test_sites_every_problem_at_once_one_line_each(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = roots
    (tmp_path / "file").write_text("x")
    _, problems = config_of(
        {
            "site": [
                {"root": str(a)},  # no names
                {"names": ["b.example"]},  # no root
                {"names": ["c.example"], "root": str(tmp_path / "file")},
                {"names": ["B.example", "a.*.com", "*"], "root": str(b)},
                {"names": ["d.example"], "root": str(b), "autoindx": True, "port": 80},
                {"names": ["e.example"], "root": str(b), "fallback": "/missing.html"},
                {"names": ["f.example"], "root": str(b), "limit_rate": "fast"},
            ]
        }
    )
    expected = [
        "c.toml: site 1: needs names",
        "c.toml: site 2: needs root",
        "c.toml: site 3: root = ",
        "'a.*.com': a wildcard is",
        "names: '*': a wildcard is",
        "site 4: name 'b.example' is already site 2's",
        "unknown setting 'autoindx' (did you mean 'autoindex'?)",
        "site 5: port is not a per-site setting; set it at the top level",
        "site 7: limit_rate = 'fast': must be a whole number of bytes",
    ]
    for want in expected:
        assert sum(want in p for p in problems) == 1, (want, problems)
    assert len(problems) == len(expected), problems
    # The pages are checked once the tables are well formed, against each site's root.
    _, problems = config_of(
        {
            "fallback": "/index.html",
            "site": [
                {"names": ["a.example"], "root": str(a)},
                {"names": ["e.example"], "root": str(b), "error_page": ["404=/404.html"]},
            ],
        }
    )
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"c.toml: site 2 ({b}): ")
    assert "/404.html" in problems[0]


@pytest.mark.parametrize(
    ("toml", "why"),
    [
        ({"site": {"names": ["a"]}}, "must be [[site]] tables"),
        ({"unknown_host": 500}, 'must be "first"'),
        ({"limit_rate_paths": {"downloads/": "1k"}}, "a path prefix must start with '/'"),
        ({"limit_rate_paths": {"/d/": "1.5k"}}, "'/d/' = '1.5k': must be a whole number"),
    ],
)
def test_sites_bad_shapes(toml: dict[str, Any], why: str) -> None:
    _, problems = config_of(toml)
    assert len(problems) == 1, problems
    assert why in problems[0]


def test_per_site_settings_are_what_the_static_handler_reads() -> None:
    keys = per_site_settings()
    for name in ("root", "autoindex", "cache_control", "fallback", "error_page", "add_header"):
        assert name in keys
    assert {"limit_rate", "limit_rate_after", "limit_rate_paths"} <= keys
    for name in ("port", "workers", "keepalive_timeout", "tls_cert", "access_log", "site"):
        assert name not in keys


# -- the Sites handler through a Session -----------------------------------------------------
def sites_policy(roots: tuple[Path, Path], **more: Any) -> Policy:
    a, b = roots
    sites = [
        {"names": ["a.example", "*.a.example"], "root": str(a)},
        {"names": ["b.example"], "root": str(b)},
    ]
    return Policy(ServerConfig(root=str(b), max_accept_wait=0, site=sites, **more))


def get(host: str, path: str = "/x.txt") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def bodies(wire_bytes: bytes) -> list[bytes]:
    return [part.split(b"\r\n\r\n", 1)[1][:5] for part in wire_bytes.split(b"HTTP/1.1 ")[1:]]


def test_sites_same_path_on_one_connection_never_shares_bytes(roots: tuple[Path, Path]) -> None:
    loop = TimerLoop()
    policy = sites_policy(roots)
    session = Session(policy, loop)
    t = FakeTransport(session)
    hosts = ["a.example", "b.example", "A.EXAMPLE.:80", "B.example", "x.y.a.example", "b.example"]
    for _ in range(3):  # the first from disk (the pool), then the cache and the wire memo
        for host in hosts:
            t.feed(get(host))
            loop.finish_jobs()
    letters = [b"AAAAA" if "a." in host.lower() else b"BBBBB" for host in hosts]
    assert bodies(t.wire) == letters * 3
    assert len(policy.wire_memo) >= 2  # both sites' responses are memoized, apart


def test_sites_unknown_host_first_site_or_421(roots: tuple[Path, Path]) -> None:
    loop = TimerLoop()
    session = Session(sites_policy(roots), loop)
    t = FakeTransport(session)
    t.feed(b"GET /x.txt HTTP/1.0\r\n\r\n")  # no Host at all: unknown too
    loop.finish_jobs()
    t2 = FakeTransport(Session(sites_policy(roots), loop))
    t2.feed(get("nope.example"))
    loop.finish_jobs()
    assert bodies(t.wire + t2.wire) == [b"AAAAA", b"AAAAA"]
    t3 = FakeTransport(Session(sites_policy(roots, unknown_host=421), loop))
    t3.feed(get("nope.example") + get("a.example") + get("a.example."))
    loop.finish_jobs()
    loop.finish_jobs()
    assert statuses(t3.wire) == [421, 200, 200]


def test_sites_absolute_form_authority_wins_over_host(roots: tuple[Path, Path]) -> None:
    loop = TimerLoop()
    t = FakeTransport(Session(sites_policy(roots), loop))
    t.feed(b"GET http://b.example/x.txt HTTP/1.1\r\nHost: a.example\r\n\r\n")
    loop.finish_jobs()
    t.feed(b"GET HTTP://A.Example:8080/x.txt HTTP/1.1\r\nHost: b.example\r\n\r\n")
    loop.finish_jobs()
    assert bodies(t.wire) == [b"BBBBB", b"AAAAA"]


# -- per-response pacing -------------------------------------------------------------------
def test_pacer_marks_change_the_rate_per_response() -> None:
    p = Pacer(0, 0)
    ready = p.take([b"a" * 1000, Pace(1000, 100), b"b" * 5000, Pace(0), b"c" * 3000], now=0.0)
    assert sum(len(i) for i in ready) == 1100  # unpaced, then the next one's allowance
    assert sum(len(i) for i in p.next(2.0)) == 2000
    # at 4.9 s the rest of the paced one is allowed, and the unpaced one goes with it
    assert sum(len(i) for i in p.next(4.9)) == (5000 - 100 - 2000) + 3000
    assert p.held == []


BIG = b"z" * 30_000


def paced_handler(req: Any, now: float) -> Any:
    resp = build_response(200, [], BIG)
    if req.target == b"/slow":
        resp.pace = Pace(10_000, 1_000)
    return resp


def test_session_paces_only_the_response_that_carries_a_pace() -> None:
    loop = TimerLoop()
    policy = Policy(ServerConfig(max_accept_wait=0), paced_handler)
    session = Session(policy, loop)
    t = FakeTransport(session)
    t.feed(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wire(t).endswith(BIG)  # at once
    assert session.state == IDLE
    t.feed(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    assert session.state == WRITING
    sent = len(wire(t))
    loop.advance(1.0)
    assert len(wire(t)) - sent == pytest.approx(10_000, abs=1_500)
    loop.advance(3.0)
    assert session.state == IDLE
    t.feed(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")  # unpaced again: all of it at once
    assert session.state == IDLE
    assert statuses(wire(t)) == [200, 200, 200]
    assert wire(t).endswith(BIG)


def test_paced_matches_decoded_paths_longest_prefix_first() -> None:
    class Inner:
        def handle(self, req: Any, now: float) -> Any:
            return build_response(200, [], b"x")

        handle_fast = handle

    slow, slower = Pace(100), Pace(10)
    paced = Paced(Inner(), None, {"/d/": slow, "/d/deep/": slower})

    def pace_of(target: bytes) -> Pace | None:
        return paced.handle(Request(b"GET", target, 1, {}, True), 0.0).pace

    assert pace_of(b"/d/x") is slow
    assert pace_of(b"/%64/x?q") is slow  # decoded: no way around it by escaping
    assert pace_of(b"/d/deep/x") is slower
    assert pace_of(b"/other") is None
    assert pace_of(b"/d") is None


def test_site_limit_rate_zero_lifts_the_servers_limit(roots: tuple[Path, Path]) -> None:
    a, b = roots
    for d in (a, b):
        (d / "page.bin").write_bytes(b"p" * 15_000)
    sites = [
        {"names": ["a.example"], "root": str(a), "limit_rate": 0},
        {"names": ["b.example"], "root": str(b)},  # inherits 10,000 B/s
    ]
    config = ServerConfig(max_accept_wait=0, limit_rate=10_000, site=sites)
    loop = TimerLoop()
    for host, paced in (("a.example", False), ("b.example", True), ("a.example", False)):
        session = Session(Policy(config), loop)
        t = FakeTransport(session)
        t.feed(get(host, "/page.bin"))
        loop.finish_jobs()
        assert (session.state == WRITING) is paced, host
        assert wire(t).endswith(b"p" * 15_000) is not paced, host
