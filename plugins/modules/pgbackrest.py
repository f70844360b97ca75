#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgbackrest
short_description: Run pgBackRest commands (info, stanza-create, check, backup, expire, verify, restore)
version_added: 0.1.0
description:
  - Orchestrates L(pgBackRest,https://pgbackrest.org), the physical backup and WAL archiving tool, rather than
    reimplementing it. Each task runs one pgBackRest command with a list of arguments (never a shell string)
    and reports what it changed, read back from C(pgbackrest info --output=json).
  - Secrets (S3 keys, repository cipher passphrases) travel as C(PGBACKREST_*) environment variables, never on
    the command line (see O(secrets)).
  - Runs pgBackRest as the PostgreSQL OS user (O(os_user)), through C(runuser) when the module runs as root,
    or inside the database container (O(container)).
  - V(info) returns the stanza's status, its backups (oldest to newest) and, per repository, the WAL archive
    range with the time the newest segment was archived (the base of the achieved RPO).
  - V(stanza-create) creates the stanza in every repository where it is missing and is idempotent.
    V(backup) takes a backup of O(backup_type) and returns it. V(expire) applies the retention configured
    for the repositories and returns the expired backups. V(check) checks the configuration and that WAL
    reaches every repository. V(verify) checks every file of the repository against its checksum.
  - V(restore) restores a backup into O(pg_path), to the end of the archive (O(target=latest)), to the end
    of the backup (O(target=immediate)), or to a point in time.
  - Run through the collection's action plugin, a long V(backup) or V(restore) prints a progress line every
    C(dr_progress_interval) seconds (not with O(container), whose files the module does not see). A backup's
    progress is pgBackRest's own, read from its backup lock file C(<lock-path>/<stanza>-backup.lock) (bytes
    copied against the backup's size with pgBackRest 2.48 and later; with earlier versions its percentage,
    applied to the size of O(pg_path) measured at the start, an estimate). A restore's progress is the size of
    O(pg_path) against the database size of the backup restored (an estimate too, since a restore to a point in
    time replays WAL after the copy); none with O(delta=true).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.progress
