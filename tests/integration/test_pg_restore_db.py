"""atlasia.dr.pg_restore_db against a real PostgreSQL 15, through real Ansible.

A damaged, incomplete or missing backup is refused before the server is touched; a dump that fails while
loading leaves the target exactly as it was (scratch database dropped); a replace keeps the previous database
and a restorable safety backup; leftovers of killed runs are cleaned; clients of the target are disconnected;
check mode changes nothing. Byte-exact round trips of every format are in test_pg_dump_backup.py.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import time

import pytest

from tests.integration import pg_helpers as h
from tests.support.postgres import PG_BINDIR, create_sample_database, free_port, table_digests

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_database_left_behind")]

# Session fixtures shared with test_pg_dump_backup.py (pg_helpers memoises them across modules).
no_database_left_behind = h.no_database_left_behind
shared_source = h.shared_source
shared_source_state = h.shared_source_state
shared_backups = h.shared_backups


@pytest.fixture
def source(shared_source):
    return shared_source


@pytest.fixture
def source_state(shared_source_state):
    return shared_source_state


@pytest.fixture
def backups(shared_backups):
    """Backups of ``source`` made (and checked) by the round trips of test_pg_dump_backup.py: read-only."""
    return shared_backups


@pytest.fixture
def target(pg_server):
    """A seeded database with content different from the source's (one more user): a restore target."""
    name = h.unique("rs_tgt")
    create_sample_database(pg_server, name)
    pg_server.psql("INSERT INTO users (email, created_at) VALUES ('only-in-target@example.test', now())", db=name)
    try:
        yield name
    finally:
        leftovers = h.scratch_databases(pg_server, name) + h.previous_databases(pg_server, name)
        h.drop_databases(pg_server, [name] + leftovers)


def _largest_file(directory):
    files = [os.path.join(root, f) for root, _dirs, names in os.walk(directory) for f in names if f != "toc.dat"]
    return max(files, key=os.path.getsize)


# --- refused backups: nothing on the server changes ------------------------------------------------------
PLAIN_GZ, PLAIN_ZST, PLAIN = ("plain", "gzip", 1), ("plain", "zstd", 1), ("plain", "none", 1)
CUSTOM_GZ, CUSTOM_ZST, CUSTOM = ("custom", "gzip", 1), ("custom", "zstd", 1), ("custom", "none", 1)
DIR_GZ = ("directory", "gzip", 2)

