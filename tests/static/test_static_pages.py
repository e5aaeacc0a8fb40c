"""StaticFiles ``fallback`` and ``error_pages`` (issue 16), called directly (no sockets).

The fallback answers only what does not exist: files, directories (with their index or
their redirect) win, and refusals (traversal, dotfiles, malformed, escaping symlinks)
keep their status. Error pages keep the original status and its other fields, never
loop, and fall back to the built-in page when the file is gone.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import pytest
from static_helpers import fields_of

from c10k.http.events import Request
from c10k.http.writers import Response, error_response
from c10k.region import FileRegion
from c10k.static import StaticFiles
from c10k.static.pages import error_pages_from, page_problem, parse_error_page

MakeRequest = Callable[..., Request]
APP = b"<h1>the app</h1>\n"
NOT_FOUND = b"sorry, not here\n"
LATER = 10.0  # a "now" past every entry's trust period (revalidate_seconds is 1)


@pytest.fixture
def site(docroot: pathlib.Path) -> pathlib.Path:
    (docroot / "app.html").write_bytes(APP)
    (docroot / "404.txt").write_bytes(NOT_FOUND)
    (docroot / "big404.html").write_bytes(b"B" * 50_000)
    (docroot / "escape").symlink_to(docroot.parent / "outside" / "passwd")
    return docroot


def get(files: StaticFiles, req: Request, now: float = 0.0) -> Response:
    return files.handle(req, now)


def read_body(response: Response) -> bytes:
    body = response.body
    if isinstance(body, FileRegion):
        try:
            return os.pread(body.fd, body.count, body.offset)
        finally:
            body.release()
    assert body is None or isinstance(body, bytes)
    return body or b""


# -- fallback --------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [b"/app/route", b"/no/such/deep/path", b"/nope.js", b"/x?q=1"])
def test_fallback_answers_a_missing_path_with_200(
    site: pathlib.Path, make_request: MakeRequest, target: bytes
) -> None:
    files = StaticFiles(site, fallback="/app.html")
    response = get(files, make_request(target))
    assert (response.status, response.body) == (200, APP)
    assert fields_of(response.head)[b"content-type"] == b"text/html; charset=utf-8"
    head = get(files, make_request(target, b"HEAD"))
    assert (head.status, head.body) == (200, None)
    assert fields_of(head.head)[b"content-length"] == b"%d" % len(APP)


def test_fallback_file_under_a_file_is_missing_too(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    # "/hello.txt/" and "/hello.txt/x" cannot exist (ENOTDIR): nginx try_files falls back.
    files = StaticFiles(site, fallback="/app.html")
    for target in (b"/hello.txt/", b"/hello.txt/x"):
        assert get(files, make_request(target)).body == APP


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        (b"/hello.txt", 200, b"hello, static world\n"),
        (b"/", 200, b"<h1>root index</h1>\n"),
        (b"/sub/", 200, b"<h1>sub index</h1>\n"),
        (b"/sub", 301, b""),
        (b"/emptydir/", 404, None),  # exists: its no-index page, as without a fallback
    ],
)
def test_fallback_existing_files_and_directories_win(
    site: pathlib.Path, make_request: MakeRequest, target: bytes, status: int, body: bytes | None
) -> None:
    files = StaticFiles(site, fallback="/app.html")
    response = get(files, make_request(target))
    assert response.status == status
    assert response.body != APP
    if body is not None:
        assert response.body == body


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"/../outside/passwd", 404),  # traversal
        (b"/.secret", 404),  # dotfile
        (b"/.hidden/file.txt", 404),
        (b"/%zz", 400),  # malformed
        (b"/escape", 403),  # a symlink out of the root
    ],
)
def test_fallback_never_turns_a_refusal_into_200(
    site: pathlib.Path, make_request: MakeRequest, target: bytes, status: int
) -> None:
    files = StaticFiles(site, fallback="/app.html")
    for method in (b"GET", b"HEAD"):
        response = get(files, make_request(target, method))
        assert response.status == status, (target, method)
        assert response.body != APP


def test_fallback_conditionals_and_ranges(site: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(site, fallback="/app.html")
    etag = fields_of(get(files, make_request(b"/route")).head)[b"etag"]
    assert etag == fields_of(get(files, make_request(b"/app.html")).head)[b"etag"]
    assert get(files, make_request(b"/other", headers={b"if-none-match": etag})).status == 304
    partial = get(files, make_request(b"/route", headers={b"range": b"bytes=4-6"}))
    assert (partial.status, partial.body) == (206, APP[4:7])
    assert fields_of(partial.head)[b"content-range"] == b"bytes 4-6/%d" % len(APP)
    assert get(files, make_request(b"/r", headers={b"if-match": b'"x"'})).status == 412


def test_fallback_large_file_is_a_region(site: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(site, fallback="/big.bin")
    response = get(files, make_request(b"/missing"))
    assert response.status == 200
    assert isinstance(response.body, FileRegion)
    assert read_body(response)[:10] == b"X00000000\n"


def test_fallback_gone_later_is_a_plain_404(site: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(site, fallback="/app.html")
    assert get(files, make_request(b"/route")).status == 200
    (site / "app.html").unlink()
    response = get(files, make_request(b"/route"), LATER)
    assert response.status == 404
    assert response.body == error_response(404).body
    (site / "app.html").write_bytes(APP)
    assert get(files, make_request(b"/route"), LATER + 10).body == APP


def test_fallback_replaced_by_a_directory_is_a_plain_404(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(site, fallback="/app.html")
    (site / "app.html").unlink()
    (site / "app.html").mkdir()
    assert get(files, make_request(b"/route")).status == 404


def test_fallback_fast_path_defers_a_miss_to_the_pool(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(site, fallback="/app.html")
    assert files.handle_fast(make_request(b"/route"), 0.0) is None  # needs a stat
    assert files.handle_fast(make_request(b"/.secret"), 0.0).status == 404  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["/../x.html", "/.app.html", "/%zz"])
def test_fallback_that_cannot_name_a_file_is_refused(site: pathlib.Path, bad: str) -> None:
    with pytest.raises(ValueError, match="cannot name a file below the root"):
        StaticFiles(site, fallback=bad)


def test_fallback_missing_file_is_accepted_by_the_handler(site: pathlib.Path) -> None:
    # c10k serve refuses it at start (settings); a worker restarted after the file went
    # away must still start.
    StaticFiles(site, fallback="/not-yet.html")


# -- error pages -------------------------------------------------------------------------------
def test_error_page_keeps_the_status_with_the_page(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(site, error_pages={404: "/404.txt"})
    response = get(files, make_request(b"/nothing"))
    assert (response.status, response.body) == (404, NOT_FOUND)
    fields = fields_of(response.head)
    assert fields[b"content-type"] == b"text/plain; charset=utf-8"
    assert fields[b"content-length"] == b"%d" % len(NOT_FOUND)
    assert b"etag" not in fields  # it would validate the page, not the missing resource
    assert b"last-modified" not in fields
    head = get(files, make_request(b"/nothing", b"HEAD"))
    assert (head.status, head.body, head.head) == (404, None, response.head)


@pytest.mark.parametrize(
    ("target", "status"),
    [(b"/.secret", 404), (b"/../x", 404), (b"/%zz", 400), (b"/escape", 403), (b"/emptydir/", 404)],
)
def test_error_page_for_every_error_of_its_status(
    site: pathlib.Path, make_request: MakeRequest, target: bytes, status: int
) -> None:
    files = StaticFiles(site, error_pages=error_pages_from(["400,403,404=/404.txt"]))
    response = get(files, make_request(target))
    assert (response.status, response.body) == (status, NOT_FOUND)


def test_error_page_only_for_its_statuses(site: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(site, error_pages={403: "/404.txt"})
    assert get(files, make_request(b"/nothing")).body == error_response(404).body
    assert get(files, make_request(b"/hello.txt")).body == b"hello, static world\n"


def test_error_page_carries_the_original_fields(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(site, error_pages=error_pages_from(["405,416=/404.txt"]))
    post = get(files, make_request(b"/hello.txt", b"POST"))
    assert (post.status, post.body) == (405, NOT_FOUND)
    assert fields_of(post.head)[b"allow"] == b"GET, HEAD"
    unsatisfiable = get(files, make_request(b"/hello.txt", headers={b"range": b"bytes=999-"}))
    assert (unsatisfiable.status, unsatisfiable.body) == (416, NOT_FOUND)
    assert fields_of(unsatisfiable.head)[b"content-range"] == b"bytes */20"


def test_error_page_is_rendered_once(site: pathlib.Path, make_request: MakeRequest) -> None:
    # Like a cached file: the same Response object, so the server's wire memo hits.
    files = StaticFiles(site, error_pages={404: "/404.txt"})
    first = get(files, make_request(b"/a"))
    assert get(files, make_request(b"/b")) is first


def test_error_page_gone_gives_the_built_in_page(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(site, error_pages={404: "/404.txt"})
    assert get(files, make_request(b"/a")).body == NOT_FOUND
    (site / "404.txt").unlink()
    response = get(files, make_request(b"/a"), LATER)
    assert (response.status, response.body) == (404, error_response(404).body)
    # the page's own 404 is the built-in one: no loop, no 500
    assert get(files, make_request(b"/404.txt"), LATER).status == 404


def test_error_page_that_is_a_directory_gives_the_built_in_page(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(site, error_pages={404: "/sub"})
    response = get(files, make_request(b"/a"))
    assert (response.status, response.body) == (404, error_response(404).body)


def test_error_page_edited_shows_after_revalidation(
    site: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(site, error_pages={404: "/404.txt"})
    assert get(files, make_request(b"/a")).body == NOT_FOUND
    (site / "404.txt").write_bytes(b"edited, and longer than before\n")
    assert get(files, make_request(b"/a"), LATER).body == b"edited, and longer than before\n"


def test_error_page_large_is_a_region(site: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(site, error_pages={404: "/big404.html"})
    response = get(files, make_request(b"/a"))
    assert response.status == 404
    assert isinstance(response.body, FileRegion)
    assert read_body(response) == b"B" * 50_000
    head = get(files, make_request(b"/a", b"HEAD"))
    assert (head.status, head.body) == (404, None)
    assert fields_of(head.head)[b"content-length"] == b"50000"


def test_error_page_fast_path(site: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(site, error_pages={404: "/404.txt"})
    # The page was read when the handler was built, but is trusted only from its first
    # revalidation (the caller's clock starts then): only the pool can answer.
    assert files.handle_fast(make_request(b"/.secret"), 0.0) is None
    assert get(files, make_request(b"/.secret")).body == NOT_FOUND
    # Now it is: a refusal is answered from memory, page included.
    fast = files.handle_fast(make_request(b"/.secret"), 0.0)
    assert fast is not None
    assert (fast.status, fast.body) == (404, NOT_FOUND)


def test_error_page_with_fallback_gone(site: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(site, fallback="/app.html", error_pages={404: "/404.txt"})
    assert get(files, make_request(b"/route")).body == APP
    (site / "app.html").unlink()
    response = get(files, make_request(b"/route"), LATER)
    assert (response.status, response.body) == (404, NOT_FOUND)


# -- the server's own errors (error_page: memory only) ------------------------------------------
class Deferred(list[Callable[[], None]]):
    """A stand-in for the disk pool: keeps what ``error_page`` asked to run."""

    def run(self) -> None:
        while self:
            self.pop(0)()


def test_error_page_for_the_servers_own_errors(site: pathlib.Path) -> None:
    files = StaticFiles(site, error_pages={400: "/404.txt", 503: "/404.txt"})
    pool = Deferred()
    bad = error_response(400, close=True)
    # Read when the handler was built: the first use has the page, and asks for one check.
    paged = files.error_page(bad, False, 0.0, pool.append)
    assert (paged.status, paged.body, paged.close) == (400, NOT_FOUND, True)
    assert fields_of(paged.head)[b"content-type"] == b"text/plain; charset=utf-8"
    assert len(pool) == 1
    assert files.error_page(bad, False, 0.0, pool.append) is paged  # one check at a time
    assert len(pool) == 1
    pool.run()
    assert files.error_page(bad, False, 0.5, pool.append) is paged
    assert pool == []  # trusted now: nothing to do
    head = files.error_page(bad, True, 0.5, pool.append)
    assert (head.status, head.body) == (400, None)
    assert fields_of(head.head)[b"content-length"] == b"%d" % len(NOT_FOUND)
    busy = error_response(503, [(b"Retry-After", b"1")])
    assert fields_of(files.error_page(busy, False, 0.5, pool.append).head)[b"retry-after"] == b"1"
    other = error_response(408, close=True)
    assert files.error_page(other, False, 0.5, pool.append) is other  # no page for 408
    # The handler's own 400 (a bad path) keeps the connection: the same head, not closing.
    kept = files.error_page(error_response(400), False, 0.5, pool.append)
    assert (kept.body, kept.close) == (NOT_FOUND, False)
    assert files.error_page(bad, False, 0.5, pool.append).close


def test_error_page_for_the_servers_errors_follows_edits(site: pathlib.Path) -> None:
    files = StaticFiles(site, error_pages={400: "/404.txt"})
    pool = Deferred()
    bad = error_response(400, close=True)
    files.error_page(bad, False, 0.0, pool.append)
    pool.run()
    (site / "404.txt").write_bytes(b"edited\n")
    # Due again: sent as last read while the pool re-reads it, then the edit.
    assert files.error_page(bad, False, LATER, pool.append).body == NOT_FOUND
    pool.run()
    assert files.error_page(bad, False, LATER, pool.append).body == b"edited\n"
    (site / "404.txt").unlink()
    files.error_page(bad, False, 2 * LATER, pool.append)
    pool.run()
    assert files.error_page(bad, False, 2 * LATER, pool.append) is bad  # gone: built-in


def test_error_page_for_the_servers_errors_never_reads_a_large_page(site: pathlib.Path) -> None:
    # A page past the cache's per-file bound is not in memory: the built-in one goes
    # rather than an open(2) on the loop.
    files = StaticFiles(site, error_pages={400: "/big404.html"}, cache_max_file_bytes=1024)
    bad = error_response(400, close=True)
    assert files.error_page(bad, False, 0.0, lambda fn: None) is bad


def test_error_page_missing_at_start_is_read_when_it_appears(site: pathlib.Path) -> None:
    (site / "404.txt").unlink()
    files = StaticFiles(site, error_pages={400: "/404.txt"})
    pool = Deferred()
    bad = error_response(400, close=True)
    assert files.error_page(bad, False, 0.0, pool.append) is bad
    pool.run()
    # Tried and not there: not tried again within the trust period (a flood of 400s).
    assert files.error_page(bad, False, 0.5, pool.append) is bad
    assert pool == []
    (site / "404.txt").write_bytes(NOT_FOUND)
    assert files.error_page(bad, False, LATER, pool.append) is bad
    pool.run()
    assert files.error_page(bad, False, LATER, pool.append).body == NOT_FOUND


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("404", "must be CODE=/PATH"),
        ("404=", "must be CODE=/PATH"),
        ("399=/x.html", "'399' is not a status from 400 to 599"),
        ("600=/x.html", "'600' is not a status"),
        ("40x=/x.html", "'40x' is not a status"),
        ("404,=/x.html", "'' is not a status"),
        ("404=x.html", "must be a URL path starting with '/'"),
        ("404=/x.html?a", "must be a plain path"),
    ],
)
def test_parse_error_page_refusals(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("?", r"\?")):
        parse_error_page(spec)


def test_page_problem(site: pathlib.Path) -> None:
    root = str(site)
    assert page_problem(root, "/404.txt", False) is None
    assert page_problem(root, "/nope.html", False) == f"/nope.html: no such file in {site}"
    assert page_problem(root, "/sub", False) == "/sub is not a regular file"
    assert page_problem(root, "/escape", False) == f"/escape leads out of the root {site}"
    assert "need --dotfiles" in (page_problem(root, "/.secret", False) or "")
    assert page_problem(root, "/.secret", True) is None
    assert page_problem(root, "/nope.html", False, exists=False) is None


def test_error_pages_refuse_a_status_outside_the_range(site: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="400-599"):
        StaticFiles(site, error_pages={302: "/404.txt"})
