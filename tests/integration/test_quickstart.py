"""The README's quickstart, run as written: its ```bash blocks, copied from README.md at run time, in order.

"Quickstart: protect your own host" is walked by a new user on a fresh controller account against a real host:
the blocks are read from README.md (an edit of the README is what this test runs) and each runs with ``bash`` in
a pseudo-terminal, in a fresh HOME, from the root of this checkout for the first block and then wherever the
blocks ``cd`` (the working folder and the exported variables carry from one block to the next, as in one shell).

The world is the prod profile test's (tests/support/prodprofile.py): the host is the SSH server of
tests/support/sshd.py (unprivileged ``atlasiaops``, passwordless sudo), with the application's Compose project
and its PostgreSQL container ``aiteam_db_prod`` laid out as ``inventories/prod`` expects, OpenBao and SeaweedFS
S3 on 127.0.0.1, the images of scripts/build-images.sh.

What a user substitutes, and nothing else, is substituted:

- host names: ``db1.example.org`` and ``staging-db1.example.org`` become :data:`HOST` and :data:`STAGING`; both
  name the test's host, resolved to 127.0.0.1 through an /etc/hosts seen only by the quickstart's processes.
  The host listens on port 22 (``ssh-keyscan`` of step 2 reads no ssh_config), so the test is skipped when
  127.0.0.1:22 is taken;
- ``ansible_user: deploy`` becomes the host's login user; the host's Python with the modules' libraries and the
  CA of this machine's S3 server (``dr_s3_ca_bundle``, ``dr_pgbackrest_s3_ca_file``, step 2) are written in
  ``host_vars/<host>.yml`` (the README's place for what differs per host);
- the values of the vault file: ``ansible-vault create`` runs as written, with ``EDITOR`` set to a small script
  that writes the YAML block the README shows with this test's secrets (a README key the test does not know
  fails the test);
- the values step 2 asks to adapt in ``group_vars/prod/main.yml``: Vault URL, S3 endpoint and region, the
  database port, the health URL (bucket, database name, user, container and paths are the profile's);
- every password prompt (``ansible-vault create``, ``--ask-vault-pass``, the ``read`` of step 6) is answered in
  the pseudo-terminal;
- step 8's ``backup=`` names the set step 5's backup made; of step 8 only the command with ``-e confirm=yes`` runs
  (the other is the same restore asking for ``yes`` at the terminal), after the database was dropped.

Fresh HOME: OpenSSH reads ``~/.ssh`` from the account's home directory, not from ``$HOME``, so the quickstart's
processes run in a private mount namespace (``unshare --mount``) where a new empty folder is mounted on /root
(and the /etc/hosts above on /etc/hosts); nothing of the machine's own /root or /etc/hosts is read or changed.
The user's SSH key (the one the host trusts) is the only file placed there beforehand, in ``~/.ssh/id_ed25519``.

Step 1's ``pip install`` reads the wheels from ``.cache/wheels/quickstart`` (``PIP_FIND_LINKS``, ``PIP_NO_INDEX``:
environment only, the command is the README's), filled once from the package index with ``pip download`` of the
same requirements.

Not run:

- the crontab block of step 6: there is no cron daemon on this machine (its schedule runs the commands of step 5,
  which this test runs);
- the drill of step 7: it restores onto a staging host that has PostgreSQL laid out like production's, and this
  machine can hold only one such layout (the paths under /srv/atlasia and the container name ``aiteam_db_prod``
  are fixed by the profile); a second host is not cheap here. The drill itself is tested by
  tests/integration/test_drill.py.

The run time is printed (``-s`` shows it): 510 s alone on this 2-CPU machine, 740 s beside a sanity run (step 1,
mostly the install of the ``ansible`` package, about 2.5 minutes; step 5's backup and restore test 4-6 minutes;
the restore 1.5-3 minutes).

Needs root, a Docker engine (scripts/docker-engine.sh) and the local images (scripts/build-images.sh).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pexpect
import pytest
import yaml

from tests.support import REPO_ROOT, VENV_PYTHON
from tests.support.postgres import table_digests
from tests.support.prodprofile import CONTAINER_S3_CA, PROFILE, ProdWorld, discard_workdir, make_workdir

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.root, pytest.mark.slow,
              pytest.mark.timeout(2400)]

README = REPO_ROOT / "README.md"
SECTION = "## Quickstart: protect your own host"
REAL_HOST = "# needs a real host"
HOST = "quickstart-db1.test"
STAGING = "quickstart-staging-db1.test"
SSH_PORT = 22
DB = PROFILE["dr_db_name"]
WHEELS = REPO_ROOT / ".cache" / "wheels" / "quickstart"
#: A new account's PATH: none of the project's virtualenv
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROMPT = r"(?:Confirm )?(?:New )?Vault password: "
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BLOCK_TIMEOUT = 1200


def quickstart_blocks(text):
    """``[(language, body)]`` of the fenced blocks of the quickstart section, in order."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"^```(\w+)\n(.*?)^```", section, re.S | re.M)