# id, backup, damage, keep sidecars, extra module args, error_kind, message pattern
REFUSALS = [
    ("plain-gzip-truncated", PLAIN_GZ, "truncate", False, {}, "bad_backup", r"fails the gzip decompression test"),
    ("plain-gzip-flipped-with-sidecar", PLAIN_GZ, "flip", True, {}, "bad_backup", r"MD5 checksum mismatch"),
    ("plain-gzip-flipped", PLAIN_GZ, "flip", False, {}, "bad_backup", r"fails the gzip decompression test"),
    ("plain-zstd-truncated", PLAIN_ZST, "truncate", False, {}, "bad_backup", r"fails the zstd decompression test"),
    ("plain-zstd-flipped", PLAIN_ZST, "flip", False, {}, "bad_backup", r"fails the zstd decompression test"),
    ("plain-none-truncated", PLAIN, "truncate", False, {}, "bad_backup",
     r"lacks the '-- PostgreSQL database dump complete' line"),
    ("plain-none-flipped-with-sidecar", PLAIN, "flip", True, {}, "bad_backup", r"checksum mismatch"),
    ("custom-gzip-truncated", CUSTOM_GZ, "truncate", False, {}, "bad_backup",
     r"not a complete, readable custom-format archive"),
    ("custom-gzip-flipped", CUSTOM_GZ, "flip", False, {}, "bad_backup",
     r"not a complete, readable custom-format archive"),
    ("custom-zstd-truncated", CUSTOM_ZST, "truncate", False, {}, "bad_backup",
     r"not a complete, readable custom-format archive.*zstd"),
    ("custom-zstd-flipped", CUSTOM_ZST, "flip", False, {}, "bad_backup",
     r"not a complete, readable custom-format archive"),
    ("custom-none-truncated", CUSTOM, "truncate", False, {}, "bad_backup",
     r"not a complete, readable custom-format archive"),
    ("directory-file-truncated-with-sidecar", DIR_GZ, "truncate", True, {}, "bad_backup", r"checksum mismatch"),
    ("directory-file-truncated", DIR_GZ, "truncate", False, {}, "bad_backup",
     r"not a complete, readable directory-format archive"),
    ("directory-extra-file", DIR_GZ, "extra", True, {}, "bad_backup", r"sidecar does not list"),
    ("missing-file", PLAIN_GZ, "missing", False, {}, "bad_backup", r"does not exist"),
    ("empty-file", PLAIN_GZ, "empty", False, {}, "bad_backup", r"empty or not a PostgreSQL dump"),
    ("not-a-dump", PLAIN_GZ, "garbage", False, {}, "bad_backup", r"lacks the '-- PostgreSQL database dump complete'"),
    ("require-checksum-without-sidecar", PLAIN_GZ, None, False, {"require_checksum": True}, "bad_backup",
     r"no checksum sidecar"),
    ("mode-new-into-existing-db", PLAIN_GZ, None, True, {"mode": "new"}, "exists", r"already exists"),
    ("wrong-password", PLAIN_GZ, None, True, {"login_password": "not-the-password"}, "auth",
     r"password authentication failed"),
    ("closed-port", PLAIN_GZ, None, True, {"port": "CLOSED"}, "unreachable", r"cannot be reached"),
    ("missing-maintenance-db", PLAIN_GZ, None, True, {"maintenance_db": "no_such_maintenance_db"}, "no_database",
     r'database "no_such_maintenance_db" does not exist'),
]


def _damaged_copy(backups, case_dir, combo, damage, keep_sidecars):
    path = h.copy_artifact(backups.get(combo), case_dir)
    if not keep_sidecars:
        h.remove_sidecars(path)
    victim = _largest_file(path) if path.is_dir() else path
    if damage == "truncate":
        h.truncate(victim)
    elif damage == "flip":
        h.flip_byte(victim)
    elif damage == "extra":
        (path / "9999.dat.gz").write_bytes(gzip.compress(b"1\n"))
    elif damage == "missing":
        os.unlink(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(50000))
    return path


@pytest.fixture(scope="module")
def refusals(pg_server, shared_backups, tmp_path_factory):
    """Run every refusal case in one play against one seeded target; return results and what to compare."""
    root = tmp_path_factory.mktemp("rs_refusals")
    target = h.unique("rs_refuse")
    create_sample_database(pg_server, target)
    stale = f"{target}_restore_20200101_000000"  # must survive: nothing may change, not even cleanup
    pg_server.createdb(stale)
    try:
        before = dict(digests=table_digests(pg_server, target), databases=pg_server.databases())
        tasks = []
        for case_id, combo, damage, keep, extra, kind, pattern in REFUSALS:
            case_dir = root / case_id
            src = _damaged_copy(shared_backups, case_dir, combo, damage, keep)
            args = h.conn_args(pg_server, target, src=str(src), safety_backup_dir=str(root / "safety"))
            args.update(extra)
            if args["port"] == "CLOSED":
                args["port"] = free_port()
            tasks.append(args)
        results = h.run_tasks("pg_restore_db", tasks, root)
        after = dict(digests=table_digests(pg_server, target), databases=pg_server.databases())
        yield dict(results=dict(zip([c[0] for c in REFUSALS], results)), before=before, after=after,
                   safety_dir=root / "safety", target=target, root=root)
    finally:
        h.drop_databases(pg_server, [target, stale])


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_backup_refused(refusals, case):
    case_id, combo, damage, keep, extra, kind, pattern = case
    result = refusals["results"][case_id]
    assert result.get("failed") is True, result
    assert result["changed"] is False
    assert result["error_kind"] == kind, result["msg"]
    assert re.search(pattern, result["msg"]), result["msg"]
    if kind == "bad_backup":
        assert result["msg"].startswith("backup refused, nothing was changed")
    assert result["safety_backup"] is None and result["previous_db"] is None
    assert "not-the-password" not in str(result)


