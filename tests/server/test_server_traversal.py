"""Path safety over the wire (issue 7): no request reads a byte from outside the docroot,
and no response names a filesystem path. Every backend and server mode.

Two docroots:

- the shared one (``tests/helpers.py make_docroot``): ``escape.txt`` is a symlink to
  ``../outside-secret.txt``; the traversal corpus below aims at that file by every
  encoding trick known to have worked somewhere: ``%2e%2e`` and ``..%2f`` (decode, then
  split), ``%252e`` (decoding twice), overlong UTF-8 ``%c0%ae`` (IIS, CVE-2000-0884),
  backslashes and ``%5c`` (Windows separators), NUL (C string truncation), ``//``,
  ``..;/`` (Tomcat path parameters), Unicode dot look-alikes, absolute-form targets;
- a trap docroot made here: precompressed siblings (``x.txt.gz``, ``x.txt.br``) and a
  directory symlinked to outside files, a symlink to ``/etc/passwd``, a symlink loop, a
  dangling link, and, as controls that must keep working, a symlink that stays inside.

Each case has a fixed set of allowed statuses. For every response: no byte of any
outside file (each holds a unique marker), and neither the docroot's absolute path nor
"/tmp" nor "/etc" anywhere in head or body. Requests are raw bytes on a socket
(``http.client`` and curl would normalise the very paths under test).
"""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect

SECRET = b"TOP SECRET OUTSIDE"  # make_docroot's outside-secret.txt
MARKERS = [SECRET, b"GZ SECRET", b"BR SECRET", b"DIR SECRET", b"DIR INDEX SECRET", b"root:x:0"]
DENIED = {400, 403, 404}


def fetch(port: int, target: bytes, *fields: bytes, method: bytes = b"GET") -> bytes:
    """One request with ``Connection: close``; everything until the server closes."""
    head = b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method, target)
    with connect(port) as s:
        s.sendall(head + b"".join(f + b"\r\n" for f in fields) + b"\r\n")
        chunks = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s.settimeout(deadline - time.monotonic())
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    raise AssertionError(f"server did not close after {target!r}: {b''.join(chunks)[:200]!r}")


