# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Runs atlasia.dr.pgbackrest and prints its progress every ``dr_progress_interval`` seconds.

See plugins/plugin_utils/progress_action.py.
"""

from __future__ import annotations

from ansible_collections.atlasia.dr.plugins.plugin_utils.progress_action import ProgressAction


class ActionModule(ProgressAction):
    """atlasia.dr.pgbackrest with progress lines."""
