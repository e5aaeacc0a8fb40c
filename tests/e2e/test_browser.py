"""A real browser against c10k: headless Chromium (Debian package ``chromium``) shows a
directory listing (screenshot kept under the test's tmp dir), follows each of its links,
and plays and seeks a WAV file served with byte ranges.

Chromium runs one-shot per page (``--dump-dom`` / ``--screenshot``), no driver: the pages
it loads are in the docroot and write their findings into the DOM, which ``--dump-dom``
prints once ``--virtual-time-budget`` has run out (virtual time waits for pending
fetches, so the scripts' awaits finish inside the budget). Skipped only when no Chromium
binary is installed (CI installs it: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from cdp import Browser
from e2e_support import (
    LISTED_DIR,
    LISTED_FILES,
    WAV_RATE,
    WAV_SECONDS,
    RecordingServer,
    file_body,
)

CHROMIUM = next(
    (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)"
)

# The page's flags from issue 6, plus what keeps a one-shot run quiet and self-contained.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]
SEEK_TO = 55.5

# Fetches the listing, resolves every href the way the page's own links would be, fetches
# each target, and writes one JSON line per link.
LINKS_PAGE = """<!doctype html><meta charset="utf-8"><title>links</title>
<pre id="out">pending</pre>
<script>
(async () => {
  const out = document.getElementById("out");
  try {
    const base = new URL("/listing/", location.href);
    const page = await fetch(base);
    const doc = new DOMParser().parseFromString(await page.text(), "text/html");
    const rows = [];
    for (const a of doc.querySelectorAll("a[href]")) {
      const url = new URL(a.getAttribute("href"), base);
      const r = await fetch(url);
      const body = await r.text();
      rows.push(JSON.stringify({text: a.textContent, url: url.href, status: r.status,
                                body: body.slice(0, 2000)}));
    }
    out.textContent = "DONE " + page.status + "\\n" + rows.join("\\n");
  } catch (e) {
    out.textContent = "ERROR " + e;
  }
})();
</script>
"""

# Loads the WAV, seeks once its duration is known, and resolves ``window.seekResult`` with
# what the media element saw (or with a timeout report, so a failure shows the events).
PLAYER_PAGE = """<!doctype html><meta charset="utf-8"><title>player</title>
<audio id="a" preload="metadata" src="tone.wav"></audio>
<script>
const a = document.getElementById("a");
const seen = {events: []};
function snapshot(done) {
  return Object.assign({}, seen, {done: done, currentTime: a.currentTime, duration: a.duration,
    readyState: a.readyState, error: a.error ? a.error.code : null});
}
window.seekResult = new Promise((resolve) => {
  a.addEventListener("loadedmetadata", () => {
    seen.events.push("loadedmetadata");
    a.currentTime = SEEK_TO;
  });
  a.addEventListener("seeking", () => seen.events.push("seeking"));
  a.addEventListener("seeked", () => { seen.events.push("seeked"); resolve(snapshot(true)); });
  a.addEventListener("error", () => { seen.events.push("error"); resolve(snapshot(true)); });
  setTimeout(() => resolve(snapshot(false)), 45000);
});
</script>
""".replace("SEEK_TO", str(SEEK_TO))


def chromium(tmp_path: Path, *args: str, timeout: float = 120) -> str:
    """Run Chromium once with a fresh profile; return its stdout."""
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return proc.stdout.decode()


def dump_dom(tmp_path: Path, url: str, budget_ms: int = 15000) -> str:
    return chromium(tmp_path, f"--virtual-time-budget={budget_ms}", "--dump-dom", url)


def out_text(dom: str) -> str:
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert m is not None, dom[-2000:]
    return html.unescape(m.group(1))


def test_browser_listing_screenshot_and_names(e2e_server: RecordingServer, tmp_path: Path) -> None:
    url = e2e_server.url + "listing/"
    shot = tmp_path / "listing.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1024,768", url)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1024, 768)
    print(f"listing screenshot: {shot}")
    # What the browser made of the page: every name shown, exactly, as text.
    dom = dump_dom(tmp_path, url, budget_ms=3000)
    links = re.findall(r'<a href="([^"]*)">(.*?)</a>', dom, re.S)
    texts = [html.unescape(t) for _, t in links]
    for name in LISTED_FILES:
        assert name in texts, (name, texts)
    assert f"{LISTED_DIR}/" in texts, texts
    assert any(t.startswith("..") for t in texts)
    # the server saw the listing (200) for the directory URL
    assert ("GET", "/listing/", None, 200) in e2e_server.log


def test_browser_listing_links_work(
    e2e_server: RecordingServer, e2e_root: Path, tmp_path: Path
) -> None:
    (e2e_root / "links.html").write_text(LINKS_PAGE)
    text = out_text(dump_dom(tmp_path, e2e_server.url + "links.html"))
    assert text.startswith("DONE 200\n"), text
    rows: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines()[1:]]
    by_text = {r["text"]: r for r in rows}
    for name in LISTED_FILES:
        row = by_text[name]
        assert row["status"] == 200, row
        assert row["body"] == file_body(name).decode(), row
        # the link reached exactly this name: its path is the name, percent-encoded
        assert unquote(urlsplit(row["url"]).path) == "/listing/" + name, row
    sub = by_text[f"{LISTED_DIR}/"]
    assert sub["status"] == 200, sub
    assert "inner.txt" in sub["body"], sub
    assert sub["url"].endswith("/"), sub
    parent = next(r for t, r in by_text.items() if t.startswith(".."))
    assert parent["url"] == e2e_server.url, parent
    assert parent["status"] == 200, parent


def test_browser_plays_and_seeks_wav_with_ranges(
    e2e_server: RecordingServer, e2e_root: Path, tmp_path: Path
) -> None:
    (e2e_root / "player.html").write_text(PLAYER_PAGE)
    start = len(e2e_server.log)
    profile = tmp_path / "profile"
    profile.mkdir()
    assert CHROMIUM is not None
    with Browser(CHROMIUM, FLAGS, profile) as browser:
        session = browser.open(e2e_server.url + "player.html")
        seen = browser.evaluate(session, "window.seekResult", timeout=90)
    wav = [entry for entry in e2e_server.log[start:] if entry[1] == "/tone.wav"]
    print("tone.wav requests:", wav)
    assert seen["done"], (seen, wav)
    assert seen["error"] is None, seen
    assert seen["events"][:1] == ["loadedmetadata"], seen
    assert "seeked" in seen["events"], seen
    assert seen["duration"] == pytest.approx(WAV_SECONDS, abs=0.01), seen
    assert seen["currentTime"] == pytest.approx(SEEK_TO, abs=0.05), seen
    ranged = [entry for entry in wav if entry[2] is not None]
    assert ranged, f"Chromium sent no Range request: {wav}"
    assert all(status == 206 for _, _, _, status in ranged), wav
    # preload=metadata buffers the start only, so the seek asked for a range in the middle:
    # at or before the byte of the seek position (Chromium aligns to 32 KiB blocks).
    seek_byte = 44 + int(SEEK_TO * WAV_RATE) * 2  # 44-byte WAV header, 16-bit mono
    starts = [int(rng.removeprefix("bytes=").split("-")[0]) for _, _, rng, _ in ranged if rng]
    assert any(0 < s <= seek_byte for s in starts), wav
