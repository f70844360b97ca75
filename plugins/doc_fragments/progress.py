# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The internal option of the modules whose long steps report progress (``module_utils.progress``)."""

    DOCUMENTATION = r"""
options:
  progress_file:
    description:
      - Internal. Set by the collection's action plugin, which prints the progress of the task every
        C(dr_progress_interval) seconds; do not set it in a task.
      - The module replaces this small JSON file (bytes done, total when known) about once a second.
    type: path
"""
