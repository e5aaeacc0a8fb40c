"""The layer rules of STYLE.md section 2, enforced by walking each module's imports.

What `violations` counts as an import of a module:

- `import x` and `from x import y`, absolute or relative: `from ..http import y` in
  c10k/static/ is an import of c10k.http, and `from .. import server` of c10k.server;
- a string literal passed to `importlib.import_module`, `__import__` or
  `importlib.util.find_spec` (by whatever name the function is reached);
- in a module that makes such a call, every string constant shaped like a c10k module path
  ("c10k.server.aio", "c10k.server.aio:AsyncioServer", or "c10k.server.", the head of
  f"c10k.server.{name}") that names a module or package of the tree: the name may reach the
  call through a table, as in server/modes.py. Requiring the module to exist keeps logger
  names such as "c10k.loop" out; a name that does not exist cannot be imported anyway.

Names built any other way (concatenation, a name read from a file) are not seen.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "c10k"

# A module's rule is keyed by the first part of its path under c10k/: its package ("core"),
# or its file name for a top-level module ("doctor.py"). A module without a key is an error,
# so that a new package or top-level module is a decision rather than a free pass.
# key -> the c10k modules it may import: each name and everything under it
ALLOWED: dict[str, set[str]] = {
    "core": {"c10k.core", "c10k.region"},
    "http": {"c10k.http", "c10k.region"},
    "static": {"c10k.static", "c10k.http", "c10k.region"},
    "server": {"c10k.server", "c10k.core", "c10k.http", "c10k.static", "c10k.region"},
    "bench": {"c10k.bench", "c10k.core"},
    "region.py": set(),
    # it reports which backends and server modes can run here; it serves and benches nothing
    "doctor.py": {"c10k.core", "c10k.server", "c10k.region"},
    # the composition root: every other package and module, listed one by one
    "cli.py": {
        "c10k.core",
        "c10k.http",
        "c10k.static",
        "c10k.server",
        "c10k.bench",
        "c10k.region",
        "c10k.doctor",
    },
    "__main__.py": {"c10k.cli"},
    "__init__.py": {"c10k.cli"},
}
# keys that may import the package itself (``from c10k import __version__``): its
# __init__ holds the version and public names, and imports nothing of the tree eagerly.
PACKAGE_ROOT_ALLOWED = {"cli.py"}
# key -> stdlib modules that layer must not touch ("*": no import at all)
FORBIDDEN_STDLIB: dict[str, set[str]] = {
    "http": {"socket", "select", "selectors", "os", "time", "io", "mmap", "ssl", "asyncio"},
    "static": {"socket", "select", "selectors", "asyncio"},
    "region.py": {"*"},
}
# path under c10k/ -> stdlib modules that one module must not touch, on top of its layer's
# rule. A rule for a file that does not exist yet simply waits for it.
FORBIDDEN_PER_MODULE: dict[str, set[str]] = {
    # the sans-I/O connection state machine: bytes and `now` in, actions out
    "server/session.py": {
        "socket",
        "select",
        "selectors",
        "os",
        "time",
        "threading",
        "asyncio",
        "ssl",
        "mmap",
        "io",
        "concurrent",
    },
}

IMPORT_FUNCTIONS = {"import_module", "__import__", "find_spec"}
# "c10k.a.b", "c10k.a.b:Attr", or an f-string head "c10k.a."
C10K_MODULE_PATH = re.compile(r"c10k(\.\w+)+\.?(:\w+(\.\w+)*)?")


def violations(src_root: Path, path: Path) -> list[str]:
    """Every layer rule that the module at `path` breaks; `src_root` is its c10k/ directory."""
    rel = path.relative_to(src_root)
    key = rel.parts[0]
    if key not in ALLOWED:
        return [f"{rel}: no layer rule; give {key!r} one in ALLOWED (tests/test_layers.py)"]
    forbidden = FORBIDDEN_STDLIB.get(key, set()) | FORBIDDEN_PER_MODULE.get(rel.as_posix(), set())
    found = []
    for name in _imported_names(src_root, path):
        problem = _check(key, forbidden, name)
        if problem:
            found.append(f"{rel} imports {name}: {problem}")
    return found


def _check(key: str, forbidden: set[str], name: str) -> str | None:
    if name.startswith("."):
        return "a relative import above the c10k package"
    if name in ("c10k", "c10k.__version__") and key in PACKAGE_ROOT_ALLOWED:
        return None
    if name == "c10k" or name.startswith("c10k."):
        allowed = ALLOWED[key]
        if not any(name == a or name.startswith(a + ".") for a in allowed):
            return f"{key!r} may only import {sorted(allowed) or 'nothing'} of c10k"
    elif "*" in forbidden or name.split(".")[0] in forbidden:
        return f"{key!r} must not import {sorted(forbidden)}"
    return None


def _imported_names(src_root: Path, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    # the package relative imports start from: c10k/http/x.py and c10k/http/__init__.py
    # are both in c10k.http
    package = [src_root.name, *path.relative_to(src_root).parent.parts]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names += _from_import(package, node)
    # once each: a literal passed to import_module is also one of the module's strings
    return list(dict.fromkeys(names + _dynamic_imports(src_root, package, tree)))


def _from_import(package: list[str], node: ast.ImportFrom) -> list[str]:
    base = _absolute(package, node.level, node.module)
    if base == "c10k":
        # `from c10k import server`: the names imported from the root are the layers
        return [f"c10k.{a.name}" for a in node.names]
    return [base]


def _absolute(package: list[str], level: int, module: str | None) -> str:
    """The absolute name of `from <level dots><module> import ...` inside `package`."""
    if level == 0:
        return module or ""
    if level > len(package):
        return "." * level + (module or "")  # above the top package; _check says so
    return ".".join(package[: len(package) - level + 1] + ([module] if module else []))


def _dynamic_imports(src_root: Path, package: list[str], tree: ast.Module) -> list[str]:
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and _callee(n) in IMPORT_FUNCTIONS
    ]
    if not calls:
        return []
    literals = [s for c in calls if c.args and (s := _string(c.args[0])) is not None]
    # import_module("..http", __package__) is relative to this module's package
    named = [
        _absolute(package, len(s) - len(s.lstrip(".")), s.lstrip(".") or None) for s in literals
    ]
    return named + _module_paths(src_root, tree)


def _module_paths(src_root: Path, tree: ast.Module) -> list[str]:
    """The c10k modules that the string constants name: "c10k.server.aio:AsyncioServer"."""
    strings = [s for node in ast.walk(tree) if (s := _string(node)) is not None]
    names = [s.partition(":")[0].rstrip(".") for s in strings if C10K_MODULE_PATH.fullmatch(s)]
    return [name for name in names if _names_a_module(src_root, name)]


def _string(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _callee(call: ast.Call) -> str | None:
    """The called function's own name: `import_module` for importlib.import_module(...)."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _names_a_module(src_root: Path, name: str) -> bool:
    path = src_root.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_layers_imports_respect_rules(path: Path) -> None:
    assert violations(SRC, path) == []


