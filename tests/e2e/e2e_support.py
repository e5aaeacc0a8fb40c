"""End-to-end tests with clients nobody here wrote: headless Chromium and REDbot.

Both talk to an in-process ``Server`` whose handler is wrapped to record what it answered
(``RecordingServer.log``), so a test can tell what the real client actually asked for
(a media player's Range requests, REDbot's conditional probes) and what it got back.
"""

from __future__ import annotations

import gzip
import math
import threading
import wave
from array import array
from pathlib import Path
from typing import Any

from c10k.http.events import Request
from c10k.http.writers import Response
from c10k.server import Server, ServerConfig
from c10k.static import StaticFiles

# Names a directory listing must get right in the text and in the href: a space, non-ASCII
# (composed and astral), each URL delimiter (#, ?, %), HTML specials (<, &, ', ").
LISTED_FILES = [
    "a b.txt",
    "naïve café.txt",
    "snow ☃ 𝄞.txt",
    "c#1.txt",
    "what?.txt",
    "100%.txt",
    "<b>&amp;'\".txt",
]
LISTED_DIR = "sub dir #2"
WAV_SECONDS = 60  # 2.6 MB: a seek near the end lands past what is buffered
WAV_RATE = 22050


def file_body(name: str) -> bytes:
    """Self-describing content: a fetched link proves which file it reached."""
    return f"content of {name}\n".encode()


def write_wav(path: Path, seconds: int = WAV_SECONDS, rate: int = WAV_RATE) -> None:
    """A mono 16-bit PCM tone of 441 Hz (exactly 50 samples a period at 22,050 Hz), which
    every browser plays without a codec."""
    period = rate // 441
    cycle = array("h", (int(12000 * math.sin(2 * math.pi * i / period)) for i in range(period)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(cycle.tobytes() * (seconds * rate // period))


def make_e2e_docroot(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    listing = root / "listing"
    listing.mkdir(exist_ok=True)
    for name in LISTED_FILES:
        (listing / name).write_bytes(file_body(name))
    (listing / LISTED_DIR).mkdir(exist_ok=True)
    (listing / LISTED_DIR / "inner.txt").write_bytes(file_body("inner.txt"))
    write_wav(root / "tone.wav")
    (root / "small.txt").write_bytes(b"0123456789" * 51 + b"AB")  # 512 bytes: cached
    # 1,000,000 bytes of 10-byte self-describing records: served with sendfile
    (root / "big.bin").write_bytes(b"".join(b"X%06dXX\n" % i for i in range(100_000)))
    # a stylesheet with a gzip sibling, for content negotiation
    css = b"body { font-family: sans-serif; }\n" * 200
    (root / "style.css").write_bytes(css)
    (root / "style.css.gz").write_bytes(gzip.compress(css, mtime=0))
    return root


class RecordingServer:
    """An in-process c10k Server (autoindex on) on a free loopback port, recording
    (method, target, Range header, status) for every response."""

    def __init__(self, root: Path, **static: Any) -> None:
        self.files = StaticFiles(root, autoindex=True, **static)
        self.log: list[tuple[str, str, str | None, int]] = []
        self._lock = threading.Lock()
        self.server = Server(ServerConfig(root=str(root), host="127.0.0.1", port=0), self.handle)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"install_signals": False}, daemon=True
        )

    def handle(self, request: Request, now: float) -> Response:
        response = self.files.handle(request, now)
        rng = request.headers.get(b"range")
        with self._lock:
            self.log.append(
                (
                    request.method.decode("latin-1"),
                    request.target.decode("latin-1"),
                    None if rng is None else rng.decode("latin-1"),
                    response.status,
                )
            )
        return response

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}/"

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "server thread did not stop"
