"""A simulated year (and more) of nightly backups, killed at random points of every phase, with a key rotation.

The clock is fixed and advances one day per run: each night's set is stamped ``<day> 02:00:00`` through the
modules' ``timestamp`` options, and retention works on the timestamps in the names. Each night runs the modules
the dr_backup role runs, in the role's order, as real module processes (forked from the test so that 400 nights
fit in minutes; see :mod:`tests.faults.yearlib`): the database dump (pg_dump_backup; the set holds the database
alone, to keep a night short), its encryption (dr_crypt), the set manifest and the tier links (backup_set, with
repair_tiers), the upload of every set S3 lacks (backup_set query, s3_backup_transfer for the artifacts then
the set manifest, backup_set updated), S3 retention (s3_rotate), local retention (backup_rotate with the tiers,
orphans first). S3, encryption and the weekly/monthly tiers are on, with the role's default retention. Half-way
through, the key is rotated as playbooks/rekey.yml does it (dr_crypt state=rekeyed over every tier and every set
in S3); from then on the old key is given to nothing.

On about a quarter of the nights a run is SIGKILLed (the module and what it started) at a random point of one
phase: dump, encryption, set manifest, tier linking, S3 upload, S3 rotation, local rotation; the point is a
random moment of the module's measured duration or its n-th file-system or S3 operation. The key rotation is
killed several times before it is let through. A killed night is run again at once (10 minutes later, a new set
id, as the next run would be) and must complete and repair what the kill left.

After each night: every set kept in every tier verifies (checksums, set MAC and key id: locate.Policy and
Locator.check_local) and nothing incomplete or temporary is left; the set ids of each tier and of S3 are those
a brute-force oracle of the retention policy (written here, not retention.select) gives for the history of sets
made; every set in S3 is complete, authentic under the current key, its objects' MD5s are those its manifest
records, and it is the same set as its local copy. Every ~30 nights, after the key rotation and at the end, a
sample of kept sets (local, and from S3 with those the host no longer keeps) is found, authenticated and
decrypted by backup_locate and restored by pg_restore_db into a scratch database, whose rows must be exactly
what the database held that night.

``FAULTS_SEED`` draws the kill points; the figures (nights, kills per phase, sets checked, restores, seconds)
are printed and written to ``.tmp/faults/simulated_year/figures.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest

import boto3

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, crypto, locate, naming, setauth
from ansible_collections.atlasia.dr.plugins.modules import (
    backup_locate,
    backup_rotate,
    backup_set,
    dr_crypt,
    pg_dump_backup,
    pg_restore_db,
    s3_backup_transfer,
    s3_rotate,
)

from tests.faults import faultlib as fl
from tests.faults import yearlib as yl
from tests.support.localenv import BUCKET

DAYS = int(os.environ.get("FAULTS_YEAR_DAYS", 400))  # fewer only while working on the test; make faults runs 400
START = dt.datetime(2026, 1, 5, 2, 0, 0, tzinfo=dt.timezone.utc)  # a Monday
RERUN_AFTER = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 3  # a night is killed at most twice; its last run is never killed
KILL_SHARE = 0.25  # share of the nights whose first run is killed
SECOND_KILL_SHARE = 0.15  # share of the killed nights whose rerun is killed too
REKEY_AFTER_DAY = min(190, DAYS // 2)  # the key rotation runs after this night ...
REKEY_KILLS = 5  # ... killed this many times before it is let through
RESTORE_EVERY = 30
DB = "yearly"
ENVIRONMENT = "local"
PREFIX = "atlasia-backups/"
WEEKLY_DAY, MONTHLY_DAY = 6, 1  # the role's defaults (Sunday, the 1st)
LOCAL_POLICY = dict(daily=dict(keep_last=2, keep_daily=7), weekly=dict(keep_weekly=4), monthly=dict(keep_monthly=-1))
S3_POLICY = dict(keep_last=2, keep_daily=7, keep_weekly=4, keep_monthly=-1)
PHASES = ("dump", "encryption", "set manifest", "tier linking", "S3 upload", "S3 rotation", "local rotation", "rekey")
DEFAULT_OPS = 30  # operations drawn from before a step's count was measured


def stamp(moment):
    return moment.strftime("%Y%m%d_%H%M%S")


class Year(object):
    """The simulated nights, their kills, and the checks after each one."""

    def __init__(self, env, rng, root):
        self.env = env
        self.rng = rng
        self.root = str(root)
        self.daily = os.path.join(self.root, "daily")
        self.staging = os.path.join(self.root, "restore-staging")
        self.runner = yl.ModuleRunner(os.path.join(os.path.dirname(self.root), "runner"))
        self.key = "year-key-1-%d" % rng.randrange(10 ** 9)
        self.created = []  # datetimes of every set made (the oracle's history)
        self.rows_at = {}  # set id -> number of rows the database held when it was dumped
        self.client = env.s3.client()
        self.durations = {}  # step label -> recent durations
        self.op_counts = {}  # (step label, window) -> operations counted in its last run
        self.figures = dict(days=0, runs=0, module_runs=0, kills=dict((p, 0) for p in PHASES),
                            kills_by_mode=dict(time=0, op=0), kills_missed=dict((p, 0) for p in PHASES),
                            local_set_checks=0, s3_set_checks=0, sets_checked=0, restores=[], repairs=0,
                            rekey=None, max_kept=dict(daily=0, weekly=0, monthly=0, s3=0),
                            seconds_by_step={}, check_seconds=0.0, restore_seconds=0.0, final=None)
        self.kill = None  # the kill planned for the current run
        self.manifests = {}  # S3 set manifests read, by name: (ETag, content)
        self.counters = {}
        self.conn = env.pg.connect("postgres")
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute('CREATE DATABASE "%s"' % DB)
        self.db = env.pg.connect(DB)
        self.db.autocommit = True
        with self.db.cursor() as cur:
            cur.execute("CREATE TABLE nights (night date PRIMARY KEY, note text NOT NULL)")
        self.rows = 0

    def close(self):
        self.db.close()
        self.conn.close()

    # -- module parameters ---------------------------------------------------------------------------------
    def pg_params(self, **extra):
        pg = self.env.pg
        params = dict(db=DB, login_user=pg.user, login_password=pg.password, login_host=pg.host, port=pg.port)
        params.update(extra)
        return params

    def s3_params(self, **extra):
        s3 = self.env.s3
        params = dict(bucket=BUCKET, prefix=PREFIX, endpoint_url=s3.endpoint_url, region=s3.region,
                      access_key=s3.access_key, secret_key=s3.secret_key, validate_certs=False, timeout=60)
        params.update(extra)
        return params

    # -- one module run, maybe killed ---------------------------------------------------------------------------
    def step(self, phase, label, main, params, windows=(), window_name="whole"):
        """Run one module; kill it when the planned kill targets this call of ``phase``."""
        self.counters[phase] = self.counters.get(phase, 0) + 1
        kill = None
        plan = self.kill
        if plan is not None and plan["phase"] == phase and plan["call"] == self.counters[phase]:
            if plan["mode"] == "time":
                recent = self.durations.get(label) or [0.2]
                kill = ("time", round(self.rng.uniform(0.0, sorted(recent)[len(recent) // 2]), 4))
            else:
                kill = ("op", self.rng.randint(1, max(1, self.op_counts.get((label, window_name), DEFAULT_OPS))))
            plan["at"] = dict(step=label, kill=kill)
        self.figures["module_runs"] += 1
        try:
            result, seconds, ops = self.runner.run(main, params, kill=kill, windows=windows)
        except yl.Killed:
            plan["hit"] = True
            raise
        if kill is not None:
            plan["missed"] = True  # the module ended before the kill point
        spent = self.figures["seconds_by_step"]
        spent[label] = round(spent.get(label, 0) + seconds, 3)
        self.durations.setdefault(label, []).append(seconds)
        self.durations[label] = self.durations[label][-15:]
        self.op_counts[(label, window_name)] = ops
        return result

    def plan_kill(self, moment, attempt):
        """The kill of this run, if any: a phase, which call of it, and a time or operation-count point."""
        share = KILL_SHARE if attempt == 0 else SECOND_KILL_SHARE
        if attempt >= MAX_ATTEMPTS - 1 or self.rng.random() >= share:
            return None
        phases = list(PHASES[:-1])
        phases.remove("tier linking")
        if backupset.tiers_for(moment, WEEKLY_DAY, MONTHLY_DAY) != ["daily"] and self.rng.random() < 0.5:
            phases = ["tier linking"]  # only a Sunday or a 1st links a set into weekly/ or monthly/
        phase = self.rng.choice(phases)
        call = self.rng.randint(1, 3 if phase == "S3 upload" else 1)
        mode = "op" if phase == "tier linking" else self.rng.choice(("time", "op"))
        return dict(phase=phase, call=call, mode=mode, hit=False)

    # -- one night ------------------------------------------------------------------------------------------
    def night(self, index):
        moment = START + dt.timedelta(days=index)
        with self.db.cursor() as cur:
            cur.execute("INSERT INTO nights VALUES (%s, %s)", (moment.date(), "night %d, %s" % (index, stamp(moment))))
        self.rows += 1
        for attempt in range(MAX_ATTEMPTS):
            when = moment + attempt * RERUN_AFTER
            self.kill = self.plan_kill(moment, attempt)
            self.counters = {}
            self.figures["runs"] += 1
            try:
                self.backup(when)
            except yl.Killed:
                self.after_kill(when)
                continue
            finally:
                self.record_kill()
            self.created.append(when)
            self.rows_at[stamp(when)] = self.rows
            break
        else:
            raise AssertionError("night %s never completed" % moment.date())
        self.figures["days"] += 1

    def record_kill(self):
        plan, self.kill = self.kill, None
        if plan is None:
            return
        if plan.get("hit"):
            self.figures["kills"][plan["phase"]] += 1
            self.figures["kills_by_mode"][plan["mode"]] += 1
        else:
            self.figures["kills_missed"][plan["phase"]] += 1

    def after_kill(self, when):
        """A set whose manifest reached daily/ before the kill exists: it joins the history."""
        if os.path.exists(os.path.join(self.daily, backupset.set_manifest_name(stamp(when)))):
            self.created.append(when)
            self.rows_at[stamp(when)] = self.rows

    def backup(self, when):
        """The dr_backup role's modules, in its order (tasks/artifacts.yml, set.yml, encrypt.yml, offsite.yml,
        upload_set.yml, retention.yml)."""
        ts = stamp(when)
        dump = self.step("dump", "pg_dump_backup", pg_dump_backup.main, self.pg_params(
            dest=self.daily, timestamp=ts, format="plain", compression="gzip", compression_level=5, jobs=1))
        artifacts = [dict(name=os.path.basename(dump["path"]), component="database")]
        for item in artifacts:
            out = self.step("encryption", "dr_crypt", dr_crypt.main, dict(
                state="encrypted", src=os.path.join(self.daily, item["name"]), key=self.key))
            item["name"] = os.path.basename(out["path"])
        set_params = dict(state="present", root=self.root, path=self.daily, timestamp=ts, environment=ENVIRONMENT,
                          artifacts=artifacts, weekly_day=WEEKLY_DAY, monthly_day=MONTHLY_DAY,
                          extra=dict(host="localhost", database=DB), auth_key=self.key, repair_tiers=True)
        # one module run, two phases: the set manifest (backupset.build), then the tier links and their repair
        label = "backup_set present %s" % "+".join(backupset.tiers_for(when, WEEKLY_DAY, MONTHLY_DAY))
        if self.kill and self.kill["phase"] == "set manifest" and self.kill["mode"] == "op":
            result = self.step("set manifest", label, backup_set.main, set_params, windows=[(backupset, "build")],
                               window_name="build")
        elif self.kill is None and len(self.created) % 2:  # counts the operations of the set manifest's window
            result = self.step("set manifest", label, backup_set.main, set_params, windows=[(backupset, "build")],
                               window_name="build")
        else:
            phase = "tier linking" if self.kill and self.kill["phase"] == "tier linking" else "set manifest"
            result = self.step(phase, label, backup_set.main, set_params,
                               windows=[(backupset, "link_into"), (backupset, "repair_tiers")], window_name="links")
        self.figures["repairs"] += len(result.get("repairs") or [])

        found = self.step("S3 query", "backup_set query", backup_set.main, dict(
            state="query", roots=[self.daily], select="newest", fail_on_problems=False))
        pending = [s for s in found["sets"] if s.get("set_id") and not (s.get("offsite") or {}).get("s3")]
        for entry in pending:
            self.step("S3 upload", "s3 upload artifacts", s3_backup_transfer.main, self.s3_params(
                mode="upload", srcs=[os.path.join(entry["directory"], name) for name in entry["artifacts"]],
                storage_class="STANDARD_IA", encryption="AES256"))
            self.step("S3 upload", "s3 upload manifest", s3_backup_transfer.main, self.s3_params(
                mode="upload", src=entry["manifest"], storage_class="STANDARD_IA", encryption="AES256",
                overwrite="different"))
            self.step("S3 upload", "backup_set updated", backup_set.main, dict(
                state="updated", path=entry["directory"], timestamp=entry["set_id"], changes=dict(offsite=dict(
                    s3=True, bucket=BUCKET, prefix=PREFIX, uploaded=naming.utc_now().isoformat()))))
        self.step("S3 rotation", "s3_rotate", s3_rotate.main, self.s3_params(**S3_POLICY))
        self.step("local rotation", "backup_rotate", backup_rotate.main, dict(
            path=self.root, orphans=True, tiers=LOCAL_POLICY))

    # -- the key rotation, as playbooks/rekey.yml does it ------------------------------------------------------
    def rekey(self):
        new_key = "year-key-2-%d" % self.rng.randrange(10 ** 9)
        kept = set().union(*(yl.set_ids_in(os.path.join(self.root, t)) for t in backupset.TIERS))
        in_bucket = self.s3_set_ids()
        report = dict(after_day=self.figures["days"], attempts=0, kills=[], missed=0, sets=None,
                      before=dict(local_sets=len(kept), s3_sets=len(in_bucket), s3_only=len(in_bucket - kept),
                                  s3_with_local_copy_not_marked_offsite=self.unmarked(in_bucket & kept)))
        hits = 0
        for attempt in range(3 * REKEY_KILLS + 1):  # bounded: kills that miss are drawn again, a few times
            report["attempts"] += 1
            self.counters = {}
            self.kill = None
            if hits < REKEY_KILLS and attempt < 3 * REKEY_KILLS:
                self.kill = dict(phase="rekey", mode=self.rng.choice(("time", "op")), hit=False, call=1)
                # no whole run measured yet: its length estimated from the number of sets (local and S3)
                sets = len(set().union(*(yl.set_ids_in(os.path.join(self.root, t)) for t in backupset.TIERS))) + \
                    len(self.s3_set_ids())
                self.durations.setdefault("dr_crypt rekeyed", [0.4 * sets])
                self.op_counts.setdefault(("dr_crypt rekeyed", "whole"), 40 * sets)
            planned = self.kill
            try:
                result = self.rekey_run(self.key, new_key)
            except yl.Killed:
                hits += 1
                report["kills"].append(planned["at"])
                continue
            finally:
                self.record_kill()
            if planned is not None:
                report["missed"] += 1
                continue  # run again (a finished rotation run again must change nothing), and kill again
            report["sets"] = len(result["sets"])
            report["s3_sets"] = len(result["s3_sets"])
            break
        else:
            raise AssertionError("the key rotation never completed")
        self.key = new_key  # the old key is given to nothing from here on
        self.figures["rekey"] = report

    def unmarked(self, set_ids):
        """Sets whose first local copy (daily, weekly, monthly) does not record its S3 copy."""
        count = 0
        for set_id in set_ids:
            for tier in backupset.TIERS:
                path = os.path.join(self.root, tier, backupset.set_manifest_name(set_id))
                if os.path.exists(path):
                    count += not (backupset.load(path).get("offsite") or {}).get("s3")
                    break
        return count

    def rekey_run(self, key, new_key):
        """playbooks/rekey.yml's one task: every tier, then every set in S3."""
        return self.step("rekey", "dr_crypt rekeyed", dr_crypt.main, self.s3_params(
            state="rekeyed", root=self.root, key=key, new_key=new_key, s3=True,
            staging_dir=os.path.join(self.root, "rekey-staging"), storage_class="STANDARD_IA",
            server_side_encryption="AES256"))

    # -- the checks after each night ----------------------------------------------------------------------------
    def expected(self):
        weekly = [m for m in self.created if m.weekday() == WEEKLY_DAY]
        monthly = [m for m in self.created if m.day == MONTHLY_DAY]
        return dict(
            daily=set(map(stamp, yl.expected_kept(self.created, **LOCAL_POLICY["daily"]))),
            weekly=set(map(stamp, yl.expected_kept(weekly, **LOCAL_POLICY["weekly"]))),
            monthly=set(map(stamp, yl.expected_kept(monthly, **LOCAL_POLICY["monthly"]))),
            s3=set(map(stamp, yl.expected_kept(self.created, **S3_POLICY))))

    def policy(self):
        return locate.Policy(key=self.key, encryption_required=True, environment=ENVIRONMENT, database=DB)

    def check(self, label):
        started = time.monotonic()
        try:
            self._check(label)
        finally:
            self.figures["check_seconds"] += time.monotonic() - started

    def _check(self, label):
        expected = self.expected()
        policy = self.policy()
        locator = locate.Locator(policy)
        local = {}
        for tier in backupset.TIERS:
            directory = os.path.join(self.root, tier)
            found = yl.set_ids_in(directory)
            assert found == expected[tier], "%s: %s/ holds %s, the policy keeps %s (missing %s, extra %s)" % (
                label, tier, len(found), len(expected[tier]), sorted(expected[tier] - found),
                sorted(found - expected[tier]))
            self.figures["max_kept"][tier] = max(self.figures["max_kept"][tier], len(found))
            for set_id in found:
                path = os.path.join(directory, backupset.set_manifest_name(set_id))
                data = backupset.load(path)
                problems = locator.check_local(path, data)
                assert not problems, "%s: %s/%s does not verify: %s" % (label, tier, set_id, problems)
                local.setdefault(set_id, data)
                self.figures["local_set_checks"] += 1
        inspection = fl.inspect_backups(self.root)
        assert not inspection.problems, (label, inspection.problems)
        assert not inspection.temps, (label, "temporary files left", inspection.temps)
        assert not inspection.orphans, (label, "orphan sidecars or manifests", inspection.orphans)
        self.check_s3(label, expected["s3"], local)
        self.figures["sets_checked"] = self.figures["local_set_checks"] + self.figures["s3_set_checks"]

    def bucket_objects(self):
        objects = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
            for item in page.get("Contents", []):
                objects[item["Key"][len(PREFIX):]] = item
        return objects

    def remote_manifest(self, name, etag):
        """A set manifest read from S3 (read again only when its object changed: same key, another ETag)."""
        cached = self.manifests.get(name)
        if cached is None or cached[0] != etag:
            body = self.client.get_object(Bucket=BUCKET, Key=PREFIX + name, IfMatch=etag)["Body"].read()
            cached = self.manifests[name] = (etag, json.loads(body))
        return json.loads(json.dumps(cached[1]))

    def s3_set_ids(self):
        return set(name[len("set_"):-len(".json")] for name in self.bucket_objects()
                   if name.startswith("set_") and name.endswith(".json"))

    def check_s3(self, label, expected, local):
        objects = self.bucket_objects()
        in_bucket = set(name[len("set_"):-len(".json")] for name in objects
                        if name.startswith("set_") and name.endswith(".json"))
        assert in_bucket == expected, "%s: S3 holds %d sets, the policy keeps %d (missing %s, extra %s)" % (
            label, len(in_bucket), len(expected), sorted(expected - in_bucket), sorted(in_bucket - expected))
        self.figures["max_kept"]["s3"] = max(self.figures["max_kept"]["s3"], len(in_bucket))
        listed = set()
        for set_id in sorted(in_bucket):
            name = backupset.set_manifest_name(set_id)
            data = self.remote_manifest(name, objects[name]["ETag"])
            try:
                setauth.check(data, self.key)
            except setauth.AuthError as exc:
                raise AssertionError("%s: the S3 copy of set %s is not authentic under the current key: %s" % (
                    label, set_id, exc))
            listed.add(name)
            for entry in data["artifacts"]:
                for file_name in entry.get("files") or [entry["name"]]:
                    listed.add(file_name)
                    assert file_name in objects, "%s: S3 set %s lacks %s" % (label, set_id, file_name)
                item = objects[entry["name"]]
                assert item["Size"] == entry["size"], (label, set_id, entry["name"], item["Size"], entry["size"])
                etag = item["ETag"].strip('"')
                if "-" not in etag:  # a single-part object: its ETag is the MD5 of its content
                    assert etag == entry["md5"], "%s: S3 object %s is not what set %s records (md5 %s, recorded %s)" % (
                        label, entry["name"], set_id, etag, entry["md5"])
            if set_id in local:
                assert setauth.payload(local[set_id]) == setauth.payload(data), \
                    "%s: set %s differs between S3 and the local copy" % (label, set_id)
            self.figures["s3_set_checks"] += 1
        stray = sorted(set(objects) - listed)
        assert not stray, "%s: objects in S3 that no set there lists: %s" % (label, stray[:10])
        for set_id, data in local.items():  # every local set S3's policy keeps is there (checked above) and offsite
            if set_id in expected and os.path.exists(os.path.join(self.daily, backupset.set_manifest_name(set_id))):
                daily = backupset.load(os.path.join(self.daily, backupset.set_manifest_name(set_id)))
                assert (daily.get("offsite") or {}).get("s3") is True, (label, set_id, daily.get("offsite"))

    def warm_up(self):
        """Derive the key id and MAC key once, and load botocore's models, before the first fork."""
        crypto.key_id(self.key)
        setauth.mac_key(self.key)
        self.bucket_objects()
        boto3.session.Session().client("s3", endpoint_url=self.env.s3.endpoint_url, region_name=self.env.s3.region)

    def simulate(self):
        for index in range(DAYS):
            self.night(index)
            self.check("night %d (%s)" % (index, (START + dt.timedelta(days=index)).date()))
            if index == REKEY_AFTER_DAY:
                self.rekey()
                self.check("after the key rotation")
                self.restore_sample("after the key rotation", everything_old=True)
            elif index and index % RESTORE_EVERY == 0:
                self.restore_sample("night %d" % index)
        self.restore_sample("the end", everything_old=True)
        kept = set().union(*(yl.set_ids_in(os.path.join(self.root, t)) for t in backupset.TIERS))
        in_bucket = self.s3_set_ids()
        self.figures["final"] = dict(local_sets=len(kept), s3_sets=len(in_bucket), both=len(kept & in_bucket),
                                     local_only=sorted(kept - in_bucket), s3_only=sorted(in_bucket - kept))

    # -- restores -----------------------------------------------------------------------------------------------
    def restore(self, backup, label):
        """Find, authenticate and decrypt a set with backup_locate, restore it into a scratch database with
        pg_restore_db, and compare its rows with what the database held that night."""
        started = time.monotonic()
        try:
            self._restore(backup, label)
        finally:
            self.figures["restore_seconds"] += time.monotonic() - started

    def _restore(self, backup, label):
        located = self.step("restore", "backup_locate", backup_locate.main, self.s3_params(
            backup=backup, root=self.root, staging_dir=self.staging, environment=ENVIRONMENT, database=DB,
            encryption_key=self.key, encryption_required=True, s3=True, components=["database"],
            required_components=["database"]))
        set_id = located["set_id"]
        scratch = "year_restore_%s" % set_id
        try:
            self.step("restore", "pg_restore_db", pg_restore_db.main, self.pg_params(
                db=scratch, src=located["paths"]["database"][0], mode="new", safety_backup=False))
            conn = self.env.pg.connect(scratch)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT night, note FROM nights ORDER BY night")
                    restored = cur.fetchall()
            finally:
                conn.close()
            with self.db.cursor() as cur:
                cur.execute("SELECT night, note FROM nights ORDER BY night LIMIT %s", (self.rows_at[set_id],))
                wanted = cur.fetchall()
            assert restored == wanted, "%s: set %s restored %d rows, that night the database held %d%s" % (
                label, set_id, len(restored), len(wanted), "" if len(restored) != len(wanted) else " (content differs)")
        finally:
            with self.conn.cursor() as cur:
                cur.execute('DROP DATABASE IF EXISTS "%s"' % scratch)
            yl.remove_tree(self.staging)
        self.figures["restores"].append(dict(set_id=set_id, source=located["source"], rows=self.rows_at[set_id],
                                             after_day=self.figures["days"], why=label))

    def restore_sample(self, label, everything_old=False):
        kept = sorted(set().union(*(yl.set_ids_in(os.path.join(self.root, t)) for t in backupset.TIERS)))
        in_bucket = sorted(self.s3_set_ids())
        s3_only = [s for s in in_bucket if s not in kept]
        chosen = [("local", self.rng.choice(kept)), ("s3", self.rng.choice(s3_only or in_bucket))]
        if everything_old:  # the oldest sets, locally (a monthly one) and in S3, and the newest
            chosen += [("local", kept[0]), ("s3", in_bucket[0]), ("local", kept[-1])]
        done = set()
        for where, set_id in chosen:
            if (where, set_id) in done:
                continue
            done.add((where, set_id))
            backup = set_id if where == "local" else "s3://%s/%s%s" % (BUCKET, PREFIX,
                                                                       backupset.set_manifest_name(set_id))
            self.restore(backup, label)