def test_refused_backups_left_the_server_untouched(refusals):
    assert refusals["after"]["digests"] == refusals["before"]["digests"]
    assert refusals["after"]["databases"] == refusals["before"]["databases"]  # no scratch; stale one kept
    assert not refusals["safety_dir"].exists() or os.listdir(refusals["safety_dir"]) == []


# --- a dump that fails while loading -------------------------------------------------------------------------
def test_dump_failing_near_the_end_keeps_target(pg_server, backups, target, tmp_path):
    sql = h.plain_sql(backups.get(PLAIN_GZ)["path"])
    marker = b"\n--\n-- PostgreSQL database dump complete"
    assert sql.count(marker) == 1
    broken = sql.replace(marker, b"\nSELECT * FROM public.no_such_table_atlasia;\n" + marker)
    src = tmp_path / "backup_20261126_020000.sql.gz"
    src.write_bytes(gzip.compress(broken))
    h.rewrite_sidecars(str(src))  # checksums and trailer are fine: only loading can find the problem
    before = table_digests(pg_server, target)
    databases = pg_server.databases()
    new_db = h.unique("rs_never")
    replace, new = h.run_tasks("pg_restore_db", [
        h.conn_args(pg_server, target, src=str(src), safety_backup_dir=str(tmp_path / "safety")),
        h.conn_args(pg_server, new_db, src=str(src), mode="new"),
    ], tmp_path)

    assert replace["failed"] and replace["changed"] is False
    assert "no_such_table_atlasia" in replace["msg"] and "does not exist" in replace["msg"]
    assert f"Database {target} is unchanged" in replace["msg"]
    assert re.search(rf"the scratch database {target}_restore_\d{{8}}_\d{{6}} was dropped", replace["msg"])
    assert replace["previous_db"] is None
    assert table_digests(pg_server, target) == before
    assert h.scratch_databases(pg_server, target) == []
    assert pg_server.databases() == databases
    # the safety backup made before the attempt is complete and checksummed
    assert replace["safety_backup"] and os.path.exists(replace["safety_backup"])

    assert new["failed"] and f"Database {new_db} was not created" in new["msg"]
    assert new_db not in pg_server.databases()


