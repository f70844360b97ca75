# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Recovery reports: phases against the plan's targets, achieved RTO/RPO, what was verified.

The keys ``rto_seconds``, ``rpo_seconds``, ``phases`` and ``verified`` are a stable interface (monitoring,
drill history and AWX consumers read them).
"""

from __future__ import annotations

import datetime

from ansible.module_utils.common.text.converters import to_text

# The plan's phase targets (seconds).
PLAN_TARGETS = {
    "provisioning": 2 * 3600,
    "assessment": 15 * 60,
    "preparation": 30 * 60,
    "restoration": 2 * 3600,
    "verification": 3600,
    "post-recovery": 30 * 60,
}
RTO_TARGET = 4 * 3600
RPO_TARGET = 24 * 3600


def parse_time(value):
    """Aware datetime from epoch seconds, ISO 8601 text, or ``YYYYMMDD_HHMMSS``."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
    text = to_text(value).strip()
    try:
        return datetime.datetime.fromtimestamp(float(text), datetime.timezone.utc)
    except ValueError:
        pass
    try:
        return datetime.datetime.strptime(text, "%Y%m%d_%H%M%S").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        pass
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def human(seconds):
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return "%.1f s" % seconds
    if seconds < 3600:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    return "%d h %02d min" % (seconds // 3600, (seconds % 3600) // 60)


def build(kind, phases, checks, started=None, finished=None, backup=None, backup_time=None, environment=None,
          safety_backup=None, extra=None, rto_target=RTO_TARGET, rpo_target=RPO_TARGET, status=None):
    """Assemble the report dict."""
    norm_phases = []
    for phase in phases:
        p_start = parse_time(phase.get("started"))
        p_end = parse_time(phase.get("finished"))
        duration = (p_end - p_start).total_seconds() if p_start and p_end else phase.get("duration")
        target = phase.get("target_seconds", PLAN_TARGETS.get(phase["name"]))
        norm_phases.append(dict(
            name=phase["name"], started=p_start.isoformat() if p_start else None,
            finished=p_end.isoformat() if p_end else None,
            duration_seconds=round(duration, 3) if duration is not None else None, target_seconds=target,
            # None: the phase has no target (nothing to be within)
            within_target=None if target is None else (duration is not None and duration <= target),
            status=phase.get("status", "ok"), notes=phase.get("notes")))
    starts = [parse_time(p["started"]) for p in norm_phases if p["started"]]
    ends = [parse_time(p["finished"]) for p in norm_phases if p["finished"]]
    t_start = parse_time(started) or (min(starts) if starts else None)
    t_end = parse_time(finished) or (max(ends) if ends else None)
    rto = round((t_end - t_start).total_seconds(), 3) if t_start and t_end else None
    b_time = parse_time(backup_time)
    rpo = round((t_start - b_time).total_seconds(), 3) if t_start and b_time else None
    norm_checks = [dict(name=c["name"], ok=bool(c.get("ok")), detail=c.get("detail")) for c in checks]
    phases_ok = all(p["status"] == "ok" for p in norm_phases)
    verified = bool(norm_checks) and all(c["ok"] for c in norm_checks) and phases_ok and status != "failed"
    report = dict(
        kind=kind, environment=environment, status=status or ("succeeded" if phases_ok else "failed"),
        started=t_start.isoformat() if t_start else None, finished=t_end.isoformat() if t_end else None,
        rto_seconds=rto, rto_target_seconds=rto_target, rto_within_target=rto is not None and rto <= rto_target,
        rpo_seconds=rpo, rpo_target_seconds=rpo_target, rpo_within_target=rpo is not None and rpo <= rpo_target,
        phases=norm_phases, checks=norm_checks, verified=verified, backup=backup,
        backup_time=b_time.isoformat() if b_time else None, safety_backup=safety_backup)
    if extra:
        for key, value in extra.items():
            report.setdefault(key, value)
    return report


def markdown(report):
    """Human-readable Markdown of a report."""
    lines = ["# %s report: %s" % (report["kind"].capitalize(), report["status"].upper()), ""]
    lines.append("- Environment: %s" % (report.get("environment") or "-"))
    lines.append("- Started: %s, finished: %s" % (report.get("started") or "-", report.get("finished") or "-"))
    lines.append("- **Achieved RTO: %s** (target %s, %s)" % (
        human(report["rto_seconds"]), human(report["rto_target_seconds"]),
        "met" if report["rto_within_target"] else "NOT met"))
    lines.append("- **Achieved RPO: %s** (target %s, %s)" % (
        human(report["rpo_seconds"]), human(report["rpo_target_seconds"]),
        "met" if report["rpo_within_target"] else "NOT met"))
    lines.append("- Verified: **%s**" % ("yes" if report["verified"] else "NO"))
    backup = report.get("backup") or {}
    if backup:
        used = backup.get("set_id") or backup.get("path") or backup
        lines.append("- Backup used: %s (taken %s)" % (used, report.get("backup_time") or "-"))
        if backup.get("source"):
            lines.append("- Source: %s" % backup["source"])
        if backup.get("skipped"):
            lines.append("- Newer sets skipped (did not verify): %s" % ", ".join(backup["skipped"]))
        if "authenticated" in backup:
            lines.append("- Authenticated (MAC checked): %s; encrypted: %s" % (
                "yes" if backup.get("authenticated") in (True, "True", "true") else "no",
                "yes" if backup.get("encrypted") in (True, "True", "true") else "no"))
        for passed in backup.get("passed_over") or []:
            lines.append("- Passed over %s (%s): %s" % (passed.get("set_id"), passed.get("where"), passed.get("reason")))
    if report.get("safety_backup"):
        lines.append("- Safety backup written: %s" % report["safety_backup"])
    created = report.get("globals_created")
    if isinstance(created, dict):
        def named(item):  # a membership [role, member] reads "member in role"
            return " in ".join(reversed(item)) if isinstance(item, list) else item
        parts = ["%s %s" % (key, ", ".join(named(item) for item in created.get(key) or []) or "none")
                 for key in ("roles", "memberships", "tablespaces")]
        lines.append("- Cluster globals created before the database: %s" % "; ".join(parts))
    for entry in report.get("file_data") or []:  # file sets restored from the file repository (restic snapshots)
        if isinstance(entry, dict):
            lines.append("- File data %s: %s files of snapshot %s from the %s repository %s" % (
                entry.get("name"), entry.get("files"), entry.get("snapshot_id"), entry.get("source"),
                entry.get("repository")))
    lines += ["", "## Phases", "", "| Phase | Duration | Target | Within target | Status |",
              "|---|---|---|---|---|"]
    for phase in report["phases"]:
        lines.append("| %s | %s | %s | %s | %s |" % (
            phase["name"], human(phase["duration_seconds"]), human(phase["target_seconds"]),
            "-" if phase["within_target"] is None else ("yes" if phase["within_target"] else "no"), phase["status"]))
    lines += ["", "## Checks", "", "| Check | Result | Detail |", "|---|---|---|"]
    for check in report["checks"]:
        detail = to_text(check.get("detail") if check.get("detail") is not None else "").replace("|", "\\|")
        lines.append("| %s | %s | %s |" % (check["name"], "pass" if check["ok"] else "FAIL", detail))
    if report.get("next_steps"):
        lines += ["", "## What to do next", ""] + ["- %s" % step for step in report["next_steps"]]
    return "\n".join(lines) + "\n"


def timeline_svg(report, width=760):
    """An SVG timeline: one bar per phase (actual duration) over a grey bar (the plan's target)."""
    phases = report["phases"]
    longest = max([p["duration_seconds"] or 0 for p in phases] + [p["target_seconds"] or 0 for p in phases] + [1])
    left, bar_w, row_h = 150, width - 170, 34
    height = 50 + row_h * len(phases)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">'
           % (width, height),
           '<text x="10" y="20" font-size="14" font-weight="bold">%s: phases against the plan\'s targets '
           '(RTO %s)</text>' % (report["kind"].capitalize(), human(report["rto_seconds"]))]
    for index, phase in enumerate(phases):
        y = 40 + index * row_h
        target_w = bar_w * (phase["target_seconds"] or 0) / longest
        actual_w = max(1.0, bar_w * (phase["duration_seconds"] or 0) / longest)
        colour = "#2e7d32" if phase["within_target"] is not False and phase["status"] == "ok" else "#c62828"
        out.append('<text x="10" y="%d">%s</text>' % (y + 15, phase["name"]))
        out.append('<rect x="%d" y="%d" width="%.1f" height="20" fill="#e0e0e0"/>' % (left, y, target_w))
        out.append('<rect x="%d" y="%d" width="%.1f" height="12" fill="%s"/>' % (left, y + 4, actual_w, colour))
        out.append('<text x="%.1f" y="%d">%s / %s</text>' % (left + min(max(actual_w, target_w), bar_w - 120) + 4,
                                                             y + 15, human(phase["duration_seconds"]),
                                                             human(phase["target_seconds"])))
    out.append("</svg>")
    return "\n".join(out) + "\n"
