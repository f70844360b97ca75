"""An encrypted set made by the collection opens with the commands of docs/backups.md only (real PostgreSQL).

"Opening a set without Ansible": the block of shell commands the document gives is run as written (bash), with
the passphrase typed at age's prompt on a pseudo-terminal, in a copy of the set's folder; the database it loads
is then compared with the one that was backed up.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, agecli, venv_env
from tests.support.localenv import DB_NAME, LocalEnvironment
from tests.support.postgres import table_digests

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(agecli.AGE is None, reason="Debian's age package is not installed (scripts/setup.sh)")]

KEY = "a passphrase typed at 3 a.m. 7"
MARKER = "<!-- open-by-hand:"


def documented_block():
    """The bash block that follows the open-by-hand marker in docs/backups.md, exactly as written."""
    text = (REPO_ROOT / "docs" / "backups.md").read_text()
    after = text[text.index(MARKER):]
    match = re.search(r"```bash\n(.*?)```", after, re.S)
    assert match, "docs/backups.md: no bash block after the open-by-hand marker"
    return match.group(1)


@pytest.fixture(scope="module")
def env():
    local = LocalEnvironment(root=TMP_ROOT / "it-open-by-hand", with_vault=False, with_s3=False)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def test_a_set_opens_with_the_documented_commands_only(env):
    vars_file = env.write_vars(dr_reports_dir=str(env.root / "reports"), dr_encryption_enabled=True,
                               dr_encryption_key=KEY)
    before = table_digests(env.pg, DB_NAME)
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/backup.yml", "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON]
    result = subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900,
                            check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    daily = env.root / "backups" / "daily"
    set_file = sorted(daily.glob("set_*.json"))[-1]
    data = json.loads(set_file.read_text())
    stamp = data["set_id"]
    assert all(a["name"].endswith(".enc") for a in data["artifacts"])

    # the operator's folder: what the bucket holds for this set (names as in daily/), no collection at hand
    folder = env.root / "opened"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for path in daily.iterdir():
        if "_%s" % stamp in path.name:
            shutil.copyfile(path, folder / path.name)

    new_db = "opened_by_hand"
    shell_env = dict(PATH=os.environ["PATH"], HOME=str(env.root), LANG="C.UTF-8", SET=stamp, DB=new_db,
                     **env.pg.env())
    code, screen, stdout, stderr = agecli.run_with_passphrase(
        ["bash", "-c", documented_block()], KEY, cwd=str(folder), env=shell_env, timeout=600)
    assert code == 0, "documented commands failed:\n%s\n%s\n%s" % (stdout[-3000:], stderr[-3000:], screen[-1000:])
    assert screen.count("Enter passphrase") == len(data["artifacts"])  # age asked, once per encrypted file
    assert re.search(r"backup_%s\.sql\.gz\.enc: OK" % stamp, stdout)

    # what age wrote is what was dumped: the plaintext checksum of the artifact's manifest
    manifest = json.loads((folder / ("backup_%s.json" % stamp)).read_text())
    plain = folder / ("backup_%s.sql.gz" % stamp)
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == manifest["encryption"]["plaintext"]["sha256"]
    # and the database loaded by hand holds what was backed up
    assert table_digests(env.pg, new_db) == before


def test_a_wrong_passphrase_is_refused_by_age(env):
    folder = env.root / "opened"
    encrypted = sorted(folder.glob("backup_*.sql.gz.enc"))
    assert encrypted, "the first test leaves the set in %s" % folder
    code, dummy_screen, dummy_out, stderr = agecli.run_with_passphrase(
        [agecli.AGE, "-d", "-o", str(folder / "wrong.out"), str(encrypted[0])], "not the key", timeout=120)
    assert code != 0 and "incorrect passphrase" in stderr
