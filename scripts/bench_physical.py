"""Physical (pgBackRest) against logical (pg_dump | gzip) backups and restores, and the WAL archive's latency.

The figures behind docs/physical.md and the defaults of the pgbackrest role (compression, process-max):

- a throwaway PostgreSQL 15 with production-like durability (fsync, synchronous_commit, full_page_writes on)
  and WAL archiving through pgBackRest into a local (posix) repository;
- a database of ``pgbench -i -s SCALE`` plus ROWS JSON rows;
- logical: ``pg_dump | gzip -6`` (the plan's pipeline) and ``gunzip | psql`` into an empty database;
- physical: ``pgbackrest backup --type=full`` with zst 3 / lz4 1 / gz 6 and process-max 1 / 2, then
  ``pgbackrest restore`` into a new data directory + start + end of recovery (time to a running server), with
  process-max 1 and 2;
- ours beside pgBackRest by hand, round by round in the same run: the collection's ``atlasia.dr.pgbackrest`` module
  through ``ansible`` (what the roles run) with the roles' defaults (zst 3, process-max 2) for the full backup and
  for the restore (same start and end of recovery), against the same pgBackRest command typed by hand;
- archive latency: ``pg_switch_wal()`` until pg_stat_archiver shows the segment archived (archive-push time,
  what the RPO adds to archive_timeout).

Each timing is the median of ROUNDS runs. Writes reports/bench-physical-<UTC>.json and .md; stops every
server it started.

    .venv/bin/python scripts/bench_physical.py [--scale 20] [--rows 200000] [--rounds 1] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import TMP_ROOT, VENV_BIN, VENV_PYTHON  # noqa: E402
from tests.support.ansible_run import ansible_env  # noqa: E402
from tests.support.pgbackrest import ARCHIVE_SETTINGS  # noqa: E402
from tests.support.postgres import PG_BINDIR, PostgresServer, _reachable_by_others, free_port  # noqa: E402

STANZA = "bench"
ROWS_SQL = """
CREATE TABLE workflow_runs (id bigserial PRIMARY KEY, workflow text NOT NULL, started_at timestamptz NOT NULL,
                            payload jsonb NOT NULL);
INSERT INTO workflow_runs (workflow, started_at, payload)
SELECT 'workflow-' || (i % 211), timestamptz '2026-01-01 00:00:00+00' + i * interval '13 seconds',
       jsonb_build_object('run', i, 'agent', 'agent-' || (i % 37), 'tokens', (i * 7919) % 20000,
                          'summary', 'Run ' || i || ' processed ' || ((i * 3) % 977) || ' items')