def pip_install_args(blocks):
    """The arguments of step 1's ``pip install`` (the same requirements are downloaded into :data:`WHEELS`)."""
    for lang, body in blocks:
        for line in body.splitlines():
            if lang == "bash" and re.search(r"/pip install ", line):
                return line.split(" install ", 1)[1].split()
    raise AssertionError("no `pip install` line in the quickstart")


def port_free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def blocks():
    found = quickstart_blocks(README.read_text(encoding="utf-8"))
    assert [lang for lang, _body in found if lang == "bash"], "the quickstart has no ```bash block"
    return found


@pytest.fixture(scope="module")
def wheels(blocks):
    """The wheels of step 1's requirements in :data:`WHEELS`: from the folder alone when it has them all,
    else downloaded once from the package index."""
    args = pip_install_args(blocks)
    WHEELS.mkdir(parents=True, exist_ok=True)
    base = [str(VENV_PYTHON), "-m", "pip", "download", "--quiet", "--dest", str(WHEELS)]
    offline = subprocess.run(base + ["--no-index", "--find-links", str(WHEELS)] + args, cwd=str(REPO_ROOT),
                             capture_output=True, text=True, timeout=600, check=False)
    if offline.returncode != 0:
        online = subprocess.run(base + args, cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=1200,
                                check=False)
        assert online.returncode == 0, "pip download %s failed:\n%s" % (" ".join(args), online.stderr[-3000:])
    return WHEELS


@pytest.fixture(scope="module")
def world(docker_images):
    """The prod world with its SSH host on port 22, stopped even when the test fails."""
    if not port_free(SSH_PORT):
        pytest.skip("127.0.0.1:%d is taken: the quickstart's ssh-keyscan reaches hosts on the SSH port" % SSH_PORT)
    workdir = make_workdir()
    prod = ProdWorld(workdir, ssh_port=SSH_PORT)
    try:
        prod.start()
        yield prod
    finally:
        try:
            prod.stop()
        finally:
            discard_workdir(workdir, "it-quickstart")


