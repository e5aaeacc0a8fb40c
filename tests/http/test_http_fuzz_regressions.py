"""Replay fuzzer inputs through the fuzz harness's own invariant check.

``fuzz/fuzz_http.py`` defines ``check(data)``: the parser only returns events or raises
RemoteProtocolError, the outcome does not depend on how the bytes are split, no request
after an error, every request well-formed. Here it runs, without atheris, on every saved
finding (tests/data/fuzz/) and on the seed corpus (fuzz/corpus/), lwan
``TestFuzzRegression`` style: a new crash file is a new test with no code change.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from c10k.http import connection as connection_module

REPO = Path(__file__).resolve().parents[2]
INPUT_DIRS = [REPO / "tests" / "data" / "fuzz", REPO / "fuzz" / "corpus"]
INPUTS = sorted(
    p for d in INPUT_DIRS if d.is_dir() for p in d.iterdir() if p.is_file() and p.suffix != ".md"
)


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_http", REPO / "fuzz" / "fuzz_http.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HARNESS = _harness()


def test_http_fuzz_inputs_exist() -> None:
    assert len(INPUTS) >= 100  # the seed corpus at least


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_http_fuzz_regression(path: Path) -> None:
    HARNESS.check(path.read_bytes())


def test_http_fuzz_check_catches_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness must be able to fail: a parser that lets a ValueError escape on some
    # input is caught as a crash, and one whose outcome depends on the split is too.
    real = connection_module.parse_head

    def broken(head: bytes, max_fields: int = 100) -> object:
        if b"X-Boom" in head:
            raise ValueError("planted")
        return real(head, max_fields)

    monkeypatch.setattr(connection_module, "parse_head", broken)
    with pytest.raises(ValueError, match="planted"):
        HARNESS.check(b"\x00\x07GET / HTTP/1.1\r\nHost: x\r\nX-Boom: 1\r\n\r\n")
    monkeypatch.setattr(connection_module, "parse_head", real)
    monkeypatch.setattr(connection_module, "_malformed", lambda buf, end: len(buf) == 3)
    with pytest.raises(AssertionError):
        HARNESS.check(b"\x00\x07GET / HTTP/1.1\r\nHost: x\r\n\r\n")
