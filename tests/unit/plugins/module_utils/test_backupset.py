# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of backupset's tier links: link order, and the repair of incomplete tier copies.

A run killed between two links is simulated by building the half-linked state the old order left (the set
manifest linked, its artifacts not) and the one the new order can leave (artifacts linked, no manifest); a
real SIGKILL between links is in test_killed_link_leaves_no_incomplete_manifest. The next backup run
(``backup_set state=present repair_tiers=true`` through ``main()``) repairs the tiers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum, naming, setauth
from ansible_collections.atlasia.dr.plugins.modules import backup_set

SUNDAY = "20261122_020000"  # a Sunday: daily + weekly
MONDAY = "20261123_020000"
KEY = "unit test key"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})


def make_set(root, ts, key=KEY, tiers=None):
    """A set of two artifacts (with sidecars and an artifact manifest) in ``root/daily``; returns its data."""
    daily = root / "daily"
    daily.mkdir(parents=True, exist_ok=True)
    names = []
    for prefix, ext, component in (("backup", "sql.gz", "database"), ("vault", "snap", "vault")):
        name = "%s_%s.%s" % (prefix, ts, ext)
        checksum.write_with_sidecars(str(daily / name), lambda sink, n=name: sink(("content of %s" % n).encode() * 50))
        (daily / naming.manifest_name("%s_%s" % (prefix, ts))).write_text(json.dumps(dict(type=component)))
        names.append(dict(name=name, component=component))
    path, data = backupset.build(str(daily), ts, names, environment="unit", tiers=tiers, auth_key=key)
    return data


def link(root, data, tier="weekly"):
    return backupset.link_into(str(root / "daily"), data, str(root / tier))


def half_linked(root, data, tier="weekly"):
    """What the old link order left when killed after the set manifest: the manifest only."""
    (root / tier).mkdir(exist_ok=True)
    name = backupset.set_manifest_name(data["set_id"])
    os.link(str(root / "daily" / name), str(root / tier / name))


def run_present(root, ts, capsys, check_mode=False, **extra):
    args = dict(state="present", root=str(root), path=str(root / "daily"), timestamp=ts, auth_key=KEY,
                artifacts=[dict(name="backup_%s.sql.gz" % ts, component="database"),
                           dict(name="vault_%s.snap" % ts, component="vault")], repair_tiers=True)
    args.update(extra)
    return run_module(backup_set.main, args, capsys, check_mode=check_mode)


def test_link_order_is_artifacts_first_set_manifest_last(tmp_path, monkeypatch):
    data = make_set(tmp_path, SUNDAY)
    order = []
    real_link = os.link

    def recording_link(src, dst, *args, **kwargs):
        order.append(os.path.basename(dst))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", recording_link)
    linked = link(tmp_path, data)
    assert order[-1] == backupset.set_manifest_name(SUNDAY)
    assert set(order) == set(backupset.all_files(data)) and len(linked) == len(order)
    # each artifact comes before its own sidecars and manifest
    for entry in data["artifacts"]:
        assert order.index(entry["name"]) < min(order.index(f) for f in entry["files"] if f != entry["name"])
    assert backupset.verify(str(tmp_path / "weekly"), data) == []


def test_link_into_refuses_a_set_missing_files_before_linking_anything(tmp_path):
    data = make_set(tmp_path, SUNDAY)
    os.unlink(str(tmp_path / "daily" / ("vault_%s.snap" % SUNDAY)))
    with pytest.raises(backupset.SetError, match="missing from"):
        link(tmp_path, data)
    assert not (tmp_path / "weekly").exists() or not os.listdir(str(tmp_path / "weekly"))


def test_killed_link_leaves_no_incomplete_manifest(tmp_path):
    """A process SIGKILLed between two links leaves files without a set manifest, never the reverse."""
    data = make_set(tmp_path, SUNDAY)
    script = textwrap.dedent("""
        import os, signal, sys
        from ansible_collections.atlasia.dr.plugins.module_utils import backupset
        real_link = os.link
        count = [0]
        def link(src, dst, *a, **k):
            if count[0] == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)
            count[0] += 1
            return real_link(src, dst, *a, **k)
        os.link = link
        data = backupset.load(sys.argv[1] + "/daily/" + backupset.set_manifest_name(sys.argv[2]))
        backupset.link_into(sys.argv[1] + "/daily", data, sys.argv[1] + "/weekly")
    """)
    total = len(backupset.all_files(data))
    for kill_at in range(total):
        weekly = tmp_path / "weekly"
        if weekly.exists():
            for name in os.listdir(str(weekly)):
                os.unlink(str(weekly / name))
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), SUNDAY, str(kill_at)],
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        held = set(os.listdir(str(weekly)))
        assert len(held) == kill_at
        assert backupset.set_manifest_name(SUNDAY) not in held
        assert backupset.repair_tiers(str(tmp_path)) == []


