"""Write fuzz/corpus/: the hostile corpus (tests/http/_hostile_corpus.py) and a few valid
requests as libFuzzer seeds, each behind the two settings bytes fuzz_http.py expects.

    python fuzz/seed_corpus.py

Inputs over 2 KiB are left out (the limit cases are reached with the 64-byte limits).
Never pass fuzz/corpus as libFuzzer's *first* corpus directory: it writes new inputs
there. Give it a scratch directory first (see README.md).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "http"))

from _hostile_corpus import CASES  # noqa: E402

VALID = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2,
    b"\r\nGET /a?b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]


def main() -> None:
    out = HERE / "corpus"
    out.mkdir(exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    seeds = [c.wire for c in CASES] + VALID
    for i, seed in enumerate(seeds):
        data = bytes([i % 8, i % 251]) + seed
        if len(data) <= 2048:
            (out / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


if __name__ == "__main__":
    main()
