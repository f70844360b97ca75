# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dr_file_repo and module_utils/restic.py against the real restic, with a local repository and one in a real
SeaweedFS bucket.

Thirty simulated nights of a growing uploads folder (random, incompressible data like the PDFs and images it
holds): 60 files of 100-300 KB on day 1, then a new file every day, one deleted every other day, one rewritten
in part every third day. Each night is backed up (through module_utils, so thirty nights fit in a test); the
bytes added and the bytes the repository stores are recorded per night and compared with a tarball of the
folder. Then, through the module run by the real ``ansible`` command: a backup in check mode writes nothing, the
newest set restores byte-exact, a file deleted since comes back from an older set, forgetting the older sets and
pruning shrinks the repository, and a damaged pack file fails ``state=check``. Every assertion looks at the real
state: files on disk, the repository's directory or the bucket's objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import time
import uuid

import pytest

from tests.support.ansible_run import run_module
from tests.support.seaweedfs import AuthenticatingS3Server

from ansible_collections.atlasia.dr.plugins.module_utils import restic

KEY = "environment-secret-of-the-test"
DAYS = 30
KB = 1024


@pytest.fixture(scope="module")
def s3_server():
    server = AuthenticatingS3Server()  # restic signs its uploads in chunks: the plain server refuses them
    server.start()
    try:
        yield server
    finally:
        server.stop()


class LocalStore(object):
    """A repository in a directory: its stored bytes are the sizes of its files."""

    kind = "local"

    def __init__(self, tmp_path):
        self.path = str(tmp_path / "repo")

    def module_args(self):
        return dict(repository=self.path)

    def location(self):
        return restic.repository_location(path=self.path)

    def settings(self):
        return {}, []

    def stored(self):
        return sum(os.path.getsize(os.path.join(folder, name))
                   for folder, dummy, names in os.walk(self.path) for name in names)

    def packs(self):
        """Pack files and their sizes."""
        return dict((os.path.join(folder, name), os.path.getsize(os.path.join(folder, name)))
                    for folder, dummy, names in os.walk(os.path.join(self.path, "data")) for name in names)

    def damage(self, pack):
        os.chmod(pack, 0o600)
        with open(pack, "r+b") as handle:
            handle.seek(1000)
            data = handle.read(16)
            handle.seek(1000)
            handle.write(bytes(b ^ 0xFF for b in data))


class S3Store(object):
    """A repository under a prefix of a SeaweedFS bucket: its stored bytes are the sizes of its objects."""

    kind = "s3"

    def __init__(self, server):
        self.server = server
        self.bucket = "t-%s" % uuid.uuid4().hex[:12]
        self.prefix = "atlasia-test/files"
        self.client = server.client()
        self.client.create_bucket(Bucket=self.bucket)

    def module_args(self):
        args = self.server.module_args(self.bucket)
        args.update(s3=True, prefix=self.prefix)
        return args

    def location(self):
        return restic.repository_location(bucket=self.bucket, prefix=self.prefix,
                                          endpoint_url=self.server.endpoint_url)

    def settings(self):
        return restic.s3_settings(self.module_args())

    def objects(self, under=""):
        found = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "/" + under):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found

    def stored(self):
        return sum(self.objects().values())

    def packs(self):
        """Pack objects and their sizes."""
        return self.objects("data/")

    def damage(self, pack):
        body = bytearray(self.client.get_object(Bucket=self.bucket, Key=pack)["Body"].read())
        for index in range(1000, 1016):
            body[index] ^= 0xFF
        self.client.put_object(Bucket=self.bucket, Key=pack, Body=bytes(body))


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path)
    return S3Store(request.getfixturevalue("s3_server"))


