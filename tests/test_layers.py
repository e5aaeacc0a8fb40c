"""The layer rules of STYLE.md section 2, enforced by walking each module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "c10k"

# package -> c10k packages/modules it may import
ALLOWED: dict[str, set[str]] = {
    "core": {"c10k.core", "c10k.region"},
    "http": {"c10k.http", "c10k.region"},
    "static": {"c10k.static", "c10k.http", "c10k.region"},
    "server": {"c10k.server", "c10k.core", "c10k.http", "c10k.static", "c10k.region"},
    "bench": {"c10k.bench", "c10k.core"},
}
# stdlib modules a layer must not touch
FORBIDDEN_STDLIB: dict[str, set[str]] = {
    "http": {"socket", "select", "selectors", "os", "time", "io", "mmap", "ssl", "asyncio"},
    "static": {"socket", "select", "selectors", "asyncio"},
    "region": {"*"},
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_layers_imports_respect_rules(path: Path) -> None:
    rel = path.relative_to(SRC)
    layer = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "c10k":
            if layer in ALLOWED:
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED[layer]), (
                    f"{rel} imports {name}: layer {layer!r} may only import {ALLOWED[layer]}"
                )
            elif layer == "region":
                raise AssertionError(f"region.py must import nothing, imports {name}")
        else:
            forbidden = FORBIDDEN_STDLIB.get(layer, set())
            assert "*" not in forbidden, f"{rel} must import nothing, imports {name}"
            assert top not in forbidden, f"{rel} ({layer}) must not import {top}"


def test_layers_rule_table_covers_every_package() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - {"www"} <= set(ALLOWED), packages - set(ALLOWED)