def test_repair_completes_from_another_tier(tmp_path):
    data = make_set(tmp_path, SUNDAY)
    half_linked(tmp_path, data)
    repairs = backupset.repair_tiers(str(tmp_path))
    assert len(repairs) == 1
    report = repairs[0]
    assert report["action"] == "completed" and report["source"] == "daily" and report["tier"] == "weekly"
    assert sorted(report["missing"]) == sorted(backupset.all_files(data)[1:])
    weekly = tmp_path / "weekly"
    assert backupset.verify(str(weekly), data) == []
    for name in backupset.all_files(data):
        assert os.stat(str(weekly / name)).st_ino == os.stat(str(tmp_path / "daily" / name)).st_ino
    setauth.check(backupset.load(str(weekly / backupset.set_manifest_name(SUNDAY))), KEY)
    assert backupset.repair_tiers(str(tmp_path)) == []  # nothing left to do


def test_repair_dry_run_changes_nothing(tmp_path):
    data = make_set(tmp_path, SUNDAY)
    half_linked(tmp_path, data)
    before = sorted(os.listdir(str(tmp_path / "weekly")))
    repairs = backupset.repair_tiers(str(tmp_path), dry_run=True)
    assert [r["action"] for r in repairs] == ["would_complete"]
    assert sorted(os.listdir(str(tmp_path / "weekly"))) == before


def test_repair_removes_a_copy_no_tier_can_complete(tmp_path):
    data = make_set(tmp_path, SUNDAY)
    half_linked(tmp_path, data)
    # the daily copy expired: nothing holds the artifacts any more
    for name in backupset.all_files(data):
        os.unlink(str(tmp_path / "daily" / name))
    repairs = backupset.repair_tiers(str(tmp_path))
    assert [r["action"] for r in repairs] == ["removed"]
    assert os.listdir(str(tmp_path / "weekly")) == []
    assert "no longer a restore point" in backupset.describe_repair(repairs[0])


def test_repair_does_not_complete_from_a_damaged_copy(tmp_path):
    data = make_set(tmp_path, SUNDAY)
    half_linked(tmp_path, data)
    damaged = tmp_path / "daily" / ("backup_%s.sql.gz" % SUNDAY)
    damaged.write_bytes(b"altered")
    repairs = backupset.repair_tiers(str(tmp_path))
    assert [r["action"] for r in repairs] == ["removed"]
    assert "daily" in repairs[0]["problems"][0]
    assert not (tmp_path / "weekly" / backupset.set_manifest_name(SUNDAY)).exists()
    assert (tmp_path / "daily" / backupset.set_manifest_name(SUNDAY)).exists()  # the original is left alone


def test_repair_keeps_a_partial_daily_copy_and_reports_it(tmp_path):
    data = make_set(tmp_path, MONDAY)
    os.unlink(str(tmp_path / "daily" / ("vault_%s.snap.md5" % MONDAY)))
    repairs = backupset.repair_tiers(str(tmp_path))
    assert [r["action"] for r in repairs] == ["incomplete"]
    assert (tmp_path / "daily" / backupset.set_manifest_name(MONDAY)).exists()
    assert "could not be repaired" in backupset.describe_repair(repairs[0])
    assert data["set_id"] == MONDAY


def test_repair_completes_daily_from_weekly(tmp_path):
    data = make_set(tmp_path, SUNDAY)
    link(tmp_path, data)
    os.unlink(str(tmp_path / "daily" / ("backup_%s.sql.gz" % SUNDAY)))
    repairs = backupset.repair_tiers(str(tmp_path))
    assert [(r["tier"], r["action"], r["source"]) for r in repairs] == [("daily", "completed", "weekly")]
    assert backupset.verify(str(tmp_path / "daily"), data) == []


def test_next_backup_run_repairs_a_half_linked_weekly(tmp_path, capsys):
    """The state a killed run left (weekly/set_X.json without its files) is repaired by the next backup."""
    data = make_set(tmp_path, SUNDAY)
    half_linked(tmp_path, data)
    make_set(tmp_path, MONDAY)  # the next run's artifacts
    preview = run_present(tmp_path, MONDAY, capsys, check_mode=True)
    assert [r["action"] for r in preview["repairs"]] == ["would_complete"]
    assert not (tmp_path / "weekly" / ("backup_%s.sql.gz" % SUNDAY)).exists()
    result = run_present(tmp_path, MONDAY, capsys)
    assert result["changed"] and not result.get("failed"), result
    assert [(r["tier"], r["set_id"], r["action"]) for r in result["repairs"]] == [("weekly", SUNDAY, "completed")]
    assert "completed by linking them from daily/" in json.dumps(result["warnings"])
    assert backupset.verify(str(tmp_path / "weekly"), data) == []
    again = run_present(tmp_path, MONDAY, capsys)
    assert again["repairs"] == []


def test_backup_run_without_repair_option_reports_nothing(tmp_path, capsys):
    make_set(tmp_path, MONDAY)
    result = run_present(tmp_path, MONDAY, capsys, repair_tiers=False)
    assert "repairs" not in result