def parse(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {raw[:200]!r}"
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def assert_safe(raw: bytes, root: Path) -> None:
    for marker in MARKERS:
        assert marker not in raw, f"{marker!r} leaked: {raw[:300]!r}"
    for path in {str(root), str(root.resolve()), str(root.parent), "/tmp", "/etc"}:
        assert path.encode() not in raw, f"filesystem path {path!r} in {raw[:300]!r}"


# -- the shared docroot: escape.txt -> ../outside-secret.txt ----------------------------------

OUT = b"outside-secret.txt"
TRAVERSAL = [
    # plain and percent-encoded dots and slashes
    b"/../" + OUT,
    b"/../../../../../../../../" + OUT,
    b"/sub/../../" + OUT,
    b"/%2e%2e/" + OUT,
    b"/%2E%2E/" + OUT,
    b"/.%2e/" + OUT,
    b"/%2e./" + OUT,
    b"/..%2f" + OUT,
    b"/..%2F" + OUT,
    b"/sub/..%2f..%2f" + OUT,
    b"/%2e%2e%2f" + OUT,
    b"/sub/%2e%2e/%2e%2e/" + OUT,
    # decoding twice
    b"/%252e%252e/" + OUT,
    b"/%252e%252e%252f" + OUT,
    b"/%25%32%65%25%32%65/" + OUT,
    # overlong UTF-8 for ".", "/" and "\\" (CVE-2000-0884)
    b"/%c0%ae%c0%ae/" + OUT,
    b"/%c0%2e%c0%2e/" + OUT,
    b"/%e0%80%ae%e0%80%ae/" + OUT,
    b"/..%c0%af" + OUT,
    b"/..%c1%9c" + OUT,
    b"/%f0%80%80%ae%f0%80%80%ae/" + OUT,
    # Unicode look-alikes: ONE DOT LEADER, FULLWIDTH FULL STOP, FULLWIDTH SOLIDUS
    b"/%e2%80%a4%e2%80%a4/" + OUT,
    b"/%ef%bc%8e%ef%bc%8e/" + OUT,
    b"/..%ef%bc%8f" + OUT,
    # backslashes, raw and encoded
    b"/..\\" + OUT,
    b"/sub\\..\\..\\" + OUT,
    b"/..%5c" + OUT,
    b"/%5c..%5c" + OUT,
    b"/sub/..%5c..%5c" + OUT,
    # NUL
    b"/%00/../" + OUT,
    b"/..%00/" + OUT,
    b"/escape.txt%00",
    b"/small.txt%00.html",
    b"/escape.txt%00.html",
    # empty segments, absolute file-system paths
    b"//" + OUT,
    b"//../" + OUT,
    b"//etc/passwd",
    b"///etc/passwd",
    b"/%2fetc%2fpasswd",
    b"/%2Fetc/passwd",
    b"/etc/passwd",
    b"/../../../../../../../../etc/passwd",
    b"/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    # path parameters (Tomcat ..;/), query and fragment tricks
    b"/sub/..;/..;/" + OUT,
    b"/..;/" + OUT,
    b"/escape.txt?",
    b"/escape.txt?x=../" + OUT,
    b"/escape.txt#x",
    # absolute-form
    b"http://x/../" + OUT,
    b"http://x/%2e%2e/" + OUT,
    b"http://x/../../../../etc/passwd",
    b"http://x//etc/passwd",
    b"http://../" + OUT,
    # the symlink itself, by other names
    b"/escape.txt",
    b"/./escape.txt",
    b"/sub/../escape.txt",
    b"/sub/%2e%2e/escape.txt",
    b"/escape.txt/",
    b"/%65scape.txt",
    b"/escape%2etxt",
]


@pytest.mark.parametrize("target", TRAVERSAL, ids=lambda t: t.decode("latin-1"))
def test_server_traversal_denied(server: ServerProcess, docroot: Path, target: bytes) -> None:
    raw = fetch(server.port, target)
    status, _, _ = parse(raw)
    assert status in DENIED, raw[:300]
    assert_safe(raw, docroot)


@pytest.mark.parametrize("target", [b"/escape.txt", b"/%2e%2e/" + OUT, b"/..%2f" + OUT])
@pytest.mark.parametrize("method", [b"HEAD", b"GET"])
def test_server_traversal_denied_with_any_encoding(
    server: ServerProcess, docroot: Path, target: bytes, method: bytes
) -> None:
    raw = fetch(server.port, target, b"Accept-Encoding: gzip, br, *", method=method)
    assert parse(raw)[0] in DENIED
    assert_safe(raw, docroot)


@pytest.mark.parametrize(
    ("target", "body"),
    [
        pytest.param(b"/sub/../small.txt", b"0123456789", id="dotdot-inside"),
        pytest.param(b"/sub/%2e%2e/small.txt", b"0123456789", id="encoded-dotdot-inside"),
        pytest.param(b"/./sub/./page.html", b"<p>page</p>", id="dot-segments"),
        pytest.param(b"/%73mall.txt", b"0123456789", id="encoded-letter"),
        pytest.param(b"http://x/sub/../small.txt", b"0123456789", id="absolute-form"),
    ],
)
def test_server_traversal_controls_inside_root(
    server: ServerProcess, docroot: Path, target: bytes, body: bytes
) -> None:
    # The decoder is not just refusing everything: these stay inside and are served.
    raw = fetch(server.port, target)
    status, _, got = parse(raw)
    assert status == 200
    assert got.startswith(body)
    assert_safe(raw, docroot)


# -- a trap docroot: precompressed siblings and directories leading out ----------------------


def make_trap_root(base: Path) -> Path:
    root = base / "www"
    root.mkdir(parents=True)
    outside = base / "outside"
    outside.mkdir()
    (outside / "x.txt.gz").write_bytes(b"GZ SECRET OUTSIDE\n")
    (outside / "x.txt.br").write_bytes(b"BR SECRET OUTSIDE\n")
    (outside / "secret.txt").write_bytes(b"DIR SECRET OUTSIDE\n")
    (outside / "index.html").write_bytes(b"DIR INDEX SECRET\n")
    (root / "x.txt").write_bytes(b"inside x\n")
    (root / "x.txt.gz").symlink_to(outside / "x.txt.gz")
    (root / "x.txt.br").symlink_to(outside / "x.txt.br")
    (root / "y.txt").write_bytes(b"inside y\n")
    (root / "z.txt").write_bytes(b"inside z\n")
    (root / "z.txt.gz").write_bytes(gzip.compress(b"inside z\n", mtime=0))  # a real sibling
    (root / "y.txt.gz").symlink_to("../outside/x.txt.gz")  # relative link, same target
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    (root / "sub").mkdir()
    (root / "sub" / "page.html").write_bytes(b"<p>page</p>\n")
    (root / "inner").symlink_to(root / "sub", target_is_directory=True)
    (root / "passwd").symlink_to("/etc/passwd")
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(base / "missing")
    return root


@pytest.fixture(scope="module")
def trap_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trap_root(tmp_path_factory.mktemp("trap"))


@pytest.fixture(scope="module", params=backend_params())
def trap_server(request: pytest.FixtureRequest, trap_root: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(trap_root, request.param)
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-4000:]


@pytest.mark.parametrize(
    ("target", "coding", "body"),
    [
        pytest.param(b"/x.txt", b"gzip", b"inside x\n", id="gz-sibling-outside"),
        pytest.param(b"/x.txt", b"br", b"inside x\n", id="br-sibling-outside"),
        pytest.param(b"/x.txt", b"gzip, br, *", b"inside x\n", id="any-sibling-outside"),
        pytest.param(b"/y.txt", b"gzip", b"inside y\n", id="relative-gz-link-outside"),
    ],
)
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_server_traversal_precompressed_sibling_outside(
    trap_server: ServerProcess,
    trap_root: Path,
    target: bytes,
    coding: bytes,
    body: bytes,
    method: bytes,
) -> None:
    # The identity file is inside; its sibling is a link out. Serving the file as is (or
    # refusing) is fine; serving the sibling, or naming it, is not.
    raw = fetch(trap_server.port, target, b"Accept-Encoding: " + coding, method=method)
    status, headers, got = parse(raw)
    assert status in {200, 403, 404}, raw[:300]
    assert_safe(raw, trap_root)
    if status == 200:
        assert b"content-encoding" not in headers, headers
        assert headers[b"content-length"] == b"%d" % len(body)
        if method == b"GET":
            assert got == body


def test_server_traversal_precompressed_control_inside(
    trap_server: ServerProcess, trap_root: Path
) -> None:
    # Control: a sibling that stays inside is served, so the outside-sibling cases above
    # really exercise the sibling lookup. Skips until precompressed serving has landed.
    raw = fetch(trap_server.port, b"/z.txt", b"Accept-Encoding: gzip")
    status, headers, body = parse(raw)
    assert status == 200
    if headers.get(b"content-encoding") is None:
        pytest.skip("precompressed siblings are not served (yet): control inactive")
    assert headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(body) == b"inside z\n"


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        (b"/dirlink/secret.txt", DENIED),
        (b"/dirlink/", DENIED),
        (b"/dirlink", DENIED | {301, 308}),
        (b"/dirlink/index.html", DENIED),
        (b"/dirlink/x.txt.gz", DENIED),
        (b"/dirlink/%2e%2e/outside/secret.txt", DENIED),
        (b"/x.txt.gz", DENIED),
        (b"/x.txt.br", DENIED),
        (b"/passwd", DENIED),
        (b"/loop", DENIED),
        (b"/dangling", DENIED),
        (b"/../outside/secret.txt", DENIED),
        (b"/%2e%2e/outside/secret.txt", DENIED),
        (b"/inner/../dirlink/secret.txt", DENIED),
    ],
    ids=lambda v: v.decode("latin-1") if isinstance(v, bytes) else "",
)
def test_server_traversal_trap_links(
    trap_server: ServerProcess, trap_root: Path, target: bytes, allowed: set[int]
) -> None:
    raw = fetch(trap_server.port, target, b"Accept-Encoding: gzip, br")
    status, headers, _ = parse(raw)
    assert status in allowed, raw[:300]
    assert_safe(raw, trap_root)
    if status in (301, 308):
        assert headers[b"location"] == b"/dirlink/"


@pytest.mark.parametrize(
    ("target", "body"),
    [(b"/inner/page.html", b"<p>page</p>\n"), (b"/sub/page.html", b"<p>page</p>\n")],
)
def test_server_traversal_inside_symlink_served(
    trap_server: ServerProcess, trap_root: Path, target: bytes, body: bytes
) -> None:
    raw = fetch(trap_server.port, target)
    status, _, got = parse(raw)
    assert (status, got) == (200, body)
    assert_safe(raw, trap_root)


def test_server_traversal_no_path_in_any_error(trap_server: ServerProcess, trap_root: Path) -> None:
    # Error pages of every kind the static handler and the parser produce.
    for target in (b"/missing", b"/%zz", b"/sub", b"/passwd", b"/" + b"a" * 9000):
        raw = fetch(trap_server.port, target)
        assert_safe(raw, trap_root)
    with connect(trap_server.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nA\x00: b\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        raw = b"".join(iter(lambda: s.recv(65536), b""))
    assert parse(raw)[0] == 400
    assert_safe(raw, trap_root)