def test_layers_every_module_has_a_rule() -> None:
    without = [
        str(p.relative_to(SRC)) for p in _modules() if p.relative_to(SRC).parts[0] not in ALLOWED
    ]
    assert without == [], f"modules with no layer rule in ALLOWED: {without}"


# Injected violations: a fake c10k/ tree in tmp_path, one module per case.


def _fake_tree(tmp_path: Path, rel: str, source: str) -> tuple[Path, Path]:
    """A c10k/ tree with every package and server/app.py, plus `source` at `rel`."""
    root = tmp_path / "c10k"
    for package in ("core", "http", "static", "server", "bench"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "server" / "app.py").write_text("")
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return root, path


TABLE = """\
import importlib

MODES = {"app": "c10k.server.app:Server"}


def load(mode):
    module, _, attr = MODES[mode].partition(":")
    return getattr(importlib.import_module(module), attr)
"""


# (module path under c10k/, its source, the name the report must mention)
INJECTED = [
    # relative imports
    ("http/bad.py", "from ..server import app\n", "c10k.server"),
    ("http/bad.py", "from .. import server\n", "c10k.server"),
    ("core/bad.py", "from ..http.events import Request\n", "c10k.http.events"),
    ("static/deep/bad.py", "from ...server.app import Server\n", "c10k.server.app"),
    ("http/bad.py", "from ... import x\n", "above the c10k package"),
    # imports by name
    (
        "http/bad.py",
        'import importlib\nimportlib.import_module("c10k.server.app")\n',
        "c10k.server.app",
    ),
    (
        "core/bad.py",
        'from importlib import import_module\nimport_module("c10k.http")\n',
        "c10k.http",
    ),
    ("static/bad.py", '__import__("c10k.server")\n', "c10k.server"),
    (
        "bench/bad.py",
        'import importlib.util\nimportlib.util.find_spec("c10k.server.app")\n',
        "c10k.server.app",
    ),
    (
        "http/bad.py",
        'import importlib\nimportlib.import_module("..server", __package__)\n',
        "c10k.server",
    ),
    ("bench/bad.py", TABLE, "c10k.server.app"),
    (
        "bench/bad.py",
        'import importlib\nimportlib.import_module(f"c10k.server.{m}")\n',
        "c10k.server",
    ),
    ("http/bad.py", 'import importlib\nimportlib.import_module("socket")\n', "socket"),
    # the top-level modules
    ("doctor.py", "from c10k.bench import runner\n", "c10k.bench"),
    ("doctor.py", "import c10k.http.readers\n", "c10k.http.readers"),
    ("doctor.py", "from c10k import static\n", "c10k.static"),
    ("__main__.py", "from c10k.server import Server\n", "c10k.server"),
    ("__init__.py", "from . import doctor\n", "c10k.doctor"),
    ("region.py", "import os\n", "os"),
    ("region.py", "from .core import fdio\n", "c10k.core"),
    ("cli.py", "from c10k import nowhere\n", "c10k.nowhere"),
    # stdlib, per layer and per module
    ("http/bad.py", "import socket\n", "socket"),
    ("http/bad.py", "from time import monotonic\n", "time"),
    ("static/bad.py", "import select\n", "select"),
    ("bench/bad.py", "from c10k.server import app\n", "c10k.server"),
    ("server/session.py", "import socket\n", "socket"),
    ("server/session.py", "from time import monotonic\n", "time"),
    ("server/session.py", "import concurrent.futures\n", "concurrent"),
    ("server/session.py", "import threading\n", "threading"),
    # no rule at all
    ("newlayer/mod.py", "", "newlayer"),
    ("newtop.py", "", "newtop.py"),
]
# (module path under c10k/, its source) that break no rule
CLEAN = [
    ("http/ok.py", "import re\nfrom .events import Request\nfrom ..region import FileRegion\n"),
    ("http/__init__.py", "from . import events\nfrom .events import Request\n"),
    ("static/ok.py", "import os\nfrom ..http import writers\n"),
    ("server/modes.py", TABLE),
    ("server/protocol.py", "import socket\nimport time\nfrom ..core import loop\n"),
    ("server/session.py", "import re\nfrom ..http.connection import HTTPConnection\n"),
    # a logger name is not a module, even in a module that imports by name
    ("core/ok.py", 'import logging\nlogging.getLogger("c10k.loop")\n__import__("sys")\n'),
    ("doctor.py", "import socket\nfrom c10k.server.modes import available_modes\n"),
    ("cli.py", 'import importlib\nimportlib.import_module("c10k.doctor")\n'),
    ("__main__.py", "import sys\nfrom c10k.cli import main\n"),
    ("region.py", '"""FileRegion."""\n'),
]


@pytest.mark.parametrize(
    ("rel", "source", "offender"), INJECTED, ids=[f"{rel}:{name}" for rel, _, name in INJECTED]
)
def test_layers_checker_reports_injected_violation(
    tmp_path: Path, rel: str, source: str, offender: str
) -> None:
    found = violations(*_fake_tree(tmp_path, rel, source))
    assert len(found) == 1, found
    assert offender in found[0]


@pytest.mark.parametrize(("rel", "source"), CLEAN, ids=[rel for rel, _ in CLEAN])
def test_layers_checker_passes_clean_module(tmp_path: Path, rel: str, source: str) -> None:
    assert violations(*_fake_tree(tmp_path, rel, source)) == []
