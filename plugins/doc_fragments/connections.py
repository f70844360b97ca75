# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import re

import yaml

from ansible_collections.atlasia.dr.plugins.doc_fragments.postgres import ModuleDocFragment as _Postgres
from ansible_collections.atlasia.dr.plugins.doc_fragments.s3 import ModuleDocFragment as _S3
from ansible_collections.atlasia.dr.plugins.doc_fragments.vault import ModuleDocFragment as _Vault


def _nested(name, description, *fragments):
    """The options of ``fragments`` as the suboptions of one dict option ``name`` (references follow them)."""
    options = {}
    for fragment in fragments:
        options.update(yaml.safe_load(fragment)["options"])

    def point(text):
        return re.sub(r"O\(([a-z_]+)((?:=[^)]*)?)\)", lambda m: "O(%s.%s%s)" % (name, m.group(1), m.group(2))
                      if m.group(1) in options else m.group(0), text)

    for option in options.values():
        option["description"] = [point(line) for line in (
            option["description"] if isinstance(option["description"], list) else [option["description"]])]
    return dict(description=description, type="dict", suboptions=options)


class ModuleDocFragment(object):
    # The connection options of the PostgreSQL, Vault and S3 modules as three dict options (postgres, vault, s3), for
    # a module that talks to all three at once (preflight): built from their own fragments, so they never differ.
    DOCUMENTATION = yaml.safe_dump(dict(options=dict(
        postgres=_nested("postgres", ["Database connection to check, as for M(atlasia.dr.pg_dump_backup). Omit to skip."],
                         _Postgres.DOCUMENTATION),
        vault=_nested("vault", ["Vault connection to check, as for M(atlasia.dr.vault_snapshot). Omit to skip."],
                      _Vault.DOCUMENTATION, _Vault.TOKEN),
        s3=_nested("s3", ["S3 connection to check, as for M(atlasia.dr.s3_backup_transfer). Omit to skip."],
                   _S3.DOCUMENTATION),
    )), default_flow_style=False, sort_keys=True)
