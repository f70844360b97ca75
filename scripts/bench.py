"""`make bench`: our backup and restore beside the plan's own pipeline, and the fast paths that beat it.

The bench builds its own database on a throwaway PostgreSQL 15 with production-like durability (fsync,
synchronous_commit and full_page_writes on; the test servers turn them off): ``pgbench -i -s SCALE`` plus
ROWS rows of JSON ``workflow_runs`` (default scale 60 + 1 M rows: a ~1 GB plain dump). Then, ROUNDS times:

- backup: ``pg_dump_backup`` with its defaults, with its fastest settings and in directory format, run
  through real Ansible, beside ``pg_dump | gzip -6`` (the plan's pipeline) and the floor ``pg_dump >
  /dev/null``; the module run directly (no Ansible) beside the same pipeline typed by hand;
- restore: ``pg_restore_db`` with and without its safety backup (scratch database and swap included) and
  from the parallel directory dump, beside ``gunzip | psql`` into an empty database; the module run
  directly beside the same pipeline by hand;
- S3: ``s3_backup_transfer`` upload and download (SeaweedFS on 127.0.0.1) beside boto3
  ``upload_file``/``download_file`` with the same storage class and encryption;
- peak memory (largest process of each command tree) at two database sizes;
- file data: a nightly backup of an uploads folder after day 1 (FILES_MB of random data in FILES_COUNT files,
  FILES_CHANGE % of its bytes new each night), kept as a snapshot in the restic repository (``dr_file_repo``)
  beside today's tarball (``dr_archive``), both as the dr_backup role calls them, and ``restic backup`` beside
  ``tar czf`` by hand: seconds and bytes written per night;
- Ansible: one module call through ``ansible`` beside the same module run directly, and the whole
  ``backup.yml`` / ``restore.yml`` on the tiny local environment (make demo's);
- Rebuild: the Molecule scenario ``rebuild`` whole, with the RTO and phases of its rebuild report (no baseline).

Every comparison is a pair run back to back (ours next to its baseline, order alternating between rounds),
so the machine's load drifts cancel out; the table shows medians of times and of the per-pair ratios.
Reports: ``reports/bench-<UTC timestamp>.json`` and ``.md``. A command that fails stops the bench (exit 1);
a figure never does. Every server the bench starts is stopped, also on Ctrl-C.

    scripts/bench.sh [--scale 60] [--rows 1000000] [--rounds 3] [--smoke] [--only backup,restore,...]
                     [--files-mb 287] [--files-count 30] [--files-change 1.0] [--rebuild-rounds 1]
    (environment: BENCH_SCALE, BENCH_ROWS, BENCH_SMALL_SCALE, BENCH_SMALL_ROWS, BENCH_ROUNDS, BENCH_OUT,
     BENCH_FILES_MB, BENCH_FILES_COUNT, BENCH_FILES_CHANGE, BENCH_REBUILD_ROUNDS; --smoke caps the file folder
     at 6 MB and leaves the rebuild group out unless --only names it)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env  # noqa: E402
from tests.support.ansible_run import ansible_env  # noqa: E402
from tests.support.postgres import PG_BINDIR, PostgresServer, quote_ident  # noqa: E402

GROUPS = ("backup", "restore", "s3", "memory", "files", "ansible", "rebuild")
# Groups a --smoke run leaves out unless named in --only: the rebuild runs the Molecule scenario (Docker, minutes).
NOT_IN_SMOKE = ("rebuild",)
# Production-like durability: the bench measures what a real server costs, not a test server.
SERVER_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "max_connections": "50",
    "log_min_messages": "warning",
}
# pg_restore_db's default session_settings, used by the "by hand" restore so it is the same pipeline
SESSION_SETTINGS = "-c maintenance_work_mem=512MB -c synchronous_commit=off"
# pg_dump_backup's defaults (plugins/module_utils/compression.py DEFAULT_LEVEL), typed into the by-hand pipelines
GZIP_LEVEL = 5
FAST_ZSTD_LEVEL = 3
COMMAND_TIMEOUT = 3 * 3600
BUCKET = "bench"

WORKFLOW_SQL = """
CREATE TABLE workflow_runs (
  id bigserial PRIMARY KEY,
  workflow text NOT NULL,
  status text NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  payload jsonb NOT NULL
);
INSERT INTO workflow_runs (workflow, status, started_at, finished_at, payload)
SELECT 'workflow-' || (i % 211),
       (ARRAY['succeeded', 'failed', 'running', 'cancelled'])[1 + (i * 7) % 4],
       timestamptz '2026-01-01 00:00:00+00' + i * interval '13 seconds',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '13 seconds' + ((i * 31) % 3600) * interval '1 second',
       jsonb_build_object(
         'run', i,
         'agent', 'agent-' || (i % 37),
         'model', (ARRAY['gpt-4o', 'claude-sonnet', 'llama-3-70b', 'mistral-large'])[1 + i % 4],
         'tokens', jsonb_build_object('in', (i * 7919) % 20000, 'out', (i * 104729) % 8000),
         'cost_usd', round(((i * 37) % 10000) / 1000.0, 3),
         'steps', jsonb_build_array(
            jsonb_build_object('name', 'plan', 'ms', (i * 13) % 5000, 'ok', true),
            jsonb_build_object('name', 'act', 'ms', (i * 17) % 9000, 'ok', i % 11 <> 0),
            jsonb_build_object('name', 'review', 'ms', (i * 19) % 3000, 'ok', true)),
         'summary', 'Run ' || i || ' of workflow-' || (i % 211) || ' processed ' || ((i * 3) % 977) || ' items')