@pytest.mark.timeout(1500)  # bounded: the figures say how long it took (the target is under 15 minutes)
def test_a_simulated_year_of_killed_backups_and_a_key_rotation_loses_nothing(fault_env, rng, faults_seed):
    started = time.monotonic()
    work = fl.FAULTS_ROOT / "simulated_year"
    root = work / "backups"
    year = Year(fault_env, rng, root)
    figures = year.figures
    figures.update(seed=faults_seed, target_days=DAYS)
    out = work / "figures.json"
    try:
        with yl.computed_once():
            year.warm_up()
            year.simulate()
    finally:
        year.close()
        figures["elapsed_seconds"] = round(time.monotonic() - started, 1)
        figures["restores_done"] = len(figures["restores"])
        figures["kills_total"] = sum(figures["kills"].values())
        out.write_text(json.dumps(figures, indent=2, sort_keys=True))
        summary = dict((k, figures[k]) for k in ("seed", "days", "runs", "module_runs", "kills_total", "kills",
                                                 "kills_by_mode", "kills_missed", "repairs", "sets_checked",
                                                 "local_set_checks", "s3_set_checks", "restores_done", "max_kept",
                                                 "rekey", "final", "elapsed_seconds"))
        print("\nsimulated year figures (%s):\n%s" % (out, json.dumps(summary, indent=2, sort_keys=True)))
    assert figures["days"] >= DAYS
    for phase in PHASES:
        assert figures["kills"][phase] > 0, "no kill landed in the phase %r: %s" % (phase, figures["kills"])
