"""A real browser against c10k: headless Chromium (Debian package ``chromium``) shows a
directory listing (screenshot kept under the test's tmp dir), a user's clicks follow each
of its links, and an audio element plays and seeks a WAV file served with byte ranges.

Two ways to drive it, no WebDriver: one-shot runs with the flags of issue 6 for the
screenshot and the rendered listing (``--screenshot``, ``--dump-dom``), and the DevTools
protocol over a pipe (``cdp.py``) where the test must wait, in real time, for something
the page does (a navigation after a click, a seek). Skipped only when no Chromium binary
is installed (CI installs it: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from cdp import Browser
from e2e_support import (
    LISTED_DIR,
    LISTED_FILES,
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
RANGE = (2_000_001, 2_000_100)  # inclusive, odd start: not page- or block-aligned

# Loads the WAV, seeks once its duration is known, and resolves ``window.seekResult`` with
# what the media element saw (or with a timeout report, so a failure shows the events).
PLAYER_PAGE = (
    """<!doctype html><meta charset="utf-8"><title>player</title>
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
  a.addEventListener("seeked", async () => {
    seen.events.push("seeked");
    const result = snapshot(true);
    // the same file through fetch(): a range in the middle, bytes and headers checked
    const r = await fetch("tone.wav", {headers: {Range: "bytes=RANGE_START-RANGE_END"}});
    result.rangeStatus = r.status;
    result.contentRange = r.headers.get("Content-Range");
    result.rangeBytes = Array.from(new Uint8Array(await r.arrayBuffer()));
    resolve(result);
  });
  a.addEventListener("error", () => { seen.events.push("error"); resolve(snapshot(true)); });
  setTimeout(() => resolve(snapshot(false)), 45000);
});
</script>
""".replace("SEEK_TO", str(SEEK_TO))
    .replace("RANGE_START", str(RANGE[0]))
    .replace("RANGE_END", str(RANGE[1]))
)


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


def dump_dom(tmp_path: Path, url: str, budget_ms: int = 3000) -> str:
    return chromium(tmp_path, f"--virtual-time-budget={budget_ms}", "--dump-dom", url)


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
    dom = dump_dom(tmp_path, url)
    links = re.findall(r'<a href="([^"]*)">(.*?)</a>', dom, re.S)
    texts = [html.unescape(t) for _, t in links]
    for name in LISTED_FILES:
        assert name in texts, (name, texts)
    assert f"{LISTED_DIR}/" in texts, texts
    assert any(t.startswith("..") for t in texts)
    # the server saw the listing (200) for the directory URL
    assert ("GET", "/listing/", None, 200) in e2e_server.log


def test_browser_listing_links_work(e2e_server: RecordingServer, tmp_path: Path) -> None:
    # Click every link of the listing, as a user would, and read the page it leads to.
    listing = e2e_server.url + "listing/"
    profile = tmp_path / "profile"
    profile.mkdir()
    assert CHROMIUM is not None
    visited: dict[str, dict[str, str]] = {}
    with Browser(CHROMIUM, FLAGS, profile) as browser:
        session = browser.open(listing)
        texts = browser.evaluate(
            session, "Array.from(document.querySelectorAll('a'), (a) => a.textContent)"
        )
        assert len(texts) == len(LISTED_FILES) + 2, texts  # files, the subdirectory, ../
        for i, text in enumerate(texts):
            if i:
                browser.call("Page.navigate", {"url": listing}, session=session)
                browser.wait_event("Page.loadEventFired", session)
            browser.evaluate(session, f"document.querySelectorAll('a')[{i}].click()")
            browser.wait_event("Page.loadEventFired", session)
            visited[text] = browser.evaluate(
                session, "({url: location.href, body: document.body.innerText})"
            )
    answered = {target: status for _, target, _, status in e2e_server.log}
    for name in LISTED_FILES:
        page = visited[name]
        path = urlsplit(page["url"]).path
        assert unquote(path) == "/listing/" + name, page  # exactly this name
        assert page["body"] == file_body(name).decode(), page
        assert answered[path] == 200, (path, answered)
    sub = visited[f"{LISTED_DIR}/"]
    assert unquote(urlsplit(sub["url"]).path) == f"/listing/{LISTED_DIR}/", sub
    assert "inner.txt" in sub["body"], sub
    parent = next(page for text, page in visited.items() if text.startswith(".."))
    assert parent["url"] == e2e_server.url, parent
    assert "listing/" in parent["body"], parent


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
    # 304: Chromium revalidates a range it already holds in its cache (If-None-Match is
    # evaluated before Range, RFC 9110 section 13.2.2)
    assert all(status in (206, 304) for _, _, _, status in ranged), wav
    assert any(status == 206 for _, _, _, status in ranged), wav
    # Chromium's own requests: a mid-file range when the seek lands past what it buffered
    # (not always: on loopback the first response may already hold the whole file).
    data = (e2e_root / "tone.wav").read_bytes()
    assert seen["rangeStatus"] == 206, seen
    assert seen["contentRange"] == f"bytes {RANGE[0]}-{RANGE[1]}/{len(data)}", seen
    assert bytes(seen["rangeBytes"]) == data[RANGE[0] : RANGE[1] + 1]