FROM generate_series(1::bigint, {rows}::bigint) AS i;
CREATE INDEX workflow_runs_workflow_started ON workflow_runs (workflow, started_at);
"""

# Peak RSS through a small launcher: a child forked from this (bigger) Python process would count this
# process's pages in its own peak. GNU time when installed, else a minimal Python launcher (~9 MB floor).
GNU_TIME = "/usr/bin/time"
LAUNCHER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
status, usage = os.wait4(pid, 0)[1:]
with open(sys.argv[1], "w") as handle:
    handle.write("%d\n" % usage.ru_maxrss)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""

BOTO3_SCRIPT = '''"""Plain boto3 transfer for the bench baseline: upload|download FILE BUCKET KEY (endpoint, keys from env)."""
import os, sys
import boto3
client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name=os.environ["AWS_REGION"])
action, path, bucket, key = sys.argv[1:5]
if action == "upload":
    client.upload_file(path, bucket, key, ExtraArgs={"ServerSideEncryption": "AES256", "StorageClass": "STANDARD_IA"})
else:
    client.download_file(bucket, key, path)
'''


class BenchError(RuntimeError):
    """A benchmarked command failed: the bench stops (figures never fail it)."""


def log(text):
    stamp = time.strftime("%H:%M:%S")
    print("[bench %s] %s" % (stamp, text), flush=True)


def checks(tester):
    """What pg_dump_backup does after the dump, typed by hand: the decompression test and both checksums."""
    return "%s -t {out} && md5sum {out} > {out}.md5 && sha256sum {out} > {out}.sha256" % tester


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def path_size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else None


def write_random(path, size, parents=False):
    """A file of ``size`` random bytes (incompressible, as most uploads are), written in 4 MiB blocks."""
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path), "wb") as handle:
        remaining = int(size)
        while remaining > 0:
            block = os.urandom(min(remaining, 4 << 20))
            handle.write(block)
            remaining -= len(block)


def _first_line(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else None


def machine_info():
    info = dict(
        hostname=platform.node(),
        kernel=platform.release(),
        python=platform.python_version(),
        cpus=cpu_count(),
        cpu_model=None,
        memory_gb=None,
        postgresql=_first_line([str(PG_BINDIR / "postgres"), "--version"]),
        pigz=_first_line(["pigz", "--version"]),
        zstd=_first_line(["zstd", "--version"]),
        gzip=_first_line(["gzip", "--version"]),
        ansible_core=_first_line([str(VENV_BIN / "ansible"), "--version"]),
    )
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            info["memory_gb"] = round(int(handle.readline().split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return info


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class Measure(object):
    """One timed command: wall seconds, CPU seconds and peak RSS of its whole process tree."""

    def __init__(self, rc, wall, cpu, maxrss_mb, stdout, stderr):
        self.rc = rc
        self.wall = wall
        self.cpu = cpu
        self.maxrss_mb = maxrss_mb
        self.stdout = stdout
        self.stderr = stderr


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work).resolve()
        self.ncpu = cpu_count()
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.cases = {}
        self.pairs = {}
        self.order = []
        self.artifacts = {}
        self.memory = []
        self.notes = []
        self.database = {}
        self.pg = None
        self.s3 = None
        self.localenv = None
        self.current = None
        self.counter = 0
        self.expected_rows = {}

    # -- running commands -------------------------------------------------------------------------------
    def execute(self, argv, env=None, cwd=None, timeout=COMMAND_TIMEOUT):
        """Run ``argv`` (own process group), wait with wait4 for its rusage; returns a :class:`Measure`."""
        out = tempfile.TemporaryFile(dir=str(self.work))
        err = tempfile.TemporaryFile(dir=str(self.work))
        rss_file = self.work / "maxrss"
        if os.access(GNU_TIME, os.X_OK):
            wrapper = [GNU_TIME, "-f", "%M", "-o", rss_file]
        else:
            wrapper = [sys.executable, "-I", "-S", "-c", LAUNCHER, rss_file]
        try:
            if rss_file.exists():
                rss_file.unlink()
            start = time.monotonic()
            proc = subprocess.Popen([str(a) for a in wrapper + list(argv)], env=env, cwd=str(cwd or REPO), stdout=out,
                                    stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
            self.current = proc
            timer = threading.Timer(timeout, self._kill_current)
            timer.daemon = True
            timer.start()
            try:
                dummy, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.monotonic() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.current = None
            try:
                maxrss_kb = int(rss_file.read_text().split()[-1])
            except (OSError, ValueError, IndexError):
                maxrss_kb = usage.ru_maxrss
            out.seek(0)
            err.seek(0)
            return Measure(proc.returncode, wall, usage.ru_utime + usage.ru_stime, maxrss_kb / 1024.0,
                           out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))
        finally:
            out.close()
            err.close()

    def _kill_current(self):
        proc = self.current
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group of a command this bench started
            except ProcessLookupError:
                pass

    def check(self, measure, what):
        if measure.rc != 0:
            raise BenchError("%s failed (exit %s):\n%s\n%s" % (
                what, measure.rc, measure.stdout[-3000:], measure.stderr[-3000:]))
        return measure

    def pg_env(self, extra=None):
        env = venv_env()
        env.update(PGHOST=self.pg.host, PGPORT=str(self.pg.port), PGUSER=self.pg.user, PGPASSWORD=self.pg.password)
        env.pop("PGDATABASE", None)
        if extra:
            env.update(extra)
        return env

    def shell(self, script, env):
        return ["bash", "-o", "pipefail", "-c", script]

    def sql(self, statement, db="postgres", timeout=3600):
        return self.pg.psql(statement, db=db, timeout=timeout)

    def checkpoint(self):
        """Flush what earlier runs left dirty, so it is not written during the next timed run."""
        self.sql("CHECKPOINT")

    # -- modules through Ansible or directly -------------------------------------------------------------
    def module(self, how, name, args, env):
        """Run atlasia.dr.<name> through ``ansible`` (how='ansible') or as a plain script (how='direct')."""
        if how == "ansible":
            argv = [VENV_BIN / "ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "atlasia.dr." + name,
                    "-a", json.dumps(args), "-e", json.dumps({"ansible_python_interpreter": str(VENV_PYTHON)})]
            full_env = ansible_env(json_output=True)
            full_env.update(env)
        else:
            self.counter += 1
            args_file = self.work / ("args-%d.json" % self.counter)
            fd = os.open(str(args_file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
            argv = [VENV_PYTHON, REPO / "plugins" / "modules" / (name + ".py"), args_file]
            full_env = dict(env)
            full_env["PYTHONPATH"] = str(REPO / ".collections")
        measure = self.execute(argv, env=full_env)
        try:
            data = json.loads(measure.stdout)
            result = data["plays"][0]["tasks"][0]["hosts"]["localhost"] if how == "ansible" else data
        except (ValueError, KeyError, IndexError, TypeError):
            raise BenchError("%s (%s) gave no result (exit %s):\n%s\n%s" % (
                name, how, measure.rc, measure.stdout[-3000:], measure.stderr[-3000:]))
        if result.get("failed") or measure.rc != 0:
            raise BenchError("%s (%s) failed: %s" % (name, how, result.get("msg")))
        return measure, result

    def pg_module_args(self, db, **extra):
        args = dict(db=db, login_host=self.pg.host, port=self.pg.port, login_user=self.pg.user,
                    pg_bin_dir=str(PG_BINDIR))
        args.update(extra)
        return args

    # -- bookkeeping --------------------------------------------------------------------------------------
    def case(self, key, label, group, kind, how):
        self.cases.setdefault(key, dict(key=key, label=label, group=group, kind=kind, how=how, runs=[]))
        if key not in self.order:
            self.order.append(key)
        return key

    def record(self, key, round_no, measure, size=None, **extra):
        entry = dict(round=round_no, wall=round(measure.wall, 3), cpu=round(measure.cpu, 3),
                     maxrss_mb=round(measure.maxrss_mb, 1), size=size, load=loadavg())
        entry.update(extra)
        self.cases[key]["runs"].append(entry)
        log("  %-46s %8.2f s  %7.1f MB peak%s" % (self.cases[key]["label"][:46], measure.wall, measure.maxrss_mb,
                                                  ("  %s bytes" % size) if size else ""))
        return entry

    def pair(self, group, ours, base, label, target=None, size_target=None):
        key = "%s|%s" % (ours, base)
        self.pairs.setdefault(key, dict(group=group, ours=ours, base=base, label=label, target=target,
                                        size_target=size_target, ratios=[], size_ratios=[]))
        return key

    def run_rounds(self, families, rounds, before_round=None):
        """families: [(base_runner, [ours_runner, ...], pair_keys)]. Each round runs, per family, chunks
        ``[ours_a, base, ours_b]`` so every ours run sits next to a base run; odd rounds go in reverse.
        ``before_round(round_no)`` runs untimed at the start of every round (the file bench's nightly change)."""
        for round_no in range(1, rounds + 1):
            log("round %d/%d (load %.1f)" % (round_no, rounds, loadavg() or 0))
            if before_round is not None:
                before_round(round_no)
            sequence = []
            for base, ours_list, pair_keys in families:
                for start in range(0, len(ours_list), 2):
                    chunk = ours_list[start:start + 2]
                    keys = pair_keys[start:start + 2]
                    items = [("ours", chunk[0], keys[0]), ("base", base, None)]
                    if len(chunk) > 1:
                        items.append(("ours", chunk[1], keys[1]))
                    sequence.append(items)
            if round_no % 2 == 0:
                sequence = [list(reversed(items)) for items in reversed(sequence)]
            for items in sequence:
                results = {}
                for role, runner, pair_key in items:
                    results[id(runner) if role == "base" else pair_key] = runner(round_no)
                base_entry = next(v for k, v in results.items() if not isinstance(k, str))
                for role, runner, pair_key in items:
                    if role != "ours":
                        continue
                    entry = results[pair_key]
                    info = self.pairs[pair_key]
                    info["ratios"].append(round(entry["wall"] / base_entry["wall"], 4))
                    if entry.get("size") and base_entry.get("size"):
                        info["size_ratios"].append(round(float(entry["size"]) / base_entry["size"], 4))

    # -- servers ------------------------------------------------------------------------------------------
    def start_pg(self):
        log("starting PostgreSQL 15 on 127.0.0.1 (fsync, synchronous_commit and full_page_writes on)")
        self.pg = PostgresServer(base_dir=self.work / "pg", settings=SERVER_SETTINGS).start()

    def start_s3(self):
        if self.s3 is None:
            from tests.support.seaweedfs import SeaweedS3Server

            log("starting SeaweedFS S3 on 127.0.0.1")
            self.s3 = SeaweedS3Server(directory=str(self.work / "s3")).start(bucket=BUCKET)
        return self.s3

    def s3_env(self):
        env = venv_env()
        env.update(AWS_ACCESS_KEY_ID=self.s3.access_key, AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
                   AWS_ENDPOINT_URL_S3=self.s3.endpoint_url, AWS_REGION=self.s3.region)
        return env

    def stop_all(self):
        for name in ("localenv", "s3", "pg"):
            server = getattr(self, name)
            if server is None:
                continue
            try:
                log("stopping %s" % name)
                server.stop()
            except Exception as exc:  # keep stopping the others
                log("stopping %s failed: %s" % (name, exc))
            setattr(self, name, None)

    # -- the database -------------------------------------------------------------------------------------
    def build_db(self, name, scale, rows):
        log("building %s: pgbench scale %d + %d JSON workflow_runs rows" % (name, scale, rows))
        start = time.monotonic()
        self.pg.createdb(name)
        self.check(self.execute([PG_BINDIR / "pgbench", "-i", "-q", "-s", str(scale), name], env=self.pg_env()),
                   "pgbench -i")
        self.sql(WORKFLOW_SQL.format(rows=int(rows)), db=name)
        self.sql("VACUUM ANALYZE", db=name)
        self.checkpoint()
        size = int(self.pg.scalar("SELECT pg_database_size(%s)" % _literal(name)))
        counts = self.exact_counts(name)
        log("built %s in %.0f s: %.0f MB on disk, %s" % (
            name, time.monotonic() - start, size / 1048576.0, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        return dict(name=name, scale=scale, json_rows=rows, size_bytes=size, rows=counts,
                    build_seconds=round(time.monotonic() - start, 1))

    def exact_counts(self, db):
        tables = self.pg.rows("SELECT schemaname || '.' || relname FROM pg_stat_user_tables ORDER BY 1", db=db)
        parts = ["SELECT %s, count(*) FROM %s" % (_literal(t[0]), ".".join(quote_ident(p) for p in t[0].split(".", 1)))
                 for t in tables]
        return dict((k, int(v)) for k, v in self.pg.rows(" UNION ALL ".join(parts), db=db)) if parts else {}

    # -- backup -------------------------------------------------------------------------------------------
    def out_dir(self, key, round_no):
        path = self.work / "out" / key / ("r%d" % round_no)
        if path.exists():
            shutil.rmtree(str(path))
        path.mkdir(parents=True)
        return path

    def keep(self, key, round_no, path):
        """Keep the newest output of a case (input of later groups); remove the older ones."""
        old = self.artifacts.get(key)
        self.artifacts[key] = Path(path)
        if old is not None and old.parent != Path(path).parent:
            shutil.rmtree(str(old.parent), ignore_errors=True)

    def backup_runner(self, key, db, kind, how=None, module_args=None, script=None):
        """A runner for a backup case: a shell pipeline (script formatted with {out}) or the module."""
        def run(round_no):
            self.checkpoint()
            dest = self.out_dir(key, round_no)
            if script is not None:
                out = dest / "dump"
                measure = self.check(self.execute(self.shell(script.format(out=shlex.quote(str(out))), None),
                                                  env=self.pg_env()), self.cases[key]["label"])
                size = path_size(out) if out.exists() else None
                entry = self.record(key, round_no, measure, size=size)
                if size:
                    self.keep(key, round_no, out)
                else:
                    shutil.rmtree(str(dest), ignore_errors=True)
                return entry
            args = self.pg_module_args(db, dest=str(dest), **(module_args or {}))
            measure, result = self.module(how, "pg_dump_backup", args, self.pg_env())
            entry = self.record(key, round_no, measure, size=result["size"],
                                module_seconds=result.get("duration"),
                                uncompressed=result["manifest_data"].get("uncompressed_size"))
            self.keep(key, round_no, result["path"])
            return entry
        return run

    def backup_specs(self, db, suffix=""):
        """(key, label, kind, how, module_args, script) of every backup case."""
        n = self.ncpu
        dump = "%s --no-password" % (PG_BINDIR / "pg_dump")
        return [
            ("backup.baseline" + suffix, "pg_dump | gzip -6 (the plan)", "baseline", "shell", None,
             "%s -d %s | gzip -6 > {out}" % (PG_BINDIR / "pg_dump", db)),
            ("backup.floor" + suffix, "pg_dump > /dev/null (the floor)", "reference", "shell", None,
             "%s -d %s > /dev/null" % (PG_BINDIR / "pg_dump", db)),
            ("backup.default" + suffix, "pg_dump_backup defaults (plain, .sql.gz)", "ours", "ansible", {}, None),
            ("backup.fastest" + suffix, "pg_dump_backup plain + zstd -%d" % FAST_ZSTD_LEVEL, "ours", "ansible",
             dict(compression="zstd", compression_level=FAST_ZSTD_LEVEL), None),
            ("backup.directory" + suffix, "pg_dump_backup directory, jobs=%d, gzip -1" % n, "ours", "ansible",
             dict(format="directory", jobs=n, compression_level=1), None),
            ("backup.default.direct" + suffix, "pg_dump_backup defaults, no Ansible", "ours", "direct", {}, None),
            ("backup.default.hand" + suffix,
             "same steps by hand: pg_dump | pigz -%d -p%d, then pigz -t, md5sum, sha256sum" % (GZIP_LEVEL, n),
             "baseline", "shell", None,
             "%s --format=plain -d %s | pigz -%d -p %d -c > {out} && %s" % (dump, db, GZIP_LEVEL, n, checks("pigz"))),
            ("backup.default.pipe" + suffix, "the pipeline alone: pg_dump | pigz -%d -p%d (no checks)" % (GZIP_LEVEL, n),
             "reference", "shell", None,
             "%s --format=plain -d %s | pigz -%d -p %d -c > {out}" % (dump, db, GZIP_LEVEL, n)),
            ("backup.fastest.direct" + suffix, "pg_dump_backup plain + zstd, no Ansible", "ours", "direct",
             dict(compression="zstd", compression_level=FAST_ZSTD_LEVEL), None),
            ("backup.fastest.hand" + suffix,
             "same steps by hand: pg_dump | zstd -%d -T%d, then zstd -t, md5sum, sha256sum" % (FAST_ZSTD_LEVEL, n),
             "baseline", "shell", None,
             "%s --format=plain -d %s | zstd -q -%d -T%d -c > {out} && %s" % (dump, db, FAST_ZSTD_LEVEL, n,
                                                                              checks("zstd -q"))),
            ("backup.fastest.pipe" + suffix,
             "the pipeline alone: pg_dump | zstd -%d -T%d (no checks)" % (FAST_ZSTD_LEVEL, n), "reference", "shell",
             None, "%s --format=plain -d %s | zstd -q -%d -T%d -c > {out}" % (dump, db, FAST_ZSTD_LEVEL, n)),
        ]

    def group_backup(self, rounds):
        log("== backup (%d rounds)" % rounds)
        runners = {}
        for key, label, kind, how, module_args, script in self.backup_specs("bench"):
            self.case(key, label, "backup", kind, how)
            runners[key] = self.backup_runner(key, "bench", kind, how, module_args, script)
        pairs = [
            self.pair("backup", "backup.default", "backup.baseline", "default vs the plan", target=0.85),
            self.pair("backup", "backup.fastest", "backup.baseline", "fastest vs the plan", target=0.5,
                      size_target=0.9),
            self.pair("backup", "backup.directory", "backup.baseline", "directory dump vs the plan"),
            self.pair("backup", "backup.floor", "backup.baseline", "floor vs the plan"),
        ]
        families = [
            (runners["backup.baseline"],
             [runners[k] for k in ("backup.default", "backup.fastest", "backup.directory", "backup.floor")], pairs),
            (runners["backup.default.hand"], [runners["backup.default.direct"], runners["backup.default.pipe"]],
             [self.pair("overhead", "backup.default.direct", "backup.default.hand", "module vs by hand (default)",
                        target=1.05),
              self.pair("overhead", "backup.default.pipe", "backup.default.hand", "pipeline without its checks")]),
            (runners["backup.fastest.hand"], [runners["backup.fastest.direct"], runners["backup.fastest.pipe"]],
             [self.pair("overhead", "backup.fastest.direct", "backup.fastest.hand", "module vs by hand (fastest)",
                        target=1.05),
              self.pair("overhead", "backup.fastest.pipe", "backup.fastest.hand", "pipeline without its checks")]),
        ]
        self.run_rounds(families, rounds)

    # -- restore ------------------------------------------------------------------------------------------
    def ensure_artifact(self, key, db="bench"):
        if key in self.artifacts and self.artifacts[key].exists():
            return self.artifacts[key]
        spec = next(s for s in self.backup_specs(db, "") if s[0] == key.split("@", maxsplit=1)[0])
        self.case(key, spec[1] + " (input)", "inputs", spec[2], spec[3])
        self.backup_runner(key, db, spec[2], "direct" if spec[3] == "ansible" else spec[3], spec[4], spec[5])(0)
        return self.artifacts[key]

    def restore_runner(self, key, src_key, how=None, module_args=None, script=None, target="restored",
                       rows_from="bench", replaces=False):
        """``replaces``: the script replaces a database holding the source's content (as a restore in place
        does), instead of loading into an empty one."""
        def run(round_no):
            src = self.ensure_artifact(src_key, rows_from)
            if script is not None:
                self.pg.dropdb(target)
                if replaces:
                    self.sql("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY"
                             % (quote_ident(target), quote_ident(rows_from)))
                else:
                    self.pg.createdb(target)
                safety = self.work / "safety"
                safety.mkdir(exist_ok=True)
                self.checkpoint()
                command = script.format(src=shlex.quote(str(src)), db=target, safety=shlex.quote(str(safety)))
                measure = self.check(self.execute(self.shell(command, None), env=self.pg_env()),
                                     self.cases[key]["label"])
                entry = self.record(key, round_no, measure)
                self.pg.dropdb(target)
                shutil.rmtree(str(safety), ignore_errors=True)
                return entry
            # every restore replaces the same thing: a vacuumed copy of the source (the safety backup dumps it)
            self.drop_restored(target)
            self.sql("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY" % (quote_ident(target), quote_ident(rows_from)))
            self.checkpoint()
            safety = self.work / "safety"
            safety.mkdir(exist_ok=True)
            args = self.pg_module_args(target, src=str(src), safety_backup_dir=str(safety), **(module_args or {}))
            measure, result = self.module(how, "pg_restore_db", args, self.pg_env())
            if result.get("rows") != self.expected_rows.get(rows_from):
                raise BenchError("%s restored %s rows, expected %s" % (key, result.get("rows"),
                                                                       self.expected_rows.get(rows_from)))
            entry = self.record(key, round_no, measure, module_seconds=result.get("duration"),
                                safety_backup=bool(result.get("safety_backup")), timings=result.get("timings"))
            # at once: autovacuum would otherwise work through the fresh copy during the next timed runs
            self.drop_restored(target)
            shutil.rmtree(str(safety), ignore_errors=True)
            return entry
        return run

    def drop_restored(self, target):
        for name in self.pg.databases():
            if name == target or name.startswith(target + "_previous_"):
                self.pg.dropdb(name)

    def group_restore(self, rounds):
        log("== restore (%d rounds)" % rounds)
        n = self.ncpu
        psql = "%s -X -q" % (PG_BINDIR / "psql")
        # the exact row counts pg_restore_db takes of what it loaded
        count_sql = "; ".join("SELECT count(*) FROM %s" % ".".join(quote_ident(p) for p in table.split(".", 1))
                              for table in sorted(self.expected_rows.get("bench") or {}))
        specs = [
            ("restore.baseline", "gunzip | psql into an empty database (the plan)", "baseline", "shell",
             "backup.baseline", None, "gunzip -c {src} | %s -d {db} > /dev/null" % psql),
            ("restore.default", "pg_restore_db defaults (safety backup on)", "ours", "ansible", "backup.default", {},
             None),
            ("restore.plan", "the plan's restore script: pg_dump | gzip -6 safety dump, dropdb, createdb, gunzip | psql",
             "baseline", "shell", "backup.baseline", None,
             "%s -d {db} | gzip -6 > {safety}/plan_safety.sql.gz && %s {db} && %s {db} && gunzip -c {src} | "
             "%s -d {db} > /dev/null" % (PG_BINDIR / "pg_dump", PG_BINDIR / "dropdb", PG_BINDIR / "createdb", psql)),
            ("restore.default.plan", "pg_restore_db defaults, beside the plan's script", "ours", "ansible",
             "backup.default", {}, None),
            ("restore.onejob.plan", "pg_restore_db defaults but jobs=1 (one psql session), beside the plan's script",
             "ours", "ansible", "backup.default", dict(jobs=1), None),
            ("restore.level5.plan", "pg_restore_db defaults but a safety dump at gzip level 5 (the default before "
             "level 1), beside the plan's script", "ours", "ansible", "backup.default",
             dict(safety_backup_compression_level=5), None),
            ("restore.nosafety", "pg_restore_db, safety_backup=false", "ours", "ansible", "backup.default",
             dict(safety_backup=False), None),
            ("restore.fastest", "pg_restore_db directory dump, jobs=%d, no safety backup" % n, "ours", "ansible",
             "backup.directory", dict(safety_backup=False, jobs=n), None),
            ("restore.fastest.hand", "by hand: pg_restore -j%d from the directory dump" % n, "reference", "shell",
             "backup.directory", None,
             "PGOPTIONS=%s %s -j %d --exit-on-error -d {db} {src}" % (
                 shlex.quote(SESSION_SETTINGS), PG_BINDIR / "pg_restore", n)),
            # jobs=1: the same single psql as the steps by hand, so the pair measures the module's own overhead
            ("restore.nosafety.direct", "pg_restore_db, safety_backup=false, jobs=1, no Ansible", "ours", "direct",
             "backup.default", dict(safety_backup=False, jobs=1), None),
            ("restore.hand",
             "same steps by hand: md5sum -c, sha256sum -c, pigz -t, pigz -d | psql (same session settings), "
             "count rows", "baseline", "shell", "backup.default", None,
             "cd $(dirname {src}) && md5sum -c --quiet $(basename {src}).md5 && sha256sum -c --quiet "
             "$(basename {src}).sha256 && pigz -t {src} && pigz -d -c {src} | PGOPTIONS=%s %s -v ON_ERROR_STOP=1 "
             "-d {db} > /dev/null && %s -At -d {db} -c %s > /dev/null" % (
                 shlex.quote(SESSION_SETTINGS), psql, psql, shlex.quote(count_sql))),
            ("restore.pipe", "the pipeline alone: pigz -d | psql (same session settings, no checks)", "reference",
             "shell", "backup.default", None,
             "pigz -d -c {src} | PGOPTIONS=%s %s -v ON_ERROR_STOP=1 -d {db} > /dev/null" % (
                 shlex.quote(SESSION_SETTINGS), psql)),
        ]
        wrapper = os.path.basename(os.path.realpath("/usr/bin/psql")) == "pg_wrapper"
        if wrapper:  # Debian's /usr/bin/psql: the same restore with every client program started through it
            specs.append(("restore.wrapper.plan", "pg_restore_db defaults but every client program through Debian's "
                          "pg_wrapper (pg_bin_dir=/usr/bin), beside the plan's script", "ours", "ansible",
                          "backup.default", dict(pg_bin_dir="/usr/bin"), None))
        runners = {}
        for key, label, kind, how, src_key, module_args, script in specs:
            self.case(key, label, "restore", kind, how)
            runners[key] = self.restore_runner(key, src_key, how, module_args, script,
                                               target="restore_base" if script else "restored",
                                               replaces=key == "restore.plan")
        families = [
            (runners["restore.baseline"],
             [runners[k] for k in ("restore.default", "restore.nosafety", "restore.fastest", "restore.fastest.hand")],
             [self.pair("restore", "restore.default", "restore.baseline", "default (safety backup) vs the plan"),
              self.pair("restore", "restore.nosafety", "restore.baseline", "no safety backup vs the plan"),
              self.pair("restore", "restore.fastest", "restore.baseline", "fastest vs the plan", target=0.75),
              self.pair("restore", "restore.fastest.hand", "restore.baseline", "pg_restore -j by hand vs the plan")]),
            (runners["restore.plan"], [runners[k] for k in ("restore.default.plan", "restore.onejob.plan",
                                                            "restore.level5.plan", "restore.wrapper.plan")
                                       if k in runners],
             [self.pair("restore", "restore.default.plan", "restore.plan",
                        "default (jobs: one per CPU) vs the plan's whole restore script (its safety dump included)",
                        target=0.5),
              self.pair("restore", "restore.onejob.plan", "restore.plan",
                        "jobs=1 vs the plan's whole restore script (its safety dump included)"),
              self.pair("restore", "restore.level5.plan", "restore.plan",
                        "safety dump at gzip level 5 vs the plan's whole restore script")]
             + ([self.pair("restore", "restore.wrapper.plan", "restore.plan",
                           "client programs through pg_wrapper vs the plan's whole restore script")] if wrapper else [])),
            (runners["restore.hand"], [runners["restore.nosafety.direct"], runners["restore.pipe"]],
             [self.pair("overhead", "restore.nosafety.direct", "restore.hand", "module vs by hand (restore)",
                        target=1.05),
              self.pair("overhead", "restore.pipe", "restore.hand", "pipeline without its checks")]),
        ]
        if self.args.restore_pairs:
            keep = set(self.args.restore_pairs)
            chosen = []
            for base, ours_list, pair_keys in families:
                kept = [(o, k) for o, k in zip(ours_list, pair_keys) if self.pairs[k]["ours"] in keep]
                for o, k in zip(ours_list, pair_keys):
                    if self.pairs[k]["ours"] not in keep:
                        del self.pairs[k]
                if kept:
                    chosen.append((base, [o for o, k in kept], [k for o, k in kept]))
            families = chosen
        self.run_rounds(families, rounds)

    # -- S3 -----------------------------------------------------------------------------------------------
    def s3_runners(self, src_key, suffix=""):
        script = self.work / "boto3_transfer.py"
        script.write_text(BOTO3_SCRIPT)
        down_key = "src%s/" % suffix

        def source():
            return self.ensure_artifact(src_key)

        def uploaded():
            if ("s3", src_key) not in self.artifacts:
                measure, result = self.module("direct", "s3_backup_transfer",
                                              dict(mode="upload", src=str(source()), bucket=BUCKET, prefix=down_key),
                                              self.s3_env())
                self.artifacts[("s3", src_key)] = result["key"]
            return self.artifacts[("s3", src_key)]

        def module_upload(key, how):
            def run(round_no):
                measure, result = self.module(how, "s3_backup_transfer", dict(
                    mode="upload", src=str(source()), bucket=BUCKET, prefix="%s-%d-%d/" % (key, round_no, self.counter)),
                    self.s3_env())
                return self.record(key, round_no, measure, size=result["size"])
            return run

        def module_download(key, how):
            def run(round_no):
                dest = self.out_dir(key, round_no)
                measure, result = self.module(how, "s3_backup_transfer", dict(
                    mode="download", key=uploaded(), bucket=BUCKET, dest=str(dest) + "/"), self.s3_env())
                entry = self.record(key, round_no, measure, size=result["size"])
                shutil.rmtree(str(dest), ignore_errors=True)
                return entry
            return run

        def boto_upload(key):
            def run(round_no):
                self.counter += 1
                measure = self.check(self.execute([VENV_PYTHON, script, "upload", source(), BUCKET,
                                                   "boto-%d/%s" % (self.counter, source().name)], env=self.s3_env()),
                                     "boto3 upload_file")
                return self.record(key, round_no, measure, size=path_size(source()))
            return run

        def boto_download(key):
            def run(round_no):
                dest = self.out_dir(key, round_no)
                measure = self.check(self.execute([VENV_PYTHON, script, "download", dest / "object", BUCKET, uploaded()],
                                                  env=self.s3_env()), "boto3 download_file")
                entry = self.record(key, round_no, measure, size=path_size(dest / "object"))
                shutil.rmtree(str(dest), ignore_errors=True)
                return entry
            return run

        return module_upload, module_download, boto_upload, boto_download

    def group_s3(self, rounds):
        log("== S3 (%d rounds)" % rounds)
        self.start_s3()
        module_upload, module_download, boto_upload, boto_download = self.s3_runners("backup.default")
        cases = [
            ("s3.upload.boto3", "boto3 upload_file (same class and encryption)", "baseline", "python",
             boto_upload("s3.upload.boto3")),
            ("s3.upload", "s3_backup_transfer upload (with sidecars)", "ours", "ansible",
             module_upload("s3.upload", "ansible")),
            ("s3.upload.direct", "s3_backup_transfer upload, no Ansible", "ours", "direct",
             module_upload("s3.upload.direct", "direct")),
            ("s3.download.boto3", "boto3 download_file", "baseline", "python", boto_download("s3.download.boto3")),
            ("s3.download", "s3_backup_transfer download (verified)", "ours", "ansible",
             module_download("s3.download", "ansible")),
            ("s3.download.direct", "s3_backup_transfer download, no Ansible", "ours", "direct",
             module_download("s3.download.direct", "direct")),
        ]
        runners = {}
        for key, label, kind, how, runner in cases:
            self.case(key, label, "s3", kind, how)
            runners[key] = runner
        families = [
            (runners["s3.upload.boto3"], [runners["s3.upload"], runners["s3.upload.direct"]],
             [self.pair("s3", "s3.upload", "s3.upload.boto3", "upload vs boto3"),
              self.pair("s3", "s3.upload.direct", "s3.upload.boto3", "upload (no Ansible) vs boto3")]),
            (runners["s3.download.boto3"], [runners["s3.download"], runners["s3.download.direct"]],
             [self.pair("s3", "s3.download", "s3.download.boto3", "download vs boto3"),
              self.pair("s3", "s3.download.direct", "s3.download.boto3", "download (no Ansible) vs boto3")]),
        ]
        self.run_rounds(families, rounds)

    # -- memory at a second size -----------------------------------------------------------------------------
    def group_memory(self):
        log("== memory at a second database size")
        small = self.build_db("bench_small", self.args.small_scale, self.args.small_rows)
        self.database["small"] = small
        self.expected_rows["bench_small"] = small["rows"]
        specs = dict((s[0], s) for s in self.backup_specs("bench_small"))
        checks = []
        for key in ("backup.default.direct", "backup.fastest.direct"):
            spec = specs[key]
            small_key = key + "@small"
            self.case(small_key, spec[1] + " (small db)", "memory", spec[2], spec[3])
            self.backup_runner(small_key, "bench_small", spec[2], spec[3], spec[4], spec[5])(1)
            checks.append((key, small_key))
        self.artifacts["backup.default@small"] = self.artifacts["backup.default.direct@small"]
        self.case("restore.nosafety.direct@small", "pg_restore_db, no safety backup, no Ansible (small db)", "memory",
                  "ours", "direct")
        self.restore_runner("restore.nosafety.direct@small", "backup.default@small", "direct",
                            dict(safety_backup=False, jobs=1), None, target="restored_small",
                            rows_from="bench_small")(1)
        checks.append(("restore.nosafety.direct", "restore.nosafety.direct@small"))
        if self.s3 is not None or "s3" in self.args.only:
            self.start_s3()
            module_upload, module_download, boto_upload, boto_download = self.s3_runners("backup.default@small",
                                                                                         suffix="-small")
            for key, runner in (("s3.upload.direct@small", module_upload("s3.upload.direct@small", "direct")),
                                ("s3.download.direct@small", module_download("s3.download.direct@small", "direct"))):
                self.case(key, "s3_backup_transfer %s, no Ansible (small db)" % key.split(".")[1], "memory", "ours",
                          "direct")
                runner(1)
                checks.append((key.split("@", maxsplit=1)[0], key))
        for big, small_key in checks:
            big_runs = self.cases.get(big, {}).get("runs") or []
            small_runs = self.cases[small_key]["runs"]
            self.memory.append(dict(
                case=big, label=self.cases.get(big, self.cases[small_key])["label"],
                small_peak_mb=median([r["maxrss_mb"] for r in small_runs]),
                big_peak_mb=median([r["maxrss_mb"] for r in big_runs]),
                small_seconds=median([r["wall"] for r in small_runs]),
                big_seconds=median([r["wall"] for r in big_runs])))
        for name in ("restored_small",):
            self.pg.dropdb(name)

    # -- file data: a night after day 1, repository against tarball --------------------------------------
    def files_folder(self):
        """The uploads folder of the file bench: ``files_count`` files of random data (incompressible, as uploads
        mostly are: PDFs, images), ``files_mb`` MB in all, under <work>/files/srv/atlasia/uploads."""
        folder = self.work / "files" / "srv" / "atlasia" / "uploads"
        folder.mkdir(parents=True)
        total = int(self.args.files_mb * 1048576)
        count = max(1, self.args.files_count)
        for index in range(count):
            size = total // count + (1 if index < total % count else 0)
            sub = folder / ("%04d" % (2020 + index % 6))
            sub.mkdir(exist_ok=True)
            write_random(sub / ("upload-%03d.bin" % index), size)
        return folder, total, count

    def files_change(self, folder, total, round_no):
        """One night's change: ``files_change`` % of the folder's bytes are new, half as a file added, half
        rewritten in the middle of an existing file (a modified upload)."""
        changed = int(total * self.args.files_change / 100.0)
        added = changed // 2
        write_random(folder / "new" / ("night-%02d.bin" % round_no), added, parents=True)
        victims = sorted(p for p in folder.rglob("upload-*.bin"))
        victim = victims[(round_no * 7) % len(victims)]
        size = victim.stat().st_size
        rewrite = min(changed - added, size)
        with open(str(victim), "r+b") as handle:
            handle.seek((size - rewrite) // 2)
            handle.write(os.urandom(rewrite))
        log("  night %d: %d bytes added (new/night-%02d.bin), %d bytes rewritten in %s" % (
            round_no, added, round_no, rewrite, victim.relative_to(folder)))
        return added + rewrite

    def group_files(self, rounds):
        """Bytes and seconds of a nightly file backup after day 1: the set's file component kept as a snapshot in
        the restic repository (dr_file_repo, as the dr_backup role calls it) against today's tarball (dr_archive, as
        the role calls it), both on the same folder after the same change; beside them ``restic backup`` and
        ``tar czf`` by hand. Bytes written: the tarball's folder (archive, sidecars, manifest), the growth of the
        repository's directory."""
        log("== file data: %d files, %.0f MB of random data; %.1f%% of the bytes new each night (%d rounds)" % (
            self.args.files_count, self.args.files_mb, self.args.files_change, rounds))
        folder, total, count = self.files_folder()
        self.database["files"] = dict(files=count, bytes=total, change_percent=self.args.files_change, nights=[])
        key = "bench-files-key"  # the environment's secret the module derives the repository password from
        day1 = datetime.datetime(2026, 11, 1, 2, 0, 0)
        repos = dict(module=self.work / "files" / "repo-module", hand=self.work / "files" / "repo-hand",
                     steps=self.work / "files" / "repo-steps")
        restic_bin = shutil.which("restic")
        if restic_bin is None:
            raise BenchError("restic is not installed (Debian package restic): the file bench needs it")

        def stamp(night):
            return (day1 + datetime.timedelta(days=night)).strftime("%Y%m%d_%H%M%S")

        def hand_env(which):
            env = venv_env()
            for name in ("RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY",
                         "RESTIC_REPOSITORY_FILE"):
                env.pop(name, None)
            env.update(RESTIC_PASSWORD="bench-files-password", RESTIC_REPOSITORY=str(repos[which]),
                       RESTIC_CACHE_DIR=str(self.work / "files" / ("cache-" + which)))
            return env

        tags = "--tag set={ts} --tag component=uploads"
        # restic backup alone, by hand (restic finds the parent itself: same host and paths)
        hand_backup = "%s backup --json --quiet %s %s > /dev/null" % (restic_bin, tags, shlex.quote(str(folder)))
        # the restic calls dr_file_repo makes into a local repository, typed by hand: the backup alone (restic picks
        # the parent; the snapshot's full id and the repository's size are read from its folder)
        steps = hand_backup

        def module_repo(case_key, night_of):
            def run(round_no):
                before = path_size(repos["module"]) or 0
                args = dict(repository=str(repos["module"]), paths=[str(folder)], component="uploads",
                            timestamp=stamp(night_of(round_no)), key=key,
                            cache_dir=str(self.work / "files" / "cache-module"))
                measure, result = self.module("direct", "dr_file_repo", args, venv_env())
                return self.record(case_key, round_no, measure, size=(path_size(repos["module"]) or 0) - before,
                                   module_seconds=result.get("duration"), bytes_added=result.get("bytes_added"),
                                   files_new=result.get("files_new"), files_changed=result.get("files_changed"),
                                   repository_bytes=result.get("total_bytes"))
            return run

        def hand_repo(case_key, which, script, night_of):
            def run(round_no):
                before = path_size(repos[which]) or 0
                command = script.format(ts=stamp(night_of(round_no)))
                measure = self.check(self.execute(self.shell(command, None), env=hand_env(which)),
                                     self.cases[case_key]["label"])
                return self.record(case_key, round_no, measure, size=(path_size(repos[which]) or 0) - before)
            return run

        def module_tarball(case_key):
            def run(round_no):
                dest = self.out_dir(case_key, round_no)
                args = dict(paths=[str(folder)], dest=str(dest), prefix="uploads", timestamp=stamp(round_no),
                            mode="0600")
                measure, result = self.module("direct", "dr_archive", args, venv_env())
                entry = self.record(case_key, round_no, measure, size=path_size(dest), archive_bytes=result["size"],
                                    module_seconds=result.get("duration"))
                shutil.rmtree(str(dest), ignore_errors=True)
                return entry
            return run

        def hand_tarball(case_key):
            def run(round_no):
                dest = self.out_dir(case_key, round_no)
                out = dest / ("uploads_%s.tar.gz" % stamp(round_no))
                measure = self.check(self.execute(["tar", "-czf", out, "-C", "/", str(folder).lstrip("/")]),
                                     self.cases[case_key]["label"])
                entry = self.record(case_key, round_no, measure, size=path_size(dest))
                shutil.rmtree(str(dest), ignore_errors=True)
                return entry
            return run

        n = self.ncpu
        cases = [
            ("files.repo.day1", "day 1: dr_file_repo, first snapshot (creates the repository), no Ansible",
             "reference", "direct", module_repo("files.repo.day1", lambda r: 0)),
            ("files.repo.hand.day1", "day 1 by hand: restic init, restic backup", "reference", "shell",
             hand_repo("files.repo.hand.day1", "hand", "%s init --quiet > /dev/null && %s" % (restic_bin, hand_backup),
                       lambda r: 0)),
            ("files.repo.steps.day1", "day 1, the same restic calls as dr_file_repo by hand (restic init first)",
             "reference", "shell",
             hand_repo("files.repo.steps.day1", "steps", "%s init --quiet > /dev/null && %s" % (restic_bin, steps),
                       lambda r: 0)),
            ("files.tarball", "night: dr_archive uploads tarball (pigz -%d -p%d, read back, sidecars), no Ansible"
             % (GZIP_LEVEL, n), "baseline", "direct", module_tarball("files.tarball")),
            ("files.repo", "night: dr_file_repo snapshot into the local repository, no Ansible", "ours", "direct",
             module_repo("files.repo", lambda r: r)),
            ("files.repo.steps", "night: the same restic call by hand (backup; the rest is read from the folder)",
             "ours", "shell", hand_repo("files.repo.steps", "steps", steps, lambda r: r)),
            ("files.tarball.hand", "night: tar czf of the folder (the plan)", "baseline", "shell",
             hand_tarball("files.tarball.hand")),
            ("files.repo.hand", "night: restic backup of the folder by hand", "ours", "shell",
             hand_repo("files.repo.hand", "hand", hand_backup, lambda r: r)),
        ]
        runners = {}
        for case_key, label, kind, how, runner in cases:
            self.case(case_key, label, "files", kind, how)
            runners[case_key] = runner
        log("  day 1 (night 0): first snapshots")
        for case_key in ("files.repo.day1", "files.repo.hand.day1", "files.repo.steps.day1"):
            runners[case_key](0)

        def before_round(round_no):
            self.database["files"]["nights"].append(self.files_change(folder, total, round_no))

        families = [
            (runners["files.tarball"], [runners["files.repo"], runners["files.repo.steps"]],
             [self.pair("files", "files.repo", "files.tarball", "repository vs tarball, a night after day 1",
                        target=0.05, size_target=0.05),
              self.pair("files", "files.repo.steps", "files.tarball", "the same restic calls by hand vs tarball")]),
            (runners["files.tarball.hand"], [runners["files.repo.hand"]],
             [self.pair("files", "files.repo.hand", "files.tarball.hand", "restic backup vs tar czf, by hand")]),
        ]
        self.run_rounds(families, rounds, before_round=before_round)
        # ratios of runs of the same round that are not back to back: the module against the same calls by hand,
        # and the collection's tarball against tar czf
        for ours, base, label in (("files.repo", "files.repo.steps", "module vs the same restic calls by hand"),
                                  ("files.tarball", "files.tarball.hand", "dr_archive vs tar czf")):
            info = self.pairs[self.pair("files", ours, base, label)]
            by_round = dict((r["round"], r) for r in self.cases[base]["runs"])
            for run in self.cases[ours]["runs"]:
                other = by_round.get(run["round"])
                if other is None or not other["wall"]:
                    continue
                info["ratios"].append(round(run["wall"] / other["wall"], 4))
                if run.get("size") and other.get("size"):
                    info["size_ratios"].append(round(float(run["size"]) / other["size"], 4))

    # -- Ansible on the tiny local environment ----------------------------------------------------------
    def group_ansible(self, rounds):
        log("== Ansible overhead on the tiny local environment (rounds: %d)" % rounds)
        from tests.support.localenv import DB_NAME, LocalEnvironment

        self.localenv = LocalEnvironment(root=self.work / "localenv").start()
        env_ = self.localenv
        vars_file = env_.write_vars(dr_reports_dir=str(self.work / "localenv" / "reports"))
        pg_env = venv_env()
        pg_env.update(PGPASSWORD=env_.pg.password)

        def module_run(key, how):
            def run(round_no):
                dest = self.out_dir(key, round_no)
                args = dict(db=DB_NAME, login_host=env_.pg.host, port=env_.pg.port, login_user=env_.pg.user,
                            pg_bin_dir=str(PG_BINDIR), dest=str(dest))
                measure, result = self.module(how, "pg_dump_backup", args, pg_env)
                entry = self.record(key, round_no, measure, size=result["size"])
                shutil.rmtree(str(dest), ignore_errors=True)
                return entry
            return run

        def playbook(key, name):
            def run(round_no):
                argv = [VENV_BIN / "ansible-playbook", "playbooks/%s" % name, "-e", "env=local", "-e",
                        "@%s" % vars_file, "-e", "ansible_python_interpreter=%s" % VENV_PYTHON]
                env = venv_env({"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                                "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "100"})
                measure = self.check(self.execute(argv, env=env), "ansible-playbook %s" % name)
                tasks = task_times(measure.stdout)
                return self.record(key, round_no, measure, tasks=len(tasks), task_seconds=round(sum(tasks.values()), 2),
                                   slowest_tasks=sorted(tasks.items(), key=lambda kv: -kv[1])[:6])
            return run

        cases = [
            ("ansible.module.direct", "pg_dump_backup on the tiny db, no Ansible", "baseline", "direct",
             module_run("ansible.module.direct", "direct")),
            ("ansible.module", "pg_dump_backup on the tiny db through ansible", "ours", "ansible",
             module_run("ansible.module", "ansible")),
            ("ansible.backup_yml", "whole playbooks/backup.yml (tiny db, Vault, files, S3)", "ours", "playbook",
             playbook("ansible.backup_yml", "backup.yml")),
            ("ansible.restore_yml", "whole playbooks/restore.yml (tiny db, Vault)", "ours", "playbook",
             playbook("ansible.restore_yml", "restore.yml")),
        ]
        runners = {}
        for key, label, kind, how, runner in cases:
            self.case(key, label, "ansible", kind, how)
            runners[key] = runner
        self.run_rounds([(runners["ansible.module.direct"], [runners["ansible.module"]],
                          [self.pair("ansible", "ansible.module", "ansible.module.direct", "one module call")])],
                        rounds)
        for round_no in range(1, rounds + 1):
            runners["ansible.backup_yml"](round_no)
            runners["ansible.restore_yml"](round_no)
        self.localenv.stop()
        self.localenv = None

    # -- rebuild (Scenario 2) ---------------------------------------------------------------------------
    def group_rebuild(self, rounds):
        """The Molecule scenario ``rebuild`` whole (playbooks/rebuild.yml on a bare container), ``rounds`` times: the
        RTO and phases its rebuild report measured (from the first package installed to the traffic switch). There
        is no plain baseline; the target (issue 18) is 90 s on this machine."""
        key = self.case("rebuild.rto", "rebuild RTO, Scenario 2 (molecule rebuild)", "rebuild", "ours", "playbook")
        env = venv_env({"ANSIBLE_HOME": str(REPO / ".ansible")})
        for script in ("docker-engine.sh", "build-images.sh"):  # untimed: the engine and the images, when missing
            self.check(self.execute([REPO / "scripts" / script], env=env), "scripts/%s" % script)
        for round_no in range(1, rounds + 1):
            out = self.work / ("rebuild-report-%d.json" % round_no)
            run_env = dict(env, MOLECULE_DR_REPORT_OUT=str(out))
            measure = self.check(self.execute([VENV_BIN / "molecule", "test", "-s", "rebuild"], env=run_env),
                                 "molecule test -s rebuild")
            report = json.loads(out.read_text())
            phases = dict((p["name"], p["duration_seconds"]) for p in report["phases"])
            entry = self.record(key, round_no, measure, rto_seconds=report["rto_seconds"], phases=phases,
                                verified=report["verified"])
            log("  rebuild RTO %.1f s (%s)" % (report["rto_seconds"], ", ".join(
                "%s %.1f" % item for item in phases.items())))
            if not entry["verified"]:
                raise BenchError("the rebuild report of round %d is not verified: %s" % (round_no, out))

    # -- report -----------------------------------------------------------------------------------------
    def summary(self):
        cases = {}
        for key in self.order:
            info = self.cases[key]
            runs = info["runs"]
            cases[key] = dict(info, median_seconds=median([r["wall"] for r in runs]),
                              median_cpu_seconds=median([r["cpu"] for r in runs]),
                              peak_rss_mb=max([r["maxrss_mb"] for r in runs]) if runs else None,
                              median_size=median([r["size"] for r in runs]))
        pairs = []
        for key, info in self.pairs.items():
            item = dict(info, median_ratio=median(info["ratios"]), median_size_ratio=median(info["size_ratios"]))
            if info["target"] is not None and item["median_ratio"] is not None:
                item["met"] = item["median_ratio"] <= info["target"] and (
                    info["size_target"] is None or (item["median_size_ratio"] or 99) <= info["size_target"])
            pairs.append(item)
        targets = []

        def pair_of(ours, base):
            return next((p for p in pairs if p["ours"] == ours and p["base"] == base), None)

        for ours, base, text in (
                ("backup.default", "backup.baseline", "default backup <= 0.85 x pg_dump | gzip -6"),
                ("backup.fastest", "backup.baseline", "fastest backup <= 0.5 x pg_dump | gzip -6 at <= 0.9 x the size"),
                ("restore.fastest", "restore.baseline", "fastest restore <= 0.75 x gunzip | psql"),
                ("restore.default.plan", "restore.plan",
                 "default restore <= 0.5 x the plan's whole script (safety dump included)"),
                ("backup.default.direct", "backup.default.hand", "module overhead <= 1.05 x by hand (backup, default)"),
                ("backup.fastest.direct", "backup.fastest.hand", "module overhead <= 1.05 x by hand (backup, fastest)"),
                ("restore.nosafety.direct", "restore.hand", "module overhead <= 1.05 x by hand (restore)"),
                ("files.repo", "files.tarball",
                 "file data, a night after day 1: repository <= 0.05 x the tarball's time and bytes")):
            item = pair_of(ours, base)
            if item is not None and item.get("median_ratio") is not None:
                measured = "%.2f" % item["median_ratio"]
                if item.get("size_target") is not None and item.get("median_size_ratio") is not None:
                    measured += ", size %.2f" % item["median_size_ratio"]
                targets.append(dict(target=text, measured=measured, met=item.get("met")))
        yml = cases.get("ansible.backup_yml")
        if yml and yml["median_seconds"] is not None:
            targets.append(dict(target="backup.yml on a tiny database < 10 s", measured="%.1f s" % yml["median_seconds"],
                                met=yml["median_seconds"] < 10))
        for item in self.memory:
            if item["small_peak_mb"] and item["big_peak_mb"]:
                flat = item["big_peak_mb"] <= item["small_peak_mb"] * 1.15 + 8
                targets.append(dict(target="peak memory flat as the database grows: %s" % item["label"],
                                    measured="%.0f MB -> %.0f MB" % (item["small_peak_mb"], item["big_peak_mb"]),
                                    met=flat))
        return cases, pairs, targets

    def write_reports(self, complete=True):
        cases, pairs, targets = self.summary()
        finished = datetime.datetime.now(datetime.timezone.utc)
        data = dict(
            tool="scripts/bench.py", complete=complete, started=self.started.isoformat(), finished=finished.isoformat(),
            duration_seconds=round((finished - self.started).total_seconds(), 1),
            machine=self.machine, params=dict(scale=self.args.scale, rows=self.args.rows, rounds=self.args.rounds,
                                              small_scale=self.args.small_scale, small_rows=self.args.small_rows,
                                              smoke=self.args.smoke, groups=list(self.args.only),
                                              files_mb=self.args.files_mb, files_count=self.args.files_count,
                                              files_change=self.args.files_change,
                                              server_settings=SERVER_SETTINGS, jobs=self.ncpu),
            database=self.database, cases=cases, order=list(self.order), pairs=pairs, memory=self.memory,
            targets=targets, notes=self.notes)
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = "bench-%s" % self.started.strftime("%Y%m%dT%H%M%SZ")
        json_path = out / (stem + ".json")
        md_path = out / (stem + ".md")
        json_path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        md_path.write_text(render_markdown(data))
        return json_path, md_path

    # -- main ---------------------------------------------------------------------------------------------
    def run(self):
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(str(self.work), 0o755)
        self.machine = machine_info()
        self.machine["load_at_start"] = loadavg()
        complete = False
        try:
            needs_pg = set(self.args.only) & {"backup", "restore", "s3", "memory"}
            if needs_pg:
                self.start_pg()
                self.database["main"] = self.build_db("bench", self.args.scale, self.args.rows)
                self.expected_rows["bench"] = self.database["main"]["rows"]
            if "backup" in self.args.only:
                self.group_backup(self.args.rounds)
                plain = self.cases["backup.default"]["runs"][-1].get("uncompressed")
                self.database["main"]["plain_dump_bytes"] = plain
            if "restore" in self.args.only:
                self.group_restore(self.args.rounds)
            if "s3" in self.args.only:
                self.group_s3(self.args.rounds)
            if "memory" in self.args.only:
                self.group_memory()
            if "files" in self.args.only:
                self.group_files(self.args.rounds)
            if "ansible" in self.args.only:
                self.group_ansible(self.args.rounds)
            if "rebuild" in self.args.only:
                self.group_rebuild(self.args.rebuild_rounds)
            complete = True
        finally:
            self._kill_current()
            self.machine["load_at_end"] = loadavg()
            self.stop_all()
            if self.cases:
                json_path, md_path = self.write_reports(complete=complete)
                log("reports: %s, %s" % (json_path, md_path))
                if complete:
                    print(md_path.read_text())
            if not self.args.keep_work:
                shutil.rmtree(str(self.work), ignore_errors=True)


def task_times(stdout):
    """``{task name: seconds}`` from the profile_tasks recap of an ansible-playbook run."""
    times = {}
    recap = stdout.split("TASKS RECAP", 1)[-1] if "TASKS RECAP" in stdout else ""
    for line in recap.splitlines():
        line = line.strip()
        if not line.endswith("s") or " -" not in line:
            continue
        name, dummy, seconds = line.rpartition(" ")
        try:
            times[name.rstrip(" -")] = float(seconds[:-1])
        except ValueError:
            continue
    return times


def _literal(value):
    return "'%s'" % value.replace("'", "''")


def _fmt(value, spec="%.2f", none="-"):
    return none if value is None else spec % value


def _ratio_text(item):
    """Median ratio, with the range of the per-round ratios when there are several."""
    ratios = item.get("ratios") or []
    text = _fmt(item.get("median_ratio"))
    if len(ratios) > 1:
        text += " (%.2f-%.2f)" % (min(ratios), max(ratios))
    return text


def _cell(text):
    """Markdown table cell: pipes in commands must not split the cell."""
    return str(text).replace("|", "\\|")


# row order of the tables (reports written before "order" was stored in the JSON)
CANONICAL = [
    "backup.baseline", "backup.default", "backup.fastest", "backup.directory", "backup.floor", "backup.default.direct",
    "backup.default.hand", "backup.default.pipe", "backup.fastest.direct", "backup.fastest.hand", "backup.fastest.pipe",
    "restore.baseline", "restore.default", "restore.nosafety", "restore.fastest", "restore.fastest.hand",
    "restore.nosafety.direct", "restore.hand", "restore.pipe", "s3.upload.boto3", "s3.upload",
    "s3.upload.direct", "s3.download.boto3", "s3.download", "s3.download.direct", "ansible.module.direct",
    "ansible.module", "ansible.backup_yml", "ansible.restore_yml", "files.repo.day1", "files.repo.hand.day1",
    "files.repo.steps.day1", "files.tarball", "files.repo", "files.repo.steps", "files.tarball.hand", "files.repo.hand",
]


def render_markdown(data):
    cases = data["cases"]
    pairs = data["pairs"]
    machine = data["machine"]
    params = data["params"]
    lines = ["# atlasia.dr bench, %s" % data["started"][:19].replace("T", " "), ""]
    main = data["database"].get("main") or {}
    lines.append("Machine: %s, %s CPUs, %s GB RAM, %s; %s; load average %s at start, %s at end." % (
        machine.get("cpu_model"), machine.get("cpus"), machine.get("memory_gb"), machine.get("os", "Linux"),
        machine.get("postgresql"), _fmt(machine.get("load_at_start"), "%.1f"), _fmt(machine.get("load_at_end"), "%.1f")))
    if main:
        lines.append("Database: pgbench scale %s + %s JSON workflow_runs rows, %.0f MB on disk%s. %s round(s); "
                     "server with fsync, synchronous_commit and full_page_writes on." % (
                         main["scale"], main["json_rows"], main["size_bytes"] / 1048576.0,
                         (", plain dump %.0f MB" % (main["plain_dump_bytes"] / 1048576.0))
                         if main.get("plain_dump_bytes") else "", params["rounds"]))
    files = data["database"].get("files") or {}
    if files:
        lines.append("File data: %s files of random data, %.1f MB; each night %.1f%% of its bytes are new (half in a "
                     "file added, half rewritten inside an existing file), then every command backs the same folder "
                     "up; the repositories hold day 1 and the nights before." % (
                         files["files"], files["bytes"] / 1048576.0, files["change_percent"]))
    if not data["complete"]:
        lines.append("")
        lines.append("**Incomplete run** (a command failed or the bench was interrupted): figures so far.")
    lines.append("")
    lines.append("Times are medians of whole commands; a ratio is the median (and range) of the per-round ratios "
                 "of a command to its baseline run back to back with it. Peak RSS: largest process of the "
                 "command's tree; CPU s: user + system time of that tree (the PostgreSQL server's own processes "
                 "are in neither).")

    def pair_for(key):
        return next((p for p in pairs if p["ours"] == key), None)

    titles = dict(backup="Backup", restore="Restore", s3="S3 transfer (SeaweedFS on 127.0.0.1)",
                  ansible="Ansible overhead (tiny database)", memory="Second database size", inputs="Inputs",
                  files="File data: a nightly backup after day 1, repository against tarball (size: bytes written "
                        "that night)")
    for group in ("backup", "restore", "s3", "files", "ansible"):
        order = data.get("order") or sorted(cases, key=lambda k: (CANONICAL.index(k) if k in CANONICAL else 99, k))
        keys = [k for k in order if cases[k]["group"] == group and cases[k]["runs"]]
        if not keys:
            continue
        lines += ["", "## %s" % titles[group], "",
                  "| command | median s | ratio | vs | size MB | size ratio | peak RSS MB | CPU s |",
                  "|---|---:|---:|---|---:|---:|---:|---:|"]
        for key in keys:
            case = cases[key]
            item = pair_for(key)
            ratio = _ratio_text(item) if item else ("1.00" if case["kind"] == "baseline" else "-")
            versus = _cell(cases[item["base"]]["label"].split(" (")[0]) if item else ""
            size = _fmt(case["median_size"] / 1048576.0 if case["median_size"] else None, "%.1f")
            lines.append("| %s%s | %s | %s | %s | %s | %s | %s | %s |" % (
                _cell(case["label"]), " (via Ansible)" if case["how"] == "ansible" else "",
                _fmt(case["median_seconds"]), ratio, versus, size,
                _fmt(item["median_size_ratio"]) if item else "", _fmt(case["peak_rss_mb"], "%.0f"),
                _fmt(case["median_cpu_seconds"], "%.1f")))
    file_pairs = [p for p in pairs if p["group"] == "files" and p.get("ratios")]
    if file_pairs:
        lines += ["", "File data, ratios of the nights (time; bytes written):", ""]
        for item in file_pairs:
            sizes = item.get("size_ratios") or []
            lines.append("- %s: time %s; bytes %s" % (
                _cell(item["label"]), _ratio_text(item),
                ("%.4f (%.4f-%.4f)" % (item["median_size_ratio"], min(sizes), max(sizes))) if sizes else "-"))
    phased = [k for k, c in cases.items() if c["group"] == "restore" and any(r.get("timings") for r in c["runs"])]
    if phased:
        phases = ["check", "prepare", "safety_backup", "load", "count", "swap"]
        lines += ["", "pg_restore_db phases (median seconds, from its ``timings``):", "",
                  "| restore | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
        for key in phased:
            runs = [r["timings"] for r in cases[key]["runs"] if r.get("timings")]
            lines.append("| %s | %s |" % (_cell(cases[key]["label"]), " | ".join(
                _fmt(median([t.get(name) for t in runs])) for name in phases)))
    rebuild = ((cases.get("rebuild.rto") or {}).get("runs")) or []
    if rebuild:
        names = list(rebuild[0]["phases"])
        lines += ["", "## Rebuild (Scenario 2, Molecule `rebuild`)", "",
                  "RTO of the rebuild report, from the first package installed to the traffic switch (target: 90 s "
                  "on 2 CPUs); the Molecule run around it (image build, the lost host's backup, clean-up) is not in it.",
                  "", "| round | RTO s | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
        for run in rebuild:
            lines.append("| %s | %s | %s |" % (run["round"], _fmt(run["rto_seconds"]), " | ".join(
                _fmt(run["phases"].get(name)) for name in names)))
    for key in ("ansible.backup_yml", "ansible.restore_yml"):
        runs = (cases.get(key) or {}).get("runs") or []
        if runs and runs[-1].get("slowest_tasks"):
            run = runs[-1]
            lines += ["", "%s: %d tasks, %.1f s of task time in %.1f s; slowest: %s." % (
                _cell(cases[key]["label"]), run["tasks"], run["task_seconds"], run["wall"],
                "; ".join("%s %.1f s" % (_cell(name.split(" : ", 1)[-1]), sec) for name, sec in run["slowest_tasks"]))]
    if data["memory"]:
        small = data["database"].get("small") or {}
        lines += ["", "## Peak memory at two database sizes", "",
                  "Small: pgbench scale %s + %s rows (%.0f MB); large: the database above." % (
                      small.get("scale"), small.get("json_rows"), (small.get("size_bytes") or 0) / 1048576.0), "",
                  "| command | small: peak RSS MB | large: peak RSS MB | small s | large s |",
                  "|---|---:|---:|---:|---:|"]
        for item in data["memory"]:
            lines.append("| %s | %s | %s | %s | %s |" % (
                _cell(item["label"]), _fmt(item["small_peak_mb"], "%.0f"), _fmt(item["big_peak_mb"], "%.0f"),
                _fmt(item["small_seconds"]), _fmt(item["big_seconds"])))
    if data["targets"]:
        lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for item in data["targets"]:
            lines.append("| %s | %s | %s |" % (_cell(item["target"]), item["measured"],
                                               "yes" if item["met"] else ("no" if item["met"] is not None else "-")))
    for note in data.get("notes") or []:
        lines += ["", note]
    lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    env = os.environ
    parser = argparse.ArgumentParser(prog="scripts/bench.sh", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--scale", type=int, default=int(env.get("BENCH_SCALE", 60)), help="pgbench scale (60)")
    parser.add_argument("--rows", type=int, default=int(env.get("BENCH_ROWS", 1000000)),
                        help="JSON workflow_runs rows (1000000)")
    parser.add_argument("--small-scale", type=int, default=int(env["BENCH_SMALL_SCALE"]) if env.get("BENCH_SMALL_SCALE")
                        else None, help="second size for the memory check (default scale/4)")
    parser.add_argument("--small-rows", type=int, default=int(env["BENCH_SMALL_ROWS"]) if env.get("BENCH_SMALL_ROWS")
                        else None, help="JSON rows of the second size (default rows/4)")
    parser.add_argument("--rounds", type=int, default=int(env.get("BENCH_ROUNDS", env.get("BENCH_REPEAT", 3))),
                        help="pairs run per comparison (3)")
    parser.add_argument("--smoke", action="store_true", help="tiny database, one round: checks the bench still works")
    parser.add_argument("--only", default=env.get("BENCH_ONLY", ",".join(GROUPS)),
                        help="comma-separated groups among %s" % ",".join(GROUPS))
    parser.add_argument("--rebuild-rounds", type=int, default=int(env.get("BENCH_REBUILD_ROUNDS", 1)),
                        help="runs of the Molecule rebuild scenario in the rebuild group (1; each takes minutes)")
    parser.add_argument("--files-mb", type=float, default=float(env.get("BENCH_FILES_MB", 287)),
                        help="size of the file bench's uploads folder in MB (287)")
    parser.add_argument("--files-count", type=int, default=int(env.get("BENCH_FILES_COUNT", 30)),
                        help="files of random data in that folder (30)")
    parser.add_argument("--files-change", type=float, default=float(env.get("BENCH_FILES_CHANGE", 1.0)),
                        help="percent of the folder's bytes new each night, half added, half rewritten (1.0)")
    parser.add_argument("--restore-pairs", default=env.get("BENCH_RESTORE_PAIRS", ""),
                        help="comma-separated restore cases to run beside their baselines (default: all), "
                             "e.g. restore.default.plan,restore.onejob.plan")
    parser.add_argument("--out", default=env.get("BENCH_OUT", str(REPO / "reports")), help="report folder (reports/)")
    parser.add_argument("--work", default=None, help="scratch folder (default .tmp/bench-<pid>, removed at the end)")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the .md next to a bench JSON report")
    args = parser.parse_args(argv)
    only_given = "--only" in " ".join(argv if argv is not None else sys.argv[1:]) or bool(env.get("BENCH_ONLY"))
    if args.smoke and not only_given:
        args.only = ",".join(g for g in args.only.split(",") if g.strip() not in NOT_IN_SMOKE)
    if args.smoke:
        args.scale, args.rows, args.rounds = 1, 2000, 1
        args.small_scale = args.small_scale or 1
        args.small_rows = args.small_rows or 500
        args.files_mb = min(args.files_mb, 6.0)
    args.small_scale = args.small_scale or max(1, args.scale // 4)
    args.small_rows = args.small_rows or max(100, args.rows // 4)
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    args.restore_pairs = [k.strip() for k in args.restore_pairs.split(",") if k.strip()]
    unknown = set(args.only) - set(GROUPS)
    if unknown:
        parser.error("unknown group(s): %s" % ", ".join(sorted(unknown)))
    if args.rounds < 1 or args.scale < 1:
        parser.error("--rounds and --scale must be at least 1")
    if args.files_mb <= 0 or args.files_count < 1 or not 0 < args.files_change <= 100:
        parser.error("--files-mb must be above 0, --files-count at least 1, --files-change in (0, 100]")
    args.work = args.work or str(TMP_ROOT / ("bench-%d" % os.getpid()))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        source = Path(args.render)
        target = source.with_suffix(".md")
        target.write_text(render_markdown(json.loads(source.read_text())))
        print(target.read_text())
        return 0

    def terminate(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, terminate)
    bench = Bench(args)
    log("work folder %s; groups %s; scale %d + %d rows; %d round(s)" % (
        bench.work, ",".join(args.only), args.scale, args.rows, args.rounds))
    try:
        bench.run()
    except BenchError as exc:
        log("FAILED: %s" % exc)
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
