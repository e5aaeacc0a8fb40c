"""Fixtures for the end-to-end tests (see e2e_support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import RecordingServer, make_e2e_docroot


@pytest.fixture(scope="module")
def e2e_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_e2e_docroot(tmp_path_factory.mktemp("e2e") / "www")


@pytest.fixture(scope="module")
def e2e_server(e2e_root: Path) -> Iterator[RecordingServer]:
    with RecordingServer(e2e_root) as srv:
        yield srv
