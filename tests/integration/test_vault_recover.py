"""Scenario 3 (Vault sealed or corrupt) end to end: playbooks/vault_recover.yml against a real OpenBao (raft).

A set holding a raft snapshot is taken through the modules, then the server is sealed, its storage destroyed, or its
keyring replaced (a wiped and re-initialised cluster), and the playbook is run like an operator runs it: keys from an
Ansible Vault-encrypted vars file or file (``--vault-password-file``). Every check reads the secret back from the
server. The keys never appear in the output.

The playbook gets a fresh cluster through ``dr_vault_recover_reset_method: tasks``: a tasks file written by the test runs
this module as a script (``reset``), which stops the damaged server by its PID, moves its raft data aside and starts
an empty server on the same address. The server's PID is kept in a state file, so the fixture stops whichever
server runs at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script by the reset tasks: make `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.ansible_run import run_module
from tests.support.openbao import OpenBaoServer, terminate_pid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = TMP_ROOT / "it-vault-recover"
SECRET = "aiteam/database"
BACKED_UP = {"username": "aiteam_prod_user", "password": "backed-up-password"}
WRITTEN_LATER = {"username": "aiteam_prod_user", "password": "written-after-the-backup"}
VAULT_PASSWORD = "atlasia-dr-test-vault-password"
ENCRYPTION_KEY = "atlasia-dr-test-encryption-key"
SAFETY_NAME = re.compile(r"^vault-prerestore_\d{8}_\d{6}\.snap(\.enc)?$")


# -- the server, adopted from / kept in a state file so that a reset by the playbook is followed ------------------

def save_state(server, path):
    path.write_text(json.dumps(server.state()))


def load_server(path):
    return OpenBaoServer.from_state(json.loads(path.read_text()))


def reset_openbao(state_path):
    """Stop the server of ``state_path`` (by PID), move its raft data aside, start it again on empty storage."""
    server = load_server(state_path)
    if server.pid:
        terminate_pid(server.pid, expect_in_cmdline="bao")
    if os.path.isdir(server.data_dir):
        os.rename(server.data_dir, "%s.corrupt-%d" % (server.data_dir, time.time() * 1000))
    fresh = OpenBaoServer(directory=server.dir, node_id=server.node_id, port=server.port,
                          cluster_port=server.cluster_port)
    fresh.start()
    save_state(fresh, state_path)
    return fresh


def _cli(argv=None):
    parser = argparse.ArgumentParser(description="test helper: give the playbook a fresh OpenBao")
    parser.add_argument("command", choices=["reset"])
    parser.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    fresh = reset_openbao(Path(args.state))
    print("fresh OpenBao pid %s on %s" % (fresh.pid, fresh.addr))
    return 0


# -- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world():
    """An OpenBao holding BACKED_UP in a snapshot set, WRITTEN_LATER afterwards; vars and keys files for the playbook."""
    if ROOT.exists():
        subprocess.run(["rm", "-rf", str(ROOT)], check=True)
    ROOT.mkdir(parents=True)
    state = ROOT / "openbao-state.json"
    server = OpenBaoServer(directory=str(ROOT / "openbao"))
    server._own_dir = True
    try:
        server.setup()
        save_state(server, state)
        server.write_secret(SECRET, BACKED_UP)
        daily = ROOT / "backups" / "daily"
        stamp = "20261120_020000"
        saved = run_module("atlasia.dr.vault_snapshot", dict(url=server.addr, token=server.token, dest=str(daily),
                                                             timestamp=stamp))
        assert not saved.get("failed"), saved.get("msg")
        recorded = run_module("atlasia.dr.backup_set", dict(
            state="present", root=str(ROOT / "backups"), path=str(daily), timestamp=stamp, environment="local",
            artifacts=[dict(name=Path(saved["path"]).name, component="vault")]))
        assert not recorded.get("failed"), recorded.get("msg")
        server.write_secret(SECRET, WRITTEN_LATER)

        password_file = ROOT / "vault-password"
        password_file.write_text(VAULT_PASSWORD + "\n")
        keys_vars = ROOT / "unseal-keys.vault.yml"
        keys_vars.write_text("dr_vault_recover_unseal_keys:\n  - %s\n" % server.unseal_key)
        keys_json = ROOT / "init.json.vault"
        keys_json.write_text(json.dumps({"keys_base64": [server.unseal_key], "root_token": server.token}))
        for path in (keys_vars, keys_json):
            subprocess.run([str(VENV_BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file),
                            str(path)], check=True, capture_output=True, env=venv_env())
        reset_tasks = ROOT / "reset-openbao.yml"
        reset_tasks.write_text(
            "- name: Give the playbook a fresh OpenBao (test helper)\n"
            "  ansible.builtin.command:\n"
            "    argv: [%s, %s, reset, --state, %s]\n"
            "  changed_when: true\n" % (VENV_PYTHON, Path(__file__).resolve(), state))
        variables = dict(
            dr_backup_root=str(ROOT / "backups"), dr_reports_dir=str(ROOT / "reports"), dr_vault_enabled=True,
            dr_vault_url=server.addr, dr_vault_token=server.token, dr_s3_enabled=False,
            dr_vault_recover_check_paths=["secret/data/%s" % SECRET], dr_vault_recover_wait=60,
            dr_vault_recover_reset_method="tasks", dr_vault_recover_reset_tasks=str(reset_tasks))
        vars_file = ROOT / "vars.json"
        vars_file.write_text(json.dumps(variables))
        yield dict(state=state, vars_file=vars_file, password_file=password_file, keys_vars=keys_vars,
                   keys_json=keys_json, key=server.unseal_key, token=server.token)
    finally:
        if state.exists():
            current = load_server(state)
            if current.pid:
                terminate_pid(current.pid, expect_in_cmdline="bao")
        server.stop(remove=False)
        subprocess.run(["rm", "-rf", str(ROOT / "openbao")], check=False)


def bao(world):
    server = load_server(world["state"])
    server.token = world["token"]
    return server


def playbook(world, *args):
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/vault_recover.yml", "-e", "env=local",
            "-e", "@%s" % world["vars_file"], "-e", "ansible_python_interpreter=%s" % VENV_PYTHON,
            "--vault-password-file", str(world["password_file"])] + list(args)
    result = subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900,
                            check=False)
    (ROOT / "last-playbook.log").write_text(result.stdout + result.stderr)
    assert world["key"] not in result.stdout + result.stderr, "an unseal key was printed"
    return result


def output(result):
    return result.stdout[-6000:] + result.stderr[-3000:]


def latest_report():
    reports = sorted((ROOT / "reports").glob("vault-recover-*.json"))
    assert reports, "no vault-recover report"
    return json.loads(reports[-1].read_text())


def assert_safety_snapshot(report):
    """The report names the safety snapshot taken before the restore: in dr_safety_dir, sidecars that verify."""
    path = Path(report["safety_backup"])
    assert path.parent == ROOT / "backups" / "safety" and SAFETY_NAME.match(path.name), path
    assert report["safety_snapshot"] == str(path) and "verified" in report["safety_snapshot_reason"]
    data = path.read_bytes()
    for algo in ("md5", "sha256"):
        expected = "%s  %s\n" % (hashlib.new(algo, data).hexdigest(), path.name)
        assert Path("%s.%s" % (path, algo)).read_text() == expected
    manifest = json.loads((path.parent / (path.name.split(".", 1)[0] + ".json")).read_text())
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["purpose"] == "pre-restore safety snapshot"
    return path, data, manifest


# -- tests -------------------------------------------------------------------------------------------------------

def test_a_sealed_vault_is_unsealed_with_the_encrypted_keys(world):
    server = bao(world)
    server.seal()
    result = playbook(world, "-e", "@%s" % world["keys_vars"])
    assert result.returncode == 0, output(result)
    assert server.seal_status()["sealed"] is False
    assert server.read_secret(SECRET) == WRITTEN_LATER  # unsealed, nothing restored
    report = latest_report()
    assert report["verified"] is True
    assert report["action"] == "unsealed"
    assert [p["name"] for p in report["phases"]] == ["assessment", "verification"]
    assert "unsealed with 1 key(s)" in report["phases"][0]["notes"]


def test_the_keys_can_come_from_an_encrypted_file_and_an_unsealed_vault_is_left_alone(world):
    server = bao(world)
    result = playbook(world, "-e", "dr_vault_recover_unseal_keys_file=%s" % world["keys_json"])
    assert result.returncode == 0, output(result)
    assert "already unsealed" in latest_report()["phases"][0]["notes"]
    server.seal()
    result = playbook(world, "-e", "dr_vault_recover_unseal_keys_file=%s" % world["keys_json"])
    assert result.returncode == 0, output(result)
    assert server.read_secret(SECRET) == WRITTEN_LATER


def test_mode_unseal_never_restores(world):
    server = bao(world)
    server.seal()
    wrong = ROOT / "wrong-keys.json"
    wrong.write_text(json.dumps([base64.b64encode(os.urandom(32)).decode()]))
    result = playbook(world, "-e", "dr_vault_recover_unseal_keys_file=%s" % wrong, "-e", "mode=unseal")
    assert result.returncode != 0
    assert "wrong_key" in result.stdout
    assert latest_report()["status"] == "failed"
    assert server.seal_status()["sealed"] is True  # nothing was restored or reset
    server.unseal(world["key"])
    assert server.read_secret(SECRET) == WRITTEN_LATER


def test_corrupt_storage_is_replaced_by_the_newest_verified_snapshot(world):
    server = bao(world)
    terminate_pid(server.pid, expect_in_cmdline="bao")  # the node crashed...
    with open(os.path.join(server.data_dir, "vault.db"), "r+b") as handle:  # ...and its raft database is damaged
        handle.seek(0)
        handle.write(os.urandom(65536))
    result = playbook(world, "-e", "@%s" % world["keys_vars"])
    assert result.returncode == 0, output(result)
    server = bao(world)
    assert server.seal_status()["sealed"] is False
    assert server.read_secret(SECRET) == BACKED_UP  # the snapshot's data, readable with the original token
    report = latest_report()
    assert report["verified"] is True
    assert report["action"] == "restored"
    assert [p["name"] for p in report["phases"]] == ["assessment", "restoration", "verification"]
    assert report["backup"]["set_id"] == "20261120_020000"
    assert any(name.startswith("raft.corrupt-") for name in os.listdir(server.dir))  # kept, not deleted
    path, data, manifest = assert_safety_snapshot(report)
    assert path.suffix == ".snap" and data[:2] == b"\x1f\x8b" and "encryption" not in manifest  # dr_env local


def test_keys_that_no_longer_open_the_data_lead_to_a_restore(world):
    server = bao(world)
    server.write_secret(SECRET, WRITTEN_LATER)
    # someone wiped the node and initialised a new cluster on it: the original keys are refused
    fresh = reset_openbao(world["state"])
    fresh.init()
    encryption = ROOT / "encryption.json"
    encryption.write_text(json.dumps({"dr_encryption_enabled": True, "dr_encryption_key": ENCRYPTION_KEY}))
    # an encrypting environment restores only encrypted, authenticated sets: the same snapshot as such a set
    daily = ROOT / "backups" / "daily"
    stamp = "20261121_020000"
    copy = daily / ("vault_%s.snap" % stamp)
    shutil.copyfile(str(daily / "vault_20261120_020000.snap"), str(copy))
    encrypted = run_module("atlasia.dr.dr_crypt", dict(state="encrypted", src=str(copy), key=ENCRYPTION_KEY))
    assert not encrypted.get("failed"), encrypted.get("msg")
    recorded = run_module("atlasia.dr.backup_set", dict(
        state="present", root=str(ROOT / "backups"), path=str(daily), timestamp=stamp, environment="local",
        artifacts=[dict(name=Path(encrypted["path"]).name, component="vault")], auth_key=ENCRYPTION_KEY))
    assert not recorded.get("failed"), recorded.get("msg")
    result = playbook(world, "-e", "@%s" % world["keys_vars"], "-e", "@%s" % encryption)
    assert result.returncode == 0, output(result)
    assert ENCRYPTION_KEY not in result.stdout + result.stderr
    report = latest_report()
    assert "wrong_key" in report["phases"][0]["notes"]
    assert bao(world).read_secret(SECRET) == BACKED_UP
    assert report["action"] == "restored"
    # the safety snapshot is encrypted like every artifact of an encrypted environment, and decrypts to a snapshot
    path, data, manifest = assert_safety_snapshot(report)
    assert path.name.endswith(".snap.enc") and data.startswith(b"age-encryption.org/v1\n")
    plain = run_module("atlasia.dr.dr_crypt",
                       dict(state="decrypted", src=str(path), key=ENCRYPTION_KEY, dest=str(ROOT / "safety-plain")))
    assert not plain.get("failed"), plain.get("msg")
    assert hashlib.sha256(Path(plain["path"]).read_bytes()).hexdigest() == manifest["encryption"]["plaintext"]["sha256"]


if __name__ == "__main__":
    sys.exit(_cli())
