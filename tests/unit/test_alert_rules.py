# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alert rules follow the conventions on-call tooling expects (promtool runs them in tests/integration):
severity critical or warning, a runbook_url to an existing section of docs/alerts.md, no unbounded labels."""

from __future__ import annotations

import re

import yaml

from tests.support import REPO_ROOT

RULES = REPO_ROOT / "monitoring" / "prometheus" / "atlasia-dr.rules.yml"
RUNBOOK = REPO_ROOT / "docs" / "alerts.md"
PREFIX = "https://git.atlasia.ai/platform/atlasia.dr/-/blob/main/docs/alerts.md#"


def alerts():
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_a_severity_and_a_runbook_section():
    anchors = set(re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
                  for line in RUNBOOK.read_text().splitlines() if line.startswith("## "))
    found = alerts()
    assert len(found) == 10
    for rule in found:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(PREFIX), url
        assert url[len(PREFIX):] == rule["alert"].lower() and url[len(PREFIX):] in anchors, (rule["alert"], anchors)


def test_the_galaxy_repository_is_where_the_runbook_links_point():
    galaxy = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
    assert PREFIX.startswith(galaxy["repository"] + "/")


def test_no_rule_adds_a_label_from_a_value():
    for rule in alerts():
        for value in rule["labels"].values():
            assert "{{" not in str(value), rule["alert"]
