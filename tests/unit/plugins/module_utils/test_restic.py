# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/restic.py: locations, password derivation, S3 settings, error classes, the runner contract.

restic itself is exercised by tests/integration/test_file_repo.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import restic


def test_password_is_derived_deterministically_and_never_the_secret():
    one = restic.repository_password("correct horse battery staple")
    assert one == restic.repository_password("correct horse battery staple")
    assert one != restic.repository_password("another secret")
    assert len(one) == 64 and "horse" not in one
    with pytest.raises(restic.ResticError) as caught:
        restic.repository_password("")
    assert caught.value.kind == "request"


@pytest.mark.parametrize("kwargs, expected", [
    (dict(path="/srv/backups/files"), "/srv/backups/files"),
    (dict(bucket="b", prefix="/env/files/", endpoint_url="http://127.0.0.1:8333/"), "s3:http://127.0.0.1:8333/b/env/files"),
    (dict(bucket="b", prefix=""), "s3:s3.amazonaws.com/b"),
    (dict(bucket="b", prefix="p", region="eu-west-3"), "s3:s3.eu-west-3.amazonaws.com/b/p"),
])
def test_repository_location(kwargs, expected):
    assert restic.repository_location(**kwargs) == expected


@pytest.mark.parametrize("kwargs", [dict(), dict(path="relative/repo"), dict(path="/x", bucket="b")])
def test_repository_location_refuses(kwargs):
    with pytest.raises(restic.ResticError) as caught:
        restic.repository_location(**kwargs)
    assert caught.value.kind == "request"


def test_s3_settings_put_credentials_in_the_environment():
    env, options = restic.s3_settings(dict(access_key="AK", secret_key="SK", session_token="T", region="r1",
                                           addressing_style="path", validate_certs=True, ca_bundle="/ca.pem"))
    assert env == {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "T",
                   "AWS_DEFAULT_REGION": "r1"}
    assert options == ["-o", "s3.region=r1", "-o", "s3.bucket-lookup=path", "--cacert", "/ca.pem"]
    dummy, options = restic.s3_settings(dict(validate_certs=False, addressing_style="virtual"))
    assert options == ["-o", "s3.bucket-lookup=dns", "--insecure-tls"]


@pytest.mark.parametrize("stderr, kind", [
    ("Fatal: wrong password or no key found\n", "password"),
    ("Fatal: unable to open config file: stat /x/config: no such file or directory\n"
     "Is there a repository at the following location?\n/x\n", "missing"),
    ("unable to create lock in backend: repository is already locked by PID 12 on host by root (UID 0)\n"
     "lock was created at 2026-12-01 02:00:00 (1m0s ago)\nFatal: unable to open config file", "locked"),
    ("Fatal: unable to open config file: Stat: The specified bucket does not exist.", "bucket"),
    ("Fatal: unable to open config file: Stat: The Access Key Id you provided does not exist in our records.",
     "credentials"),
    ("Fatal: unable to open config file: Stat: Get \"http://127.0.0.1:1/b/\": dial tcp 127.0.0.1:1: connect: "
     "connection refused", "unreachable"),
    ("Fatal: unable to save snapshot: write /x: no space left on device", "space"),
    ("Fatal: something new", "restic"),
])
def test_classify(stderr, kind):
    found, msg = restic.classify(stderr, "/srv/backups/files")
    assert found == kind
    assert "/srv/backups/files" in msg


def test_locked_message_names_the_unlock_command():
    dummy, msg = restic.classify("Fatal: unable to create lock in backend: repository is already locked by PID 1",
                                 "/r")
    assert "restic -r /r unlock" in msg


@pytest.mark.parametrize("value, ok", [("1/10", True), ("5%", True), ("2.5%", True), ("200M", True),
                                       ("100", True), ("all", False), ("1/", False), ("5 %", False)])
def test_check_subset(value, ok):
    if ok:
        assert restic.check_subset(value) == value
    else:
        with pytest.raises(restic.ResticError):
            restic.check_subset(value)
    assert restic.check_subset("") is None


RESTIC_COMMANDS = ("backup", "cat", "check", "forget", "init", "key", "ls", "prune", "restore", "snapshots", "stats",
                   "unlock")


