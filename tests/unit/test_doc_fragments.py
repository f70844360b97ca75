# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/doc_fragments/connections.py stays the nesting of the postgres, vault and s3 fragments.

The fragment is a literal string (ansible-test's yamllint reads fragments as literals); this test rebuilds it from
the other fragments and fails, printing the text to paste, when they drift apart.
"""

from __future__ import annotations

import re

import yaml

from ansible_collections.atlasia.dr.plugins.doc_fragments.connections import ModuleDocFragment as Connections
from ansible_collections.atlasia.dr.plugins.doc_fragments.postgres import ModuleDocFragment as Postgres
from ansible_collections.atlasia.dr.plugins.doc_fragments.s3 import ModuleDocFragment as S3
from ansible_collections.atlasia.dr.plugins.doc_fragments.vault import ModuleDocFragment as Vault


def nested(name, description, *fragments):
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


def expected():
    return dict(options=dict(
        postgres=nested("postgres", ["Database connection to check, as for M(atlasia.dr.pg_dump_backup). Omit to skip."],
                        Postgres.DOCUMENTATION),
        vault=nested("vault", ["Vault connection to check, as for M(atlasia.dr.vault_snapshot). Omit to skip."],
                     Vault.DOCUMENTATION, Vault.TOKEN),
        s3=nested("s3", ["S3 connection to check, as for M(atlasia.dr.s3_backup_transfer). Omit to skip."],
                  S3.DOCUMENTATION),
    ))


def test_connections_fragment_is_the_nesting_of_the_connection_fragments():
    want = expected()
    assert yaml.safe_load(Connections.DOCUMENTATION) == want, (
        "plugins/doc_fragments/connections.py is out of date; its DOCUMENTATION should be:\n"
        + yaml.safe_dump(want, default_flow_style=False, sort_keys=True))
