"""Progress lines of a long step, through real ansible-playbook, against a real PostgreSQL 15.

A dump that takes longer than the interval prints ``pg_dump_backup on localhost: ... written, ... /s ...`` lines in
the playbook's stdout; the task's result is the same as a run with progress turned off (dr_progress_interval: 0).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.integration import pg_helpers as h
from tests.support import VENV_PYTHON
from tests.support.ansible_run import run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERVAL = 2
_SIZE = r"[\d.]+ (?:B|KiB|MiB|GiB)"
LINE = re.compile(rf"^pg_dump_backup on localhost: {_SIZE} of about {_SIZE} dumped"
                  rf"(?:, {_SIZE}/s(?:, about (?:\d+ h )?(?:\d+ min )?\d+ s left)?)?, {_SIZE} written$")


@pytest.fixture(scope="module")
def slow_db(pg_server):
    """pgbench scale 40 (4M rows, ~600 MB): dumped as INSERT statements naming their columns, through single-threaded
    gzip -9 (a few times the interval even on a fast idle machine)."""
    name = h.unique("progress")
    h.create_pgbench_db(pg_server, name, scale=40)
    try:
        yield name
    finally:
        pg_server.dropdb(name)


def _play(pg_server, db, tmp_path):
    args = h.conn_args(pg_server, db, login_password="{{ atlasia_test_password }}", format="plain",
                       dump_options=["--column-inserts"], compression="gzip", compression_level=9, compression_threads=1)
    tasks = []
    for name, interval in (("with progress", INTERVAL), ("without progress", 0)):
        tasks.append({"name": name, "atlasia.dr.pg_dump_backup": dict(args, dest=str(tmp_path / name.split()[0])),
                      "vars": {"dr_progress_interval": interval}, "register": "dump"})
        tasks.append({"name": "keep the result of the dump " + name, "ansible.builtin.copy": {
            "content": "{{ dump | to_json }}", "dest": str(tmp_path / (name.split()[0] + ".json")), "mode": "0600"}})
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], indent=1))
    vars_file = tmp_path / "vars.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"atlasia_test_password": pg_server.password}, handle)
    return run_playbook(playbook, extra_args=["-e", f"@{vars_file}"], timeout=600)


def _section(stdout, task):
    """The lines the playbook printed under ``TASK [task]``, up to the next task."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"TASK [{task}]"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("TASK [")), len(lines))
    return lines[start + 1:end]


def _comparable(result, dest):
    """The result without what differs between two dumps of the same data (folder, time, checksums of gzip)."""
    text = json.dumps(result, sort_keys=True).replace(dest, "DEST")
    text = re.sub(r"\d{8}_\d{6}", "STAMP", text)
    data = json.loads(text)
    data.pop("duration", None)
    manifest = data.pop("manifest_data")
    return data, sorted(manifest)


def test_long_dump_prints_progress_and_returns_the_same_result(pg_server, slow_db, tmp_path):
    proc = _play(pg_server, slow_db, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    watched = json.loads((tmp_path / "with.json").read_text())
    plain = json.loads((tmp_path / "without.json").read_text())
    # a precondition, not the product's property: lines can only be counted over a few intervals
    assert watched["duration"] >= 3 * INTERVAL, \
        "the dump took %.1f s: not long enough to show progress" % watched["duration"]

    lines = [line for line in _section(proc.stdout, "with progress") if line.startswith("pg_dump_backup on")]
    print("\n".join(["", "duration %.1f s" % watched["duration"]] + lines))  # shown with pytest -s
    assert all(LINE.match(line) for line in lines), lines
    # one line per interval, give or take the first and the last
    assert len(lines) >= int(watched["duration"] // INTERVAL) - 2 >= 1, (watched["duration"], lines)
    assert "left" in " ".join(lines)
    assert not [line for line in _section(proc.stdout, "without progress") if "pg_dump_backup on" in line]

    assert set(watched) == set(plain)
    one, keys_one = _comparable(watched, str(tmp_path / "with"))
    two, keys_two = _comparable(plain, str(tmp_path / "without"))
    assert keys_one == keys_two
    for key in ("md5", "sha256", "checksums", "size"):  # gzip output may differ by a byte of header
        one.pop(key, None)
        two.pop(key, None)
    assert one == two


@pytest.fixture
def ssh_host():
    from tests.support.sshd import SshServer

    if os.geteuid() != 0:
        pytest.skip("the SSH test host needs root (sshd, useradd, sudoers)")
    server = SshServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_progress_over_ssh_with_become(pg_server, slow_db, tmp_path, ssh_host):
    """As in production: an unprivileged login user, the module run by root through sudo; the progress file is
    written by root and read by the login user, without become."""
    inventory = tmp_path / "hosts.json"
    host_vars = dict(ssh_host.inventory_vars(), ansible_python_interpreter=str(VENV_PYTHON), ansible_become=True,
                     ansible_become_method="sudo", ansible_become_user="root")
    inventory.write_text(json.dumps({"all": {"hosts": {"db1": host_vars}}}))
    args = h.conn_args(pg_server, slow_db, login_password="{{ atlasia_test_password }}", format="plain",
                       dump_options=["--inserts"], compression="gzip", compression_level=9, compression_threads=1,
                       dest=str(tmp_path / "dumps"))
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "db1", "gather_facts": False, "tasks": [
        {"name": "dump", "atlasia.dr.pg_dump_backup": args, "vars": {"dr_progress_interval": 2},
         "register": "dump"},
        {"name": "who ran it", "ansible.builtin.command": "id -un", "register": "who", "changed_when": False},
        {"name": "show", "ansible.builtin.debug": {"msg": "ran as {{ who.stdout }}, {{ dump.duration }} s"}},
    ]}]))
    vars_file = tmp_path / "vars.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"atlasia_test_password": pg_server.password}, handle)
    proc = run_playbook(playbook, inventory=inventory, extra_args=["-e", f"@{vars_file}"], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + ssh_host.log_tail()
    assert "ran as root" in proc.stdout
    lines = [line for line in _section(proc.stdout, "dump") if line.startswith("pg_dump_backup on db1: ")]
    print("\n".join([""] + lines))  # shown with pytest -s
    assert lines, proc.stdout[-3000:]
    assert all(LINE.match(line.replace(" on db1:", " on localhost:")) for line in lines), lines
    assert (tmp_path / "dumps").is_dir() and os.stat(tmp_path / "dumps").st_uid == 0


RESTORE_INTERVAL = 1
RESTORE_LINE = re.compile(
    rf"^pg_restore_db on localhost: {_SIZE} of {_SIZE} (?:checked|loaded)"
    rf"(?:, {_SIZE}/s(?:, about (?:\d+ h )?(?:\d+ min )?\d+ s left)?)?"
    rf"(?:; safety dump: {_SIZE} (?:of about {_SIZE} )?dumped(?:, .+)?)?$")


def test_long_restore_prints_progress_and_returns_the_same_result(pg_server, slow_db, tmp_path):
    """A load longer than the interval: lines with the bytes of the dump read against its size, through one psql
    fed by gzip (jobs 1) and through the parallel plain load (jobs 2) with its safety dump beside it; the result is
    the one of a restore with progress off."""
    targets = [h.unique("prog_rs"), h.unique("prog_rs")]
    conn = h.conn_args(pg_server, slow_db, login_password="{{ atlasia_test_password }}")
    dump = dict(conn, format="plain", compression="gzip", compression_level=1, dest=str(tmp_path / "dumps"))
    tasks = [{"name": "dump", "atlasia.dr.pg_dump_backup": dump, "vars": {"dr_progress_interval": 0},
              "register": "dump"}]
    runs = (("restore with progress", targets[0], "new", 1, RESTORE_INTERVAL),
            ("restore without progress", targets[1], "new", 1, 0),
            ("restore over it with progress", targets[0], "replace", 2, RESTORE_INTERVAL))
    for index, (name, db, mode, jobs, interval) in enumerate(runs):
        args = dict(conn, db=db, src="{{ dump.path }}", mode=mode, jobs=jobs,
                    safety_backup_dir=str(tmp_path / "safety"))
        tasks.append({"name": name, "atlasia.dr.pg_restore_db": args, "vars": {"dr_progress_interval": interval},
                      "register": "restored"})
        tasks.append({"name": "keep the result of run %d" % index, "ansible.builtin.copy": {
            "content": "{{ restored | to_json }}", "dest": str(tmp_path / ("run%d.json" % index)), "mode": "0600"}})
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], indent=1))
    vars_file = tmp_path / "vars.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"atlasia_test_password": pg_server.password}, handle)
    try:
        proc = run_playbook(playbook, extra_args=["-e", f"@{vars_file}"], timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results = [json.loads((tmp_path / ("run%d.json" % index)).read_text()) for index in range(3)]
    finally:
        h.drop_databases(pg_server, targets + h.previous_databases(pg_server, targets[0]))

    for index, name in ((0, "restore with progress"), (2, "restore over it with progress")):
        load = results[index]["timings"]["load"]
        lines = [line for line in _section(proc.stdout, name) if line.startswith("pg_restore_db on")]
        print("\n".join(["", "%s: load %.1f s" % (name, load)] + lines))  # shown with pytest -s
        assert load > 2 * RESTORE_INTERVAL, "the load took %.1f s: not long enough to show progress" % load
        assert lines and all(RESTORE_LINE.match(line) for line in lines), lines
        assert [line for line in lines if " loaded" in line], lines
        assert "left" in " ".join(lines)
    replace_lines = [line for line in _section(proc.stdout, "restore over it with progress") if "; safety dump: " in line]
    assert replace_lines, "no line shows the safety dump beside the load"
    assert results[2]["safety_backup"] and os.path.exists(results[2]["safety_backup"])
    assert not [line for line in _section(proc.stdout, "restore without progress") if "pg_restore_db on" in line]

    def comparable(result):
        data = dict(result)
        for key in ("db", "duration", "timings", "invocation", "space"):  # free space moves between runs
            data.pop(key, None)
        return data

    assert comparable(results[0]) == comparable(results[1])
    assert results[0]["rows"] == results[2]["rows"]
