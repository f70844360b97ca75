"""`make demo`: a full DR drill on the embedded local default.

Starts PostgreSQL 15, OpenBao (Vault API) and SeaweedFS (S3 API) on 127.0.0.1, seeds sample data, runs
playbooks/backup.yml, simulates a disaster (database dropped, Vault secret changed, configuration and uploads
damaged), runs playbooks/restore.yml (database, Vault, configuration and files), checks that everything is
back byte for byte, prints the report, and stops every server it started.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.localenv import LocalEnvironment, run_playbook  # noqa: E402


def say(text):
    print("\n\033[1m==> %s\033[0m" % text, flush=True)


def main():
    started = time.monotonic()
    env = LocalEnvironment()
    say("Starting PostgreSQL 15, OpenBao and an S3 server on 127.0.0.1 (under %s)" % env.root)
    env.start()
    try:
        say("Servers: PostgreSQL 127.0.0.1:%d, OpenBao %s, S3 %s" % (env.pg.port, env.bao.addr, env.s3.endpoint_url))
        vars_file = env.write_vars()
        before = env.snapshot()
        rows = {name: info.get("rows") for name, info in before["digests"]["tables"].items()} \
            if isinstance(before["digests"].get("tables"), dict) else None
        say("Seeded database %s%s" % ("aiteam", (": %s" % json.dumps(rows)) if rows else ""))

        say("Backup: ansible-playbook playbooks/backup.yml -e env=local")
        run_playbook("backup.yml", vars_file)

        say("Disaster: dropping database aiteam, changing the Vault secret, damaging .env.prod and uploads")
        env.disaster()

        say("Restore: ansible-playbook playbooks/restore.yml -e env=local (database, Vault, configuration, files)")
        run_playbook("restore.yml", vars_file, "-e", "dr_restore_config=true", "-e", "dr_restore_files=true")

        say("Checking that everything is back")
        after = env.snapshot()
        problems = []
        if after["digests"] != before["digests"]:
            problems.append("database content differs from before the disaster")
        if after["secret"] != before["secret"]:
            problems.append("Vault secret not restored: %s" % after["secret"])
        if after["files"] != before["files"]:
            missing = sorted(set(before["files"]) - set(after["files"]))
            changed = sorted(k for k in before["files"] if k in after["files"] and before["files"][k] != after["files"][k])
            problems.append("application files differ (missing %s, changed %s)" % (missing, changed))
        reports = sorted((env.root / "reports").glob("restore-*.json"))  # dr_reports_dir of LocalEnvironment.vars
        report = json.loads(reports[-1].read_text()) if reports else {}
        if not report.get("verified"):
            problems.append("the restore report does not say verified: true")
        print("  database digests identical: %s" % (after["digests"] == before["digests"]))
        print("  Vault secret restored:      %s" % (after["secret"] == before["secret"]))
        print("  files restored:             %s" % (after["files"] == before["files"]))
        print("  report:                     %s (verified: %s, RTO %.1f s, RPO %.1f s)" % (
            reports[-1] if reports else "-", report.get("verified"), report.get("rto_seconds") or 0,
            report.get("rpo_seconds") or 0))
        if problems:
            say("DEMO FAILED: " + "; ".join(problems))
            return 1
        say("Demo passed in %.0f s: backup, disaster, restore and verification all succeeded" % (
            time.monotonic() - started))
        return 0
    finally:
        say("Stopping the servers")
        env.stop()


if __name__ == "__main__":
    sys.exit(main())
