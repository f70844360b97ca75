#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_scratch_db
short_description: Drop the scratch databases of restore tests and drills
version_added: 0.1.0
description:
  - Drops O(db), a scratch database a restore test restored a backup into, with
    C(DROP DATABASE ... WITH (FORCE)) (sessions still connected to it are terminated).
  - Only scratch names are accepted, C(<stem>_<kind>_<YYYYMMDD>_<HHMMSS>) with a kind listed in O(kinds), so a
    production database can never be dropped by a wrong variable. Any other name fails the task.
  - With O(previous_runs=true) every database with the same C(<stem>_<kind>_) and another timestamp is dropped
    too (leftovers of interrupted runs), O(db) included.
  - Nothing to drop is not an error (C(changed=false)).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - atlasia.dr.postgres
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be dropped; drops nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  kinds:
    description:
      - Kinds of scratch databases this task may drop (the C(<kind>) part of the name).
    type: list
    elements: str
    default: [verify, drill]
  previous_runs:
    description:
      - Also drop the scratch databases of earlier runs (same stem and kind, any timestamp).
    type: bool
    default: false
  maintenance_db:
    description:
      - Database to connect to for listing and dropping databases.
    type: str
    default: postgres
seealso:
  - module: atlasia.dr.pg_restore_db
  - module: atlasia.dr.pg_verify
"""

EXAMPLES = r"""
- name: Drop the leftovers of interrupted restore tests before a new one
  atlasia.dr.pg_scratch_db:
    db: aiteam_3f9a1c_verify_20261126_031500
    previous_runs: true
    login_host: 127.0.0.1

- name: Drop this run's scratch database
  atlasia.dr.pg_scratch_db:
    db: aiteam_3f9a1c_verify_20261126_031500
    container: aiteam_db_prod
    login_user: aiteam_prod_user
"""

RETURN = r"""
dropped:
  description: Databases dropped (in check mode, that would be dropped).
  returned: always
  type: list
  elements: str
  sample: [aiteam_3f9a1c_verify_20261119_031500, aiteam_3f9a1c_verify_20261126_031500]
existed:
  description: Whether O(db) itself existed.
  returned: success
  type: bool
  sample: true
stem:
  description: The C(<stem>_<kind>) part shared by the scratch databases of every run.
  returned: success
  type: str
  sample: aiteam_3f9a1c_verify
"""

import re

from ansible_collections.atlasia.dr.plugins.module_utils import naming
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    fail_postgres,
    postgres_argument_spec,
    quote_ident,
)

_SCRATCH_RE = re.compile(r"^(?P<stem>.+)_(?P<kind>[a-z][a-z0-9]*)_(?P<ts>\d{8}_\d{6})$")


def parse_scratch(name, kinds):
    """``(stem_with_kind, timestamp)`` when ``name`` is a scratch name of one of ``kinds``, else None."""
    match = _SCRATCH_RE.match(name or "")
    if not match or match.group("kind") not in kinds:
        return None
    try:
        moment = naming.parse_timestamp(match.group("ts"))
    except ValueError:
        return None
    return "%s_%s" % (match.group("stem"), match.group("kind")), moment


def to_drop(name, existing, kinds, previous_runs):
    """Databases to drop among ``existing`` for scratch ``name``."""
    parsed = parse_scratch(name, kinds)
    stem = parsed[0]
    chosen = []
    for candidate in existing:
        if candidate == name:
            chosen.append(candidate)
        elif previous_runs:
            other = parse_scratch(candidate, kinds)
            if other is not None and other[0] == stem:
                chosen.append(candidate)
    return sorted(chosen)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        kinds=dict(type="list", elements="str", default=["verify", "drill"]),
        previous_runs=dict(type="bool", default=False),
        maintenance_db=dict(type="str", default="postgres"),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = dict(changed=False, dropped=[])
    parsed = parse_scratch(p["db"], p["kinds"])
    if parsed is None:
        module.fail_json(msg="refusing to drop %r: only scratch databases named <name>_<kind>_YYYYMMDD_HHMMSS with a "
                             "kind in %s are dropped by this module" % (p["db"], ", ".join(p["kinds"])), **result)
    if p["db"] == p["maintenance_db"]:
        module.fail_json(msg="db and maintenance_db are both %s" % p["db"], **result)
    result["stem"] = parsed[0]
    client = PostgresClient(module)
    try:
        existing = client.databases(p["maintenance_db"])
        result["existed"] = p["db"] in existing
        targets = to_drop(p["db"], existing, p["kinds"], p["previous_runs"])
        if targets and not module.check_mode:
            for name in targets:
                client.query("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(name), db=p["maintenance_db"])
                result["dropped"].append(name)
        else:
            result["dropped"] = targets
        result["changed"] = bool(targets)
    except PostgresError as exc:
        fail_postgres(module, exc, prefix="cannot drop the scratch database %s: " % p["db"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
