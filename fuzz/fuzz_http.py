"""Coverage-guided fuzzing of the sans-I/O request parser with atheris (libFuzzer).

Run by hand, not in CI (see fuzz/README.md):

    python fuzz/fuzz_http.py -max_total_time=60 -dict=fuzz/http.dict \
        -artifact_prefix=tests/data/fuzz/ /tmp/fuzz-work fuzz/corpus

The invariants are the ones STYLE.md section 6 asks of every parser fuzzer (h11's
``fuzz/afl-server.py``, lwan's ``TestFuzzRegression``), plus the sans-I/O contract:

1. ``HTTPConnection`` only returns a Request, NEED_DATA, PAUSED or CONNECTION_CLOSED, or
   raises ``RemoteProtocolError`` with a 4xx/5xx hint. Anything else is a crash.
2. The outcome does not depend on how the bytes are split across ``receive_data`` calls:
   whole, at pseudo-random split points, and (for short inputs) byte by byte.
3. After an error or PAUSED no request ever comes out (no desync).
4. Every request is well-formed: origin-form target (or ``*``/authority-form for
   OPTIONS/CONNECT), minor 0 or 1, lower-case token names, values without CR/LF/NUL.

The first two input bytes are not payload: byte 0 picks the limits and whether EOF
follows, byte 1 seeds the split points, so libFuzzer explores those too. ``check`` is
plain Python with no atheris import, so ``tests/http/test_http_fuzz_regressions.py``
replays every saved input (tests/data/fuzz/) through exactly this code.
"""

from __future__ import annotations

import itertools
import random
import re
import sys
from collections.abc import Iterable
from pathlib import Path

if __name__ == "__main__":  # instrument the parser before it is imported
    import atheris  # type: ignore[import-untyped]  # no stubs; only run by hand

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    with atheris.instrument_imports(include=["c10k"]):
        from c10k.http import (
            CONNECTION_CLOSED,
            NEED_DATA,
            PAUSED,
            HTTPConnection,
            Limits,
            RemoteProtocolError,
            Request,
        )
else:
    from c10k.http import (
        CONNECTION_CLOSED,
        NEED_DATA,
        PAUSED,
        HTTPConnection,
        Limits,
        RemoteProtocolError,
        Request,
    )

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
LIMITS = [(8192, 100), (64, 5), (200, 5)]
BYTEWISE_MAX = 2048


def _check_request(req: Request) -> tuple[object, ...]:
    target = req.target
    assert (
        target[:1] == b"/"
        or (target == b"*" and req.method == b"OPTIONS")
        or (req.method == b"CONNECT")
    ), target
    assert req.minor in (0, 1)
    for name, value in req.headers.items():
        assert TOKEN.fullmatch(name), name
        assert not any(c in value for c in b"\r\n\x00"), value
    return ("req", req.method, target, req.minor, req.headers, req.keep_alive, req.has_body)


def outcome(chunks: Iterable[bytes], eof: bool, limits: tuple[int, int]) -> list[object]:
    conn = HTTPConnection(Limits(*limits))
    out: list[object] = []
    stopped = False
    for chunk in [*chunks, b""] if eof else chunks:
        conn.receive_data(chunk)
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                status = exc.error_status_hint
                assert not stopped, "an error after the connection stopped"
                assert 400 <= status <= 599, status
                out.append(("error", status))
                stopped = True
                assert conn.next_event() is PAUSED
                break
            if isinstance(event, Request):
                assert not stopped, "a request after an error or PAUSED"
                out.append(_check_request(event))
                continue
            assert event in (NEED_DATA, PAUSED, CONNECTION_CLOSED), event
            if event is PAUSED:
                if not stopped:
                    out.append(PAUSED)
                stopped = True
            break
    return out


def _split(payload: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(payload)), min(8, len(payload) - 1)))
    edges = [0, *cuts, len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(edges) if b > a]


def check(data: bytes) -> None:
    """Raise AssertionError (or anything but RemoteProtocolError) if an invariant breaks."""
    if len(data) < 3:
        return
    limits = LIMITS[data[0] % len(LIMITS)]
    eof = bool(data[0] & 4)
    payload = data[2:]
    whole = outcome([payload], eof, limits)
    split = outcome(_split(payload, data[1]), eof, limits)
    assert split == whole, (whole, split)
    if len(payload) <= BYTEWISE_MAX:
        bytewise = outcome((payload[i : i + 1] for i in range(len(payload))), eof, limits)
        assert bytewise == whole, (whole, bytewise)


def main() -> None:
    # Let libFuzzer see the operands of regex matches and bytes comparisons, so it learns
    # "HTTP/1.1", "chunked" and the like instead of guessing them byte by byte.
    atheris.enabled_hooks.add("RegEx")
    atheris.enabled_hooks.add("str")
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
