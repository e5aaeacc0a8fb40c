from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import helpers
from c10k.core import diskio
from helpers import ServerProcess, backend_params, make_docroot

__all__ = ["backend_params"]  # re-exported: tests import it from here or from helpers

# Tests marked ``timed`` wait seconds on the server's own timeouts (send timeout, header
# timeout, drain, accept-queue checks), once per mode. By default they run on one mode per
# driver plus edge-triggered epoll: the drivers differ in how they move bytes, while select,
# poll, rtsig and uvloop differ only in the event source under the same driver, which the
# contract, hostile and core suites cover on every mode. ``--all-modes`` runs them all.
SIBLING_MODES = frozenset({"select", "poll", "rtsig", "uvloop"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-modes",
        action="store_true",
        help="run tests marked timed on every mode, not one per driver",
    )


# The bench tests run load generators pinned to CPUs and read rates off the machine: they
# are marked ``alone`` (as are the files that say so themselves), and ``make test`` runs
# them one at a time after the rest (docs/ARCHITECTURE.md, "Tests").
BENCH_DIR = Path(__file__).parent / "bench"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(BENCH_DIR):
            item.add_marker(pytest.mark.alone)
    if config.getoption("--all-modes"):
        return
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        values = params.params.values() if params else ()
        modes = {v for v in values if isinstance(v, str)}
        sibling = item.get_closest_marker("timed") and modes & SIBLING_MODES
        (drop if sibling else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[CALL_PASSED] = report.passed
    return report


@pytest.fixture(autouse=True)
def _servers_stopped(request: pytest.FixtureRequest) -> Iterator[None]:
    """Servers a test started and left running are killed after it: a test that failed
    before its stop would otherwise leave one that fails a later, unrelated test (a
    ResourceWarning). A test that passed and left one running fails here. Servers of
    module- and session-scoped fixtures start before this and are not touched."""
    first = len(helpers.STARTED)
    yield
    running = helpers.reap_servers(first)
    if running and request.node.stash.get(CALL_PASSED, False):
        pytest.fail(f"the test left servers running: pids {running}")


@pytest.fixture(autouse=True)
def _disk_check_restored() -> Iterator[None]:
    """A server built in this process with ``io_threads=0`` turns the residency check
    off for the whole process (``diskio.set_enabled``, one Policy per worker process in
    production). Put back after each test: a later test in the same process (the order
    differs per xdist worker) would otherwise find every cold file warm."""
    yield
    diskio.set_enabled(True)


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
