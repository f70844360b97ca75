# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/plugin_utils/progress_action.py: what the controller accepts as a module's state."""

from __future__ import annotations

import json

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import progress
from ansible_collections.atlasia.dr.plugins.plugin_utils import progress_action


def test_a_reporter_state_is_accepted(tmp_path):
    path = tmp_path / "state.json"
    report = progress.Reporter(str(path), total=10, verb="uploaded")
    report.add(4)
    report.write()
    state = progress_action.load_state(path.read_text())
    assert state["done"] == 4 and state["total"] == 10 and state["verb"] == "uploaded"


@pytest.mark.parametrize("text", ["", "{", "[]", "null", json.dumps({"done": 1}), "half a file {\"done\": 1"])
def test_anything_else_is_skipped(text):
    assert progress_action.load_state(text) is None
