#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_report
short_description: Write the report of a restore, rebuild, drill or restore test
version_added: 0.1.0
description:
  - Writes C(<kind>-<YYYYMMDD>_<HHMMSS>.json) and C(.md) into O(dest), with the phases and their durations
    against the plan's targets (assessment 15 min, preparation 30 min, restoration 2 h, verification 1 h,
    post-recovery 30 min), the achieved RTO (C(rto_seconds)) and RPO (C(rpo_seconds), the restore's start
    minus the backup's timestamp), the checks and whether all passed (C(verified)), the backup used and the
    safety backup written.
  - The keys C(rto_seconds), C(rpo_seconds), C(phases) and C(verified) are a stable interface.
  - Optionally also an SVG timeline of the phases and a line appended to a JSON-lines history.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Builds and returns the report without writing files.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  kind:
    description: What is reported; the file name starts with it.
    type: str
    required: true
    choices: [restore, rebuild, drill, verify, vault-recover, recover-data]
  dest:
    description: Directory of the reports (created when missing).
    type: path
    required: true
  phases:
    description:
      - Phases in order, each a dict with C(name), C(started), C(finished) (epoch seconds or ISO 8601),
        optional C(target_seconds) (defaults to the plan's target of that phase), C(status) (V(ok) or
        V(failed)) and C(notes).
    type: list
    elements: dict
    required: true
  checks:
    description: Verification checks, each a dict with C(name), C(ok) (bool) and C(detail).
    type: list
    elements: dict
    default: []
  started:
    description: Start of the whole operation; defaults to the start of the first phase.
    type: str
  finished:
    description: End of the whole operation; defaults to the end of the last phase.
    type: str
  backup:
    description: The backup used (set id, source, manifest, skipped sets...).
    type: dict
  backup_time:
    description: Timestamp of the backup used, for the RPO.
    type: str
  environment:
    description: Environment name.
    type: str
  safety_backup:
    description: Path of the safety backup written before the restore.
    type: str
  status:
    description: Overall status; defaults to V(failed) when a phase failed, else V(succeeded).
    type: str
    choices: [succeeded, failed]
  rto_target_seconds:
    description: RTO target.
    type: int
    default: 14400
  rpo_target_seconds:
    description: RPO target.
    type: int
    default: 86400
  extra:
    description: Additional keys (for example C(next_steps), a list of strings shown under "What to do next").
    type: dict
  timeline:
    description: Also write C(<kind>-<ts>.svg), a timeline of the phases against their targets.
    type: bool
    default: false
  history:
    description: Append the report as one JSON line to this file (for example C(reports/drills.jsonl)).
    type: path
"""

EXAMPLES = r"""
- name: Write the restore report
  atlasia.dr.dr_report:
    kind: restore
    dest: "{{ playbook_dir }}/../reports"
    environment: prod
    phases: "{{ dr_restore_phases }}"
    checks: "{{ dr_restore_checks }}"
    backup: {set_id: "20261126_020000", source: local}
    backup_time: "20261126_020000"
  register: report

- name: Show it
  ansible.builtin.debug:
    msg: "{{ report.markdown.splitlines() }}"
"""

RETURN = r"""
report:
  description: The report.
  returned: always
  type: dict
  sample: {"rto_seconds": 612.4, "rpo_seconds": 3600.0, "verified": true, "phases": []}
markdown:
  description: The Markdown text of the report.
  returned: always
  type: str
json_path:
  description: Path of the JSON report.
  returned: always
  type: str
  sample: reports/restore-20261126_031500.json
md_path:
  description: Path of the Markdown report.
  returned: always
  type: str
svg_path:
  description: Path of the SVG timeline, when O(timeline=true).
  returned: when requested
  type: str
rto_seconds:
  description: Achieved RTO.
  returned: always
  type: float
rpo_seconds:
  description: Achieved RPO.
  returned: always
  type: float
verified:
  description: True only when every check passed and no phase failed.
  returned: always
  type: bool
"""

import json
import os

from ansible_collections.atlasia.dr.plugins.module_utils import atomic, naming, report
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule


def main():
    module = DRModule(
        argument_spec=dict(
            kind=dict(type="str", required=True,
                      choices=["restore", "rebuild", "drill", "verify", "vault-recover", "recover-data"]),
            dest=dict(type="path", required=True),
            phases=dict(type="list", elements="dict", required=True),
            checks=dict(type="list", elements="dict", default=[]),
            started=dict(type="str"),
            finished=dict(type="str"),
            backup=dict(type="dict"),
            backup_time=dict(type="str"),
            environment=dict(type="str"),
            safety_backup=dict(type="str"),
            status=dict(type="str", choices=["succeeded", "failed"]),
            rto_target_seconds=dict(type="int", default=report.RTO_TARGET),
            rpo_target_seconds=dict(type="int", default=report.RPO_TARGET),
            extra=dict(type="dict"),
            timeline=dict(type="bool", default=False),
            history=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for phase in p["phases"]:
        if "name" not in phase:
            module.fail_json(msg="every phase needs a name: %r" % (phase,))
    try:
        data = report.build(p["kind"], p["phases"], p["checks"], p["started"], p["finished"], p["backup"],
                            p["backup_time"], p["environment"], p["safety_backup"], p["extra"],
                            p["rto_target_seconds"], p["rpo_target_seconds"], p["status"])
    except ValueError as exc:
        module.fail_json(msg="cannot build the report: %s" % exc)
    text = report.markdown(data)
    stamp = naming.format_timestamp(report.parse_time(data["started"]) if data["started"] else naming.utc_now())
    base = os.path.join(p["dest"], "%s-%s" % (p["kind"], stamp))
    result = dict(changed=not module.check_mode, report=data, markdown=text, json_path=base + ".json",
                  md_path=base + ".md", rto_seconds=data["rto_seconds"], rpo_seconds=data["rpo_seconds"],
                  verified=data["verified"])
    if p["timeline"]:
        result["svg_path"] = base + ".svg"
    if module.check_mode:
        module.exit_json(**result)
    try:
        if not os.path.isdir(p["dest"]):
            os.makedirs(p["dest"], 0o750)
        atomic.write_json(base + ".json", data, mode=0o640)
        atomic.write_text(base + ".md", text, mode=0o640)
        if p["timeline"]:
            atomic.write_text(base + ".svg", report.timeline_svg(data), mode=0o644)
        if p["history"]:
            directory = os.path.dirname(os.path.abspath(p["history"]))
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o750)
            with open(p["history"], "a") as handle:
                handle.write(json.dumps(data, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as exc:
        module.fail_json(msg="cannot write the report under %s: %s" % (p["dest"], exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
