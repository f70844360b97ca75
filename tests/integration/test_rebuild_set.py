"""Scenario 2 (rebuild): the set a new host is rebuilt from, against a real PostgreSQL 15 and a real S3 server.

The provision role's backup_set step (roles/dr_provision/tasks/backup_set.yml) is driven on its own, as the rebuild
runs it, on a "new host" with nothing local (its backup root is empty): the set comes from S3 through backup_locate.
Running the whole rebuild (packages, Docker, the stack) is the Molecule scenario molecule/rebuild.

- An encrypted, authenticated set is found in S3, downloaded, verified and its configuration archive decrypted into
  the private staging folder; the manifest handed to the restore role is the staged one.
- Someone with write access to the bucket replaces the configuration archive of a newer set (a compose file of
  theirs) and rewrites its sidecars, its object metadata and the set manifest consistently - everything but the MAC,
  which needs the environment's key. Named explicitly, that set is refused before any of its artifacts is
  downloaded; with backup=latest it is passed over (and said so) for the older authentic set.
- Where restic is missing and may not be installed (dr_provision_restic_packages empty), a set with file snapshots
  stops the rebuild at the restic step, saying what to install.
- A set whose file data is kept in the file repository (dr_backup_files_store=repository): with the local backups, the
  local repository, restic's cache and the file folders gone, the rebuild's steps after provisioning (backup_set,
  restic, the restore role as rebuild.yml calls it, the rebuild report) bring the uploads and logs back byte-exact
  from the snapshots of the S3 repository, under the key derived from the environment's secret, and the rebuild
  report names the snapshots and the files.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import checksum
from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.ansible_run import run_module, run_playbook
from tests.support.localenv import BUCKET, LocalEnvironment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = TMP_ROOT / "it-rebuild-set"
KEY = "rebuild set test passphrase, not a real one"
PREFIX = "atlasia-backups/"

# The rebuild's backup_set step, and what it hands to the rest of the rebuild
DRIVER = """\
- name: Find the set a rebuild uses
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the backup_set step of the provision role
      ansible.builtin.include_role:
        name: atlasia.dr.dr_provision
        tasks_from: backup_set.yml

    - name: Keep what the rest of the rebuild reads
      ansible.builtin.copy:
        dest: "{{ rebuild_set_out }}"
        mode: "0600"
        content: >-
          {{ {'manifest': dr_provision_set_manifest, 'paths': dr_provision_paths, 'backup': dr_provision_backup_info,
              'set': dr_provision_set, 'plain_dir': dr_provision_plain_dir | default(none)} | to_json }}
"""


# The rebuild after provisioning, as playbooks/rebuild.yml runs it (no packages, Docker or stack on the test machine)
REBUILD_DRIVER = """\
- name: Rebuild from a set on a new host
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start the provisioning clock
      ansible.builtin.set_fact:
        dr_provision_started: "{{ now(utc=true).timestamp() }}"
        dr_provision_phases: []
        dr_provision_checks: []
        dr_provision_notes: []

    - name: Run the backup_set step of the provision role
      ansible.builtin.include_role:
        name: atlasia.dr.dr_provision
        tasks_from: backup_set.yml

    - name: Make restic available, as the provision role does for a set with file snapshots
      ansible.builtin.include_role:
        name: atlasia.dr.dr_provision
        tasks_from: file_repo.yml
      when: dr_provision_set.file_snapshots | default([]) | length > 0

    - name: Restore the database and the file data from the staged set (as rebuild.yml)
      ansible.builtin.include_role:
        name: atlasia.dr.dr_restore
      vars:
        dr_restore_backup: "{{ dr_provision_set_manifest }}"
        dr_restore_config: false
        dr_restore_files: true
        dr_restore_vault: false
        dr_restore_stop_services: false

    - name: Write the rebuild report
      ansible.builtin.include_role:
        name: atlasia.dr.dr_provision
        tasks_from: report.yml

    - name: Keep the report
      ansible.builtin.copy:
        dest: "{{ rebuild_report_out }}"
        mode: "0600"
        content: "{{ {'report': dr_provision_rebuild_report.report, 'markdown': dr_provision_rebuild_report.markdown} | to_json }}"