FROM generate_series(1::bigint, {rows}::bigint) AS i;
"""


def log(text):
    print("[bench-physical %s] %s" % (time.strftime("%H:%M:%S"), text), flush=True)


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.os_user = "atlasia-pg" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.root = TMP_ROOT / "bench-physical"
        if os.geteuid() == 0 and not _reachable_by_others(self.root):
            # pgBackRest and PostgreSQL run as another user, who cannot reach a checkout under a private folder
            # (mktemp -d, a 0700 home): the repository, logs and cluster then live under /tmp
            self.root = Path(tempfile.mkdtemp(prefix="atlasia-bench-physical-"))
        self.pg = None
        self.results = dict(cases=[], settings=dict(scale=args.scale, rows=args.rows, rounds=args.rounds))

    # -- helpers ------------------------------------------------------------------------------------------
    def as_owner(self, argv):
        return (["runuser", "-u", self.os_user, "--"] if os.geteuid() == 0 else []) + [str(a) for a in argv]

    def run(self, argv, shell=False, env=None):
        started = time.monotonic()
        proc = subprocess.run(argv if not shell else ["bash", "-o", "pipefail", "-c", argv], cwd="/",
                              capture_output=True, text=True, env=dict(os.environ, **(env or {})), check=False)
        if proc.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (argv if shell else " ".join(map(str, argv)), proc.returncode, (proc.stderr or proc.stdout)[-2000:]))
        return time.monotonic() - started, proc.stdout

    def pgbackrest(self, *args):
        return self.run(self.as_owner(["pgbackrest", "--config=%s" % self.config, "--stanza=%s" % STANZA] +
                                      list(args)))

    def module(self, args):
        """Run atlasia.dr.pgbackrest through ``ansible`` (as the roles do); ``(seconds, result)``."""
        argv = [VENV_BIN / "ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "atlasia.dr.pgbackrest",
                "-a", json.dumps(dict(args, stanza=STANZA, config=str(self.config), os_user=self.os_user)),
                "-e", json.dumps({"ansible_python_interpreter": str(VENV_PYTHON)})]
        started = time.monotonic()
        proc = subprocess.run([str(a) for a in argv], cwd=str(REPO), capture_output=True, text=True,
                              env=ansible_env(json_output=True), check=False)
        seconds = time.monotonic() - started
        try:
            task = json.loads(proc.stdout)["plays"][0]["tasks"][0]
            result = task["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RuntimeError("pgbackrest module gave no result (exit %d): %s" % (
                proc.returncode, (proc.stderr or proc.stdout)[-2000:]))
        if proc.returncode != 0 or result.get("failed"):
            raise RuntimeError("pgbackrest module failed: %s" % result.get("msg"))
        # the task's own time as Ansible saw it (the module's transfer and run); the rest of `seconds` is
        # ansible's start (inventory, play) and exit
        result["task_seconds"] = _task_seconds(task)
        return seconds, result

    def case(self, key, label, seconds, **extra):
        median = statistics.median(seconds)
        self.results["cases"].append(dict(key=key, label=label, seconds=round(median, 2),
                                          runs=[round(s, 2) for s in seconds], **extra))
        log("%-44s %7.2f s %s" % (label, median, json.dumps(extra) if extra else ""))
        return median

    # -- set-up ---------------------------------------------------------------------------------------------
    def start(self):
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        os.chmod(self.root, 0o755)
        repo = self.root / "repo"
        for path in (repo, self.root / "log", self.root / "lock", self.root / "restore"):
            path.mkdir()
            shutil.chown(path, self.os_user, self.os_user)
        self.config = self.root / "pgbackrest.conf"
        settings = dict(ARCHIVE_SETTINGS, shared_buffers="128MB", archive_timeout="60",
                        archive_command="pgbackrest --config=%s --stanza=%s archive-push %%p" % (self.config, STANZA))
        settings.pop("track_commit_timestamp")
        self.pg = PostgresServer(base_dir=self.root / "pg", settings=settings).start()
        self.config.write_text(
            "[global]\nrepo1-path=%s\nrepo1-retention-full=99\nlog-path=%s\nlog-level-file=off\nlock-path=%s\n"
            "spool-path=%s\nstart-fast=y\ncompress-type=zst\ncompress-level=3\n\n"
            "[%s]\npg1-path=%s\npg1-port=%d\npg1-socket-path=%s\npg1-user=%s\n" % (
                repo, self.root / "log", self.root / "lock", self.root / "lock", STANZA, self.pg.data_dir,
                self.pg.port, self.pg.socket_dir, self.pg.user))
        os.chmod(self.config, 0o644)
        self.pgbackrest("stanza-create")
        self.pgbackrest("check")

    def env(self):
        return self.pg.env("bench")

    def build(self):
        log("building: pgbench scale %d + %d JSON rows" % (self.args.scale, self.args.rows))
        self.pg.createdb("bench")
        self.run([PG_BINDIR / "pgbench", "-i", "-q", "-s", str(self.args.scale), "bench"], env=self.env())
        self.pg.psql(ROWS_SQL.format(rows=self.args.rows), db="bench")
        self.pg.psql("VACUUM ANALYZE", db="bench")
        size = int(self.pg.scalar("SELECT pg_database_size('bench')"))
        cluster = sum(f.stat().st_size for f in self.pg.data_dir.rglob("*") if f.is_file())
        self.results["database_bytes"] = size
        self.results["cluster_bytes"] = cluster
        log("database %.0f MB, cluster %.0f MB" % (size / 1e6, cluster / 1e6))

    # -- logical --------------------------------------------------------------------------------------------
    def logical(self):
        dump = self.root / "dump.sql.gz"
        rounds = self.args.rounds
        times = [self.run("%s -d bench | gzip -6 > %s" % (PG_BINDIR / "pg_dump", dump), shell=True,
                          env=self.env())[0] for dummy in range(rounds)]
        self.case("logical.backup", "pg_dump | gzip -6 (the plan)", times, bytes=dump.stat().st_size)
        times = []
        for dummy in range(rounds):
            self.pg.dropdb("restored")
            self.pg.createdb("restored")
            times.append(self.run("gunzip -c %s | %s -X -q -v ON_ERROR_STOP=1 -d restored >/dev/null" % (
                dump, PG_BINDIR / "psql"), shell=True, env=self.pg.env("restored"))[0])
        self.pg.dropdb("restored")
        self.case("logical.restore", "gunzip | psql into an empty database", times)

    # -- physical -------------------------------------------------------------------------------------------
    def newest_label(self):
        data = json.loads(self.pgbackrest("info", "--output=json")[1])
        return data[0]["backup"][-1]

    def physical(self):
        labels = {}
        variants = [("zst", 3, 1), ("zst", 3, 2), ("lz4", 1, 2), ("gz", 6, 2)]
        if self.args.smoke:
            variants = variants[1:2]
        for kind, level, procs in variants:
            times = []
            for dummy in range(self.args.rounds):
                times.append(self.pgbackrest("backup", "--type=full", "--compress-type=%s" % kind,
                                             "--compress-level=%d" % level, "--process-max=%d" % procs)[0])
            backup = self.newest_label()
            labels[(kind, procs)] = backup["label"]
            self.case("physical.backup.%s%d.p%d" % (kind, level, procs),
                      "pgbackrest backup full, %s %d, process-max %d" % (kind, level, procs), times,
                      bytes=backup["info"]["repository"]["size"])
        restores = [("zst", 1), ("zst", 2), ("lz4", 2)]
        if self.args.smoke:
            restores = restores[1:2]
        for kind, procs in restores:
            label = labels.get((kind, procs)) or labels.get((kind, 2))
            times = [self.restore(label, procs)[0] for dummy in range(self.args.rounds)]
            self.case("physical.restore.%s.p%d" % (kind, procs),
                      "pgbackrest restore + start + recovery, %s, process-max %d" % (kind, procs), times)

    def ours(self):
        """The module through Ansible against the same command by hand, alternated round by round. Each of ours is
        taken apart: ansible's start (the command's wall time less the task's), the module around pgBackRest's
        command (the task less ``command_seconds``: its start and its ``info`` reads), and the command itself,
        beside the same command typed by hand."""
        hand, ours, inner, tasks, sizes = [], [], [], [], []
        for dummy in range(self.args.rounds):
            hand.append(self.pgbackrest("backup", "--type=full", "--process-max=2")[0])
            seconds, result = self.module(dict(command="backup", backup_type="full", process_max=2))
            ours.append(seconds)
            inner.append(result["command_seconds"])
            tasks.append(result["task_seconds"])
            sizes.append((result.get("backup") or {}).get("repo_size"))
        self.case("physical.backup.hand", "by hand: pgbackrest backup full (zst 3, process-max 2)", hand)
        self.case("physical.backup.ours", "ours: atlasia.dr.pgbackrest backup full through ansible", ours,
                  bytes=sizes[-1], command_seconds=_median(inner), task_seconds=_median(tasks),
                  command_runs=[round(c, 2) for c in inner], task_runs=[t and round(t, 2) for t in tasks])
        label = self.newest_label()["label"]
        hand, hand_inner, ours, inner, tasks, calls = [], [], [], [], [], []
        for dummy in range(self.args.rounds):
            seconds, command = self.restore(label, 2)
            hand.append(seconds)
            hand_inner.append(command)
            seconds, command, result = self.restore(label, 2, module=True)
            calls.append(command)
            ours.append(seconds)
            inner.append(result["command_seconds"])
            tasks.append(result["task_seconds"])
        self.case("physical.restore.hand", "by hand: pgbackrest restore + start + recovery (process-max 2)", hand,
                  command_seconds=_median(hand_inner), command_runs=[round(c, 2) for c in hand_inner])
        self.case("physical.restore.ours", "ours: atlasia.dr.pgbackrest restore through ansible + start + recovery",
                  ours, command_seconds=_median(inner), task_seconds=_median(tasks),
                  command_runs=[round(c, 2) for c in inner], task_runs=[t and round(t, 2) for t in tasks],
                  call_runs=[round(c, 2) for c in calls])

    def restore(self, label, procs, module=False):
        target = self.root / "restore" / "data"
        socket = self.root / "restore" / "sock"
        for path in (target, socket):
            if path.exists():
                self.run(self.as_owner(["rm", "-rf", path]))
        self.run(self.as_owner(["mkdir", "-m", "0700", target, socket]))
        port = free_port()
        started = time.monotonic()
        result = None
        if module:
            command, result = self.module(dict(command="restore", pg_path=str(target), set=label, target="immediate",
                                               target_action="promote", archive_mode="off", process_max=procs))
        else:
            command = self.pgbackrest("restore", "--pg1-path=%s" % target, "--set=%s" % label, "--type=immediate",
                                      "--target-action=promote", "--archive-mode=off", "--process-max=%d" % procs)[0]
        self.run(self.as_owner([PG_BINDIR / "pg_ctl", "-D", target, "-l", self.root / "restore" / "pg.log", "-w",
                                "-t", "600", "-o", "-p %d -c listen_addresses='' -c unix_socket_directories=%s" % (
                                    port, socket), "start"]))
        while True:
            out = self.run([PG_BINDIR / "psql", "-XAtq", "-h", socket, "-p", str(port), "-U", self.pg.user,
                            "-d", "bench", "-c", "SELECT pg_is_in_recovery()"])[1].strip()
            if out == "f":
                break
            time.sleep(0.1)
        seconds = time.monotonic() - started
        self.run(self.as_owner([PG_BINDIR / "pg_ctl", "-D", target, "-m", "immediate", "-w", "stop"]))
        # command: the restore step alone (by hand the pgbackrest command; ours the ansible command); the rest of
        # seconds is the start and the recovery, the same for both
        return (seconds, command, result) if module else (seconds, command)

    # -- archive latency -----------------------------------------------------------------------------------
    def archive_latency(self):
        times = []
        for dummy in range(5 if not self.args.smoke else 2):
            self.pg.psql("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now())",
                         db="bench")
            segment = self.pg.scalar("SELECT pg_walfile_name(pg_switch_wal())")
            started = time.monotonic()
            while self.pg.scalar("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
                if time.monotonic() - started > 120:
                    raise RuntimeError("segment %s not archived after 120 s" % segment)
                time.sleep(0.02)
            times.append(time.monotonic() - started)
        self.case("archive.latency", "WAL segment switch -> archived (archive-push)", times)

    # -- report ---------------------------------------------------------------------------------------------
    def report(self):
        cases = dict((c["key"], c) for c in self.results["cases"])
        self.results["load_average"] = os.getloadavg()
        self.results["cpus"] = os.cpu_count()

        def ratios_to(base_key, prefix):
            base = cases.get(base_key)
            return dict((key, round(case["seconds"] / base["seconds"], 3)) for key, case in cases.items()
                        if base and key.startswith(prefix))

        ratios = self.results["restore_ratio_vs_gunzip_psql"] = ratios_to("logical.restore", "physical.restore")
        backup_ratios = self.results["backup_ratio_vs_pg_dump_gzip"] = ratios_to("logical.backup", "physical.backup")
        ours = self.results["ours_vs_by_hand"] = dict(
            (kind, round(cases["physical.%s.ours" % kind]["seconds"] / cases["physical.%s.hand" % kind]["seconds"], 3))
            for kind in ("backup", "restore") if "physical.%s.ours" % kind in cases and "physical.%s.hand" % kind in cases)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d_%H%M%S")
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / ("bench-physical-%s.json" % stamp)).write_text(json.dumps(self.results, indent=2))
        lines = ["# Physical against logical backups (%s)" % stamp, "",
                 "Database %.0f MB (cluster %.0f MB), %d CPUs, load average %.1f/%.1f/%.1f, %d round(s)." % (
                     self.results.get("database_bytes", 0) / 1e6, self.results.get("cluster_bytes", 0) / 1e6,
                     self.results["cpus"], *self.results["load_average"], self.args.rounds), "",
                 "Ratios: a physical backup against `pg_dump | gzip -6`, a physical restore (until the server accepts "
                 "connections) against `gunzip | psql` into an empty database.", "",
                 "| Case | Seconds | Size (MB) | Ratio |", "|---|---|---|---|"]
        for case in self.results["cases"]:
            size = "%.0f" % (case["bytes"] / 1e6) if case.get("bytes") else ""
            lines.append("| %s | %.2f | %s | %s |" % (case["label"].replace("|", "\\|"), case["seconds"], size,
                                                      ratios.get(case["key"], backup_ratios.get(case["key"], ""))))
        if ours:
            lines += ["", "Ours (the module through Ansible) against the same pgBackRest command by hand, same run: %s." % (
                ", ".join("%s %.2fx" % (kind, ratio) for kind, ratio in sorted(ours.items()))),
                "Where ours spends the difference (medians over the rounds of each part, so they need not add up "
                "exactly): %s." % "; ".join(
                    _apart(kind, cases["physical.%s.ours" % kind], cases["physical.%s.hand" % kind])
                    for kind in sorted(ours))]
        (out / ("bench-physical-%s.md" % stamp)).write_text("\n".join(lines) + "\n")
        print("\n".join(lines))

    def stop(self):
        restore = self.root / "restore" / "data"
        if restore.exists() and (restore / "postmaster.pid").exists():
            subprocess.run(self.as_owner([PG_BINDIR / "pg_ctl", "-D", restore, "-m", "immediate", "stop"]),
                           capture_output=True, check=False)
        if self.pg:
            self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)  # the repository and the restored copies: gigabytes


def _task_seconds(task):
    """Seconds between the start and end the json callback gives a task, or None."""
    try:
        times = [datetime.datetime.strptime(task["task"]["duration"][key], "%Y-%m-%dT%H:%M:%S.%fZ")
                 for key in ("start", "end")]
    except (KeyError, TypeError, ValueError):
        return None
    return (times[1] - times[0]).total_seconds()


def _apart(kind, ours, hand):
    """ours - hand for one kind, taken apart round by round (see Bench.ours)."""
    walls, tasks, commands = ours["runs"], ours.get("task_runs") or [], ours.get("command_runs") or []
    hand_walls = hand["runs"]
    hand_commands = hand.get("command_runs") or hand_walls  # a backup typed by hand is its command
    calls = ours.get("call_runs") or walls  # a backup's wall is its ansible call
    if None in tasks or not (len(walls) == len(tasks) == len(commands) == len(hand_walls) == len(hand_commands)):
        return "%s +%.2f s (not taken apart)" % (kind, ours["seconds"] - hand["seconds"])
    parts = [("ansible's start", [c - t for c, t in zip(calls, tasks)]),
             ("the module around the command (its start, `info` reads)", [t - c for t, c in zip(tasks, commands)]),
             ("pgBackRest's command against the same by hand", [c - h for c, h in zip(commands, hand_commands)])]
    if kind == "restore":
        parts.append(("start and recovery against the same by hand",
                      [(w - c) - (hw - hc) for w, c, hw, hc in zip(walls, calls, hand_walls, hand_commands)]))
    total = [w - h for w, h in zip(walls, hand_walls)]
    return "%s %+.2f s (%.2f to %.2f) = %s" % (kind, statistics.median(total), min(total), max(total), " + ".join(
        "%s %+.2f s" % (name, statistics.median(values)) for name, values in parts))


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="scale 1, 1000 rows, one variant")
    parser.add_argument("--out", default=str(REPO / "reports"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.rows, args.rounds = 1, 1000, 1
    bench = Bench(args)
    try:
        bench.start()
        bench.build()
        bench.logical()
        bench.physical()
        bench.ours()
        bench.archive_latency()
        bench.report()
    finally:
        bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
