from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import ServerProcess, backend_params, make_docroot

__all__ = ["backend_params"]  # re-exported: tests import it from here or from helpers


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
