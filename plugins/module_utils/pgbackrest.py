# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""pgBackRest's command line, its JSON ``info`` and its errors: the one place that knows the CLI.

- :func:`build_argv` turns the module's options into a list of arguments (never a shell string);
- :func:`secret_env` passes secrets (``repo2-s3-key-secret``, ``repo1-cipher-pass``...) as
  ``PGBACKREST_*`` environment variables, so they never appear in an argument list, a process listing or a log;
- :func:`wrap` runs the command as the PostgreSQL OS user (``runuser`` when the module runs as root) or
  inside the database container (``docker exec -u USER -e NAME``: the value comes from the Docker CLI's
  environment, not its arguments);
- :func:`summarize` reduces one stanza of ``pgbackrest info --output=json`` to what playbooks use;
- :func:`explain` turns pgBackRest's error output into one line with a hint for the on-call engineer.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import re

COMMANDS = ("info", "stanza-create", "check", "backup", "expire", "verify", "restore")
# Commands that accept --pg1-path and --process-max on the command line.
PG_PATH_COMMANDS = ("stanza-create", "check", "backup", "restore")
PROCESS_MAX_COMMANDS = ("backup", "restore", "verify")
BACKUP_TYPES = ("full", "diff", "incr")
TARGET_ACTIONS = ("promote", "pause", "shutdown")

# Stanza status codes of `pgbackrest info` (doc: "Info Command: status").
STATUS_OK = 0
STATUS_MISSING_STANZA_PATH = 1
STATUS_NO_BACKUP = 2
STATUS_MISSING_STANZA_DATA = 3

_OPTION_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Option names whose values are secrets: pass them through `secrets`, never on the command line.
_SECRET_NAME = re.compile(r"(-pass|-key|-key-secret|-secret|-token|-passphrase)$")
# A recovery target time: date, time, and an explicit UTC offset (a time without one would be read in the
# server's time zone, a classic way to restore to the wrong hour).
_TARGET_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?\s*(Z|UTC|[+-]\d{2}(:?\d{2})?)$", re.I)


class PgBackRestError(Exception):
    """A pgBackRest command failed; ``code`` is pgBackRest's error code (``[056]`` -> 56) when it gave one."""

    def __init__(self, message, code=None, stderr="", stdout="", rc=None):
        self.code = code
        self.stderr = stderr
        self.stdout = stdout
        self.rc = rc
        super(PgBackRestError, self).__init__(message)


# -- options ---------------------------------------------------------------------------------------------
def check_option_names(options, secrets):
    """Problems with the ``options`` / ``secrets`` names (list of strings, empty when fine)."""
    problems = []
    for name in sorted(options or {}):
        if not _OPTION_NAME.match(name):
            problems.append("option name %r is not a pgBackRest option name (lower case, digits, dashes)" % name)
        elif _SECRET_NAME.search(name):
            problems.append("option %r holds a secret: pass it in `secrets` (environment), never on the "
                            "command line" % name)
    for name in sorted(secrets or {}):
        if not _OPTION_NAME.match(name):
            problems.append("secret name %r is not a pgBackRest option name (for example repo2-s3-key-secret)"
                            % name)
    return problems


def option_args(options):
    """``--name=value`` arguments for a dict of options, sorted by name.

    ``True`` gives ``--name``, ``False`` gives ``--no-name``, a list repeats the option, ``None`` is skipped.
    """
    args = []
    for name in sorted(options or {}):
        value = options[name]
        if value is None:
            continue
        if isinstance(value, bool):
            args.append("--%s" % name if value else "--no-%s" % name)
        elif isinstance(value, (list, tuple)):
            args.extend("--%s=%s" % (name, item) for item in value)
        else:
            args.append("--%s=%s" % (name, value))
    return args