class Uploads(object):
    """The simulated uploads folder; ``state()`` maps each file's absolute path to its content's SHA-256."""

    def __init__(self, folder, seed=19):
        self.folder = folder
        self.rng = random.Random(seed)
        self.count = 0
        self.deleted = {}  # path -> (day deleted, its content)

    def new_file(self, day):
        self.count += 1
        sub = self.folder / ("2026-%02d" % (1 + self.count % 4))
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / ("doc-%04d-day%02d.bin" % (self.count, day))
        path.write_bytes(self.rng.randbytes(self.rng.randint(100, 300) * KB))
        return path

    def files(self):
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def night(self, day):
        """Day 1: 60 files; then one new file a day, one deleted every other day, one rewritten every third."""
        if day == 1:
            for dummy in range(60):
                self.new_file(day)
            return
        fresh = self.new_file(day)
        if day % 2 == 0:
            victim = self.rng.choice([p for p in self.files() if p != fresh])
            self.deleted[str(victim)] = (day, victim.read_bytes())
            victim.unlink()
        if day % 3 == 0:
            target = self.rng.choice(self.files())
            data = bytearray(target.read_bytes())
            start = self.rng.randrange(0, len(data) - 8 * KB)
            data[start:start + 8 * KB] = self.rng.randbytes(8 * KB)
            target.write_bytes(bytes(data))

    def state(self):
        return dict((str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in self.files())

    def size(self):
        return sum(p.stat().st_size for p in self.files())


def tarball_size(folder, dest):
    """Size of today's archive of the folder (tar + gzip, what dr_archive writes), made once for comparison."""
    subprocess.run(["tar", "-czf", str(dest), "-C", "/", str(folder).lstrip("/")], check=True)
    return os.path.getsize(dest)


def restored_state(dest, folder):
    root = dest / str(folder).lstrip("/")
    return dict((str(folder / p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in sorted(root.rglob("*")) if p.is_file())


def timestamp(day):
    """The set of night ``day`` (November 2026)."""
    return "202611%02d_020000" % day


def module(store, tmp_path, **args):
    params = dict(store.module_args(), key=KEY, cache_dir=str(tmp_path / "cache"))
    check = args.pop("_check", False)
    params.update(args)
    return run_module("dr_file_repo", params, check=check)


@pytest.mark.slow
def test_thirty_nights_of_uploads(store, tmp_path):
    folder = tmp_path / "srv" / "uploads"
    folder.mkdir(parents=True)
    uploads = Uploads(folder)
    env, options = store.settings()
    repo = restic.Restic(restic.subprocess_runner, "restic", store.location(), restic.repository_password(KEY),
                         env=env, options=options, cache_dir=str(tmp_path / "cache"))
    assert repo.ensure() is True
    nights, states = [], {}
    for day in range(1, DAYS + 1):
        uploads.night(day)
        started = time.monotonic()
        summary = repo.backup(paths=[str(folder)], tags=[restic.TAG_SET + timestamp(day),
                                                         restic.TAG_COMPONENT + "uploads"], full_id=False)
        seconds = time.monotonic() - started
        assert not summary["incomplete"], summary
        states[day] = uploads.state()
        nights.append(dict(day=day, snapshot=summary["snapshot_id"], added=summary["data_added"],
                           folder=uploads.size(), stored=store.stored(), seconds=seconds))
    started = time.monotonic()
    tarball = tarball_size(folder, tmp_path / "uploads.tar.gz")
    tar_seconds = time.monotonic() - started

    report = ["%s repository, %d nights: day folder_bytes added_bytes stored_bytes seconds" % (store.kind, DAYS)]
    report += ["%3d %10d %10d %10d %6.2f" % (n["day"], n["folder"], n["added"], n["stored"], n["seconds"])
               for n in nights]
    tarballs = sum(n["folder"] for n in nights)  # random data: a tarball is the folder's size
    report.append("stored after %d nights: %d bytes; %d nightly tarballs: about %d bytes; tarball today %d bytes "
                  "in %.2f s; nightly backup after day 1: %.2f s on average (restic's start included)"
                  % (DAYS, nights[-1]["stored"], DAYS, tarballs, tarball, tar_seconds,
                     sum(n["seconds"] for n in nights[1:]) / (DAYS - 1)))
    print("\n".join(report))

    # day 1 stores the folder; every later night adds a few per cent of a tarball at most
    assert nights[0]["added"] >= 0.95 * nights[0]["folder"]
    for night in nights[1:]:
        assert night["added"] <= 0.05 * tarball, night
        assert night["added"] >= 100 * KB, night  # the new file is really there
    assert nights[-1]["stored"] < 1.5 * tarball
    assert nights[-1]["stored"] < 0.1 * tarballs

    # the repository as restic sees it: one snapshot per night, tagged with its set and component
    snaps = repo.snapshots(tags=[restic.TAG_COMPONENT + "uploads"])
    assert [restic.tag_value(s, restic.TAG_SET) for s in snaps] == [timestamp(d) for d in range(1, DAYS + 1)]
    assert [s["short_id"] for s in snaps] == [n["snapshot"] for n in nights]

    # check mode: the would-be backup is measured, nothing is written
    uploads.new_file(DAYS + 1)
    before = store.stored()
    result = module(store, tmp_path, paths=[str(folder)], component="uploads", timestamp="20261201_020000",
                    _check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["snapshot_id"] == "" and result["bytes_added"] >= 100 * KB
    assert store.stored() == before and len(repo.snapshots()) == DAYS

    # the newest set restores byte-exact into another directory
    dest = tmp_path / "restored"
    result = module(store, tmp_path, state="restore", snapshot=nights[-1]["snapshot"], dest=str(dest))
    assert not result.get("failed"), result.get("msg")
    assert result["files"] == len(states[DAYS]) and result["snapshot_id"] == snaps[-1]["id"]
    assert restored_state(dest, folder) == states[DAYS]

    # a file deleted on some night comes back, alone, from the set of the night before
    path, (deleted_on, content) = sorted(uploads.deleted.items(), key=lambda item: item[1][0])[-1]
    older = nights[deleted_on - 2]["snapshot"]
    back = tmp_path / "deleted-back"
    result = module(store, tmp_path, state="restore", snapshot=older, include=[path], dest=str(back))
    assert not result.get("failed"), result.get("msg")
    assert result["files"] == 1
    assert (back / path.lstrip("/")).read_bytes() == content
    assert [p for p in back.rglob("*") if p.is_file()] == [back / path.lstrip("/")]

    # forgetting the first twenty sets and pruning frees what only they held
    before = store.stored()
    result = module(store, tmp_path, state="forget", snapshots=[n["snapshot"] for n in nights[:20]], prune=True)
    assert not result.get("failed"), result.get("msg")
    assert len(result["forgotten"]) == 20
    assert len(repo.snapshots()) == DAYS - 20
    after = store.stored()
    assert after < before - 500 * KB, (before, after)
    assert "no errors" in repo.check("100%")

    # a damaged pack file: check reading the data back fails, naming the damage
    packs = store.packs()
    pack = max(packs, key=packs.get)
    store.damage(pack)
    result = module(store, tmp_path, state="check", read_data_subset="100%")
    assert result.get("failed") and result["error_kind"] == "damaged", result
    assert "Pack ID does not match" in result["msg"] or "pack" in result["msg"].lower()

    # the wrong secret is named as such
    wrong = restic.Restic(restic.subprocess_runner, "restic", store.location(), restic.repository_password("other"),
                          env=env, options=options, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(restic.ResticError) as caught:
        wrong.snapshots()
    assert caught.value.kind == "password"


def test_missing_repository_and_check_mode_creation(tmp_path):
    store = LocalStore(tmp_path)
    result = module(store, tmp_path, state="snapshots")
    assert result.get("failed") and result["error_kind"] == "missing", result
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "app.log").write_text("line\n")
    result = module(store, tmp_path, paths=[str(folder)], component="logs", max_age_days=7, _check=True)
    assert not result.get("failed") and result["created"] and result["files"] == 1
    assert not os.path.exists(store.path)
    result = module(store, tmp_path, paths=[str(folder)], component="logs", max_age_days=7)
    assert not result.get("failed"), result.get("msg")
    assert result["created"] and result["files"] == 1 and len(result["snapshot_id"]) == 64
    assert os.path.isfile(os.path.join(store.path, "config"))


def test_rekeyed_lets_the_new_key_open_the_repository_and_not_the_old_one(store, tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(os.urandom(2048))
    result = module(store, tmp_path, paths=[str(folder)], component="uploads", timestamp=timestamp(1))
    assert not result.get("failed"), result.get("msg")
    new_key = "the environment's rotated secret"
    result = module(store, tmp_path, state="rekeyed", new_key=new_key, _check=True)
    assert result["changed"] and result["added"] and len(result["removed"]) == 1
    result = module(store, tmp_path, state="rekeyed", new_key=new_key)
    assert not result.get("failed"), result.get("msg")
    assert result["added"] and len(result["removed"]) == 1
    listed = module(store, tmp_path, state="snapshots", key=new_key)
    assert [s["set"] for s in listed["snapshots"]] == [timestamp(1)], listed.get("msg")
    dest = tmp_path / "restored"
    restored = module(store, tmp_path, state="restore", snapshot="latest", component="uploads", dest=str(dest),
                      key=new_key)
    assert not restored.get("failed"), restored.get("msg")
    assert (dest / str(folder / "a.pdf").lstrip("/")).read_bytes() == (folder / "a.pdf").read_bytes()
    old = module(store, tmp_path, state="snapshots")
    assert old.get("failed") and old["error_kind"] == "password"
    again = module(store, tmp_path, state="rekeyed", new_key=new_key)  # a second run finds it done
    assert not again.get("failed") and not again["changed"], again.get("msg")


def key_docs(store):
    """Every key file of the repository, parsed (restic's key-file JSON)."""
    if store.kind == "local":
        folder = os.path.join(store.path, "keys")
        return dict((name, json.loads(open(os.path.join(folder, name), "rb").read())) for name in os.listdir(folder))
    found = {}
    for key in store.objects("keys/"):
        body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        found[key.rsplit("/", 1)[-1]] = json.loads(body)
    return found


def test_the_backup_rewrites_the_key_of_its_password_with_light_kdf_parameters(store, tmp_path):
    """A repository made by `restic init` (the calibrated key) with a second key of another password: the first
    backup writes a light key, restic opens the repository with it, the calibrated key of this password is removed
    and the other password's key is left alone; the next backup finds nothing to do."""
    env, options = store.settings()
    password = restic.repository_password(KEY)
    repo = restic.Restic(restic.subprocess_runner, "restic", store.location(), password, env=env, options=options,
                         cache_dir=str(tmp_path / "cache"))
    repo.init()
    repo.add_key("an operator's own password")
    before = key_docs(store)
    assert len(before) == 2 and not any(restic.key_is_light(doc) for doc in before.values()), before
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(os.urandom(4096))
    result = module(store, tmp_path, paths=[str(folder)], component="uploads", timestamp=timestamp(1))
    assert not result.get("failed"), result.get("msg")
    assert [line.split()[0] for line in result["key_lightened"]] == ["added", "removed"], result["key_lightened"]
    after = key_docs(store)
    added = result["key_lightened"][0].split()[1]
    removed = result["key_lightened"][1].split()[1]
    assert set(after) == set(before) - {removed} | {added}
    assert restic.key_is_light(after[added]) and after[added]["N"] == 2 ** 14
    assert restic.open_key_file(after[added], password) == restic.open_key_file(before[removed], password)
    operator = repo.with_password("an operator's own password")
    assert operator.opens() and repo.opens()
    dummy, out, dummy = repo.run("key", ["list"])
    assert any(added.startswith(k["id"]) and k["current"] for k in json.loads(out)), out
    again = module(store, tmp_path, paths=[str(folder)], component="uploads", timestamp=timestamp(2))
    assert not again.get("failed") and again["key_lightened"] == [], again
    dest = tmp_path / "restored"
    restored = module(store, tmp_path, state="restore", snapshot="latest", component="uploads", dest=str(dest))
    assert not restored.get("failed"), restored.get("msg")
    assert (dest / str(folder / "a.pdf").lstrip("/")).read_bytes() == (folder / "a.pdf").read_bytes()


def test_a_lock_left_by_a_killed_restic_run_does_not_stop_the_next_prune(tmp_path):
    """restic killed with SIGKILL (a run killed with its host's process tree) leaves its lock; prune, which locks
    exclusively, removes it with `restic unlock` (stale: its process is gone) and goes on; a live run's lock stays."""
    store = LocalStore(tmp_path)
    password = restic.repository_password(KEY)
    repo = restic.Restic(restic.subprocess_runner, "restic", store.location(), password,
                         cache_dir=str(tmp_path / "cache"))
    repo.init()
    env = dict(os.environ, RESTIC_PASSWORD=password, RESTIC_REPOSITORY=store.path,
               RESTIC_CACHE_DIR=str(tmp_path / "cache"))
    locks = os.path.join(store.path, "locks")

    def holder():
        """A restic backup reading its standard input, which is never closed: it holds its lock until killed."""
        proc = subprocess.Popen(["restic", "backup", "--stdin", "--stdin-filename", "held"], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.listdir(locks) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert os.listdir(locks), "restic took no lock"
        return proc

    live = holder()
    try:
        with pytest.raises(restic.ResticError) as caught:
            repo.forget(["0" * 64])
        assert caught.value.kind == "locked" and os.listdir(locks)
    finally:
        live.kill()
        live.wait()
    assert os.listdir(locks), "the killed run's lock is gone already: nothing is tested"
    again = restic.Restic(restic.subprocess_runner, "restic", store.location(), password,
                          cache_dir=str(tmp_path / "cache"))
    again.prune()  # locks the repository exclusively
    assert [c[3] for c in again.commands] == ["prune", "unlock", "prune"], again.commands
    assert not os.listdir(locks)
