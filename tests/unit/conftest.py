"""Unit tests run modules in the test process: keep them in the module context.

Importing controller code (an action plugin's base, ``ansible.utils.display``) marks the whole process as the
controller, and from then on a module's ``warn()`` goes to the controller's display instead of the module's result.
The tests of the action plugins import it at collection time, before every other test runs, so each test here
starts in the module context again; the action plugins' own tests get the controller context they import.
"""

from __future__ import annotations

import pytest

from ansible.module_utils import _internal

CONTROLLER_TESTS = ("test_progress_action.py",)


@pytest.fixture(autouse=True)
def module_context(request, monkeypatch):
    """``is_controller`` as a module sees it (False), except for the tests of controller code."""
    if request.node.path.name not in CONTROLLER_TESTS:
        monkeypatch.setattr(_internal, "is_controller", False)