def option_env(options):
    """Environment variables for ordinary options (``start-fast: true`` -> ``PGBACKREST_START_FAST=y``).

    pgBackRest ignores an environment option that does not apply to the command at hand (unlike one on the
    command line, which fails), so one set of options serves every command a task runs.
    """
    env = {}
    for name, value in (options or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "y" if value else "n"
        elif isinstance(value, (list, tuple)):
            value = ":".join("%s" % item for item in value)
        env["PGBACKREST_" + name.upper().replace("-", "_")] = "%s" % value
    return env


def secret_env(secrets):
    """Environment variables carrying secrets (``repo2-s3-key-secret`` -> ``PGBACKREST_REPO2_S3_KEY_SECRET``)."""
    return dict(("PGBACKREST_" + name.upper().replace("-", "_"), "%s" % value)
                for name, value in (secrets or {}).items() if value not in (None, ""))


def valid_target_time(value):
    """True when ``value`` is a recovery target time with an explicit UTC offset."""
    return bool(_TARGET_TIME.match((value or "").strip()))


def restore_target_args(target, target_action="promote", exclusive=False):
    """Restore arguments for a target: V(latest) (end of the archive), V(immediate) (end of the backup), or a time."""
    target = (target or "latest").strip()
    if target == "latest":
        return ["--type=default"]
    if target == "immediate":
        return ["--type=immediate", "--target-action=%s" % target_action]
    if not valid_target_time(target):
        raise ValueError("target %r is neither 'latest', 'immediate' nor a time with a UTC offset such as "
                         "'2026-11-26 10:41:00+00'" % target)
    args = ["--type=time", "--target=%s" % target, "--target-action=%s" % target_action]
    if exclusive:
        args.append("--target-exclusive")
    return args


def build_argv(binary, command, stanza=None, config=None, repo=None, options=None, command_args=None):
    """The pgBackRest argument list: binary, general options, the command, then the command's options."""
    argv = [binary]
    if config:
        argv.append("--config=%s" % config)
    if stanza:
        argv.append("--stanza=%s" % stanza)
    if repo:
        argv.append("--repo=%d" % int(repo))
    argv.extend(option_args(options))
    argv.append(command)
    argv.extend(command_args or [])
    return argv


def wrap(argv, env_names=(), os_user=None, container=None, docker=None, runuser=None, current_user=None,
         is_root=False):
    """Run ``argv`` as ``os_user`` on the host, or inside ``container``.

    Returns the final argument list. Raises ValueError when the module cannot switch to ``os_user``.
    """
    if container:
        cmd = [docker, "exec"]
        if os_user:
            cmd += ["-u", os_user]
        for name in sorted(env_names):
            cmd += ["-e", name]  # the value travels in the Docker CLI's environment, not in argv
        return cmd + [container] + list(argv)
    if not os_user or os_user == current_user:
        return list(argv)
    if not is_root:
        raise ValueError("the module runs as %s and cannot run pgBackRest as %s: become root or %s"
                         % (current_user, os_user, os_user))
    return [runuser, "-u", os_user, "--"] + list(argv)


# -- info ---------------------------------------------------------------------------------------------------
def iso_time(epoch):
    if epoch in (None, ""):
        return None
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat()


def summarize_backup(entry):
    """One backup of ``info`` as a flat dict."""
    info = entry.get("info") or {}
    stamp = entry.get("timestamp") or {}
    archive = entry.get("archive") or {}
    return dict(
        label=entry.get("label"),
        type=entry.get("type"),
        repo=(entry.get("database") or {}).get("repo-key"),
        prior=entry.get("prior"),
        start=stamp.get("start"),
        stop=stamp.get("stop"),
        start_time=iso_time(stamp.get("start")),
        stop_time=iso_time(stamp.get("stop")),
        size=info.get("size"),
        repo_size=(info.get("repository") or {}).get("size"),
        wal_start=archive.get("start"),
        wal_stop=archive.get("stop"),
        error=bool(entry.get("error", False)),
    )


def coverage_problem(newest_backup, oldest_backup, newest_archived, newest_archived_time, target, now):
    """Why the backups and the WAL archive cannot bring a cluster to ``target``, or None when they can.

    ``target``: V(latest) or the point in time in epoch seconds; ``now``: when the restore was asked for (a target
    after it is in the future). A backup must exist and WAL must have been archived; a point in time must lie
    between the end of the oldest backup and the newest archived WAL.
    """
    if newest_backup is None:
        return "the repository has no backup (take one: the backup role with dr_backup_physical)"
    if newest_archived is None:
        return "no WAL was archived yet"
    if target == "latest":
        return None
    target = float(target)
    if target > float(now):
        return "the target is in the future"
    if target < float(oldest_backup.get("stop") or 0):
        return "the oldest backup ended at %s, after the target" % oldest_backup["stop_time"]
    if target > float(newest_archived):
        return ("the newest WAL in the repository was archived at %s, before the target: restore to target=latest"
                " (up to then) or to an earlier time" % newest_archived_time)
    return None


def find_stanza(info, stanza):
    """The entry of ``stanza`` in the parsed ``info`` output (a list), or None."""
    for entry in info or []:
        if entry.get("name") == stanza:
            return entry
    return None


def summarize(entry, repo=None):
    """What playbooks need from one stanza of ``info``: status, repositories, backups, WAL archive range.

    With ``repo``, backups and archive ranges of that repository only.
    """
    if entry is None:
        return dict(status_code=None, status_message="stanza not in the info output", repos=[], backups=[],
                    newest_backup=None, oldest_backup=None, archive=[], backup_count=0)
    status = entry.get("status") or {}
    repos = [dict(key=r.get("key"), cipher=r.get("cipher"), status_code=(r.get("status") or {}).get("code"),
                  status_message=(r.get("status") or {}).get("message")) for r in entry.get("repo") or []]
    backups = [summarize_backup(b) for b in entry.get("backup") or []]
    archive = [dict(repo=(a.get("database") or {}).get("repo-key"), id=a.get("id"), min=a.get("min"),
                    max=a.get("max")) for a in entry.get("archive") or []]
    if repo:
        backups = [b for b in backups if b["repo"] == repo]
        archive = [a for a in archive if a["repo"] == repo]
        repos = [r for r in repos if r["key"] == repo]
    backups.sort(key=lambda b: (b["stop"] or 0, b["label"] or ""))
    good = [b for b in backups if not b["error"]]
    return dict(
        status_code=status.get("code"),
        status_message=status.get("message"),
        repos=repos,
        backups=backups,
        backup_count=len(backups),
        newest_backup=good[-1] if good else None,
        oldest_backup=good[0] if good else None,
        archive=archive,
    )


def stanza_missing(entry):
    """True when ``stanza-create`` has something to create (in any repository)."""
    if entry is None:
        return True
    missing = (STATUS_MISSING_STANZA_PATH, STATUS_MISSING_STANZA_DATA)
    codes = [((r.get("status") or {}).get("code")) for r in entry.get("repo") or []]
    if codes:
        return any(code in missing for code in codes)
    return (entry.get("status") or {}).get("code") in missing


def wal_dir(stanza, archive_id, segment):
    """Repository path of the folder holding WAL ``segment`` (``archive/<stanza>/<id>/<first 16 hex>``)."""
    return "archive/%s/%s/%s" % (stanza, archive_id, segment[:16])


def newest_file_time(listing, segment):
    """Newest modification time (epoch) among the ``repo-ls --output=json`` entries of ``segment``."""
    times = [meta.get("time") for name, meta in (listing or {}).items()
             if name.split("/")[-1].startswith(segment) and (meta or {}).get("type") == "file"
             and meta.get("time") is not None]
    return max(times) if times else None


_RESTORED_SET = re.compile(r"(?:repo(\d+): )?restore backup set (\S+?),")


def restored_set(output):
    """``{"set_used": label, "repo_used": n}`` from restore's info output (empty dict when not found)."""
    match = _RESTORED_SET.search(output or "")
    if not match:
        return {}
    return dict(set_used=match.group(2), repo_used=int(match.group(1)) if match.group(1) else None)


# -- errors -------------------------------------------------------------------------------------------------
_ERROR_CODE = re.compile(r"ERROR: \[(\d{3})\]")
_HINTS = (
    (re.compile(r"unable to find hostname|certificate verify failed|unable to verify certificate|"
                r"TLS (handshake|error)|\bSSL[ _](error|routines|connect)", re.I),
     "TLS to the repository failed: the endpoint name must match its certificate; check repoN-storage-ca-file "
     "(pgBackRest always speaks HTTPS to S3)"),
    (re.compile(r"\[056\]|\[027\]|unable to find primary cluster|no database found|DbConnectError"),
     "PostgreSQL cannot be reached: check pg1-path, pg1-socket-path, pg1-port and pg1-user in the "
     "configuration, and that the server runs"),
    (re.compile(r"has a stanza-create been performed|\[055\]"),
     "the stanza is missing from the repository: run the command stanza-create first"),
    (re.compile(r"\[082\]|was not archived|archive_command|archive-push", re.I),
     "WAL does not reach the repository: check archive_mode=on and archive_command on the server "
     "(SELECT * FROM pg_stat_archiver)"),
    (re.compile(r"\[095\]|CryptoError|cipher", re.I),
     "decryption failed: the repository's cipher passphrase differs from the one given in secrets"),
    (re.compile(r"\[050\]|unable to acquire lock|lock.*held", re.I),
     "another pgBackRest command holds the stanza's lock: wait for it to finish"),
    (re.compile(r"\[028\]|\[044\]|system-id|database mismatch|does not match", re.I),
     "the repository belongs to another cluster (system identifier or PostgreSQL version differs)"),
    (re.compile(r"\[040\]|contains files|not empty", re.I),
     "restore only into an empty (or missing) data directory, or use delta"),
    (re.compile(r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|NoSuchBucket|\[103\]|\[104\]", re.I),
     "S3 refused the request: check the bucket, the keys and the region"),
    (re.compile(r"Permission denied", re.I),
     "a path is not accessible: run pgBackRest as the PostgreSQL OS user (os_user) and check ownership"),
    (re.compile(r"recovery target|before configured recovery target", re.I),
     "the archive does not reach the recovery target: choose an earlier target or target=latest"),
)


def error_code(text):
    """pgBackRest's error code in ``text`` (the last one), or None."""
    codes = _ERROR_CODE.findall(text or "")
    return int(codes[-1]) if codes else None


def hint(text):
    for pattern, advice in _HINTS:
        if pattern.search(text or ""):
            return advice
    return None


def explain(command, rc, stdout, stderr):
    """One line: what failed, pgBackRest's own error lines, and a hint."""
    text = "\n".join(part for part in (stderr, stdout) if part)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "HINT" in line]
    detail = " | ".join((errors or lines)[-4:]) or "no error output"
    msg = "pgbackrest %s failed (exit status %s): %s" % (command, rc, detail)
    advice = hint(text)
    if advice:
        msg += " -- %s" % advice
    return msg


# --- progress of a backup or a restore (printed by the action plugin, see module_utils/progress.py) ----------
DEFAULT_CONFIG = "/etc/pgbackrest/pgbackrest.conf"
DEFAULT_LOCK_PATH = "/tmp/pgbackrest"


def lock_path(options, config=None):
    """pgBackRest's lock-path: the module's options, else the configuration file's ``lock-path=``, else the
    default. The configuration is read loosely (the last ``lock-path=`` line of any section)."""
    if (options or {}).get("lock-path"):
        return str(options["lock-path"])
    found = None
    try:
        with open(config or DEFAULT_CONFIG) as handle:
            for line in handle:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "lock-path" and value.strip():
                    found = value.strip()
    except (OSError, UnicodeDecodeError):
        pass
    return found or DEFAULT_LOCK_PATH


def backup_lock_progress(text):
    """What the backup lock file of a running backup says of its progress: ``(done, total)`` in bytes (pgBackRest
    2.48 and later write ``sz``/``szCplt``), ``(fraction, None)`` for a percentage only (2.41 to 2.47 write
    ``percentComplete`` in hundredths of a percent), or None (no progress recorded yet, or not a lock file)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    size, done = data.get("sz"), data.get("szCplt")
    if isinstance(size, int) and isinstance(done, int) and size > 0:
        return min(done, size), size
    for key in ("pctCplt", "percentComplete"):
        if isinstance(data.get(key), int):
            return min(max(data[key], 0), 10000) / 10000.0, None
    return None


class BackupProgress(object):
    """Bytes copied by a running ``pgbackrest backup``, from its lock file ``<lock-path>/<stanza>-backup.lock``.

    Called, it returns ``(done, total)``: the lock's own byte counts, or its percentage applied to ``estimate``
    (the data directory's size); ``(0, estimate)`` until the lock holds progress.
    """

    def __init__(self, lock_dir, stanza, estimate=None):
        self.path = os.path.join(lock_dir, "%s-backup.lock" % stanza)
        self.estimate = estimate

    def __call__(self):
        try:
            with open(self.path) as handle:
                found = backup_lock_progress(handle.read())
        except (OSError, UnicodeDecodeError):
            found = None
        if found is None:
            return 0, self.estimate
        done, total = found
        if total is None:
            if not self.estimate:
                return 0, None
            return int(done * self.estimate), self.estimate
        return done, total


def tree_size(path):
    """Bytes of the regular files under ``path`` (0 when it cannot be read); links are not followed."""
    total = 0
    for folder, dummy, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