class Runner(object):
    """Stands in for run_command: answers by restic sub-command, records argv and environment."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, environ_update=None, cwd=None, check_rc=False):
        # the first restic command after the global options (some take a value, --no-lock does not)
        command = next(arg for arg in argv[argv.index("--repo") + 2:] if arg in RESTIC_COMMANDS)
        self.calls.append(dict(argv=list(argv), env=dict(environ_update or {}), command=command))
        answer = self.answers[command]
        return answer(argv) if callable(answer) else answer


def make(answers, **kwargs):
    runner = Runner(answers)
    return runner, restic.Restic(runner, "/usr/bin/restic", "/repo", "pw", **kwargs)


def test_password_travels_in_the_environment_and_foreign_settings_are_blanked():
    runner, repo = make({"cat": (0, "{}", "")}, env={"AWS_SECRET_ACCESS_KEY": "SK"}, cache_dir="/c")
    assert repo.exists()
    call = runner.calls[0]
    assert "pw" not in call["argv"] and "SK" not in call["argv"]
    assert call["env"]["RESTIC_PASSWORD"] == "pw"
    assert call["env"]["RESTIC_PASSWORD_FILE"] == "" and call["env"]["RESTIC_PASSWORD_COMMAND"] == ""
    assert call["env"]["RESTIC_CACHE_DIR"] == "/c" and call["env"]["AWS_SECRET_ACCESS_KEY"] == "SK"
    assert call["argv"][:5] == ["/usr/bin/restic", "--repo", "/repo", "--no-lock", "cat"]


def test_readers_run_without_restic_s_lock_and_writers_keep_it():
    # restic 0.14 sleeps 200 ms after writing a lock: a command that only reads runs with --no-lock
    answers = {"cat": (0, "{}", ""), "snapshots": (0, "[]", ""), "ls": (0, "", ""), "forget": (0, "[]", ""),
               "stats": (0, '{"total_size": 1}', ""), "restore": (0, "", ""), "prune": (0, "", ""),
               "check": (0, "no errors were found", "")}
    runner, repo = make(answers)
    repo.exists()
    repo.snapshots()
    repo.file_nodes("abcdef12")
    repo.stored_bytes()
    repo.forget(["abcdef12"])
    repo.restore("abcdef12", "/t")
    repo.prune()
    repo.run("check", json_output=False)
    locked = dict((c["command"], "--no-lock" not in c["argv"]) for c in runner.calls)
    assert locked == {"cat": False, "snapshots": False, "ls": False, "stats": False, "forget": True, "restore": True,
                      "prune": True, "check": True}
    dummy, readonly = make(answers, options=["--no-lock"])  # check mode: given once, never twice
    readonly.snapshots()
    assert readonly.commands[0].count("--no-lock") == 1


def test_ensure_initialises_a_missing_repository_only():
    missing = "Fatal: unable to open config file: no such file\nIs there a repository at the following location?"
    runner, repo = make({"cat": (1, "", missing), "init": (0, "{}", "")})
    assert repo.ensure() is True
    assert [c["command"] for c in runner.calls] == ["cat", "init"]
    runner, repo = make({"cat": (1, "", "Fatal: wrong password or no key found")})
    with pytest.raises(restic.ResticError) as caught:
        repo.ensure()
    assert caught.value.kind == "password"
    runner, repo = make({"cat": (1, "", "Is there a repository at the following location?")})
    with pytest.raises(restic.ResticError) as caught:
        repo.ensure(create=False)
    assert caught.value.kind == "missing"


FULL_ID = "3e98b70a45196c195519aff8d3e55926a76b3ffcef93cc418db220a434b41a0c"
SNAPSHOTS = [{"time": "2026-12-02T02:00:00Z", "id": FULL_ID, "short_id": FULL_ID[:8], "paths": ["/srv/u"],
              "tags": ["set=20261202_020000", "component=uploads"]},
             {"time": "2026-12-01T02:00:00Z", "id": "a" * 64, "short_id": "a" * 8, "paths": ["/srv/u"],
              "tags": ["set=20261201_020000", "component=uploads"]}]


def test_backup_reads_the_summary_and_resolves_the_full_id():
    summary = {"message_type": "summary", "files_new": 2, "data_added": 1044, "total_files_processed": 2,
               "snapshot_id": FULL_ID[:8]}
    runner, repo = make({"backup": (0, "noise\n" + json.dumps(summary) + "\n", ""),
                         "snapshots": (0, json.dumps(SNAPSHOTS), "")})
    result = repo.backup(paths=["/srv/u"], tags=["set=1", "component=uploads"], parent="a" * 64, host="h")
    assert result["snapshot_id"] == FULL_ID and result["data_added"] == 1044 and not result["incomplete"]
    argv = runner.calls[0]["argv"]
    assert argv[-1] == "/srv/u" and "--json" in argv and "--quiet" in argv
    assert argv.count("--tag") == 2 and "--parent" in argv and "--host" in argv


def test_backup_with_unreadable_files_is_incomplete_not_failed():
    summary = {"message_type": "summary", "snapshot_id": FULL_ID}
    runner, repo = make({"backup": (3, json.dumps(summary), "error: open /srv/u/x: permission denied")})
    result = repo.backup(paths=["/srv/u"])
    assert result["incomplete"] and "permission denied" in result["stderr"]
    assert len(runner.calls) == 1


def test_backup_without_summary_fails():
    dummy, repo = make({"backup": (0, "", "")})
    with pytest.raises(restic.ResticError):
        repo.backup(paths=["/srv/u"])


def test_snapshots_sorted_oldest_first_and_filtered_by_all_tags():
    runner, repo = make({"snapshots": (0, json.dumps(SNAPSHOTS), "")})
    found = repo.snapshots(tags=["set=1", "component=uploads"])
    assert [s["short_id"] for s in found] == ["a" * 8, FULL_ID[:8]]
    argv = runner.calls[0]["argv"]
    assert argv[argv.index("--tag") + 1] == "set=1,component=uploads"
    assert restic.tag_value(found[0], restic.TAG_SET) == "20261201_020000"
    assert restic.tag_value({"tags": None}, restic.TAG_SET) is None


def test_find_unknown_snapshot():
    dummy, repo = make({"snapshots": (0, "[]", "")})
    with pytest.raises(restic.ResticError) as caught:
        repo.find("deadbeef")
    assert caught.value.kind == "not_found"


def test_check_reports_damage():
    stderr = "Pack ID does not match, want 749e, got 4e6c\nFatal: repository contains errors\n"
    dummy, repo = make({"check": (1, "read 100.0% of data packs\n", stderr)})
    with pytest.raises(restic.ResticError) as caught:
        repo.check("100%")
    assert caught.value.kind == "damaged" and "Pack ID does not match" in caught.value.msg
    runner, repo = make({"check": (0, "no errors were found\n", "")})
    assert "no errors" in repo.check("1/10")
    assert "--read-data-subset=1/10" in runner.calls[0]["argv"]


def test_ls_counts_files_and_bytes():
    lines = [{"struct_type": "snapshot"}, {"struct_type": "node", "type": "dir", "path": "/srv"},
             {"struct_type": "node", "type": "file", "size": 10}, {"struct_type": "node", "type": "file", "size": 5}]
    dummy, repo = make({"ls": (0, "\n".join(json.dumps(x) for x in lines), "")})
    assert repo.list_files(FULL_ID) == (2, 15)


def test_forget_and_stats():
    runner, repo = make({"forget": (0, "", ""), "stats": (0, '{"total_size": 664}', "")})
    repo.forget([])
    assert runner.calls == []
    repo.forget([FULL_ID])
    assert runner.calls[0]["argv"][-1] == FULL_ID
    assert repo.stats() == 664


class MemoryKeys(object):
    """Key files in memory (the store lighten reads and writes)."""

    def __init__(self, files=None):
        self.files = dict(files or {})

    def list(self):
        return sorted(self.files)

    def read(self, key_id):
        return self.files[key_id]

    def write(self, key_id, content):
        self.files[key_id] = content

    def delete(self, key_id):
        self.files.pop(key_id, None)


MASTER = b'{"mac":{"k":"a2V5","r":"cg=="},"encrypt":"ZW5j"}'
HEAVY = {"N": 2 ** 15, "r": 8, "p": 1}


def heavy_key(password):
    return restic.make_key_file(password, MASTER, kdf=HEAVY)


def test_a_key_file_opens_with_its_password_only_and_says_how_light_it_is():
    key_id, content = restic.make_key_file("pw", MASTER)
    doc = json.loads(content)
    assert key_id == hashlib.sha256(content).hexdigest()
    assert (doc["kdf"], doc["N"], doc["r"], doc["p"]) == ("scrypt", 2 ** 14, 8, 1) and restic.key_is_light(doc)
    assert restic.open_key_file(doc, "pw") == MASTER
    assert restic.open_key_file(doc, "other") is None
    damaged = dict(doc, data=doc["data"][:10] + ("A" if doc["data"][10] != "A" else "B") + doc["data"][11:])
    assert restic.open_key_file(damaged, "pw") is None
    assert not restic.key_is_light(json.loads(heavy_key("pw")[1])) and not restic.key_is_light({"kdf": "argon"})


def test_lighten_replaces_the_calibrated_key_of_its_password_once_restic_takes_the_new_one():
    heavy_id, heavy = heavy_key("pw")
    foreign_id, foreign = heavy_key("someone else's")
    store = MemoryKeys({heavy_id: heavy, foreign_id: foreign})

    def key_list(argv):
        hint = argv[argv.index("--key-hint") + 1]
        return 0, json.dumps([{"id": k[:8], "current": k == hint} for k in store.list()]), ""

    def key_remove(argv):
        store.delete(next(k for k in store.list() if k.startswith(argv[-1])))
        return 0, "", ""

    dummy, repo = make({"key": lambda argv: (key_list if "list" in argv else key_remove)(argv)})
    done = repo.lighten(store)
    added = done[0].split()[1]
    assert done == ["added " + added, "removed " + heavy_id]
    assert set(store.list()) == {added, foreign_id}
    assert restic.open_key_file(json.loads(store.read(added)), "pw") == MASTER
    assert repo.lighten(store) == []  # the foreign key is left alone, and nothing is left to do


def test_lighten_deletes_a_key_restic_does_not_take_and_keeps_the_old_one():
    heavy_id, heavy = heavy_key("pw")
    store = MemoryKeys({heavy_id: heavy})
    runner, repo = make({"key": lambda argv: (0, json.dumps([{"id": heavy_id[:8], "current": True}]), "")})
    with pytest.raises(restic.ResticError) as caught:
        repo.lighten(store)
    assert "deleted again" in caught.value.msg and store.list() == [heavy_id]
    assert [c["argv"][-3:] for c in runner.calls if "remove" in c["argv"]] == []


def test_lighten_finishes_the_work_of_an_interrupted_run_and_of_another_host():
    heavy_id, heavy = heavy_key("pw")
    light_id, light = restic.make_key_file("pw", MASTER)
    store = MemoryKeys({heavy_id: heavy, light_id: light})  # a run killed after writing the light key

    def key_remove(argv):  # another host's run removed it first
        store.delete(heavy_id)
        return 1, "", "Fatal: key not found"

    def answer(argv):
        if "list" in argv:
            return 0, json.dumps([{"id": light_id[:8], "current": True}]), ""
        return key_remove(argv)

    dummy, repo = make({"key": answer})
    assert repo.lighten(store) == []
    assert store.list() == [light_id]


def test_a_stale_lock_is_removed_by_restic_unlock_once_and_the_command_run_again():
    locked = (1, "", "Fatal: unable to create lock in backend: repository is already locked exclusively by PID 4242")
    answers = {"forget": [locked, (0, "", "")], "unlock": [(0, "", "")]}
    runner, repo = make(dict((name, lambda argv, name=name: answers[name].pop(0)) for name in answers))
    repo.forget(["a" * 64])
    assert [c["command"] for c in runner.calls] == ["forget", "unlock", "forget"]
    assert "--remove-all" not in runner.calls[1]["argv"]


def test_a_lock_restic_unlock_leaves_is_refused_with_the_unlock_advice():
    locked = (1, "", "Fatal: unable to create lock in backend: repository is already locked exclusively by PID 4242")
    runner, repo = make({"forget": locked, "prune": locked, "unlock": (0, "", "")})
    with pytest.raises(restic.ResticError) as caught:
        repo.forget(["a" * 64])
    assert caught.value.kind == "locked" and "unlock" in caught.value.msg
    with pytest.raises(restic.ResticError):
        repo.prune()
    assert [c["command"] for c in runner.calls] == ["forget", "unlock", "forget", "prune"]
