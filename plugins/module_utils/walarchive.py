# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The RPO of continuous WAL archiving: how old the newest archived WAL is, and whether archiving fails.

Plain functions, no I/O: :data:`STATS_SQL` reads ``pg_stat_archiver`` and the WAL position on the server,
:func:`parse_stats` turns its row into numbers, :func:`assess` compares them (and the per-repository view of
``pgbackrest info``) with the RPO target and lists the problems an on-call engineer must act on.

A quiet database archives nothing: PostgreSQL switches a segment on ``archive_timeout`` only when WAL was written
since the last switch. So an old archive is only a problem when WAL is waiting (the server's WAL position is
past the end of the last archived segment): then the data written since the last archived segment is at risk
and is at most :func:`assess`'s ``age_seconds`` old.
"""

from __future__ import annotations

import re

# One row; NULL prints as an empty field (psql -A -t). Times as epoch seconds, taken from the server's clock.
STATS_SQL = (
    "SELECT a.archived_count, a.last_archived_wal, extract(epoch FROM a.last_archived_time), a.failed_count, "
    "a.last_failed_wal, extract(epoch FROM a.last_failed_time), "
    "(SELECT setting FROM pg_settings WHERE name = 'archive_mode'), "
    "(SELECT setting FROM pg_settings WHERE name = 'archive_timeout'), "
    "pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, "
    "(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), extract(epoch FROM clock_timestamp()) "
    "FROM pg_stat_archiver a"
)
STATS_FIELDS = ("archived_count", "last_archived_wal", "last_archived", "failed_count", "last_failed_wal",
                "last_failed", "archive_mode", "archive_timeout", "in_recovery", "current_lsn", "wal_segment_size",
                "now")

_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.[0-9A-F]{8}\.backup|\.partial)?$", re.I)
_LSN_RE = re.compile(r"^([0-9A-Fa-f]+)/([0-9A-Fa-f]+)$")


def parse_lsn(text):
    """``'16/B374D848'`` -> the byte position as an int; None for an empty value."""
    if not text:
        return None
    match = _LSN_RE.match(text.strip())
    if not match:
        raise ValueError("not a WAL location: %r" % text)
    return (int(match.group(1), 16) << 32) + int(match.group(2), 16)


def segment_end(name, segment_size):
    """Byte position where the WAL covered by the archived file ``name`` ends, or None when unknown.

    A full segment ends where the next one starts; a backup history file (``<segment>.<offset>.backup``) or a
    ``.partial`` segment does not prove its segment complete, so only the segment before it counts. Timeline
    history files (``00000002.history``) say nothing about a position.
    """
    match = _SEGMENT_RE.match((name or "").strip())
    if not match or not segment_size:
        return None
    log, seg = int(match.group(2), 16), int(match.group(3), 16)
    number = log * (0x100000000 // segment_size) + seg
    complete = number if match.group(4) else number + 1
    return complete * segment_size


def _number(value, kind=float):
    if value is None or value == "":
        return None
    return kind(value)


def parse_stats(row):
    """The row of :data:`STATS_SQL` (strings, empty for NULL) as a dict of numbers, booleans and strings."""
    if len(row) != len(STATS_FIELDS):
        raise ValueError("pg_stat_archiver: expected %d fields, got %d" % (len(STATS_FIELDS), len(row)))
    raw = dict(zip(STATS_FIELDS, row))
    return dict(
        archived_count=_number(raw["archived_count"], int),
        last_archived_wal=raw["last_archived_wal"] or None,
        last_archived=_number(raw["last_archived"]),
        failed_count=_number(raw["failed_count"], int),
        last_failed_wal=raw["last_failed_wal"] or None,
        last_failed=_number(raw["last_failed"]),
        archive_mode=raw["archive_mode"] or None,
        archive_timeout=_number(raw["archive_timeout"], int),
        in_recovery=raw["in_recovery"] == "t",
        current_lsn=parse_lsn(raw["current_lsn"]),
        wal_segment_size=_number(raw["wal_segment_size"], int),
        now=_number(raw["now"]),
    )


def _age(now, stamp):
    return None if stamp is None else round(max(0.0, now - stamp), 1)


def _segment_key(name):
    """Sortable (timeline, log, segment) of a segment name; None when it is not one."""
    match = _SEGMENT_RE.match((name or "").strip())
    return tuple(int(g, 16) for g in match.groups()[:3]) if match else None


def fmt_seconds(value):
    return "%d s" % round(value) if value < 600 else "%.1f min" % (value / 60.0)


def assess(stats, rpo_target, repos=None):
    """Compare the archive with the RPO target ``rpo_target`` (seconds).

    ``stats``: :func:`parse_stats`'s dict. ``repos``: the ``archive`` list of the ``atlasia.dr.pgbackrest`` module's
    ``info`` with ``wal_times`` (``repo``, ``max``, ``max_archived``), or None. Returns a dict with
    ``newest_archived`` (epoch), ``age_seconds``, ``unarchived_bytes`` (None when unknown), ``at_risk_seconds``
    (0 when nothing waits), ``failing``, per-repository ``repos`` and the ``problems`` (empty when healthy).
    """
    now = stats["now"]
    problems = []
    last_archived = stats.get("last_archived")
    last_failed = stats.get("last_failed")
    failing = last_failed is not None and (last_archived is None or last_failed > last_archived)

    repo_view = []
    for entry in repos or []:
        stamp = entry.get("max_archived")
        repo_view.append(dict(repo=entry.get("repo"), max=entry.get("max"), max_archived=stamp,
                              age_seconds=_age(now, stamp)))
    repo_stamps = [r["max_archived"] for r in repo_view if r["max_archived"] is not None]
    # The server's own record first; the repositories when its statistics were reset (a crash, a restore).
    newest = last_archived if last_archived is not None else (max(repo_stamps) if repo_stamps else None)
    age = _age(now, newest)

    end = segment_end(stats.get("last_archived_wal"), stats.get("wal_segment_size"))
    current = stats.get("current_lsn")
    unarchived = max(0, current - end) if end is not None and current is not None else None
    waiting = unarchived is None or unarchived > 0
    at_risk = (age if waiting else 0.0) if age is not None else None

    if stats.get("archive_mode") == "off":
        problems.append("WAL archiving is off (archive_mode=off): nothing newer than the last backup can be "
                        "restored; run playbooks/pgbackrest.yml and restart PostgreSQL")
    if failing:
        problems.append(
            "WAL archiving fails: PostgreSQL could not archive %s (last failure %s ago, %s failures since the "
            "statistics were reset) and has archived nothing since %s; WAL piles up in pg_wal. Check "
            "`SELECT * FROM pg_stat_archiver`, the server log (archive_command) and the pgBackRest log: a full "
            "or unwritable repository, the S3 endpoint, the cipher passphrase"
            % (stats.get("last_failed_wal") or "a segment", fmt_seconds(now - last_failed),
               stats.get("failed_count"), ("%s ago" % fmt_seconds(age)) if age is not None else "it started"))
    if stats.get("archive_mode") != "off":
        if newest is None and waiting:
            problems.append("no WAL segment was archived yet although WAL was written: check archive_command "
                            "(SELECT * FROM pg_stat_archiver) and run playbooks/pgbackrest.yml")
        elif age is not None and age > rpo_target and waiting:
            problems.append(
                "the newest archived WAL is %s old, more than the RPO target of %s (dr_rpo_target), while %s of "
                "WAL wait to be archived: a loss of the server now loses up to %s of writes"
                % (fmt_seconds(age), fmt_seconds(rpo_target),
                   "an unknown amount" if unarchived is None else "%d bytes" % unarchived, fmt_seconds(age)))
    server_key = _segment_key(stats.get("last_archived_wal"))
    for repo in repo_view:
        if repo["max"] is None:
            problems.append("repo%s holds no archived WAL: check the repository (pgbackrest check)" % repo["repo"])
            continue
        behind = server_key is not None and (_segment_key(repo["max"]) or ()) < server_key
        if behind and repo["age_seconds"] is not None and repo["age_seconds"] > rpo_target:
            problems.append("repo%s's newest WAL segment %s is %s old and behind the server's last archived %s: "
                            "that repository misses WAL (pgbackrest check)"
                            % (repo["repo"], repo["max"], fmt_seconds(repo["age_seconds"]),
                               stats.get("last_archived_wal")))
    return dict(newest_archived=newest, age_seconds=age, unarchived_bytes=unarchived, at_risk_seconds=at_risk,
                failing=failing, failed_count=stats.get("failed_count"), repos=repo_view,
                rpo_target=rpo_target, problems=problems, ok=not problems)