class Controller:
    """A new user's shell on the controller: blocks run with bash in a pseudo-terminal, in a fresh HOME."""

    def __init__(self, workdir, world, vault_password):
        self.dir = Path(workdir) / "controller"
        self.home = self.dir / "home"  # mounted on /root for the quickstart's processes
        self.state = self.dir / "state"
        self.logs = Path(workdir) / "logs"
        for folder in (self.home, self.state, self.logs):
            folder.mkdir(parents=True, mode=0o700)
        self.world = world
        self.password = vault_password
        self.count = 0
        ssh = self.home / ".ssh"
        ssh.mkdir(mode=0o700)
        shutil.copyfile(world.ssh.key_file, ssh / "id_ed25519")
        (ssh / "id_ed25519").chmod(0o600)
        shutil.copyfile(str(world.ssh.key_file) + ".pub", ssh / "id_ed25519.pub")
        self.hosts = self.dir / "hosts"
        self.hosts.write_text(Path("/etc/hosts").read_text() + "\n127.0.0.1 %s %s\n" % (HOST, STAGING))
        (self.state / "cwd").write_text(str(REPO_ROOT) + "\n")
        (self.state / "env").write_text("")
        self.secrets = self.dir / "vault-content.yml"
        self.editor = self.dir / "editor.sh"
        self.editor.write_text("#!/bin/sh\n# EDITOR of ansible-vault create: the content the README shows\n"
                               "cat %s > \"$1\"\n" % self.secrets)
        self.editor.chmod(0o700)

    @property
    def project(self):
        """~/atlasia-dr, as this test sees it."""
        return self.home / "atlasia-dr"

    def env(self):
        return {"HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash", "PATH": PATH,
                "LANG": "C.UTF-8", "TERM": "dumb", "EDITOR": str(self.editor),
                "PIP_FIND_LINKS": str(WHEELS), "PIP_NO_INDEX": "1"}

    def run(self, body, timeout=BLOCK_TIMEOUT):
        """Run one block with bash; ``(exit status, output)``; the output is kept in the logs."""
        self.count += 1
        script = self.state / ("block-%02d.sh" % self.count)
        script.write_text("\n".join([
            "set -eo pipefail",
            "trap 'export -p > %s/env; pwd > %s/cwd' EXIT" % (self.state, self.state),
            ". %s/env" % self.state,
            'cd "$(cat %s/cwd)"' % self.state,
            body,
        ]) + "\n")
        namespace = ('mount --bind "$1" /root && mount --bind "$2" /etc/hosts && cd /root '
                     '&& exec bash --noprofile --norc "$3"')
        child = pexpect.spawn("unshare", ["--mount", "--propagation", "private", "bash", "-c", namespace,
                                          "quickstart", str(self.home), str(self.hosts), str(script)],
                              env=self.env(), cwd=str(self.home), encoding="utf-8", codec_errors="replace",
                              timeout=30, dimensions=(50, 200))
        output = io.StringIO()
        child.logfile_read = output  # everything the block printed, once
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("block %d still running after %d s:\n%s\n%s"
                                         % (self.count, timeout, body, clean(output.getvalue())[-4000:]))
                index = child.expect([PROMPT, pexpect.EOF, pexpect.TIMEOUT], timeout=min(left, 30))
                if index == 0:
                    child.sendline(self.password)
                elif index == 1:
                    break
        finally:
            child.close(force=True)
        text = clean(output.getvalue())
        (self.logs / ("%02d.log" % self.count)).write_text(body + "\n--- output ---\n" + text)
        status = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
        return status, text

    def must_run(self, body, timeout=BLOCK_TIMEOUT):
        status, text = self.run(body, timeout)
        assert status == 0, "this quickstart block failed (exit %s):\n%s\n--- output ---\n%s" % (
            status, body, text[-8000:])
        return text


def clean(text):
    return ANSI.sub("", text).replace("\r\n", "\n")


def vault_content(yaml_block, world):
    """The YAML block of step 3 with this test's secrets in place of the README's placeholders."""
    ours = {
        "vault_dr_db_password": world.db_password,
        "vault_dr_vault_token": world.bao.token,
        "vault_dr_encryption_key": world.encryption_key,
        "vault_dr_s3_access_key": world.s3.access_key,
        "vault_dr_s3_secret_key": world.s3.secret_key,
        "vault_dr_webhook_url": "",
    }
    shown = yaml.safe_load(yaml_block)
    unknown = sorted(set(shown) - set(ours))
    assert not unknown, "the README's vault file names secrets this test does not provide: %s" % unknown
    return yaml.safe_dump({key: ours[key] for key in shown}, sort_keys=False)


def set_value(text, key, value):
    """``key: value`` in a flat YAML file: the line replaced, or added at the end."""
    line = "%s: %s" % (key, json.dumps(value))
    pattern = re.compile(r"^%s:.*$" % re.escape(key), re.M)
    if pattern.search(text):
        return pattern.sub(lambda _m: line, text, count=1)
    return text.rstrip("\n") + "\n" + line + "\n"


def adapt_profile(controller, world):
    """Step 2's adaptations of group_vars/prod/main.yml, and the host's own variables in host_vars/."""
    main = controller.project / "inventories" / "prod" / "group_vars" / "prod" / "main.yml"
    text = main.read_text()
    for key, value in (("dr_vault_url", world.bao.addr),
                       ("dr_health_urls", ["http://127.0.0.1:%d/api/health/ready" % world.app_port]),
                       ("dr_db_port", world.db_port),
                       ("dr_s3_endpoint_url", world.s3.endpoint_url),
                       ("dr_s3_region", world.s3.region)):
        text = set_value(text, key, value)
    main.write_text(text)
    host_vars = controller.project / "inventories" / "prod" / "host_vars"
    host_vars.mkdir(exist_ok=True)
    # The host's Python with boto3 and cryptography (the system one has neither on this machine), and the CA of
    # this machine's S3 server (step 2: dr_s3_ca_bundle, dr_pgbackrest_s3_ca_file).
    (host_vars / ("%s.yml" % HOST)).write_text(yaml.safe_dump({
        "ansible_python_interpreter": str(VENV_PYTHON), "dr_s3_ca_bundle": world.s3_cert,
        "dr_pgbackrest_s3_ca_file": CONTAINER_S3_CA, "dr_s3_checksum_calculation": "when_required"}))


