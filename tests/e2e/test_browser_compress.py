"""Headless Chromium loading a page whose script and stylesheet c10k compresses on the fly
(issue 16): the script runs, the style applies, and the browser's own Resource Timing says
each asset came encoded (``encodedBodySize`` below ``decodedBodySize``, which is the
file's size). Over the DevTools protocol (``cdp.py``), against ``c10k serve`` with its
defaults. Skipped only when no Chromium binary is installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cdp import Browser
from test_browser import FLAGS

from helpers import ServerProcess

CHROMIUM = next(
    (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)"
)

SCRIPT = (
    b"".join(
        b"window.table%d = Array.from({length: 8}, (_, i) => i * %d);\n" % (i, i)
        for i in range(300)
    )
    + b"document.getElementById('out').textContent = 'script ran: ' + window.table299[3];\n"
)
STYLE = b"".join(b".unused%d { margin: %dpx; }\n" % (i, i) for i in range(300)) + (
    b"#out { color: rgb(1, 2, 3); }\n"
)
PAGE = b"""<!doctype html><meta charset="utf-8"><title>compressed assets</title>
<link rel="stylesheet" href="style.css">
<p id="out">script did not run</p>
<script src="app.js"></script>
"""
# Once loaded: what the page shows, and what the browser says it received.
REPORT = """new Promise((resolve) => {
  const report = () => resolve({
    text: document.getElementById("out").textContent,
    color: getComputedStyle(document.getElementById("out")).color,
    assets: performance.getEntriesByType("resource").map((e) => ({
      name: new URL(e.name).pathname, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
    })),
  });
  if (document.readyState === "complete") report(); else addEventListener("load", report);
})"""


def test_browser_loads_compressed_assets(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(PAGE)
    (root / "app.js").write_bytes(SCRIPT)
    (root / "style.css").write_bytes(STYLE)
    srv = ServerProcess(root, "epoll")
    profile = tmp_path / "profile"
    profile.mkdir()
    assert CHROMIUM is not None
    try:
        with Browser(CHROMIUM, FLAGS, profile) as browser:
            session = browser.open(f"http://127.0.0.1:{srv.port}/")
            seen = browser.evaluate(session, REPORT)
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert seen["text"] == "script ran: 897", seen
    assert seen["color"] == "rgb(1, 2, 3)", seen
    sizes = {a["name"]: (a["encoded"], a["decoded"]) for a in seen["assets"]}
    for name, content in (("/app.js", SCRIPT), ("/style.css", STYLE)):
        encoded, decoded = sizes[name]
        assert decoded == len(content), seen
        assert 0 < encoded < decoded // 3, seen  # it came compressed


def test_browser_spa_route_falls_back_with_compressed_assets(tmp_path: Path) -> None:
    """A single-page app: ``--fallback /index.html`` answers a client-side route that is no
    file with the app's page (200), whose assets (absolute paths) come compressed."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(
        PAGE.replace(b'href="style.css"', b'href="/style.css"').replace(
            b'src="app.js"', b'src="/app.js"'
        )
    )
    (root / "app.js").write_bytes(SCRIPT)
    (root / "style.css").write_bytes(STYLE)
    srv = ServerProcess(root, "epoll", "--fallback", "/index.html")
    profile = tmp_path / "profile"
    profile.mkdir()
    assert CHROMIUM is not None
    report = REPORT.replace(
        "text: document",
        'status: performance.getEntriesByType("navigation")[0].responseStatus,\n    '
        "path: location.pathname,\n    text: document",
    )
    try:
        with Browser(CHROMIUM, FLAGS, profile) as browser:
            session = browser.open(f"http://127.0.0.1:{srv.port}/settings/profile/42")
            seen = browser.evaluate(session, report)
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert seen["path"] == "/settings/profile/42", seen
    assert seen["status"] == 200, seen
    assert seen["text"] == "script ran: 897", seen
    assert seen["color"] == "rgb(1, 2, 3)", seen
    sizes = {a["name"]: (a["encoded"], a["decoded"]) for a in seen["assets"]}
    for name, content in (("/app.js", SCRIPT), ("/style.css", STYLE)):
        encoded, decoded = sizes[name]
        assert decoded == len(content), seen
        assert 0 < encoded < decoded // 3, seen
