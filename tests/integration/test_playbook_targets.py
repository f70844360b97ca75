"""Playbooks fail loudly when their target matches no host, and run the same from anywhere.

Real ``ansible-playbook`` runs, no servers: every failure checked here happens in the first play (hosts:
localhost, controller-side actions only) before any connection. The three ways to run a playbook: from the
repository root (``ansible.cfg``), from inside ``playbooks/`` (``playbooks/ansible.cfg``) and as a collection
playbook (``atlasia.dr.<name>``).
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.support import REPO_ROOT, VENV_BIN, VENV_PYTHON, venv_env

pytestmark = pytest.mark.integration

#: Every playbook whose work targets a group derived from env, and the pattern it looks for with env=prdo.
TARGETS = {
    "backup": "prdo_db",
    "restore": "prdo_db",
    "verify": "prdo_db",
    "recover_data": "prdo_db",
    "vault_recover": "prdo_db",
    "rekey": "prdo_db",
    "preflight": "prdo_db",
    "monitor": "prdo_db",
    "pgbackrest": "prdo_db",
    "pitr": "prdo_db",
    "drill": "prdo_drill",
    "rebuild": "prdo:&new_hosts",
}
KNOWN = "dev_db, local_db, prod_db"
INVENTORIES = ", ".join(str(REPO_ROOT / "inventories" / env) for env in ("local", "dev", "prod"))


def run(args, cwd=REPO_ROOT, extra_env=None):
    """ansible-playbook with the environment an operator has: no ANSIBLE_CONFIG, so the cwd's ansible.cfg applies."""
    env = venv_env({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_INVENTORY", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS",
                 "ANSIBLE_ROLES_PATH", "ANSIBLE_STDOUT_CALLBACK"):
        env.pop(name, None)
    env.update(extra_env or {})
    argv = [str(VENV_BIN / "ansible-playbook")] + list(args) + ["-e", "ansible_python_interpreter=%s" % VENV_PYTHON]
    result = subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL, check=False)
    # the message is printed once on one line ([ERROR]) and once wrapped (the callback): compare without layout
    result.text = " ".join((result.stdout + result.stderr).split()).replace("''", "'")
    return result


def recap_hosts(result):
    return re.findall(r"^(\S+)\s+: ok=", result.stdout, re.M)