def substitute(body, world):
    """Host names and login user: what a user writes in place of the README's."""
    return (body.replace("staging-db1.example.org", STAGING).replace("db1.example.org", HOST)
            .replace("ansible_user: deploy", "ansible_user: %s" % world.ssh.user))


def test_the_quickstart_protects_a_host_as_the_readme_says(blocks, wheels, world):
    started = time.monotonic()
    controller = Controller(world.workdir, world, "quickstart-vault-" + os.urandom(8).hex())
    yaml_blocks = [body for lang, body in blocks if lang == "yaml"]
    assert len(yaml_blocks) == 1, "step 3 shows one YAML block, the vault file's content"
    controller.secrets.write_text(vault_content(yaml_blocks[0], world))
    ran, skipped, set_id, before = [], [], None, None
    for lang, body in blocks:
        if lang != "bash":
            continue
        if "crontab" in body:
            skipped.append("crontab (no cron daemon here)")
            continue
        if "atlasia.dr.drill" in body:
            skipped.append("drill (no staging host laid out like production's here)")
            continue
        if "ansible-playbook" in body or "ssh-keyscan" in body:
            assert body.startswith(REAL_HOST), "a block that talks to servers lacks %r:\n%s" % (REAL_HOST, body)
        body = substitute(body, world)
        if "atlasia.dr.restore" in body:
            # step 8: the restore that names the set of step 5, after a disaster
            assert set_id, "no backup was made before the restore block"
            lines = [line for line in body.splitlines() if "confirm=yes" in line]
            assert len(lines) == 1, body
            body = re.sub(r"backup=\d{8}_\d{6}", "backup=%s" % set_id, lines[0])
            assert "backup=%s" % set_id in body, body
            world.db.psql('DROP DATABASE "%s" WITH (FORCE)' % DB)
            assert DB not in world.db.databases()
        text = controller.must_run(body)
        ran.append(body)

        if "collection list" in body:
            listed = {line.split()[0] for line in text.splitlines() if line.strip()}
            for name in ("atlasia.dr", "community.docker", "community.general", "awx.awx"):
                assert name in listed, "step 1 did not install %s:\n%s" % (name, text)
            tarballs = list(controller.project.glob("atlasia-dr-*.tar.gz"))
            assert len(tarballs) == 1, tarballs
        if "inventories/prod/hosts.yml" in body:
            adapt_profile(controller, world)
        if "ansible-vault create" in body:
            vault_file = controller.project / "inventories" / "prod" / "group_vars" / "prod" / "vault.yml"
            assert vault_file.read_text().startswith("$ANSIBLE_VAULT;"), "vault.yml is not encrypted"
            assert world.encryption_key not in vault_file.read_text()
        if "atlasia.dr.preflight" in body:
            assert "**NO**" not in " ".join(text.split()), text[-6000:]
        if "atlasia.dr.backup" in body:
            sets = world.sets()
            assert len(sets) == 1, "step 5's backup made %s" % sets
            set_id = sets[0]
            before = table_digests(world.db, DB)
            assert world.manifest(set_id).get("verified"), "step 5's verify did not record its restore test"
        if ".atlasia-dr.vault-pass" in body and "crontab" not in body:
            pass_file = controller.home / ".atlasia-dr.vault-pass"
            assert pass_file.read_text() == controller.password + "\n"
            assert pass_file.stat().st_mode & 0o077 == 0

    assert set_id and before, "the quickstart ran no backup"
    assert table_digests(world.db, DB) == before, "the database did not come back as step 5's backup saved it"
    reports = sorted((controller.project / "inventories" / "prod" / "reports").rglob("restore-*.json"))
    assert reports, "the restore wrote no report beside the inventory"
    report = json.loads(reports[-1].read_text())
    assert report["verified"] is True and report["backup"]["set_id"] == set_id, report
    assert skipped == ["crontab (no cron daemon here)", "drill (no staging host laid out like production's here)"]
    elapsed = time.monotonic() - started
    print("\nquickstart: %d blocks run in %.0f s (not run: %s)" % (len(ran), elapsed, "; ".join(skipped)))
