# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX / AAP: the execution-environment build context, the objects of playbooks/awx_setup.yml, and the
playbooks run by ansible-runner (AWX's executor) the way AWX starts a job.

No controller is available here, so awx_setup.yml is checked for syntax, rendered (awx_render_only) and its
awx.awx task options validated against the installed awx.awx documentation; its surveys are validated with
AWX's rules in tests/unit/test_operations_data.py. For the jobs, every run gets a fresh private data dir like
AWX's: project/ (the files of this checkout, without the .collections link), inventory/hosts, env/extravars
(job-template extra vars, survey answers with the survey's defaults, awx_* variables), env/envvars, and the
collection installed from the EE's requirements.yml (the tarball awx/build-ee.sh built, no Galaxy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.ops_support import local_host
from tests.support import ANSIBLE_HOME, REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON
from tests.support.ansible_run import ansible_env
from tests.support.localenv import DB_NAME, LocalEnvironment
from tests.support.postgres import table_digests
from tests.unit.test_operations_data import controller, survey_answers, surveys

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(argv, cwd=REPO_ROOT, env=None, timeout=600):
    return subprocess.run([str(a) for a in argv], cwd=str(cwd), env=env or ansible_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def ee_context():
    """awx/build-ee.sh: the collection tarball and the ansible-builder context (no image)."""
    context = TMP_ROOT / "it-awx" / "ee-context"
    if context.exists():
        shutil.rmtree(context)
    proc = run(["awx/build-ee.sh"], env=ansible_env({"EE_CONTEXT": str(context)}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return context


def test_ansible_builder_creates_the_ee_context(ee_context):
    dockerfile = (ee_context / "Dockerfile").read_text() if (ee_context / "Dockerfile").exists() else \
        (ee_context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in dockerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in dockerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in dockerfile
    # every collection is a tarball of the context: nothing is resolved on Galaxy
    assert 'ARG ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--no-deps"' in dockerfile
    assert "RUN $PKGMGR -y module enable postgresql:15" in dockerfile
    build = ee_context / "_build"
    for name in ("requirements.txt", "bindep.txt", "requirements.yml"):
        assert (build / name).read_text() == (REPO_ROOT / name).read_text()
    # ansible-core, not the `ansible` package
    assert not any(line.split("=")[0].strip() == "ansible" for line in (build / "requirements.txt").read_text().splitlines())
    for name in ("atlasia-dr.tar.gz", "community-general.tar.gz", "community-docker.tar.gz"):
        assert (build / "collections" / name).is_file(), name
    # bindep reads the system requirements (exit 1 only lists packages missing on this machine)
    proc = run([VENV_BIN / "bindep", "--file", REPO_ROOT / "bindep.txt", "--brief"])
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr


def install_collection(ee_context, dest):
    """What the EE's galaxy stage does in /build: install requirements.yml (offline, from the tarballs), with the
    options execution-environment.yml gives it (--no-deps: nothing from Galaxy)."""
    env = ansible_env({"ANSIBLE_GALAXY_DISABLE_GPG_VERIFY": "1", "ANSIBLE_COLLECTIONS_PATH": str(dest)})
    env.pop("ANSIBLE_CONFIG")  # the image build has no ansible.cfg (this checkout's would find atlasia.dr installed)
    ee = yaml.safe_load((REPO_ROOT / "execution-environment.yml").read_text())
    options = ee["build_arg_defaults"]["ANSIBLE_GALAXY_CLI_COLLECTION_OPTS"].split()
    argv = [VENV_BIN / "ansible-galaxy", "collection", "install"] + options
    argv += ["-r", "requirements.yml", "--collections-path", dest]
    proc = run(argv, cwd=ee_context / "_build", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(dest) / "ansible_collections" / "atlasia" / "dr"


def test_requirements_install_the_collection_without_galaxy(ee_context, tmp_path):
    installed = install_collection(ee_context, tmp_path / "collections")
    manifest = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]
    galaxy = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == ("atlasia", "dr", galaxy["version"])
    for path in ("roles/dr_verify/tasks/main.yml", "roles/dr_monitor/tasks/main.yml", "plugins/modules/backup_age.py",
                 "plugins/modules/pg_scratch_db.py", "playbooks/verify.yml"):
        assert (installed / path).is_file(), path
    assert not (installed / ".venv").exists() and not (installed / ".tmp").exists()
    # the collections the roles use, exactly those, each consistent with its manifest
    root = installed.parents[1]
    assert sorted(p.parent.name + "." + p.name for p in root.glob("*/*") if p.is_dir()) == [
        "atlasia.dr", "community.docker", "community.general"]
    for name in ("community.general", "community.docker"):
        proc = run([VENV_BIN / "ansible-galaxy", "collection", "verify", "--offline", name, "-p", root.parent],
                   cwd=tmp_path)
        assert proc.returncode == 0 and "internally consistent" in proc.stdout, proc.stdout + proc.stderr


# -- awx_setup.yml -------------------------------------------------------------------------------------------


def test_awx_setup_syntax_and_rendered_objects(tmp_path):
    proc = run([VENV_BIN / "ansible-playbook", "--syntax-check", "playbooks/awx_setup.yml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dest = tmp_path / "awx-objects.json"
    proc = run([VENV_BIN / "ansible-playbook", "playbooks/awx_setup.yml", "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=%s" % VENV_PYTHON,
                "-e", "awx_render_only=true", "-e", "awx_render_dest=%s" % dest])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    objects = json.loads(dest.read_text())
    data = controller()
    envs = [e["name"] for e in data["awx_environments"]]
    names = set(t["name"] for t in objects["job_templates"])
    assert names == set("atlasia.dr %s %s" % (e, t["key"]) for e in envs for t in data["awx_job_templates"])
    for template in objects["job_templates"]:
        assert template["extra_vars"]["env"] == template["environment"]
        assert template["inventory"] == "atlasia.dr %s" % template["environment"]
        assert (REPO_ROOT / template["playbook"]).is_file()
        assert template["survey_enabled"] == bool(template["survey_spec"])
        assert template["credentials"] == [data["awx_machine_credential"],
                                           "atlasia.dr %s secrets" % template["environment"]]
    restore = next(t for t in objects["job_templates"] if t["name"] == "atlasia.dr prod restore")
    assert restore["survey_spec"] == surveys()["restore"]
    for workflow in objects["workflows"]:
        nodes = dict((n["identifier"], n) for n in workflow["workflow_nodes"])
        assert nodes["backup"]["related"]["success_nodes"] == [{"identifier": "verify"}]
        for node in nodes.values():
            assert node["unified_job_template"]["name"] in names
    schedules = objects["schedules"]
    assert [s["name"] for s in schedules] == ["atlasia.dr prod nightly-backup", "atlasia.dr prod weekly-backup-verify",
                                              "atlasia.dr prod hourly-monitor", "atlasia.dr prod monthly-drill"]
    targets = names | set(w["name"] for w in objects["workflows"])
    assert all(s["unified_job_template"] in targets for s in schedules)
    # the credential type's injectors reach AWX untemplated
    assert objects["credential_type"]["injectors"]["extra_vars"]["vault_dr_db_password"] == "{{ db_password }}"
    assert objects["credential_type"]["injectors"]["extra_vars"]["vault_dr_encryption_key"] == \
        "{{ encryption_key | default('') }}"
    assert [s["source_path"] for s in objects["inventory_sources"]] == ["inventories/%s/hosts.yml" % e for e in envs]
    assert objects["external_inventories"] == []


def test_an_environment_can_use_an_inventory_of_awx(tmp_path):
    data = controller()
    staging_env = {"name": "staging", "schedules": False, "inventory": {"source": "awx", "name": "Staging servers"}}
    environments = data["awx_environments"] + [staging_env]
    overrides = tmp_path / "controller.json"
    overrides.write_text(json.dumps({"awx_environments": environments}))
    dest = tmp_path / "awx-objects.json"
    proc = run([VENV_BIN / "ansible-playbook", "playbooks/awx_setup.yml", "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=%s" % VENV_PYTHON, "-e", "@%s" % overrides,
                "-e", "awx_render_only=true", "-e", "awx_render_dest=%s" % dest])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    objects = json.loads(dest.read_text())
    staging = [t for t in objects["job_templates"] if t["environment"] == "staging"]
    assert len(staging) == len(data["awx_job_templates"])
    assert all(t["inventory"] == "Staging servers" for t in staging)
    assert next(w for w in objects["workflows"] if w["name"].startswith("atlasia.dr staging "))["inventory"] == \
        "Staging servers"
    # used as it is: neither created nor synced from the project
    assert objects["external_inventories"] == ["Staging servers"]
    assert "Staging servers" not in objects["inventories"] and "atlasia.dr staging" not in objects["inventories"]
    assert not any(s["inventory"] == "Staging servers" for s in objects["inventory_sources"])

    environments[-1]["inventory"] = {"source": "awx"}
    overrides.write_text(json.dumps({"awx_environments": environments}))
    proc = run([VENV_BIN / "ansible-playbook", "playbooks/awx_setup.yml", "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=%s" % VENV_PYTHON, "-e", "@%s" % overrides,
                "-e", "awx_render_only=true", "-e", "awx_render_dest=%s" % dest])
    assert proc.returncode != 0 and "awx_environments staging: inventory must be" in proc.stdout, proc.stdout[-3000:]


def test_awx_setup_uses_only_options_the_awx_modules_have():
    plays = yaml.safe_load((REPO_ROOT / "playbooks" / "awx_setup.yml").read_text())
    tasks = []
    for play in plays:
        for task in play["tasks"]:
            tasks.extend(task.get("block", [task]))
    used = {}
    for task in tasks:
        for key, args in task.items():
            if key.startswith("awx.awx."):
                used.setdefault(key, set()).update(args)
    expected = ("execution_environment", "project", "credential_type", "credential", "inventory", "inventory_source",
                "job_template", "workflow_job_template", "schedule")
    assert set(used) == {"awx.awx.%s" % m for m in expected}
    proc = run([VENV_BIN / "ansible-doc", "--json"] + sorted(used))
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    for module, options in used.items():
        known = docs[module]["doc"]["options"]
        names = set(known) | set(a for o in known.values() for a in o.get("aliases", []))
        assert options <= names, (module, sorted(options - names))


# -- jobs through ansible-runner -----------------------------------------------------------------------------


def project_files():
    proc = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    assert proc.returncode == 0, proc.stderr
    return [name for name in proc.stdout.split("\0")
            if name and not name.startswith(".collections") and (REPO_ROOT / name).is_file()]


@pytest.fixture(scope="module")
def awx_site(ee_context):
    """The local environment, the collection as the EE has it, and the project checkout."""
    env = LocalEnvironment(root=TMP_ROOT / "it-awx" / "site", with_vault=False)
    env.start()
    try:
        root = env.root
        collections = install_collection(ee_context, root / "ee-collections").parents[2]
        project = root / "project"
        for name in project_files():
            target = project / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, target)
        yield dict(env=env, root=root, collections=collections, project=project, jobs=0)
    finally:
        env.stop()


def awx_job(site, playbook, template, answers, inventory):
    """Start a job the way AWX does: a fresh private data dir, then ``ansible-runner run``."""
    spec = surveys().get(template.get("survey", ""), None)
    extravars = dict(template.get("extra_vars", {}))
    if spec:
        extravars.update(survey_answers(spec, answers))  # AWX refuses the launch on an invalid answer
    site["jobs"] += 1
    job_id = site["jobs"]
    pdd = site["root"] / "jobs" / str(job_id)
    for sub in ("env", "inventory"):
        (pdd / sub).mkdir(parents=True)
    (pdd / "project").symlink_to(site["project"])
    extravars.update(awx_job_id=job_id, tower_job_id=job_id, awx_job_template_name=template["name"],
                     awx_user_name="admin", awx_job_launch_type="manual")
    (pdd / "env" / "extravars").write_text(json.dumps(extravars))
    (pdd / "env" / "settings").write_text(json.dumps({"job_timeout": 900}))
    (pdd / "inventory" / "hosts").write_text(yaml.safe_dump(inventory))
    (pdd / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_COLLECTIONS_PATH": str(site["collections"]),
        "ANSIBLE_HOME": str(ANSIBLE_HOME), "ANSIBLE_LOCAL_TEMP": str(ANSIBLE_HOME / "tmp"),
        "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}))
    env = dict(PATH=os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]),
               HOME=os.environ.get("HOME", "/root"), LANG="C.UTF-8")
    proc = subprocess.run([str(VENV_BIN / "ansible-runner"), "run", str(pdd), "-p", playbook, "--ident", "job"],
                          env=env, capture_output=True, text=True, timeout=1200, check=False)
    artifacts = pdd / "artifacts" / "job"
    status = (artifacts / "status").read_text().strip() if (artifacts / "status").exists() else "missing"
    stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else proc.stdout
    events = [json.loads(p.read_text()) for p in sorted((artifacts / "job_events").glob("*.json"))] \
        if (artifacts / "job_events").exists() else []
    return dict(rc=proc.returncode, status=status, stdout=stdout, events=events, pdd=pdd, extravars=extravars)


def local_inventory(env, group="local", **extra_vars):
    """The AWX inventory of the environment: the hosts and, as group variables, the settings of the site."""
    group_vars = env.vars(dr_reports_dir=str(env.root / "reports"))
    group_vars.update(extra_vars)
    return {group: {"vars": group_vars, "children": {group + "_db": {"hosts": {"db1": local_host()}}}}}


def template(key, environment="local"):
    data = next(t for t in controller()["awx_job_templates"] if t["key"] == key)
    return dict(data, name="atlasia.dr %s %s" % (environment, key), extra_vars={"env": environment})


def summary(job):
    return "status=%s rc=%s\n%s" % (job["status"], job["rc"], job["stdout"][-5000:])


def test_backup_then_verify_jobs_as_the_workflow_runs_them(awx_site):
    env = awx_site["env"]
    inventory = local_inventory(env)
    backup = awx_job(awx_site, "playbooks/backup.yml", template("backup"), {}, inventory)
    assert backup["rc"] == 0 and backup["status"] == "successful", summary(backup)
    assert any(e.get("event") == "playbook_on_stats" for e in backup["events"])
    verify = awx_job(awx_site, "playbooks/verify.yml", template("verify"), {}, inventory)
    assert verify["rc"] == 0 and verify["status"] == "successful", summary(verify)
    assert verify["extravars"]["backup"] == "latest" and "verify_host" not in verify["extravars"]
    assert "Restore test passed on db1" in verify["stdout"]
    reports = sorted((env.root / "reports" / "db1").glob("verify-*.json"))
    assert json.loads(reports[-1].read_text())["verified"] is True
    # the modules ran from the collection installed by requirements.yml, not from this checkout
    task_paths = [e.get("event_data", {}).get("task_path", "") for e in verify["events"]]
    assert str(awx_site["collections"]) in json.dumps(task_paths)


def test_prod_restore_job_needs_the_survey_confirmation(awx_site):
    env = awx_site["env"]
    # the set is the local environment's (plaintext), restored as prod on purpose: say so, as an operator must
    inventory = local_inventory(env, group="prod", dr_env="prod", dr_encryption_enabled=False,
                                dr_restore_allow_foreign_set=True)
    before = table_digests(env.pg, DB_NAME)
    refused = awx_job(awx_site, "playbooks/restore.yml", template("restore", "prod"), {}, inventory)
    # refused at once: no interactive prompt waits for the job timeout under ansible-runner
    assert refused["rc"] != 0 and refused["status"] == "failed", summary(refused)
    assert refused["extravars"]["confirm"] == "no"
    assert "Refusing to restore PRODUCTION without confirmation" in refused["stdout"]
    assert not any(e.get("event_data", {}).get("task", "").startswith("Phase 3") for e in refused["events"])
    confirmed = awx_job(awx_site, "playbooks/restore.yml", template("restore", "prod"),
                        {"confirm": "yes", "vault_backup": "false"}, inventory)
    assert confirmed["rc"] == 0 and confirmed["status"] == "successful", summary(confirmed)
    assert "Achieved RTO" in confirmed["stdout"]
    assert table_digests(env.pg, DB_NAME) == before
    report = sorted((env.root / "reports").glob("restore-*.json"))[-1]
    assert json.loads(report.read_text())["environment"] == "prod"
    # the summary is a job artifact (set_stats), the report is kept in S3 beside the sets
    stats = next(e for e in confirmed["events"] if e.get("event") == "playbook_on_stats")
    restores = stats["event_data"]["artifact_data"]["atlasia_dr_restore"]
    assert [(r["host"], r["verified"], r["report"]) for r in restores] == [("db1", True, str(report.with_suffix(".md")))]
    listing = env.s3.client().list_objects_v2(Bucket=env.vars()["dr_s3_bucket"], Prefix="atlasia-backups/reports/")
    keys = [o["Key"] for o in listing["Contents"]]
    assert "atlasia-backups/reports/" + report.name in keys


def test_a_job_with_an_invalid_answer_is_not_started(awx_site):
    with pytest.raises(ValueError):
        awx_job(awx_site, "playbooks/restore.yml", template("restore", "prod"), {"confirm": "of course"},
                local_inventory(awx_site["env"], group="prod"))