def test_the_list_covers_every_playbook_that_targets_an_env_group():
    derived = set()
    for path in (REPO_ROOT / "playbooks").glob("*.yml"):
        for play in yaml.safe_load(path.read_text()):
            if "env" in str(play.get("hosts", "")) or play.get("ansible.builtin.import_playbook", "")[:-4] in TARGETS:
                derived.add(path.stem)
    assert derived == set(TARGETS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run the tests below look at, made two at a time (the machine has two cores): name -> result."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    installed = {"ANSIBLE_COLLECTIONS_PATH": str(REPO_ROOT / ".collections")}
    plans = {"typo-%s" % name: (["playbooks/%s.yml" % name, "-e", "env=prdo"], REPO_ROOT, None) for name in TARGETS}
    plans.update({
        "not-a-name": (["playbooks/backup.yml", "-e", "env=prod_db:all"], REPO_ROOT, None),
        # backup.yml names the role atlasia.dr.dr_backup: parsing it needs the collection path too
        "in-playbooks": (["backup.yml", "-e", "env=nosuch"], REPO_ROOT / "playbooks", None),
        "collection": (["atlasia.dr.restore", "-e", "env=nosuch"], REPO_ROOT, None),
        "installed": (["atlasia.dr.backup", "-e", "env=prdo", "-i", str(REPO_ROOT / "inventories" / "prod")],
                      elsewhere, installed),
        "prod": (["playbooks/restore.yml", "-e", "env=prod"], REPO_ROOT, None),
        "prod-no-vault": (["playbooks/restore.yml", "-e", "env=prod", "-e", "vault_backup=false",
                           "-e", "dr_restore_config=true", "-e", "dr_restore_files=true"], REPO_ROOT, None),
        "prod-pitr": (["playbooks/pitr.yml", "-e", "env=prod"], REPO_ROOT, None),
    })
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(run, *plan) for key, plan in plans.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_typo_env_fails_before_anything_is_done(name, runs):
    result = runs["typo-%s" % name]
    assert result.returncode != 0, result.stdout[-3000:]
    assert "matches '%s' (env=prdo): stopping before anything is done" % TARGETS[name] in result.text, result.text[-3000:]
    assert "The environments the inventory knows (its *_db groups): %s." % KNOWN in result.text
    assert "Inventory sources in use: %s." % INVENTORIES in result.text
    assert "run from the repository root" in result.text and "-i inventories/<env>" in result.text
    assert recap_hosts(result) == ["localhost"]  # only the check ran


def test_env_must_be_a_plain_name(runs):
    result = runs["not-a-name"]
    assert result.returncode != 0
    assert "env must be a plain name" in result.text and "'prod_db:all'" in result.text
    assert recap_hosts(result) == ["localhost"]


def test_from_inside_playbooks_the_inventory_and_collection_are_found(runs):
    result = runs["in-playbooks"]
    assert result.returncode != 0
    assert "No host matches 'nosuch_db' (env=nosuch)" in result.text, result.text[-3000:]
    assert "(its *_db groups): %s." % KNOWN in result.text  # playbooks/ansible.cfg loaded the repository's inventories
    assert "Inventory sources in use: %s." % INVENTORIES in result.text


def test_playbooks_ansible_cfg_is_the_root_one_with_paths_one_level_up():
    def settings(path):
        parser = configparser.ConfigParser()
        parser.read(path)
        values = {}
        for section in parser.sections():
            for key, value in parser.items(section):
                if key in ("collections_path", "inventory", "roles_path"):
                    parts = re.split(r"[:,]", value)
                    value = [os.path.normpath(part if part.startswith(("~", "/")) else os.path.join(path.parent, part))
                             for part in parts]
                values[(section, key)] = value
        return values

    assert settings(REPO_ROOT / "playbooks" / "ansible.cfg") == settings(REPO_ROOT / "ansible.cfg")


def test_as_a_collection_playbook_a_typo_env_fails_loudly(runs):
    result = runs["collection"]
    assert result.returncode != 0
    assert "No host matches 'nosuch_db' (env=nosuch)" in result.text, result.text[-3000:]
    assert "(its *_db groups): %s." % KNOWN in result.text


def test_as_an_installed_collection_playbook_elsewhere(runs):
    """From another folder: the collection found through ANSIBLE_COLLECTIONS_PATH, the inventory given with -i."""
    result = runs["installed"]
    assert result.returncode != 0
    assert "No host matches 'prdo_db' (env=prdo)" in result.text, result.text[-3000:]
    assert "(its *_db groups): prod_db." in result.text
    assert "Inventory sources in use: %s." % (REPO_ROOT / "inventories" / "prod") in result.text


def test_prod_restore_confirmation_names_every_component_it_replaces(runs):
    result = runs["prod"]
    assert result.returncode != 0
    assert ("Refusing to restore PRODUCTION without confirmation: the run would replace the database aiteam_prod, "
            "the Vault (every secret) on aiteam-prod.example.invalid.") in result.text, result.text[-3000:]
    assert recap_hosts(result) == ["localhost"]
    # as the restore role will see it on the hosts: Vault left alone, configuration and file data extracted
    result = runs["prod-no-vault"]
    assert ("the run would replace the database aiteam_prod, the configuration files, the file data on "
            "aiteam-prod.example.invalid.") in result.text, result.text[-3000:]
    # a point in time replaces the whole cluster
    result = runs["prod-pitr"]
    assert "the run would replace the whole PostgreSQL cluster (every database, aiteam_prod included)" in result.text
