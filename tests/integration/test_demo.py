"""`make demo` as a new user runs it: scripts/demo.sh, whole, on the embedded local default.

The demo starts its own PostgreSQL 15, OpenBao and S3 server on 127.0.0.1, backs up, damages the database, the
Vault secret, the configuration and the uploads, restores them and checks that everything is back byte for byte;
it exits non-zero and says "DEMO FAILED" when anything is not. Nothing else runs it in ``make test``: it broke
once for weeks (it read the restore report from a folder the local environment no longer writes to) while every
other test passed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_make_demo_runs_a_full_drill_and_says_it_passed():
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run([str(ROOT / "scripts" / "demo.sh")], cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=840, check=False)
    tail = run.stdout[-4000:]
    assert run.returncode == 0, tail
    assert "DEMO FAILED" not in run.stdout, tail
    assert "Demo passed in" in run.stdout, tail
    for line in ("database digests identical: True", "Vault secret restored:      True",
                 "files restored:             True"):
        assert line in run.stdout, tail
    assert "(verified: True," in run.stdout, tail
    assert "Stopping the servers" in run.stdout, tail
