"""Test support code for atlasia.dr: real servers and real Ansible runs for the test suites.

- :mod:`tests.support.postgres`: throwaway PostgreSQL 15 servers on 127.0.0.1, the sample schema loader and
  content digests for byte-exact round-trip checks (also a CLI: ``python -m tests.support.postgres``).
- :mod:`tests.support.ansible_run`: run a module or a playbook through the real ``ansible`` commands of the
  project's virtual environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The repository root (also the collection root: ``.collections/ansible_collections/atlasia/dr`` links here).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The project's virtual environment, made by ``make setup``.
VENV = REPO_ROOT / ".venv"
VENV_BIN = VENV / "bin"
#: The Python that runs Ansible (and modules on localhost): the venv's, or the one running the tests.
VENV_PYTHON = VENV_BIN / "python" if os.path.exists(VENV_BIN / "python") else Path(sys.executable)
#: Project-local ANSIBLE_HOME so runs never write to ~/.ansible.
ANSIBLE_HOME = REPO_ROOT / ".ansible"
#: Scratch space for test runs (git-ignored).
TMP_ROOT = REPO_ROOT / ".tmp"
#: The sample schema (tables users, personas, workflow_runs ...) shared by tests and the demo.
SAMPLE_SCHEMA = Path(__file__).resolve().parent / "sample_schema.sql"


def venv_env(extra: dict | None = None) -> dict:
    """Return os.environ with the venv first on PATH, ANSIBLE_HOME project-local, and ``extra`` applied."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env.setdefault("ANSIBLE_HOME", str(ANSIBLE_HOME))
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


__all__ = [
    "ANSIBLE_HOME",
    "REPO_ROOT",
    "SAMPLE_SCHEMA",
    "TMP_ROOT",
    "VENV",
    "VENV_BIN",
    "VENV_PYTHON",
    "venv_env",
]
