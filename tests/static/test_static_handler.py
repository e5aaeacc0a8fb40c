"""StaticFiles.handle end to end, against a real docroot, without sockets."""

from __future__ import annotations

import errno
import os
import pathlib
import re
import stat
from collections.abc import Callable

import pytest

from c10k.http.events import Request
from c10k.http.writers import Response, http_date
from c10k.region import FileRegion
from c10k.static import StaticFiles

MakeRequest = Callable[..., Request]


def fields(response: Response) -> dict[bytes, bytes]:
    """Header fields of a response head (names lower-cased); asserts no duplicates."""
    lines = response.head.split(b"\r\n")
    assert lines[-1] == b"", "head must end in CRLF"
    out: dict[bytes, bytes] = {}
    for line in lines[1:-1]:
        name, _, value = line.partition(b": ")
        assert name.lower() not in out, f"duplicate field {name!r}"
        out[name.lower()] = value
    return out


def region_bytes(region: FileRegion) -> bytes:
    return os.pread(region.fd, region.count, region.offset)


# -- GET and HEAD ------------------------------------------------------------------------


def test_handler_get_small_file(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(docroot)
    response = files.handle(make_request(b"/hello.txt"), now=0.0)
    st = os.stat(docroot / "hello.txt")
    content = (docroot / "hello.txt").read_bytes()

    assert response.status == 200
    assert response.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.body == content
    f = fields(response)
    assert f[b"content-type"] == b"text/plain; charset=utf-8"
    assert f[b"content-length"] == b"%d" % len(content)
    assert f[b"last-modified"] == http_date(st.st_mtime)
    assert f[b"etag"] == b'"%x-%x"' % (st.st_mtime_ns, st.st_size)
    assert f[b"accept-ranges"] == b"bytes"
    # The server adds these.
    for absent in (b"date", b"connection"):
        assert absent not in f


def test_handler_head_small_file_same_head_no_body(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot)
    get = files.handle(make_request(b"/hello.txt"), now=0.0)
    head = files.handle(make_request(b"/hello.txt", b"HEAD"), now=0.0)
    assert head.status == 200
    assert head.body is None
    assert head.head == get.head
    assert fields(head)[b"content-length"] == b"%d" % (docroot / "hello.txt").stat().st_size


@pytest.mark.parametrize("target", [b"/hello.txt", b"/hello.txt?q=1", b"/"])
def test_handler_head_first_has_no_body(
    docroot: pathlib.Path, make_request: MakeRequest, target: bytes
) -> None:
    # HEAD on a miss, and HEAD on the slow path of a hit (query string), not only on the
    # hot path after a GET primed the cache.
    files = StaticFiles(docroot)
    first = files.handle(make_request(target, b"HEAD"), now=0.0)
    second = files.handle(make_request(target, b"HEAD"), now=0.0)
    get = files.handle(make_request(target), now=0.0)
    for head in (first, second):
        assert head.status == 200
        assert head.body is None
        assert head.head == get.head
    assert isinstance(get.body, bytes)
    assert get.body


def test_handler_get_large_file_is_file_region(
    docroot: pathlib.Path, make_request: MakeRequest, fd_count: Callable[[], int]
) -> None:
    files = StaticFiles(docroot)
    before = fd_count()
    response = files.handle(make_request(b"/big.bin"), now=0.0)
    try:
        assert response.status == 200
        region = response.body
        assert isinstance(region, FileRegion)
        assert (region.offset, region.count) == (0, 100_000)
        assert region_bytes(region) == (docroot / "big.bin").read_bytes()
        assert fields(response)[b"content-length"] == b"100000"
        assert fields(response)[b"content-type"] == b"application/octet-stream"
        assert fd_count() == before + 1
        # The fd must not leak into children (O_CLOEXEC).
        assert not os.get_inheritable(region.fd)
    finally:
        if isinstance(response.body, FileRegion):
            response.body.release()
    assert fd_count() == before


def test_handler_large_file_gets_share_one_fd_closed_by_the_last(
    docroot: pathlib.Path, make_request: MakeRequest, fd_count: Callable[[], int]
) -> None:
    """Each GET gets its own region (its own offset and count) over one shared fd
    (static/sharedfd.py), which the last release leaves idle (fd_count closes those)."""
    files = StaticFiles(docroot)
    before = fd_count()
    first = files.handle(make_request(b"/big.bin"), now=0.0)
    second = files.handle(make_request(b"/big.bin"), now=0.1)  # cached resolution
    assert isinstance(first.body, FileRegion)
    assert isinstance(second.body, FileRegion)
    assert first is not second
    assert first.body is not second.body
    assert first.body.fd == second.body.fd
    assert fd_count() == before + 1
    assert first.head == second.head
    assert region_bytes(second.body) == region_bytes(first.body)
    first.body.release()
    assert fd_count() == before + 1  # the second response still sends from it
    assert region_bytes(second.body) == region_bytes(first.body)
    second.body.release()
    assert fd_count() == before
    third = files.handle(make_request(b"/big.bin"), now=0.2)  # opens it again
    assert isinstance(third.body, FileRegion)
    assert region_bytes(third.body) == (docroot / "big.bin").read_bytes()
    third.body.release()
    assert fd_count() == before


def test_handler_head_large_file_leaves_no_fd(
    docroot: pathlib.Path, make_request: MakeRequest, fd_count: Callable[[], int]
) -> None:
    files = StaticFiles(docroot)
    before = fd_count()
    head = files.handle(make_request(b"/big.bin", b"HEAD"), now=0.0)  # miss: opens, closes
    assert fd_count() == before
    assert head.status == 200
    assert head.body is None
    assert fields(head)[b"content-length"] == b"100000"
    again = files.handle(make_request(b"/big.bin", b"HEAD"), now=0.1)  # hit
    assert again is head
    assert fd_count() == before


def test_handler_cached_head_of_large_file_does_not_open(
    docroot: pathlib.Path, make_request: MakeRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = StaticFiles(docroot)
    first = files.handle(make_request(b"/big.bin", b"HEAD"), now=0.0)

    def no_open(*args: object, **kwargs: object) -> int:
        raise AssertionError("HEAD on a cached entry must not open the file")

    monkeypatch.setattr(os, "open", no_open)
    assert files.handle(make_request(b"/big.bin", b"HEAD"), now=0.5) is first


def test_handler_percent_encoded_names(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    (docroot / "café au lait.txt").write_bytes(b"coffee\n")
    files = StaticFiles(docroot)
    response = files.handle(make_request(b"/caf%C3%A9%20au%20lait.txt"), now=0.0)
    assert response.status == 200
    assert response.body == b"coffee\n"


def test_handler_percent_decodes_only_once(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    (docroot / "%2e%2e").write_bytes(b"literal name\n")
    files = StaticFiles(docroot)
    response = files.handle(make_request(b"/%252e%252e"), now=0.0)
    assert response.status == 200
    assert response.body == b"literal name\n"


def test_handler_query_and_fragment_ignored(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot)
    response = files.handle(make_request(b"/hello.txt?v=123#top"), now=0.0)
    assert response.status == 200
    assert response.body == (docroot / "hello.txt").read_bytes()


# -- directories --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [(b"/", b"<h1>root index</h1>\n"), (b"/sub/", b"<h1>sub index</h1>\n")],
)
def test_handler_directory_serves_index(
    docroot: pathlib.Path, make_request: MakeRequest, target: bytes, expected: bytes
) -> None:
    response = StaticFiles(docroot).handle(make_request(target), now=0.0)
    assert response.status == 200
    assert response.body == expected
    assert fields(response)[b"content-type"] == b"text/html; charset=utf-8"


def test_handler_custom_index_name(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    (docroot / "sub" / "default.htm").write_bytes(b"custom\n")
    response = StaticFiles(docroot, index="default.htm").handle(make_request(b"/sub/"), now=0.0)
    assert response.body == b"custom\n"


def test_handler_directory_without_index_is_404(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    response = StaticFiles(docroot).handle(make_request(b"/emptydir/"), now=0.0)
    assert response.status == 404


def test_handler_index_that_is_a_directory_is_404(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    (docroot / "emptydir" / "index.html").mkdir()
    response = StaticFiles(docroot).handle(make_request(b"/emptydir/"), now=0.0)
    assert response.status == 404


@pytest.mark.parametrize(
    ("target", "location"),
    [
        (b"/sub", b"/sub/"),
        (b"/sub?x=1&y=2", b"/sub/?x=1&y=2"),
        (b"/emptydir", b"/emptydir/"),
        (b"/sub/.", b"/sub/"),
        (b"/sub/..", b"/"),
        # Never a protocol-relative Location ("//evil.example/"): built from segments.
        (b"//sub", b"/sub/"),
    ],
)
def test_handler_directory_without_slash_redirects(
    docroot: pathlib.Path, make_request: MakeRequest, target: bytes, location: bytes
) -> None:
    response = StaticFiles(docroot).handle(make_request(target), now=0.0)
    assert response.status == 301
    f = fields(response)
    assert f[b"location"] == location
    assert f[b"content-length"] == b"0"
    assert response.body == b""


def test_handler_redirect_location_is_percent_encoded(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    (docroot / "a dir").mkdir()
    response = StaticFiles(docroot).handle(make_request(b"/a%20dir"), now=0.0)
    assert response.status == 301
    assert fields(response)[b"location"] == b"/a%20dir/"


def test_handler_head_redirect_has_no_body(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    response = StaticFiles(docroot).handle(make_request(b"/sub", b"HEAD"), now=0.0)
    assert response.status == 301
    assert response.body is None


def test_handler_file_with_trailing_slash_is_404(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    response = StaticFiles(docroot).handle(make_request(b"/hello.txt/"), now=0.0)
    assert response.status == 404


# -- errors -------------------------------------------------------------------------------


def test_handler_missing_is_404_without_path(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    response = StaticFiles(docroot).handle(make_request(b"/nope/missing.txt"), now=0.0)
    assert response.status == 404
    assert isinstance(response.body, bytes)
    assert b"404 Not Found" in response.body
    leak = os.fsencode(docroot)
    assert leak not in response.head
    assert leak not in response.body
    assert b"missing.txt" not in response.body


def test_handler_head_error_has_no_body(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(docroot)
    get = files.handle(make_request(b"/missing"), now=0.0)
    head = files.handle(make_request(b"/missing", b"HEAD"), now=0.0)
    assert head.status == 404
    assert head.body is None
    assert head.head == get.head


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get"])
def test_handler_other_methods_405(
    docroot: pathlib.Path, make_request: MakeRequest, method: bytes
) -> None:
    response = StaticFiles(docroot).handle(make_request(b"/hello.txt", method), now=0.0)
    assert response.status == 405
    assert fields(response)[b"allow"] == b"GET, HEAD"


def test_handler_other_method_405_even_when_cached(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot)
    files.handle(make_request(b"/hello.txt"), now=0.0)
    assert files.handle(make_request(b"/hello.txt", b"POST"), now=0.0).status == 405


@pytest.mark.parametrize(
    "target", [b"/.secret", b"/.hidden/file.txt", b"/.hidden/", b"/sub/../.secret"]
)
def test_handler_dotfiles_404(
    docroot: pathlib.Path, make_request: MakeRequest, target: bytes
) -> None:
    assert StaticFiles(docroot).handle(make_request(target), now=0.0).status == 404


def test_handler_dotfiles_served_when_enabled(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot, serve_dotfiles=True)
    assert files.handle(make_request(b"/.secret"), now=0.0).body == b"dotfile\n"
    assert files.handle(make_request(b"/.hidden/file.txt"), now=0.0).status == 200


TRAVERSAL = [
    (b"/../etc/passwd", 404),
    (b"/../outside/passwd", 404),
    (b"/%2e%2e/", 404),
    (b"/%2e%2e/outside/passwd", 404),
    (b"/%2E%2E/outside/passwd", 404),
    (b"/a/%2e%2e/%2e%2e/x", 404),
    (b"/sub/../../outside/passwd", 404),
    (b"/..%2f..%2fetc/passwd", 404),
    (b"/..%2foutside%2fpasswd", 404),
    (b"/%252e%252e/outside/passwd", 404),
    (b"/%00", 404),
    (b"/hello.txt%00.html", 404),
    (b"/a%5c..%5c", 404),
    (b"/..%5coutside%5cpasswd", 404),
    (b"/..\\outside\\passwd", 404),
    (b"/%c0%ae%c0%ae/outside/passwd", 400),  # overlong UTF-8 for "..": invalid UTF-8
    (b"/%c0%af", 400),
    (b"/%e0%80%ae", 400),
    (b"//etc/passwd", 404),
    (b"/%zz", 400),
    (b"/%4", 400),
    (b"/%", 400),
    (b"/%ff", 400),
    (b"outside/passwd", 400),  # not origin-form
]


@pytest.mark.parametrize(("target", "status"), TRAVERSAL, ids=[t.decode() for t, _ in TRAVERSAL])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_handler_traversal_refused(
    docroot: pathlib.Path,
    make_request: MakeRequest,
    secret: bytes,
    target: bytes,
    status: int,
    method: bytes,
) -> None:
    response = StaticFiles(docroot).handle(make_request(target, method), now=0.0)
    assert response.status == status
    assert not isinstance(response.body, FileRegion)
    assert response.body is None or secret not in response.body


def test_handler_symlink_out_of_root_403(
    docroot: pathlib.Path, make_request: MakeRequest, secret: bytes
) -> None:
    outside = docroot.parent / "outside"
    (docroot / "passwd-link").symlink_to(outside / "passwd")
    (docroot / "outdir").symlink_to(outside, target_is_directory=True)
    files = StaticFiles(docroot)
    for target in (b"/passwd-link", b"/outdir/passwd", b"/outdir/"):
        response = files.handle(make_request(target), now=0.0)
        assert response.status == 403, target
        assert secret not in (response.body or b"")


def test_handler_symlink_inside_root_200(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    (docroot / "alias.txt").symlink_to(docroot / "hello.txt")
    (docroot / "subalias").symlink_to("sub", target_is_directory=True)
    files = StaticFiles(docroot)
    response = files.handle(make_request(b"/alias.txt"), now=0.0)
    assert response.status == 200
    assert response.body == (docroot / "hello.txt").read_bytes()
    assert files.handle(make_request(b"/subalias/page.html"), now=0.0).body == b"<p>page</p>\n"


def test_handler_root_given_through_symlink(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    link = docroot.parent / "www-link"
    link.symlink_to(docroot, target_is_directory=True)
    files = StaticFiles(link)
    assert files.root == os.path.realpath(docroot)
    assert files.handle(make_request(b"/hello.txt"), now=0.0).status == 200


def test_handler_fifo_404_without_blocking(
    docroot: pathlib.Path, make_request: MakeRequest, fd_count: Callable[[], int]
) -> None:
    # If the FIFO were opened for reading without O_NONBLOCK this would hang until
    # faulthandler_timeout; no writer ever appears.
    os.mkfifo(docroot / "pipe")
    files = StaticFiles(docroot)
    before = fd_count()
    for method in (b"GET", b"HEAD"):
        assert files.handle(make_request(b"/pipe", method), now=0.0).status == 404
    assert fd_count() == before


def test_handler_fifo_never_opened(
    docroot: pathlib.Path, make_request: MakeRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.mkfifo(docroot / "pipe")
    opened: list[object] = []
    real_open = os.open

    def spy_open(path: object, *args: object, **kwargs: object) -> int:
        opened.append(path)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy_open)
    assert StaticFiles(docroot).handle(make_request(b"/pipe"), now=0.0).status == 404
    assert opened == []


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="runs as root: chmod 000 does not stop root from reading (see the errno test)",
)
def test_handler_unreadable_file_403(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    target = docroot / "locked.txt"
    target.write_bytes(b"no\n")
    target.chmod(0)
    try:
        assert StaticFiles(docroot).handle(make_request(b"/locked.txt"), now=0.0).status == 403
    finally:
        target.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (errno.EACCES, 403),
        (errno.EPERM, 403),
        (errno.ENOENT, 404),
        (errno.ELOOP, 404),
        (errno.EMFILE, 503),
        (errno.EIO, 500),
    ],
)
def test_handler_open_errno_maps_to_status(
    docroot: pathlib.Path,
    make_request: MakeRequest,
    monkeypatch: pytest.MonkeyPatch,
    err: int,
    status: int,
) -> None:
    # Works as root too: the permission failure is injected at open(2).
    locked = os.path.realpath(docroot / "hello.txt")
    real_open = os.open

    def failing_open(path: str, *args: object, **kwargs: object) -> int:
        if os.fspath(path) == locked:
            raise OSError(err, os.strerror(err), path)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)
    response = StaticFiles(docroot).handle(make_request(b"/hello.txt"), now=0.0)
    assert response.status == status
    assert os.fsencode(locked) not in (response.body or b"")


def test_handler_rejects_bad_construction(docroot: pathlib.Path) -> None:
    with pytest.raises(NotADirectoryError):
        StaticFiles(docroot / "hello.txt")
    with pytest.raises(NotADirectoryError):
        StaticFiles(docroot / "does-not-exist")
    for index in ("", ".", "..", "a/b", "a\\b"):
        with pytest.raises(ValueError, match="index"):
            StaticFiles(docroot, index=index)
    with pytest.raises(ValueError, match=">= 0"):
        StaticFiles(docroot, revalidate_seconds=-1)


# -- MIME types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("page.html", b"text/html; charset=utf-8"),
        ("PAGE.HTML", b"text/html; charset=utf-8"),
        ("style.css", b"text/css; charset=utf-8"),
        ("app.js", b"text/javascript; charset=utf-8"),
        ("mod.mjs", b"text/javascript; charset=utf-8"),
        ("data.json", b"application/json; charset=utf-8"),
        ("logo.svg", b"image/svg+xml; charset=utf-8"),
        ("pic.png", b"image/png"),
        ("pic.jpeg", b"image/jpeg"),
        ("font.woff2", b"font/woff2"),
        ("code.wasm", b"application/wasm"),
        ("notes.txt", b"text/plain; charset=utf-8"),
        ("backup.tar.gz", b"application/gzip"),
        ("doc.pdf", b"application/pdf"),
        ("blob.unknownext", b"application/octet-stream"),
        ("Makefile", b"application/octet-stream"),
    ],
)
def test_handler_content_type(
    docroot: pathlib.Path, make_request: MakeRequest, name: str, content_type: bytes
) -> None:
    (docroot / name).write_bytes(b"x")
    response = StaticFiles(docroot).handle(make_request(b"/" + name.encode()), now=0.0)
    assert response.status == 200
    assert fields(response)[b"content-type"] == content_type


# -- conditional requests -----------------------------------------------------------------


def _validators(
    files: StaticFiles, make_request: MakeRequest, target: bytes
) -> tuple[bytes, bytes]:
    response = files.handle(make_request(target), now=0.0)
    if isinstance(response.body, FileRegion):
        response.body.release()
    f = fields(response)
    return f[b"etag"], f[b"last-modified"]


@pytest.mark.parametrize(
    "make_inm",
    [
        lambda etag: etag,
        lambda etag: b"W/" + etag,
        lambda etag: b'"nope", ' + etag + b', W/"other"',
        lambda etag: b"*",
    ],
    ids=["exact", "weak", "list", "star"],
)
@pytest.mark.parametrize("target", [b"/hello.txt", b"/big.bin"])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_handler_if_none_match_304(
    docroot: pathlib.Path,
    make_request: MakeRequest,
    fd_count: Callable[[], int],
    make_inm: Callable[[bytes], bytes],
    target: bytes,
    method: bytes,
) -> None:
    files = StaticFiles(docroot)
    etag, last_modified = _validators(files, make_request, target)
    before = fd_count()
    request = make_request(target, method, {b"if-none-match": make_inm(etag)})
    response = files.handle(request, now=0.0)
    assert response.status == 304
    assert response.body is None
    f = fields(response)
    assert f[b"etag"] == etag
    # RFC 9110 section 15.4.5: no representation metadata beyond the validators.
    assert b"last-modified" not in f
    assert last_modified
    assert b"content-length" not in f
    assert fd_count() == before


def test_handler_if_none_match_mismatch_200(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot)
    request = make_request(b"/hello.txt", headers={b"if-none-match": b'"0-0", W/"1-1"'})
    response = files.handle(request, now=0.0)
    assert response.status == 200
    assert response.body == (docroot / "hello.txt").read_bytes()


def test_handler_if_modified_since(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(docroot)
    _, last_modified = _validators(files, make_request, b"/hello.txt")
    mtime = int(os.stat(docroot / "hello.txt").st_mtime)

    def status(ims: bytes) -> int:
        request = make_request(b"/hello.txt", headers={b"if-modified-since": ims})
        return files.handle(request, now=0.0).status

    assert status(last_modified) == 304
    assert status(http_date(mtime + 3600)) == 304
    assert status(http_date(mtime - 1)) == 200
    assert status(b"not a date") == 200


def test_handler_if_none_match_takes_precedence_over_ims(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot)
    etag, last_modified = _validators(files, make_request, b"/hello.txt")
    mtime = int(os.stat(docroot / "hello.txt").st_mtime)

    mismatch = {b"if-none-match": b'"stale"', b"if-modified-since": last_modified}
    assert files.handle(make_request(b"/hello.txt", headers=mismatch), now=0.0).status == 200
    match = {b"if-none-match": etag, b"if-modified-since": http_date(mtime - 86400)}
    assert files.handle(make_request(b"/hello.txt", headers=match), now=0.0).status == 304


def test_handler_304_is_prerendered(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(docroot)
    etag, _ = _validators(files, make_request, b"/hello.txt")
    request = make_request(b"/hello.txt", headers={b"if-none-match": etag})
    assert files.handle(request, now=0.0) is files.handle(request, now=0.1)


# -- cache --------------------------------------------------------------------------------


def test_handler_cache_hit_returns_same_object(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot)
    first = files.handle(make_request(b"/hello.txt"), now=0.0)
    assert files.handle(make_request(b"/hello.txt"), now=0.5) is first
    head = files.handle(make_request(b"/hello.txt", b"HEAD"), now=0.5)
    assert files.handle(make_request(b"/hello.txt", b"HEAD"), now=0.6) is head
    # A query string only changes the lookup path, not the answer.
    assert files.handle(make_request(b"/hello.txt?x=1"), now=0.7) is first
    assert files.handle(make_request(b"/"), now=0.0) is files.handle(make_request(b"/"), now=0.1)


def test_handler_cache_hit_does_no_filesystem_calls(
    docroot: pathlib.Path, make_request: MakeRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = StaticFiles(docroot)
    first = files.handle(make_request(b"/hello.txt"), now=0.0)
    files.handle(make_request(b"/big.bin", b"HEAD"), now=0.0)

    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("file-system call on a cache hit")

    # Patched only inside this block: pytest itself stats files between tests.
    with monkeypatch.context() as m:
        for name in ("stat", "lstat", "open", "fstat", "read"):
            m.setattr(os, name, forbidden)
        m.setattr(os.path, "realpath", forbidden)
        hit = files.handle(make_request(b"/hello.txt"), now=0.9)
        head = files.handle(make_request(b"/big.bin", b"HEAD"), now=0.9)
    assert hit is first
    assert head.status == 200


def test_handler_large_file_hit_skips_resolution(
    docroot: pathlib.Path, make_request: MakeRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = StaticFiles(docroot)
    files.handle(make_request(b"/big.bin", b"HEAD"), now=0.0)

    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("resolution repeated on a cached large file")

    with monkeypatch.context() as m:
        m.setattr(os.path, "realpath", forbidden)
        m.setattr(os, "stat", forbidden)
        response = files.handle(make_request(b"/big.bin"), now=0.5)
    assert isinstance(response.body, FileRegion)
    response.body.release()


def _rewrite(path: pathlib.Path, content: bytes) -> None:
    # Move mtime forward explicitly: two writes within one timestamp tick must still
    # look different, whatever the filesystem's timestamp granularity.
    old = path.stat()
    path.write_bytes(content)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 5_000_000_000))


def test_handler_cache_picks_up_changes_after_revalidate_seconds(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot, revalidate_seconds=1.0)
    target = docroot / "hello.txt"
    old = files.handle(make_request(b"/hello.txt"), now=10.0)
    _rewrite(target, b"changed content\n")
    # Within the trust period the cached response stands (that is the point of it).
    assert files.handle(make_request(b"/hello.txt"), now=10.9) is old
    new = files.handle(make_request(b"/hello.txt"), now=11.0)
    assert new is not old
    assert new.body == b"changed content\n"
    assert fields(new)[b"etag"] != fields(old)[b"etag"]
    assert fields(new)[b"content-length"] == b"16"
    # And the new one is cached in turn.
    assert files.handle(make_request(b"/hello.txt"), now=11.5) is new


def test_handler_cache_unchanged_file_survives_revalidation(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot, revalidate_seconds=1.0)
    first = files.handle(make_request(b"/hello.txt"), now=0.0)
    assert files.handle(make_request(b"/hello.txt"), now=5.0) is first  # re-stat, same file
    assert files.cache.entries[b"/hello.txt"].checked == 5.0


def test_handler_revalidate_zero_always_checks(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot, revalidate_seconds=0)
    files.handle(make_request(b"/hello.txt"), now=0.0)
    _rewrite(docroot / "hello.txt", b"v2\n")
    assert files.handle(make_request(b"/hello.txt"), now=0.0).body == b"v2\n"


def test_handler_cache_deleted_file_404_after_revalidation(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot)
    files.handle(make_request(b"/hello.txt"), now=0.0)
    (docroot / "hello.txt").unlink()
    assert files.handle(make_request(b"/hello.txt"), now=2.0).status == 404
    assert b"/hello.txt" not in files.cache.entries


def test_handler_cache_repointed_symlink_revalidates(
    docroot: pathlib.Path, make_request: MakeRequest, secret: bytes
) -> None:
    link = docroot / "current.txt"
    link.symlink_to(docroot / "hello.txt")
    files = StaticFiles(docroot)
    assert files.handle(make_request(b"/current.txt"), now=0.0).status == 200
    link.unlink()
    link.symlink_to(docroot.parent / "outside" / "passwd")
    response = files.handle(make_request(b"/current.txt"), now=2.0)
    assert response.status == 403
    assert secret not in (response.body or b"")


def test_handler_file_growing_past_threshold_becomes_region(
    docroot: pathlib.Path, make_request: MakeRequest, fd_count: Callable[[], int]
) -> None:
    files = StaticFiles(docroot, cache_max_file_bytes=1024)
    target = docroot / "grow.txt"
    target.write_bytes(b"small\n")
    small = files.handle(make_request(b"/grow.txt"), now=0.0)
    assert small.body == b"small\n"
    big = b"B" * 4096
    _rewrite(target, big)
    before = fd_count()
    response = files.handle(make_request(b"/grow.txt"), now=2.0)
    assert isinstance(response.body, FileRegion)
    assert region_bytes(response.body) == big
    assert fields(response)[b"content-length"] == b"4096"
    response.body.release()
    assert fd_count() == before
    # And back down again.
    _rewrite(target, b"small again\n")
    assert files.handle(make_request(b"/grow.txt"), now=4.0).body == b"small again\n"


def test_handler_large_file_change_seen_at_open_even_within_trust_period(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot, cache_max_file_bytes=1024)
    target = docroot / "log.bin"
    target.write_bytes(b"a" * 2000)
    first = files.handle(make_request(b"/log.bin"), now=0.0)
    assert isinstance(first.body, FileRegion)
    first.body.release()
    _rewrite(target, b"b" * 3000)
    second = files.handle(make_request(b"/log.bin"), now=0.1)  # no revalidation due yet
    assert isinstance(second.body, FileRegion)
    assert second.body.count == 3000
    assert fields(second)[b"content-length"] == b"3000"
    assert region_bytes(second.body) == b"b" * 3000
    second.body.release()


def test_handler_cache_total_bytes_bound_evicts_oldest(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    for i in range(3):
        (docroot / f"f{i}.txt").write_bytes(b"%d" % i * 2000)
    probe = StaticFiles(docroot)
    probe.handle(make_request(b"/f0.txt"), now=0.0)
    one_entry = probe.cache.total_bytes
    # Room for two entries, not three.
    files = StaticFiles(docroot, cache_max_total_bytes=2 * one_entry + one_entry // 2)
    f0 = files.handle(make_request(b"/f0.txt"), now=0.0)
    files.handle(make_request(b"/f1.txt"), now=0.0)
    assert list(files.cache.entries) == [b"/f0.txt", b"/f1.txt"]
    files.handle(make_request(b"/f2.txt"), now=0.0)
    assert list(files.cache.entries) == [b"/f1.txt", b"/f2.txt"]
    assert files.cache.total_bytes <= files.cache.max_total_bytes
    again = files.handle(make_request(b"/f0.txt"), now=0.0)
    assert again is not f0
    assert again.body == f0.body


def test_handler_cache_recency_refreshed_by_revalidation(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    for i in range(3):
        (docroot / f"f{i}.txt").write_bytes(b"%d" % i * 2000)
    probe = StaticFiles(docroot)
    probe.handle(make_request(b"/f0.txt"), now=0.0)
    one_entry = probe.cache.total_bytes
    files = StaticFiles(docroot, cache_max_total_bytes=2 * one_entry + one_entry // 2)
    files.handle(make_request(b"/f0.txt"), now=0.0)
    files.handle(make_request(b"/f1.txt"), now=0.0)
    files.handle(make_request(b"/f0.txt"), now=5.0)  # revalidated: now the most recent
    files.handle(make_request(b"/f2.txt"), now=5.0)
    assert list(files.cache.entries) == [b"/f0.txt", b"/f2.txt"]


def test_handler_file_bigger_than_whole_cache_is_served_uncached(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(docroot, cache_max_total_bytes=100)
    response = files.handle(make_request(b"/hello.txt"), now=0.0)
    assert response.body == (docroot / "hello.txt").read_bytes()
    assert len(files.cache) == 0
    assert files.cache.total_bytes == 0


def test_handler_aliases_bounded_by_cache(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    # "/hello.txt", "//hello.txt", "///hello.txt" ... are distinct keys for one file; the
    # per-entry overhead charge keeps their number bounded.
    files = StaticFiles(docroot, cache_max_total_bytes=16 * 1024)
    for n in range(1, 500):
        response = files.handle(make_request(b"/" * n + b"hello.txt"), now=0.0)
        assert response.status == 200
    assert files.cache.total_bytes <= 16 * 1024
    assert 0 < len(files.cache) < 50


def test_handler_etag_matches_format(docroot: pathlib.Path, make_request: MakeRequest) -> None:
    etag, last_modified = _validators(StaticFiles(docroot), make_request, b"/big.bin")
    assert re.fullmatch(rb'"[0-9a-f]+-[0-9a-f]+"', etag)
    assert etag.endswith(b'-%x"' % 100_000)
    assert last_modified.endswith(b" GMT")