# --- replace semantics ---------------------------------------------------------------------------------------
def test_replace_keeps_previous_and_a_restorable_safety_backup(pg_server, backups, source, source_state, target,
                                                               tmp_path):
    old = table_digests(pg_server, target)
    old_facts = h.content_facts(pg_server, target)
    safety_dir = tmp_path / "safety"
    result = h.restore(pg_server, target, backups.get(CUSTOM_GZ)["path"], safety_backup_dir=str(safety_dir))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    h.assert_same_database(pg_server, source, target, *source_state)

    previous = result["previous_db"]
    match = re.match(rf"^{target}_previous_(\d{{8}}_\d{{6}})$", previous)
    assert match, previous
    assert table_digests(pg_server, previous) == old
    assert h.scratch_databases(pg_server, target) == []

    safety = result["safety_backup"]
    assert safety == str(safety_dir / f"prerestore_{match.group(1)}.sql.gz")
    for tool, suffix in (("md5sum", ".md5"), ("sha256sum", ".sha256")):
        proc = subprocess.run([tool, "-c", os.path.basename(safety) + suffix], cwd=safety_dir, capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (safety_dir / f"prerestore_{match.group(1)}.json").exists()

    # the safety backup is itself a good backup: restored, it gives back the replaced content
    rolled_back = h.unique("rs_rollback")
    try:
        back = h.restore(pg_server, rolled_back, safety, mode="new")
        assert not back.get("failed"), back.get("msg")
        assert back["checksums"] == {"md5": "ok", "sha256": "ok"}
        assert table_digests(pg_server, rolled_back) == old
        assert h.content_facts(pg_server, rolled_back) == old_facts
    finally:
        pg_server.dropdb(rolled_back)


def test_replace_without_keeping_previous(pg_server, backups, source, source_state, target, tmp_path):
    result = h.restore(pg_server, target, backups.get(PLAIN_ZST)["path"], keep_previous=False,
                       safety_backup_dir=str(tmp_path))
    assert not result.get("failed"), result.get("msg")
    assert result["previous_db"] is None
    assert h.previous_databases(pg_server, target) == [] and h.scratch_databases(pg_server, target) == []
    h.assert_same_database(pg_server, source, target, *source_state)
    assert os.path.basename(result["safety_backup"]).startswith("prerestore_")


def test_replace_a_missing_database_creates_it(pg_server, backups, source, source_state, tmp_path):
    name = h.unique("rs_absent")
    try:
        result = h.restore(pg_server, name, backups.get(PLAIN_GZ)["path"], safety_backup_dir=str(tmp_path))
        assert not result.get("failed"), result.get("msg")
        assert result["previous_db"] is None and result["safety_backup"] is None
        assert os.listdir(tmp_path) == []
        h.assert_same_database(pg_server, source, name, *source_state)
    finally:
        pg_server.dropdb(name)


def test_stale_scratch_of_a_killed_run_is_dropped(pg_server, backups, source, source_state, target, tmp_path):
    stale = f"{target}_restore_20200101_000000"
    pg_server.createdb(stale)
    pg_server.psql("CREATE TABLE half_restored (id int); INSERT INTO half_restored VALUES (1);", db=stale)
    unrelated = f"{target}_restore_notatimestamp"
    pg_server.createdb(unrelated)
    try:
        result = h.restore(pg_server, target, backups.get(PLAIN_GZ)["path"], safety_backup=False)
        assert not result.get("failed"), result.get("msg")
        assert result["dropped_stale"] == [stale]
        assert stale not in pg_server.databases()
        assert unrelated in pg_server.databases()
        h.assert_same_database(pg_server, source, target, *source_state)
    finally:
        h.drop_databases(pg_server, [stale, unrelated])


def test_active_sessions_are_terminated_and_swap_succeeds(pg_server, backups, source, source_state, target):
    env = dict(os.environ, PGPASSWORD=pg_server.password, PGAPPNAME="app-service")
    busy = subprocess.Popen([str(PG_BINDIR / "psql"), "-X", "-h", pg_server.host, "-p", str(pg_server.port), "-U",
                             pg_server.user, "-d", target, "-c", "SELECT pg_sleep(120)"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    idle = pg_server.connect(db=target)
    idle.autocommit = True
    try:
        assert h.wait_for(lambda: pg_server.scalar(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{target}' AND state = 'active' "
            "AND application_name = 'app-service'") == "1", timeout=20)
        started = time.monotonic()
        result = h.restore(pg_server, target, backups.get(CUSTOM_ZST)["path"], safety_backup=False)
        assert not result.get("failed"), result.get("msg")
        assert time.monotonic() - started < 100
        out, err = busy.communicate(timeout=30)
        assert busy.returncode != 0
        assert "terminating connection due to administrator command" in err
        with pytest.raises(Exception):
            with idle.cursor() as cur:
                cur.execute("SELECT 1")
        h.assert_same_database(pg_server, source, target, *source_state)
        assert table_digests(pg_server, result["previous_db"])["tables"]["public.users"]["rows"] == 61
    finally:
        if busy.poll() is None:
            busy.kill()
            busy.wait()
        idle.close()


def test_parallel_restore_of_a_custom_archive(pg_server, backups, source, source_state, tmp_path):
    """pg_restore --jobs on a custom archive written through a pipe (no data offsets), with --no-owner."""
    name = h.unique("rs_jobs")
    try:
        result = h.restore(pg_server, name, backups.get(CUSTOM)["path"], mode="new", jobs=2, no_owner=True)
        assert not result.get("failed"), result.get("msg")
        h.assert_same_database(pg_server, source, name, *source_state)
    finally:
        pg_server.dropdb(name)


@pytest.mark.parametrize("combo", [PLAIN_GZ, PLAIN], ids=["plain-gzip", "plain"])
def test_parallel_load_of_a_plain_dump(pg_server, backups, source, source_state, target, tmp_path, combo):
    """A plain dump over three psql sessions (data and index/constraint sections) gives the database one psql
    gives; it replaces the target, keeps the previous one and a safety backup."""
    result = h.restore(pg_server, target, backups.get(combo)["path"], jobs=3, safety_backup_dir=str(tmp_path))
    assert not result.get("failed"), result.get("msg")
    assert result["parallel_load"]["sessions"] == 3 and result["parallel_load"]["parallel_post"] > 0
    h.assert_same_database(pg_server, source, target, *source_state)
    assert result["previous_db"] and os.path.exists(result["safety_backup"])


def test_parallel_load_failing_keeps_target(pg_server, backups, target, tmp_path):
    """A statement failing in one of the sessions stops them all; the target is as it was."""
    src = tmp_path / "broken.sql"
    text = gzip.decompress(open(backups.get(PLAIN_GZ)["path"], "rb").read()).decode("utf-8")
    marker = "\n--\n-- PostgreSQL database dump complete"
    text = text.replace(marker, "\nSELECT no_such_function_here();\n" + marker)
    src.write_text(text)
    before = table_digests(pg_server, target)
    result = h.restore(pg_server, target, src, jobs=2, safety_backup=False)
    assert result.get("failed") and "no_such_function_here" in result["msg"], result.get("msg")
    assert table_digests(pg_server, target) == before
    assert h.scratch_databases(pg_server, target) == []


# --- check mode ------------------------------------------------------------------------------------------
def test_check_mode_leaves_the_server_untouched(pg_server, backups, target, tmp_path):
    stale = f"{target}_restore_20200101_000000"
    pg_server.createdb(stale)
    try:
        before = dict(digests=table_digests(pg_server, target), databases=pg_server.databases())
        replace, new = h.run_tasks("pg_restore_db", [
            h.conn_args(pg_server, target, src=backups.get(PLAIN_GZ)["path"], safety_backup_dir=str(tmp_path / "s")),
            h.conn_args(pg_server, "rs_check_new", src=backups.get(DIR_GZ)["path"], mode="new", jobs=2),
        ], tmp_path / "play", check=True)
        assert not replace.get("failed"), replace.get("msg")
        assert replace["changed"] is True and replace["would"] == f"replace {target}"
        assert replace["checksums"] == {"md5": "ok", "sha256": "ok"}
        assert replace["dropped_stale"] == [] and replace["safety_backup"] is None
        assert not new.get("failed"), new.get("msg")
        assert new["would"] == "create rs_check_new"
        assert table_digests(pg_server, target) == before["digests"]
        assert pg_server.databases() == before["databases"]
        assert not (tmp_path / "s").exists()
    finally:
        pg_server.dropdb(stale)


# --- awkward database names -----------------------------------------------------------------------------------
def test_database_names_with_quotes_spaces_and_unicode(pg_server, tmp_path):
    """Names are quoted everywhere (SQL identifiers, literals, environment): back up, restore new, replace."""
    suffix = h.unique("x")[-6:]
    odd, odd_new = f'Ünï "odd" name-{suffix}', f"Ünï 'new' db {suffix}"
    create_sample_database(pg_server, odd)
    try:
        expected = table_digests(pg_server, odd)
        timestamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
        dump = tmp_path / "daily" / f"backup_{timestamp}.dump"
        dumped, restored, replaced = h.run_play([
            ("pg_dump_backup", h.conn_args(pg_server, odd, dest=str(dump.parent), format="custom",
                                           timestamp=timestamp)),
            ("pg_restore_db", h.conn_args(pg_server, odd_new, src=str(dump), mode="new")),
            ("pg_restore_db", h.conn_args(pg_server, odd, src=str(dump), safety_backup_dir=str(tmp_path / "s"))),
        ], tmp_path / "play")
        for result in (dumped, restored, replaced):
            assert not result.get("failed"), result.get("msg")
        assert dumped["manifest_data"]["database"] == odd
        assert table_digests(pg_server, odd_new) == expected
        assert table_digests(pg_server, odd) == expected
        assert replaced["previous_db"] == f"{odd}_previous_{os.path.basename(replaced['safety_backup'])[11:26]}"
    finally:
        h.drop_databases(pg_server, [odd, odd_new] + h.previous_databases(pg_server, odd)
                         + h.scratch_databases(pg_server, odd))


# --- what a restore leaves behind: encrypted safety dumps, bounded copies, room checked first ------------------
def test_encrypted_safety_dump_and_retention_of_the_copies(pg_server, backups, source, source_state, target,
                                                           tmp_path):
    """With the environment's key the safety dump never exists in plaintext, decrypts to the replaced database,
    and repeated restores leave at most the configured number of safety dumps and previous databases."""
    from ansible_collections.atlasia.dr.plugins.module_utils import crypto

    key = "safety-dump-test-key"
    safety_dir = tmp_path / "safety"
    old = table_digests(pg_server, target)
    results = []
    for attempt in range(3):
        result = h.restore(pg_server, target, backups.get(PLAIN_GZ)["path"], safety_backup_dir=str(safety_dir),
                           encryption_key=key, safety_backup_retention=2, previous_retention=2)
        assert not result.get("failed"), result.get("msg")
        assert result["safety_backup"].endswith(".sql.gz.enc") and result["safety_backup_encrypted"] is True
        assert result["space"]["server"]["checked"] is True and result["space"]["local"]["checked"] is True
        results.append(result)
        second = int(time.time())
        h.wait_for(lambda: int(time.time()) > second, timeout=5)  # copies are named by the second
    assert not [n for n in os.listdir(safety_dir) if n.endswith(".sql.gz") or n.startswith(".")]
    assert results[2]["removed_safety_backups"] == [os.path.basename(results[0]["safety_backup"])]
    assert results[2]["dropped_previous"] == [results[0]["previous_db"]]
    assert sorted(h.previous_databases(pg_server, target)) == sorted(r["previous_db"] for r in results[1:])
    assert sorted(n for n in os.listdir(safety_dir) if n.endswith(".enc")) == sorted(
        os.path.basename(r["safety_backup"]) for r in results[1:])

    # the first safety dump kept (made before the second restore) holds the source's content; the one removed
    # held the original target: check the oldest kept one decrypts into a restorable dump of the source
    plain = tmp_path / "plain.sql.gz"
    with open(results[1]["safety_backup"], "rb") as handle, open(plain, "wb") as out:
        crypto.decrypt_stream(handle, out.write, key)
    rolled_back = h.unique("rs_rollback")
    try:
        back = h.restore(pg_server, rolled_back, str(plain), mode="new", space_check=False)
        assert not back.get("failed"), back.get("msg")
        h.assert_same_database(pg_server, source, rolled_back, *source_state)
    finally:
        pg_server.dropdb(rolled_back)
    assert old != table_digests(pg_server, target)


def test_free_space_is_measured_on_the_server_before_anything(pg_server, backups, target, tmp_path):
    """The server's data directory is measured on this host (check mode: nothing is written)."""
    free = os.statvfs(str(pg_server.data_dir))
    result = h.restore(pg_server, target, backups.get(PLAIN_GZ)["path"], safety_backup_dir=str(tmp_path / "s"),
                       check=True)
    assert not result.get("failed"), result.get("msg")
    server = result["space"]["server"]
    assert server["checked"] is True and server["path"] == str(pg_server.data_dir)
    assert server["needed"] > 64 * 1024 * 1024
    assert abs(server["free"] - free.f_bavail * free.f_frsize) < 512 * 1024 * 1024
    assert result["space"]["local"]["path"] == str(tmp_path / "s") and not (tmp_path / "s").exists()
