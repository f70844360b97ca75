# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static checks of the operations data: AWX surveys and objects, EE definition, alert rules, dashboard.

The surveys are validated with AWX's own rules (awx/api/views JobTemplateSurveySpec._validate_spec_data and the
answer checks of SurveyJobTemplateMixin), re-stated in :func:`survey_spec_errors` and :func:`survey_answers`,
which tests/integration/test_awx.py also uses to give the playbooks the extra variables AWX would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support import REPO_ROOT

AWX = REPO_ROOT / "awx"
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                "integer": int, "float": (float, int)}


class UnsafeLoader(yaml.SafeLoader):
    """Loads Ansible's ``!unsafe`` strings as plain strings."""


UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_yaml(path):
    return yaml.load(Path(path).read_text(), Loader=UnsafeLoader)


def surveys():
    return dict((path.stem, load_yaml(path)) for path in sorted((AWX / "surveys").glob("*.yml")))


def survey_spec_errors(spec):
    """AWX's checks of a survey spec (what POST /api/v2/job_templates/N/survey_spec/ refuses)."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(spec.get(field), kind):
            errors.append("field %r missing or not a %s" % (field, kind.__name__))
    if errors:
        return errors
    if not spec["spec"]:
        errors.append("'spec' doesn't contain any items")
    variables = set()
    for index, item in enumerate(spec["spec"]):
        if not isinstance(item, dict):
            errors.append("question %d is not an object" % index)
            continue
        missing = [field for field in ("type", "question_name", "variable", "required")
                   if not isinstance(item.get(field), bool if field == "required" else str)]
        if missing:
            errors.append("%s missing from question %d or of the wrong type" % (", ".join(missing), index))
            continue
        if item["variable"] in variables:
            errors.append("variable %r duplicated in question %d" % (item["variable"], index))
        variables.add(item["variable"])
        kind = item["type"]
        if kind not in SURVEY_TYPES:
            errors.append("type %r of question %d is not an AWX question type" % (kind, index))
            continue
        if item.get("default", "") != "" and not isinstance(item["default"], SURVEY_TYPES[kind]):
            errors.append("default of question %d is not a %s" % (index, kind))
        for key in ("min", "max"):
            if key in item and item[key] is not None and not isinstance(item[key], int):
                errors.append("%s of question %d is not an integer" % (key, index))
        if kind in ("multiplechoice", "multiselect"):
            choices = item.get("choices")
            if not choices:
                errors.append("question %d of type %s must specify choices" % (index, kind))
                continue
            choices = choices.splitlines() if isinstance(choices, str) else choices
            defaults = item.get("default", "")
            defaults = [d for d in defaults.splitlines() if d.strip()] if isinstance(defaults, str) else defaults
            if kind == "multiplechoice" and len(defaults) > 1:
                errors.append("multiple choice question %d has more than one default" % index)
            if any(d not in choices for d in defaults):
                errors.append("default of question %d is not one of its choices" % index)
    return errors


def survey_answers(spec, answers):
    """The extra variables AWX gives a job launched with ``answers``: answers, else the questions' defaults.

    Raises ValueError for an answer AWX refuses (required question unanswered, not a choice, too short or long).
    """
    result = {}
    for item in spec["spec"]:
        variable = item["variable"]
        if variable in answers:
            value = answers[variable]
        elif item.get("default", "") != "":
            value = item["default"]
        elif item["required"]:
            raise ValueError("%s is required" % variable)
        else:
            continue
        if item["type"] == "multiplechoice":
            choices = item["choices"].splitlines() if isinstance(item["choices"], str) else item["choices"]
            if value not in choices:
                raise ValueError("%r is not a choice of %s: %s" % (value, variable, choices))
        if item["type"] in ("text", "textarea", "password"):
            if len(value) < (item.get("min") or 0) or (item.get("max") is not None and len(value) > item["max"]):
                raise ValueError("%s must be %s to %s characters" % (variable, item.get("min"), item.get("max")))
        result[variable] = value
    return result


def controller():
    return load_yaml(AWX / "controller.yml")


# -- surveys -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(surveys()))
def test_survey_is_valid_for_awx(name):
    assert survey_spec_errors(surveys()[name]) == []


def test_restore_survey_asks_for_the_production_confirmation():
    question = next(q for q in surveys()["restore"]["spec"] if q["variable"] == "confirm")
    assert question["type"] == "multiplechoice" and question["required"] is True
    assert question["choices"] == ["no", "yes"] and question["default"] == "no"
    playbook = (REPO_ROOT / "playbooks" / "restore.yml").read_text()
    assert "(confirm | default('') | string | lower) == 'yes'" in playbook


def test_survey_answers_follow_awx_rules():
    spec = surveys()["restore"]
    assert survey_answers(spec, {}) == {"backup": "latest", "confirm": "no", "vault_backup": "true",
                                        "dr_restore_config": "false", "dr_restore_files": "false"}
    assert survey_answers(spec, {"confirm": "yes"})["confirm"] == "yes"
    with pytest.raises(ValueError):
        survey_answers(spec, {"confirm": "sure"})
    with pytest.raises(ValueError):
        survey_answers(spec, {"backup": "x"})
    assert "verify_host" not in survey_answers(surveys()["verify"], {})  # optional, empty: not passed


def test_survey_errors_are_detected():
    broken = {"name": "x", "description": "", "spec": [
        {"type": "multiplechoice", "question_name": "q", "variable": "v", "required": True, "choices": ["a"],
         "default": "b"},
        {"type": "text", "question_name": "q2", "variable": "v", "required": True},
        {"type": "number", "question_name": "q3", "variable": "w", "required": False}]}
    errors = survey_spec_errors(broken)
    assert "default of question 0 is not one of its choices" in errors
    assert "variable 'v' duplicated in question 1" in errors
    assert "type 'number' of question 2 is not an AWX question type" in errors


def source_text():
    parts = [path.read_text() for path in sorted((REPO_ROOT / "playbooks").glob("*.yml"))]
    parts += [path.read_text() for path in sorted((REPO_ROOT / "roles").glob("*/defaults/main.yml"))]
    parts += [path.read_text() for path in sorted((REPO_ROOT / "roles").glob("*/tasks/*.yml"))]
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(surveys()))
def test_every_survey_variable_is_used(name):
    text = source_text()
    for question in surveys()[name]["spec"]:
        assert re.search(r"\b%s\b" % re.escape(question["variable"]), text), question["variable"]


# -- objects -------------------------------------------------------------------------------------------------


def test_job_templates_name_existing_playbooks_and_surveys():
    data = controller()
    keys = [t["key"] for t in data["awx_job_templates"]]
    assert keys == ["backup", "restore", "verify", "drill", "rebuild", "monitor"]
    for template in data["awx_job_templates"]:
        assert (REPO_ROOT / template["playbook"]).is_file(), template["playbook"]
        if template.get("survey"):
            assert template["survey"] in surveys()
    assert next(t for t in data["awx_job_templates"] if t["key"] == "restore")["survey"] == "restore"


def test_workflow_is_backup_then_verify():
    data = controller()
    nodes = dict((n["identifier"], n) for n in data["awx_workflow"]["nodes"])
    assert nodes["backup"]["template"] == "backup" and nodes["backup"]["success"] == ["verify"]
    assert nodes["verify"]["template"] == "verify"
    keys = set(t["key"] for t in data["awx_job_templates"])
    for node in nodes.values():
        assert node["template"] in keys and set(node["success"]) <= set(nodes)


def test_schedules_name_templates_and_valid_rrules():
    data = controller()
    keys = set(t["key"] for t in data["awx_job_templates"])
    for schedule in data["awx_schedules"]:
        assert schedule.get("workflow") or schedule["template"] in keys
        assert re.match(r"^DTSTART:\d{8}T\d{6}Z RRULE:FREQ=(HOURLY|DAILY|WEEKLY|MONTHLY)(;[A-Z]+=[A-Z0-9,]+)*$",
                        schedule["rrule"]), schedule["rrule"]


def test_credential_type_injects_what_the_inventories_read():
    data = controller()
    injected = data["awx_credential_type"]["injectors"]["extra_vars"]
    fields = set(f["id"] for f in data["awx_credential_type"]["inputs"]["fields"])
    for value in injected.values():
        assert set(re.findall(r"\{\{\s*(\w+)", value)) <= fields
    prod = (REPO_ROOT / "inventories" / "prod" / "group_vars" / "prod" / "main.yml").read_text()
    for name in ("vault_dr_db_password", "vault_dr_vault_token", "vault_dr_webhook_url", "vault_dr_encryption_key",
                 "vault_dr_vault_role_id", "vault_dr_vault_secret_id"):
        assert name in injected and name in prod
    secret = set(f["id"] for f in data["awx_credential_type"]["inputs"]["fields"] if f.get("secret"))
    assert {"db_password", "encryption_key", "vault_token", "vault_secret_id", "s3_secret_key"} <= secret


def test_collections_of_the_ee_are_those_the_roles_and_playbooks_use():
    used = set()
    for path in list((REPO_ROOT / "roles").rglob("*.yml")) + list((REPO_ROOT / "playbooks").glob("*.yml")):
        if path.name == "awx_setup.yml":  # runs where AWX is administered, not in the EE
            continue
        used.update(re.findall(r"\b(community\.[a-z_]+|ansible\.(?!builtin)[a-z_]+|awx\.awx)\.[a-z_]+",
                               path.read_text()))
    galaxy = yaml.safe_load((REPO_ROOT / "requirements.yml").read_text())
    shipped = set(c["name"].split("/")[-1][:-len(".tar.gz")].replace("-", ".", 1) for c in galaxy["collections"])
    assert used == shipped - {"atlasia.dr"}


def test_every_environment_names_where_its_inventory_comes_from():
    for environment in controller()["awx_environments"]:
        inventory = environment.get("inventory", {"source": "project"})
        assert inventory["source"] in ("project", "awx")
        if inventory["source"] == "project":
            assert (REPO_ROOT / "inventories" / environment["name"] / "hosts.yml").is_file()
        else:
            assert inventory["name"]


# -- execution environment -----------------------------------------------------------------------------------


def test_execution_environment_definition():
    ee = yaml.safe_load((REPO_ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert deps["galaxy"] == "requirements.yml" and deps["python"] == "requirements.txt"
    assert deps["system"] == "bindep.txt"
    dev = (REPO_ROOT / "requirements-dev.txt").read_text()
    core = re.search(r"^ansible-core==(\S+)$", dev, re.M).group(1)
    assert deps["ansible_core"]["package_pip"] == "ansible-core==" + core
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    pinned = re.search(r"^boto3==(\S+)$", dev, re.M).group(1)
    assert "boto3==%s" % pinned in requirements
    # ansible-core only, not the whole `ansible` package
    assert not re.search(r"^ansible\b", requirements, re.M)
    # the collections are tarballs of the build context (no Galaxy): atlasia.dr and what its roles use
    tarballs = ["atlasia-dr.tar.gz", "community-general.tar.gz", "community-docker.tar.gz"]
    galaxy = yaml.safe_load((REPO_ROOT / "requirements.yml").read_text())
    assert galaxy["collections"] == [{"name": "collections/" + t, "type": "file"} for t in tarballs]
    assert ee["additional_build_files"] == [{"src": "awx/ee/" + t, "dest": "collections"} for t in tarballs]


# -- monitoring files (promtool checks them in tests/integration/test_monitor.py) ------------------------------


def test_alert_rules_structure():
    rules = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus" / "atlasia-dr.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names)) == 10
    for rule in alerts:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.match(r"^\d+[mh]$", rule["for"])
        assert "atlasia_dr_" in rule["expr"]
    by_name = dict((r["alert"], r) for r in alerts)
    assert by_name["AtlasiaDRDiskSpaceLow"]["expr"] == "atlasia_dr_disk_free_ratio < 0.10"
    assert by_name["AtlasiaDRDiskSpaceLow"]["labels"]["severity"] == "warning"
    assert by_name["AtlasiaDRBackupFailed"]["labels"]["severity"] == "critical"


def test_dashboard_structure():
    dashboard = json.loads((REPO_ROOT / "monitoring" / "grafana" / "atlasia-dr-dashboard.json").read_text())
    assert dashboard["uid"] == "atlasia-dr" and dashboard["schemaVersion"] >= 36
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables == ["datasource", "env", "host"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")")
            assert re.search(r"\batlasia_dr_\w+\{[^}]*env=~\"\$env\"", target["expr"]), target["expr"]
