"""`make bench` cannot rot: the bench runs once on a tiny database and writes a complete report.

scripts/bench.sh --smoke starts its own PostgreSQL, SeaweedFS and the local environment (OpenBao, the make demo
stack), runs every pair once and stops every server. These tests check that it succeeded, that both report
files exist and that every row is there with a time and a peak memory. They never assert on a time: timings
on a shared CI machine say nothing, and the bench is not a timed test. The one figure checked is a count of
bytes that does not depend on the machine: a night of the file bench (a 6 MB folder in the smoke run) writes
fewer bytes into the repository than into a tarball.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, venv_env

# the first test runs the bench (module fixture): every test may have to wait for it
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2700)]

#: Every command the bench times; a row that disappears fails here.
CASES = [
    "backup.baseline", "backup.floor", "backup.default", "backup.fastest", "backup.directory",
    "backup.default.direct", "backup.default.hand", "backup.default.pipe", "backup.fastest.direct",
    "backup.fastest.hand", "backup.fastest.pipe",
    "restore.baseline", "restore.default", "restore.nosafety", "restore.fastest", "restore.fastest.hand",
    "restore.nosafety.direct", "restore.hand", "restore.pipe",
    "s3.upload.boto3", "s3.upload", "s3.upload.direct", "s3.download.boto3", "s3.download", "s3.download.direct",
    "ansible.module.direct", "ansible.module", "ansible.backup_yml", "ansible.restore_yml",
    "backup.default.direct@small", "backup.fastest.direct@small", "restore.nosafety.direct@small",
    "s3.upload.direct@small", "s3.download.direct@small",
    "files.repo.day1", "files.repo.hand.day1", "files.repo.steps.day1", "files.tarball", "files.repo",
    "files.repo.steps", "files.tarball.hand", "files.repo.hand",
]
#: Every comparison (ours, baseline) the table shows a ratio for.
PAIRS = [
    ("backup.default", "backup.baseline"), ("backup.fastest", "backup.baseline"),
    ("backup.directory", "backup.baseline"), ("backup.floor", "backup.baseline"),
    ("backup.default.direct", "backup.default.hand"), ("backup.default.pipe", "backup.default.hand"),
    ("backup.fastest.direct", "backup.fastest.hand"), ("backup.fastest.pipe", "backup.fastest.hand"),
    ("restore.default", "restore.baseline"), ("restore.nosafety", "restore.baseline"),
    ("restore.fastest", "restore.baseline"), ("restore.fastest.hand", "restore.baseline"),
    ("restore.nosafety.direct", "restore.hand"), ("restore.pipe", "restore.hand"),
    ("s3.upload", "s3.upload.boto3"), ("s3.upload.direct", "s3.upload.boto3"),
    ("s3.download", "s3.download.boto3"), ("s3.download.direct", "s3.download.boto3"),
    ("ansible.module", "ansible.module.direct"),
    ("files.repo", "files.tarball"), ("files.repo.steps", "files.tarball"), ("files.repo.hand", "files.tarball.hand"),
    ("files.repo", "files.repo.steps"), ("files.tarball", "files.tarball.hand"),
]
TARGETS = [
    "default backup <= 0.85", "fastest backup <= 0.5", "fastest restore <= 0.75",
    "module overhead <= 1.05 x by hand (backup, default)", "module overhead <= 1.05 x by hand (backup, fastest)",
    "module overhead <= 1.05 x by hand (restore)", "backup.yml on a tiny database < 10 s",
    "peak memory flat as the database grows",
    "file data, a night after day 1: repository <= 0.05 x the tarball's time and bytes",
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-reports")
    # the scratch folder must be reachable by the unprivileged PostgreSQL user: inside the checkout, not /tmp
    work = TMP_ROOT / ("bench-smoke-%s" % uuid.uuid4().hex[:10])
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "bench.sh"), "--smoke", "--out", str(out),
                           "--work", str(work)], cwd=str(REPO_ROOT), env=venv_env(), capture_output=True,
                          text=True, timeout=2400, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    jsons = sorted(out.glob("bench-2*.json"))
    mds = sorted(out.glob("bench-2*.md"))
    return dict(proc=proc, work=work, jsons=jsons, mds=mds, physical=sorted(out.glob("bench-physical-*.json")),
                data=json.loads(jsons[-1].read_text()) if jsons else None,
                markdown=mds[-1].read_text() if mds else "")


def test_bench_writes_one_json_and_one_markdown_report(bench):
    assert len(bench["jsons"]) == 1 and len(bench["mds"]) == 1
    assert bench["jsons"][0].stem == bench["mds"][0].stem
    assert bench["data"]["complete"] is True
    assert bench["data"]["params"]["smoke"] is True


@pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="pgbackrest is not installed")
def test_bench_adds_the_physical_paths(bench):
    assert len(bench["physical"]) == 1, bench["proc"].stdout[-3000:]
    data = json.loads(bench["physical"][0].read_text())
    assert data, "empty physical bench report"
    markdown = (bench["physical"][0].with_suffix(".md")).read_text()
    assert markdown.strip()
    # ours (the pgbackrest module through ansible) beside the same pgBackRest command by hand, in the same run
    cases = dict((case["key"], case) for case in data["cases"])
    for key in ("physical.backup.hand", "physical.backup.ours", "physical.restore.hand", "physical.restore.ours"):
        assert cases.get(key, {}).get("seconds", 0) > 0, (key, sorted(cases))
    for kind in ("backup", "restore"):
        assert 0 < cases["physical.%s.ours" % kind]["command_seconds"] <= cases["physical.%s.ours" % kind]["seconds"]
        assert data["ours_vs_by_hand"][kind] > 0
    assert "Ours (the module through Ansible) against the same pgBackRest command by hand" in markdown


def test_smoke_leaves_the_rebuild_group_out(bench):
    """The rebuild group runs the Molecule scenario (Docker, minutes): a smoke run names it nowhere."""
    assert "rebuild" not in bench["data"]["params"]["groups"]
    assert "rebuild.rto" not in bench["data"]["cases"]


def test_bench_cleans_up_its_scratch_folder_and_servers(bench):
    assert not bench["work"].exists()
    # no process of ours is left running from the scratch folder (PostgreSQL, SeaweedFS, OpenBao)
    leftovers = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if str(bench["work"]) in cmdline:
            leftovers.append(cmdline)
    assert leftovers == []


def test_every_command_has_a_measured_run(bench):
    cases = bench["data"]["cases"]
    missing = [key for key in CASES if key not in cases or not cases[key]["runs"]]
    assert missing == []
    for key in CASES:
        run = cases[key]["runs"][-1]
        assert run["wall"] > 0 and run["maxrss_mb"] > 0, (key, run)
        assert cases[key]["median_seconds"] is not None and cases[key]["peak_rss_mb"] is not None


def test_every_pair_has_a_ratio(bench):
    pairs = dict(((p["ours"], p["base"]), p) for p in bench["data"]["pairs"])
    for key in PAIRS:
        assert key in pairs, key
        assert pairs[key]["ratios"] and pairs[key]["median_ratio"] > 0, key
    assert pairs[("backup.fastest", "backup.baseline")]["median_size_ratio"] > 0
    # a night after day 1 writes bytes to both stores, the repository fewer than the tarball
    assert 0 < pairs[("files.repo", "files.tarball")]["median_size_ratio"] < 1


def test_file_bench_measures_the_nights_on_a_small_folder(bench):
    params = bench["data"]["params"]
    files = bench["data"]["database"]["files"]
    assert params["files_mb"] <= 6 and files["bytes"] <= 6 * 1048576 and files["files"] == params["files_count"]
    assert len(files["nights"]) == params["rounds"] and all(n > 0 for n in files["nights"])
    for key in ("files.repo", "files.repo.steps", "files.repo.hand", "files.tarball", "files.tarball.hand"):
        assert all(run["round"] >= 1 and run["size"] > 0 for run in bench["data"]["cases"][key]["runs"]), key


def test_every_target_and_the_memory_check_are_reported(bench):
    texts = [t["target"] for t in bench["data"]["targets"]]
    for prefix in TARGETS:
        assert any(t.startswith(prefix) for t in texts), prefix
    assert len(bench["data"]["memory"]) == 5
    for item in bench["data"]["memory"]:
        assert item["small_peak_mb"] > 0 and item["big_peak_mb"] > 0, item


def test_markdown_has_every_row(bench):
    markdown = bench["markdown"]
    cases = bench["data"]["cases"]
    for key in CASES:
        if key.endswith("@small"):
            continue
        assert cases[key]["label"].replace("|", "\\|") in markdown, key
    for heading in ("## Backup", "## Restore", "## S3 transfer", "## Ansible overhead", "## Peak memory at two "
                    "database sizes", "## File data", "## Targets"):
        assert heading in markdown
    assert "Machine: " in markdown and "Database: pgbench scale 1 " in markdown and "File data: 30 files" in markdown
    assert markdown in bench["proc"].stdout  # printed at the end of the run too
