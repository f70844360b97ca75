"""Shared pytest setup for every atlasia.dr suite.

- Ansible writes nowhere outside the checkout: ANSIBLE_HOME points at ``.ansible/``.
- ``-m root`` tests are skipped when not running as root; ``integration`` marks everything in
  tests/integration.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import ANSIBLE_HOME, REPO_ROOT, TMP_ROOT, schedule

os.environ.setdefault("ANSIBLE_HOME", str(ANSIBLE_HOME))
os.environ.setdefault("ANSIBLE_LOCAL_TEMP", str(ANSIBLE_HOME / "tmp"))

_INTEGRATION_DIR = REPO_ROOT / "tests" / "integration"


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(schedule.Recorder(), "atlasia-test-durations")


def pytest_collection_modifyitems(config, items):
    skip_root = pytest.mark.skip(reason="needs root")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(_INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)
        if "root" in item.keywords and os.geteuid() != 0:
            item.add_marker(skip_root)
    schedule.longest_first(items, workers=int(getattr(config, "workerinput", {}).get("workercount", 0)))


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` in the order of :func:`tests.support.schedule.longest_first`, prod-world files together."""
    return schedule.scheduler(config, log)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository (and collection) root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def project_tmp() -> Path:
    """A git-ignored scratch folder inside the checkout (``.tmp/``), e.g. for files containers must see."""
    TMP_ROOT.mkdir(exist_ok=True)
    return TMP_ROOT
