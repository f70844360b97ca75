# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The module class every atlasia.dr module uses."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule


class DRModule(AnsibleModule):
    """AnsibleModule whose results keep the artifact facts the module computed.

    AnsibleModule adds ``stat`` facts (size, mode, owner...) to any result that has a ``path`` or ``dest``
    key, overwriting the module's own ``size`` (wrong for a directory-format dump, whose size is the sum of
    its files). Our results describe backups, not the path's inode, so this is turned off.
    """

    def add_path_info(self, kwargs):
        return kwargs
