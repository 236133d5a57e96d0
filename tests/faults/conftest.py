"""Fault-suite fixtures (a platform of real processes, figures per test) and the session hook that writes
docs/reliability.md, only after the whole fault suite ran and passed, so a partial run never overwrites it."""
from __future__ import annotations

import itertools
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.faults.harness import Figures, Platform
from tests.faults.report import write_report

FAULTS_DIR = Path(__file__).resolve().parent
REPORT = FAULTS_DIR.parent.parent / "docs" / "reliability.md"

_figures: dict[str, Figures] = {}  # nodeid -> figures, in the order the tests ran
_collected: list[str] = []  # fault-suite node ids, in collection order
_passed: set[str] = set()
_spoiled: list[str] = []  # why this session's figures must not be written
_redis_dirs = itertools.count(1)
# The report's order: the list of faults, not pytest's alphabetical one.
ORDER = ["test_upstream_faults", "test_bad_payloads", "test_hostile_upstream", "test_redis_outage",
         "test_redis_lifecycle", "test_worker_loss", "test_duplicate_triggers", "test_store_outage", "test_store_faults",
         "test_shutdown", "test_bad_input", "test_hostile_web", "test_slow_clients", "test_operations"]


def _is_fault(nodeid: str) -> bool:
    return nodeid.startswith("tests/faults/")


def pytest_collection_modifyitems(session, config, items):
    # A path or node id *inside* the fault suite runs only part of it (e.g. tests/faults/test_x.py::test_y).
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path != FAULTS_DIR and FAULTS_DIR in path.parents:
            _spoiled.append(f"only part of the fault suite was selected ({arg})")


def pytest_deselected(items):
    if any(_is_fault(item.nodeid) for item in items):
        _spoiled.append("fault tests were deselected (-k, -m, --lf or --deselect)")


def pytest_collection_finish(session):
    _collected.extend(item.nodeid for item in session.items if _is_fault(item.nodeid))


def pytest_runtest_logreport(report):
    if not _is_fault(report.nodeid):
        return
    if report.failed or report.skipped:
        _spoiled.append(f"{report.nodeid} {report.outcome} in {report.when}")
    elif report.when == "call":
        _passed.add(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    modules = {nodeid.split("::")[0] for nodeid in _collected}
    every_module = {f"tests/faults/{path.name}" for path in FAULTS_DIR.glob("test_*.py")}
    if not _collected or _spoiled or set(_collected) != _passed or modules != every_module:
        return  # a partial or failed run: keep the figures of the last complete one
    write_report(REPORT, [_figures[nodeid] for nodeid in sorted(_collected, key=_report_order) if nodeid in _figures])


def _report_order(nodeid: str) -> int:
    module = nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    return ORDER.index(module) if module in ORDER else len(ORDER)  # stable sort: tests keep their file order


@pytest.fixture
def figures(request) -> Figures:
    """This test's figures, labelled with the first line of its docstring."""
    doc = (request.function.__doc__ or request.node.name).strip().splitlines()[0].rstrip(".")
    record = Figures(doc)
    _figures[request.node.nodeid] = record
    return record


@pytest.fixture
def fake(fake_coingecko):
    return fake_coingecko


@pytest.fixture
def make_platform(tmp_path, short_tmp, fake, figures):
    """make_platform(**env) -> a Platform (own redis-server, no product process yet), closed after the test."""
    with ExitStack() as stack:
        def make(**env: str) -> Platform:
            redis_dir = short_tmp / f"r{next(_redis_dirs)}"
            return stack.enter_context(Platform(tmp_path / "platform", redis_dir, fake, figures, **env))

        yield make

