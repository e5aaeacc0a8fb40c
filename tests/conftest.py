from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from c10k.core.registry import BACKENDS, available_backends, unavailable_backends
from c10k.server.modes import SERVER_MODES, available_modes, unavailable_modes
from helpers import ServerProcess, make_docroot


def backend_params(modes: bool = True) -> list[object]:
    """Every readiness backend (and, with ``modes``, every server mode: uring, threads,
    asyncio, uvloop): those that run here, and the others skipped with their reason."""
    params: list[object] = list(available_backends())
    skipped = dict(unavailable_backends())
    if modes:
        params.extend(available_modes())
        skipped.update(unavailable_modes())
    for name, reason in skipped.items():
        params.append(pytest.param(name, marks=pytest.mark.skip(reason=reason), id=name))
    expected = set(BACKENDS) | (set(SERVER_MODES) if modes else set())
    assert expected == {p if isinstance(p, str) else p.values[0] for p in params}  # type: ignore[attr-defined]
    return params


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("site") / "www")


@pytest.fixture(scope="module", params=backend_params())
def server(request: pytest.FixtureRequest, docroot: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(docroot, request.param)
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-4000:]