attributes:
  check_mode:
    support: full
    details:
      - V(info), V(check) and V(verify) run as usual (they change no backup and no data directory).
      - V(stanza-create) reads the stanza's status and reports whether it would create it.
      - V(expire) runs with C(--dry-run) and reports what it would expire.
      - V(backup) and V(restore) report a change without running.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  command:
    description:
      - The pgBackRest command to run.
    type: str
    required: true
    choices: [info, stanza-create, check, backup, expire, verify, restore]
  stanza:
    description:
      - The stanza (one PostgreSQL cluster's backups) the command works on.
    type: str
    required: true
  config:
    description:
      - pgBackRest configuration file (C(--config)); pgBackRest's default is C(/etc/pgbackrest/pgbackrest.conf).
    type: path
  repo:
    description:
      - Repository number to work on (C(--repo)). V(backup) defaults to the first repository; V(restore)
        takes the newest suitable backup from the first repository that has one; V(info) and V(expire) cover
        every repository when this is not set.
    type: int
  backup_type:
    description:
      - Type of backup for O(command=backup). pgBackRest turns a V(diff) or V(incr) into a V(full) when the
        repository has no full backup yet.
    type: str
    default: incr
    choices: [full, diff, incr]
  pg_path:
    description:
      - Data directory (C(--pg1-path)), overriding the configuration's. With O(command=restore), the directory
        restored into; it must be empty or missing unless O(delta=true).
    type: path
  target:
    description:
      - Recovery target of O(command=restore). V(latest) replays the whole WAL archive, V(immediate) stops at
        the end of the backup (a consistent copy, for restore tests), anything else is a time with an
        explicit UTC offset such as V(2026-11-26 10:41:00+00).
    type: str
    default: latest
  target_action:
    description:
      - What the restored server does when it reaches a time or V(immediate) target (C(--target-action)).
    type: str
    default: promote
    choices: [promote, pause, shutdown]
  target_exclusive:
    description:
      - Stop just before the target time instead of just after it (C(--target-exclusive)).
    type: bool
    default: false
  set:
    description:
      - Backup label to restore (C(--set)); defaults to the newest backup that can reach the target.
      - With O(command=expire), the backup set to expire.
    type: str
  archive_mode:
    description:
      - V(off) restores with C(--archive-mode=off), so a restored copy never pushes WAL into the
        repository (restore tests). V(preserve) keeps the backup's archive settings (a real recovery).
    type: str
    default: preserve
    choices: [preserve, "off"]
  delta:
    description:
      - Restore into a non-empty O(pg_path), replacing only what differs (C(--delta)).
    type: bool
    default: false
  process_max:
    description:
      - Parallel processes for compression and transfer (C(--process-max)); defaults to the configuration's.
    type: int
  options:
    description:
      - Further pgBackRest options, a dict of option names and values (for example C(start-fast) V(true),
        C(io-timeout) V(120)).
        They are passed as C(PGBACKREST_<NAME>) environment variables, which override the configuration file
        and which pgBackRest ignores for commands they do not apply to, so they also serve the C(info) calls
        the module makes around a command. V(true)/V(false) become C(y)/C(n); a list is joined with C(:).
      - Secret options (names ending in C(-pass), C(-key), C(-secret)...) are refused here; use O(secrets).
    type: dict
    default: {}
  secrets:
    description:
      - Secret pgBackRest options, a dict of option names and values, for example C(repo2-s3-key),
        C(repo2-s3-key-secret), C(repo1-cipher-pass). They are passed as C(PGBACKREST_<NAME>) environment variables and override the
        configuration file's values.
    type: dict
    default: {}
  pg_password:
    description:
      - Password of the database user pgBackRest connects as (C(pg1-user)), passed as C(PGPASSWORD); not
        needed with peer or trust authentication on the Unix socket, which is the usual setup.
    type: str
  os_user:
    description:
      - OS user running pgBackRest, the one that runs PostgreSQL (pgBackRest must read the data directory and
        write the repository with the server's ownership). When the module runs as root and this is another
        user, the command runs through C(runuser). Inside O(container), passed to C(docker exec -u).
    type: str
  container:
    description:
      - Container (name or id) to run pgBackRest in, through C(docker exec), for a PostgreSQL that runs in
        Docker Compose. pgBackRest must be installed in that container's image.
    type: str
  docker_bin:
    description:
      - Path of the C(docker) client; found on C(PATH) by default.
    type: path
  pgbackrest_bin:
    description:
      - Path of the C(pgbackrest) program; found on C(PATH) by default (inside the container with O(container)).
    type: path
  wal_times:
    description:
      - With O(command=info), also read when the newest WAL segment of each repository was archived
        (C(repo-ls)), returned in RV(archive).
    type: bool
    default: true
  pitr_target:
    description:
      - With O(command=info), a point-in-time target (V(latest), or the point in time in epoch seconds) to check
        the backups and the WAL archive against. RV(pitr_problem) says why they do not cover it.
      - A point in time must lie after the end of the oldest backup, before the newest archived WAL (which needs
        O(wal_times)) and not after O(pitr_requested_at); V(latest) needs a backup and archived WAL.
    type: str
  pitr_requested_at:
    description:
      - When the restore was asked for, in epoch seconds (a O(pitr_target) after it is in the future); now by
        default.
    type: float
notes:
  - pgBackRest speaks HTTPS to S3 repositories; a plain-HTTP S3 endpoint is not supported by pgBackRest 2.45.
  - The archive and backup settings themselves (repositories, retention, compression, C(archive_command))
    belong in the configuration file, which the C(atlasia.dr.dr_pgbackrest) role writes.
seealso:
  - name: pgBackRest command reference
    description: Every command and option.
    link: https://pgbackrest.org/command.html
  - name: pgBackRest user guide, point-in-time recovery
    description: How a time target is reached and what the new timeline means.
    link: https://pgbackrest.org/user-guide.html#pitr
"""

EXAMPLES = r"""
- name: Create the stanza in every repository (local and S3)
  atlasia.dr.pgbackrest:
    command: stanza-create
    stanza: atlasia
    config: /etc/pgbackrest/pgbackrest.conf
    os_user: postgres

- name: Check that WAL reaches every repository
  atlasia.dr.pgbackrest:
    command: check
    stanza: atlasia
    os_user: postgres

- name: Weekly full backup to the S3 repository, with the S3 secret from Ansible Vault
  atlasia.dr.pgbackrest:
    command: backup
    stanza: atlasia
    repo: 2
    backup_type: full
    os_user: postgres
    secrets:
      repo2-s3-key: "{{ vault_s3_access_key }}"
      repo2-s3-key-secret: "{{ vault_s3_secret_key }}"
  register: physical

- name: Backups, archive range and the time the newest WAL was archived
  atlasia.dr.pgbackrest:
    command: info
    stanza: atlasia
    os_user: postgres
  register: pgbr

- name: Point-in-time restore into a new data directory
  atlasia.dr.pgbackrest:
    command: restore
    stanza: atlasia
    pg_path: /var/lib/postgresql/15/main.pitr
    target: "2026-11-26 10:41:00+00"
    os_user: postgres

- name: Restore test of the newest backup, never archiving into the repository
  atlasia.dr.pgbackrest:
    command: restore
    stanza: atlasia
    pg_path: /var/lib/postgresql/restore-test
    target: immediate
    archive_mode: "off"
    os_user: postgres

- name: Through the database container of the Compose deployment
  atlasia.dr.pgbackrest:
    command: info
    stanza: atlasia
    container: aiteam_db_prod
    os_user: postgres
"""

RETURN = r"""
changed:
  description: Whether a stanza was created, a backup taken, backups expired or a data directory restored.
  returned: always
  type: bool
argv:
  description: The command that ran (or would run), without any secret.
  returned: always
  type: list
  elements: str
  sample: ["runuser", "-u", "postgres", "--", "/usr/bin/pgbackrest", "--stanza=atlasia", "backup", "--type=full"]
status:
  description: The stanza's status in C(info) (C(code) and C(message); C(0)/C(ok) when healthy).
  returned: when the stanza's info was read
  type: dict
  sample: {"code": 0, "message": "ok"}
repos:
  description: Each repository with C(key), C(cipher), C(status_code) and C(status_message).
  returned: when the stanza's info was read
  type: list
  elements: dict
backups:
  description:
    - Backups oldest to newest, each with C(label), C(type), C(repo), C(prior), C(start)/C(stop) (epoch),
      C(start_time)/C(stop_time) (ISO 8601), C(size), C(repo_size), C(wal_start), C(wal_stop) and C(error).
  returned: when the stanza's info was read
  type: list
  elements: dict
newest_backup:
  description: The newest backup without error, as in RV(backups); null when there is none.
  returned: when the stanza's info was read
  type: dict
  sample: {"label": "20261126-020001F", "type": "full", "repo": 1, "stop_time": "2026-11-26T02:01:09+00:00"}
oldest_backup:
  description: The oldest backup without error, as in RV(backups); null when there is none.
  returned: when the stanza's info was read
  type: dict
archive:
  description:
    - Per repository, the WAL archive range (C(repo), C(id), C(min), C(max)) and, with O(wal_times), the time
      the newest segment was archived (C(max_archived), epoch; C(max_archived_time), ISO 8601).
  returned: when the stanza's info was read
  type: list
  elements: dict
  sample: [{"repo": 1, "id": "15-1", "min": "000000010000000000000001", "max": "000000010000000000000009",
            "max_archived": 1795661876, "max_archived_time": "2026-11-26T02:57:56+00:00"}]
newest_archived:
  description: The most recent RV(archive) C(max_archived) over the repositories (epoch), null when unknown.
  returned: with O(command=info) and O(wal_times)
  type: int
newest_archived_time:
  description: RV(newest_archived) in ISO 8601.
  returned: with O(command=info) and O(wal_times)
  type: str
  sample: "2026-11-26T02:57:56+00:00"
pitr_problem:
  description:
    - Why the backups and the WAL archive cannot bring the cluster to O(pitr_target), or null when they can.
  returned: with O(command=info) and O(pitr_target)
  type: str
  sample: "the oldest backup ended at 2026-11-26T02:57:56+00:00, after the target"
environment:
  description: The non-secret C(PGBACKREST_*) variables built from O(options).
  returned: always
  type: dict
  sample: {"PGBACKREST_START_FAST": "y"}
backup:
  description: The backup this task took, as in RV(backups).
  returned: with O(command=backup), when not in check mode
  type: dict
command_seconds:
  description:
    - Wall time of the pgBackRest C(backup) or C(restore) command alone, without the C(info) reads around it (what
      the task adds to pgBackRest's own time is the rest of the task's duration).
  returned: with O(command=backup) or O(command=restore), when not in check mode
  type: float
  sample: 41.207
expired:
  description: Labels of the backups this task expired (in check mode, the dry run's log lines).
  returned: with O(command=expire)
  type: list
  elements: str
restore:
  description:
    - What was restored where (C(pg_path), C(target), C(set), C(archive_mode), C(repo)) and, once done, the
      backup pgBackRest picked (C(set_used)) from which repository (C(repo_used)).
  returned: with O(command=restore)
  type: dict
  sample: {"pg_path": "/var/lib/postgresql/15/main.pitr", "target": "2026-11-26 10:41:00+00", "set": null,
           "archive_mode": "preserve", "repo": null, "set_used": "20261126-020001F", "repo_used": 2}
output:
  description: pgBackRest's text output (for example the findings of V(verify)).
  returned: when a command ran
  type: str
stderr:
  description: pgBackRest's error output.
  returned: when a command ran
  type: str
error_code:
  description: pgBackRest's error code (for example V(56)) when the command failed with one.
  returned: on failure
  type: int
"""

import functools
import json
import os
import pwd
import time

from ansible_collections.atlasia.dr.plugins.module_utils import pgbackrest as pgbr
from ansible_collections.atlasia.dr.plugins.module_utils import progress
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule


def argument_spec():
    spec = dict(
        command=dict(type="str", required=True, choices=list(pgbr.COMMANDS)),
        stanza=dict(type="str", required=True),
        config=dict(type="path"),
        repo=dict(type="int"),
        backup_type=dict(type="str", default="incr", choices=list(pgbr.BACKUP_TYPES)),
        pg_path=dict(type="path"),
        target=dict(type="str", default="latest"),
        target_action=dict(type="str", default="promote", choices=list(pgbr.TARGET_ACTIONS)),
        target_exclusive=dict(type="bool", default=False),
        set=dict(type="str"),
        archive_mode=dict(type="str", default="preserve", choices=["preserve", "off"]),
        delta=dict(type="bool", default=False),
        process_max=dict(type="int"),
        options=dict(type="dict", default={}),
        secrets=dict(type="dict", default={}, no_log=True),
        pg_password=dict(type="str", no_log=True),
        os_user=dict(type="str"),
        container=dict(type="str"),
        docker_bin=dict(type="path"),
        pgbackrest_bin=dict(type="path"),
        wal_times=dict(type="bool", default=True),
        pitr_target=dict(type="str"),
        pitr_requested_at=dict(type="float"),
    )
    spec.update(progress.progress_argument_spec())
    return spec


class Runner(object):
    """Builds, wraps and runs pgBackRest commands for the module's options."""

    def __init__(self, module):
        self.module = module
        p = module.params
        self.p = p
        self.option_env = pgbr.option_env(p["options"])
        self.env = dict(self.option_env)
        self.env.update(pgbr.secret_env(p["secrets"]))
        if p["pg_password"]:
            self.env["PGPASSWORD"] = p["pg_password"]
        if p["container"]:
            self.binary = p["pgbackrest_bin"] or "pgbackrest"
            self.docker = p["docker_bin"] or module.get_bin_path("docker", required=True)
            self.runuser = None
        else:
            self.binary = p["pgbackrest_bin"] or module.get_bin_path("pgbackrest", required=True)
            self.docker = None
            self.runuser = None
            if p["os_user"] and p["os_user"] != self.current_user():
                self.runuser = module.get_bin_path("runuser", required=True, opt_dirs=["/usr/sbin", "/sbin"])

    @staticmethod
    def current_user():
        return pwd.getpwuid(os.geteuid()).pw_name

    def argv(self, command, command_args=None, repo=None, options=None):
        merged = {}
        if self.p["pg_path"] and command in pgbr.PG_PATH_COMMANDS:
            merged["pg1-path"] = self.p["pg_path"]
        if self.p["process_max"] and command in pgbr.PROCESS_MAX_COMMANDS:
            merged["process-max"] = self.p["process_max"]
        merged.update(options or {})
        argv = pgbr.build_argv(self.binary, command, stanza=self.p["stanza"], config=self.p["config"],
                               repo=repo, options=merged, command_args=command_args)
        try:
            return pgbr.wrap(argv, env_names=self.env.keys(), os_user=self.p["os_user"],
                             container=self.p["container"], docker=self.docker, runuser=self.runuser,
                             current_user=self.current_user(), is_root=os.geteuid() == 0)
        except ValueError as exc:
            self.module.fail_json(msg=str(exc))

    def run(self, command, command_args=None, repo=None, options=None, check=True):
        argv = self.argv(command, command_args, repo, options)
        rc, out, err = self.module.run_command(argv, environ_update=self.env, cwd="/", check_rc=False)
        if rc != 0 and check:
            raise pgbr.PgBackRestError(pgbr.explain(command, rc, out, err), code=pgbr.error_code(err + out),
                                       stderr=err, stdout=out, rc=rc)
        return argv, rc, out, err

    def info(self, repo=None):
        """The stanza's entry of ``info --output=json`` (None when pgBackRest does not list it)."""
        quiet = {"log-level-console": "off", "output": "json"}
        argv, rc, out, err = self.run("info", repo=repo, options=quiet)
        try:
            data = json.loads(out)
        except ValueError:
            raise pgbr.PgBackRestError("pgbackrest info printed no JSON: %s" % (out or err)[:500])
        return pgbr.find_stanza(data, self.p["stanza"])

    def add_wal_times(self, archive):
        """Add ``max_archived`` (epoch) to each archive range, from the repository listing."""
        for entry in archive:
            entry["max_archived"] = None
            entry["max_archived_time"] = None
            if not entry.get("max") or not entry.get("id"):
                continue
            path = pgbr.wal_dir(self.p["stanza"], entry["id"], entry["max"])
            options = {"log-level-console": "off", "output": "json", "filter": "^%s" % entry["max"]}
            argv, rc, out, err = self.run("repo-ls", command_args=[path], repo=entry["repo"], options=options,
                                          check=False)
            if rc != 0:
                self.module.warn("cannot list %s in repo%s: %s" % (path, entry["repo"], (err or out).strip()[:300]))
                continue
            try:
                listing = json.loads(out or "{}")
            except ValueError:
                continue
            stamp = pgbr.newest_file_time(listing, entry["max"])
            entry["max_archived"] = stamp
            entry["max_archived_time"] = pgbr.iso_time(stamp)
        return archive


def info_result(entry, repo=None):
    summary = pgbr.summarize(entry, repo)
    return dict(status=dict(code=summary["status_code"], message=summary["status_message"]),
                repos=summary["repos"], backups=summary["backups"], newest_backup=summary["newest_backup"],
                oldest_backup=summary["oldest_backup"], archive=summary["archive"])


def fail(module, exc, **result):
    result.update(stderr=exc.stderr, output=exc.stdout)
    if exc.code is not None:
        result["error_code"] = exc.code
    module.fail_json(msg=str(exc), **result)


def run_info(module, runner, result):
    p = module.params
    entry = runner.info(repo=p["repo"])
    result.update(info_result(entry, p["repo"]))
    result["argv"] = runner.argv("info", options={"output": "json"}, repo=p["repo"])
    if entry is not None and p["wal_times"]:
        runner.add_wal_times(result["archive"])
        stamps = [a["max_archived"] for a in result["archive"] if a.get("max_archived")]
        result["newest_archived"] = max(stamps) if stamps else None
        result["newest_archived_time"] = pgbr.iso_time(result["newest_archived"])
    if p["pitr_target"] is not None:
        requested_at = p["pitr_requested_at"] if p["pitr_requested_at"] is not None else time.time()
        try:
            result["pitr_problem"] = pgbr.coverage_problem(
                result["newest_backup"], result["oldest_backup"], result.get("newest_archived"),
                result.get("newest_archived_time"), p["pitr_target"], requested_at)
        except ValueError:
            module.fail_json(msg="pitr_target is latest or a point in time in epoch seconds (got %r)"
                                 % p["pitr_target"], **result)
    module.exit_json(**result)


def run_stanza_create(module, runner, result):
    before = runner.info()
    result["argv"] = runner.argv("stanza-create")
    if not pgbr.stanza_missing(before):
        result.update(info_result(before))
        module.exit_json(**result)
    result["changed"] = True
    if module.check_mode:
        result.update(info_result(before))
        module.exit_json(**result)
    argv, rc, out, err = runner.run("stanza-create", options={"log-level-console": "info"})
    result.update(info_result(runner.info()), output=out, stderr=err)
    module.exit_json(**result)


def run_backup(module, runner, result):
    p = module.params
    args = ["--type=%s" % p["backup_type"]]
    result["argv"] = runner.argv("backup", command_args=args, repo=p["repo"])
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    before = set(b["label"] for b in pgbr.summarize(runner.info())["backups"])
    report = progress.Reporter.from_module(module, verb="backed up")
    measure = None
    if report.enabled and not p["container"]:
        estimate = pgbr.tree_size(p["pg_path"]) if p["pg_path"] else None
        report.set_total(estimate, estimate=True)
        measure = pgbr.BackupProgress(pgbr.lock_path(p["options"], p["config"]), p["stanza"], estimate)
    started = time.monotonic()
    with progress.Watch(report if measure else progress.Reporter(None), measure, every=PROGRESS_EVERY):
        argv, rc, out, err = runner.run("backup", command_args=args, repo=p["repo"],
                                        options={"log-level-console": "info"})
    result["command_seconds"] = round(time.monotonic() - started, 3)
    result.update(info_result(runner.info()), output=out, stderr=err)
    new = [b for b in result["backups"] if b["label"] not in before and (not p["repo"] or b["repo"] == p["repo"])]
    result["backup"] = new[-1] if new else None
    module.exit_json(**result)


def run_expire(module, runner, result):
    p = module.params
    args = ["--set=%s" % p["set"]] if p["set"] else []
    if module.check_mode:
        argv, rc, out, err = runner.run("expire", command_args=args + ["--dry-run"], repo=p["repo"],
                                        options={"log-level-console": "info"})
        lines = [line.strip() for line in out.splitlines()
                 if "expire" in line and ("backup set" in line or "remove archive" in line)]
        result.update(argv=argv, changed=bool(lines), expired=lines, output=out, stderr=err)
        module.exit_json(**result)
    before = pgbr.summarize(runner.info())
    argv, rc, out, err = runner.run("expire", command_args=args, repo=p["repo"],
                                    options={"log-level-console": "info"})
    after_entry = runner.info()
    after = pgbr.summarize(after_entry)
    gone = sorted(set(b["label"] for b in before["backups"]) - set(b["label"] for b in after["backups"]))
    archive_moved = [a["min"] for a in before["archive"]] != [a["min"] for a in after["archive"]]
    result.update(info_result(after_entry), argv=argv, expired=gone, changed=bool(gone) or archive_moved,
                  output=out, stderr=err)
    module.exit_json(**result)


# seconds between two measures of a backup's or restore's progress (a restore's walks the data directory)
PROGRESS_EVERY = 3.0


def _restore_size(runner, p):
    """The database size of the backup a restore takes (O(set), else the newest of O(repo)); None if unknown."""
    try:
        backups = pgbr.summarize(runner.info(repo=p["repo"]))["backups"]
    except pgbr.PgBackRestError:
        return None
    chosen = [b for b in backups if b["label"] == p["set"]] if p["set"] else backups[-1:]
    return chosen[0]["size"] if chosen and chosen[0].get("size") else None


def run_restore(module, runner, result):
    p = module.params
    try:
        args = pgbr.restore_target_args(p["target"], p["target_action"], p["target_exclusive"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if p["set"]:
        args.append("--set=%s" % p["set"])
    if p["archive_mode"] == "off":
        args.append("--archive-mode=off")
    if p["delta"]:
        args.append("--delta")
    result["argv"] = runner.argv("restore", command_args=args, repo=p["repo"])
    result["restore"] = dict(pg_path=p["pg_path"], target=p["target"], set=p["set"],
                             archive_mode=p["archive_mode"], repo=p["repo"])
    if p["pg_path"] and not p["container"] and not p["delta"] and os.path.isdir(p["pg_path"]):
        try:
            entries = os.listdir(p["pg_path"])
        except OSError as exc:
            module.fail_json(msg="cannot read %s: %s" % (p["pg_path"], exc), **result)
        if entries:
            module.fail_json(msg="refusing to restore into %s: it is not empty (%d entries); restore into a "
                                 "new directory, or set delta=true" % (p["pg_path"], len(entries)), **result)
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    report = progress.Reporter.from_module(module, verb="restored")
    measure = None
    if report.enabled and p["pg_path"] and not p["container"] and not p["delta"]:
        report.set_total(_restore_size(runner, p), estimate=True)
        measure = functools.partial(pgbr.tree_size, p["pg_path"])
    started = time.monotonic()
    with progress.Watch(report if measure else progress.Reporter(None), measure, every=PROGRESS_EVERY):
        argv, rc, out, err = runner.run("restore", command_args=args, repo=p["repo"],
                                        options={"log-level-console": "info"})
    result["command_seconds"] = round(time.monotonic() - started, 3)
    result["restore"].update(pgbr.restored_set(out))
    result.update(output=out, stderr=err)
    module.exit_json(**result)


def main():
    module = DRModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("container", "pgbackrest_bin")],
    )
    p = module.params
    command = p["command"]
    problems = pgbr.check_option_names(p["options"], p["secrets"])
    if problems:
        module.fail_json(msg="; ".join(problems))
    if p["repo"] is not None and p["repo"] < 1:
        module.fail_json(msg="repo must be 1 or more (got %d)" % p["repo"])
    runner = Runner(module)
    result = dict(changed=False, command=command, stanza=p["stanza"], environment=runner.option_env)
    try:
        if command in ("check", "verify"):
            args = ["--output=text"] if command == "verify" else []
            argv, rc, out, err = runner.run(command, command_args=args, repo=p["repo"],
                                            options={"log-level-console": "info"})
            module.exit_json(argv=argv, output=out, stderr=err, **result)
        handlers = {"info": run_info, "stanza-create": run_stanza_create, "backup": run_backup,
                    "expire": run_expire, "restore": run_restore}
        handlers[command](module, runner, result)
    except pgbr.PgBackRestError as exc:
        fail(module, exc, **result)


if __name__ == "__main__":
    main()