"""


def backup_playbook(vars_file, *args):
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/backup.yml", "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    result = subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900,
                            check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def newest_set_id(env):
    found = sorted((env.root / "backups" / "daily").glob("set_*.json"))
    return found[-1].name[len("set_"):-len(".json")] if found else None


def s3_args(env):
    return dict(bucket=BUCKET, endpoint_url=env.s3.endpoint_url, region=env.s3.region, access_key=env.s3.access_key,
                secret_key=env.s3.secret_key)


@pytest.fixture(scope="module")
def env():
    # the authenticating S3 server: restic signs its uploads in chunks, which the plain one refuses
    local = LocalEnvironment(root=ROOT, with_vault=False, with_s3=True, s3_auth=True)
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def sets(env):
    """Set A (encrypted, authenticated), then set B (authenticated, not encrypted), both in S3."""
    common = dict(dr_reports_dir=str(env.root / "reports"), dr_backup_file_sets=[], dr_encryption_key=KEY)
    encrypted = env.write_vars(env.root / "vars-encrypted.json", dr_encryption_enabled=True, **common)
    backup_playbook(encrypted)
    set_a = newest_set_id(env)
    signed = env.write_vars(env.root / "vars-signed.json", dr_encryption_enabled=False, **common)
    # one set per second at most: the set id is the time of the backup
    while newest_set_id(env) == set_a:
        backup_playbook(signed)
    return dict(a=set_a, b=newest_set_id(env))


def locate(env, name, backup, encryption_enabled):
    """Drive the backup_set step on a new host (an empty backup root); returns (process, what it handed on)."""
    new_host = env.root / ("new-host-" + name)
    shutil.rmtree(new_host, ignore_errors=True)
    new_host.mkdir()
    out = new_host / "located.json"
    playbook = new_host / "driver.yml"
    playbook.write_text(DRIVER)
    extra = env.vars(dr_backup_root=str(new_host / "backups"), dr_reports_dir=str(env.root / "reports"),
                     dr_encryption_key=KEY, dr_encryption_enabled=encryption_enabled, backup=backup,
                     rebuild_set_out=str(out))
    proc = run_playbook(playbook, extra_vars=extra)
    return proc, (json.loads(out.read_text()) if out.exists() else None), new_host


def test_the_authentic_encrypted_set_comes_from_s3_decrypted_in_private(env, sets):
    proc, located, new_host = locate(env, "good", "latest", True)
    assert proc.returncode == 0, proc.stdout[-6000:]
    # B is not encrypted: where the environment encrypts, it is passed over for A, and said so
    assert located["backup"]["set_id"] == sets["a"]
    assert [p["set_id"] for p in located["backup"]["passed_over"]] == [sets["b"]]
    assert "plaintext" in located["backup"]["passed_over"][0]["reason"]
    assert located["backup"]["source"] == "s3://%s/%sset_%s.json" % (BUCKET, PREFIX, sets["a"])
    assert located["backup"]["authenticated"] is True
    staging = new_host / "backups" / "restore-staging"
    assert located["manifest"] == str(staging / sets["a"] / ("set_%s.json" % sets["a"]))
    # the configuration archive the rebuild extracts is the decrypted copy, in a private folder
    config = Path(located["paths"]["config"][0])
    assert config.parent == Path(located["plain_dir"]) == staging / ("%s.plain" % sets["a"])
    assert oct(os.stat(located["plain_dir"]).st_mode & 0o777) == "0o700"
    with tarfile.open(str(config)) as archive:
        assert any(name.endswith("deployments/docker-compose.yml") for name in archive.getnames())
    # the database dump the restore after it uses was fetched too (still encrypted in the staged set)
    assert (staging / sets["a"] / next(a["name"] for a in located["set"]["artifacts"]
                                       if a["component"] == "database")).is_file()


def forge_configuration(env, set_id):
    """Replace the configuration archive of a set in the bucket, consistently but without the key."""
    forged = env.root / "forged"
    shutil.rmtree(forged, ignore_errors=True)
    shutil.copytree(env.root / "backups" / "daily", forged,
                    ignore=lambda d, names: [n for n in names if set_id not in n])
    manifest_path = forged / ("set_%s.json" % set_id)
    data = json.loads(manifest_path.read_text())
    entry = next(a for a in data["artifacts"] if a["component"] == "config")
    archive = forged / entry["name"]
    compose = str(env.app_dir / "deployments" / "docker-compose.yml").lstrip("/")
    body = b"services:\n  ai-orchestrator:\n    image: attacker.example/backdoor:latest\n"
    with tarfile.open(str(archive), "w:gz") as tar:
        info = tarfile.TarInfo(compose)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    digests, size, texts = checksum.artifact_digests(str(archive))
    checksum.write_sidecars(str(archive), texts)
    own = forged / (entry["name"].split(".")[0] + ".json")
    if own.exists():
        meta = json.loads(own.read_text())
        meta.update(size=size, sha256=digests["sha256"], md5=digests["md5"])
        own.write_text(json.dumps(meta))
    entry.update(size=size, sha256=digests["sha256"], md5=digests["md5"])
    manifest_path.write_text(json.dumps(data, indent=2))  # the old MAC stays: it no longer matches
    for args in (dict(srcs=[str(archive)]), dict(src=str(manifest_path))):
        options = dict(mode="upload", prefix=PREFIX, overwrite="different", **args, **s3_args(env))
        result = run_module("s3_backup_transfer", options)
        assert not result.get("failed"), result.get("msg")
    return body


def test_a_set_whose_configuration_was_replaced_is_refused(env, sets):
    forge_configuration(env, sets["b"])

    proc, located, new_host = locate(env, "forged", sets["b"], False)
    assert proc.returncode != 0
    assert located is None
    assert "does not match its authentication code" in proc.stdout
    staged = new_host / "backups" / "restore-staging" / sets["b"]
    assert not staged.exists() or not [p for p in staged.iterdir() if p.name.startswith("config_")]

    # latest: the forged set is passed over, with the reason, for the older authentic one
    proc, located, new_host = locate(env, "latest", "latest", False)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert located["backup"]["set_id"] == sets["a"]
    assert [p["set_id"] for p in located["backup"]["passed_over"]] == [sets["b"]]
    assert "authentication code" in located["backup"]["passed_over"][0]["reason"]
    with tarfile.open(located["paths"]["config"][0]) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("deployments/docker-compose.yml"))
        assert b"backdoor" not in archive.extractfile(member).read()


def test_an_unknown_backup_value_is_refused_with_the_accepted_forms(env, sets):
    proc, located, new_host = locate(env, "unknown", "yesterday", False)
    assert proc.returncode != 0
    assert located is None
    assert "Accepted forms" in proc.stdout and "s3://bucket/key" in proc.stdout
    assert sets["a"] in proc.stdout
    assert not (new_host / "backups").exists()


def test_a_fresh_host_gets_the_file_data_from_the_s3_file_repository(env):
    uploads = env.app_dir / "uploads"
    for day in range(3):  # a few more uploads, in folders of their own
        folder = uploads / "2026" / "12" / ("%02d" % (day + 1))
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(4):
            (folder / ("scan-%d.pdf" % index)).write_bytes(os.urandom(20000 + 1000 * index))
    os.chmod(str(uploads / "2026" / "12" / "01" / "scan-0.pdf"), 0o640)
    before = env.file_contents()
    repository_vars = env.write_vars(env.root / "vars-repository.json", dr_reports_dir=str(env.root / "reports"),
                                     dr_backup_files_store="repository", dr_encryption_enabled=True,
                                     dr_encryption_key=KEY)
    previous = newest_set_id(env)  # none when the test runs alone
    while newest_set_id(env) == previous:  # one set per second at most
        backup_playbook(repository_vars)
    set_c = newest_set_id(env)
    manifest = json.loads((env.root / "backups" / "daily" / ("set_%s.json" % set_c)).read_text())
    in_s3 = {e["name"]: e for e in manifest["file_snapshots"] if e["repository"].startswith("s3:")}
    assert sorted(in_s3) == ["logs", "uploads"]
    assert not [a for a in manifest["artifacts"] if a["component"] == "files"]  # no tarball of the file data

    # the total loss: no local backup, no local repository, no restic cache, no file data
    shutil.rmtree(str(env.root / "backups"))
    for folder in ("uploads", "logs"):
        shutil.rmtree(str(env.app_dir / folder))
    new_host = env.root / "new-host-files"
    shutil.rmtree(str(new_host), ignore_errors=True)
    new_host.mkdir()
    playbook = new_host / "rebuild.yml"
    playbook.write_text(REBUILD_DRIVER)
    out = new_host / "report.json"
    extra = env.vars(dr_backup_root=str(new_host / "backups"), dr_reports_dir=str(new_host / "reports"),
                     dr_backup_files_store="repository", dr_encryption_key=KEY, dr_encryption_enabled=True,
                     backup=set_c, rebuild_report_out=str(out))
    proc = run_playbook(playbook, extra_vars=extra, env=dict(RESTIC_CACHE_DIR=str(new_host / "restic-cache")))
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]

    after = env.file_contents()
    restored = [name for name in before if name.startswith("uploads/")] + ["logs/app.log"]
    assert len(restored) == 14
    for name in restored:
        assert after[name] == before[name], name
    assert oct(os.stat(str(uploads / "2026" / "12" / "01" / "scan-0.pdf")).st_mode & 0o777) == "0o640"
    assert "logs/app-2026-01-01.log" not in after  # older than the logs rule's 7 days: never backed up
    # from S3: the new host has no local repository, and made none
    assert not (new_host / "backups" / "files-repository").exists()
    assert not list(env.app_dir.rglob(".dr-file-restore-*"))

    data = json.loads(out.read_text())
    report = data["report"]
    assert report["verified"] is True and report["backup"]["set_id"] == set_c
    by_name = {entry["name"]: entry for entry in report["file_data"]}
    assert sorted(by_name) == ["logs", "uploads"]
    for name, entry in by_name.items():
        assert entry["source"] == "s3" and entry["snapshot_id"] == in_s3[name]["snapshot_id"], entry
        assert entry["repository"] == in_s3[name]["repository"]
        assert entry["files"] == in_s3[name]["files"]
        assert "local repository" in " ".join(entry["passed_over"])  # missing on the new host, said so
    assert by_name["uploads"]["files"] == 13 and by_name["logs"]["files"] == 1
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["file data uploads restored"]["ok"]
    assert in_s3["uploads"]["snapshot_id"] in checks["file data uploads restored"]["detail"]
    assert "from the s3 repository" in checks["file data uploads restored"]["detail"]
    assert "- File data uploads: 13 files of snapshot %s from the s3 repository" % in_s3["uploads"]["snapshot_id"] \
        in data["markdown"]
    assert any(note.startswith("restic 0.") for note in report["notes"])


# The restic step alone, on a host where restic is not on the PATH of the modules
NO_RESTIC_DRIVER = """\
- name: The restic step of a rebuild, without restic
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the restic step of the provision role
      ansible.builtin.import_role:
        name: atlasia.dr.dr_provision
        tasks_from: file_repo.yml
      environment:
        PATH: "{{ no_restic_path }}"
"""


def test_without_restic_a_set_with_file_snapshots_stops_the_rebuild_saying_what_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    playbook = tmp_path / "no-restic.yml"
    playbook.write_text(NO_RESTIC_DRIVER)
    extra = dict(no_restic_path=str(empty), dr_provision_restic_packages=[], dr_provision_notes=[],
                 dr_provision_located=dict(set_id="20261203_020000"),
                 dr_provision_set=dict(file_snapshots=[dict(name="uploads", snapshot_id="0" * 64),
                                                       dict(name="logs", snapshot_id="1" * 64)]))
    proc = run_playbook(playbook, extra_vars=extra)
    assert proc.returncode != 0
    assert "Set 20261203_020000 keeps its file data (uploads, logs)" in proc.stdout, proc.stdout[-4000:]
    assert "Install the Debian package restic" in proc.stdout
    assert "The configuration, the database and the file data were not touched" in proc.stdout
