"""Run modules and playbooks through the real Ansible commands of the project's virtual environment.

Everything runs with cwd = the repository root, so ``ansible.cfg`` applies (``atlasia.dr`` is found through
``.collections/``), with ``ANSIBLE_HOME`` in ``.ansible/`` and an explicit ``ansible_python_interpreter``
(interpreter discovery can pick a python that is not installed on these machines).

    from tests.support.ansible_run import run_module, run_playbook

    result = run_module("pg_dump_backup", {"db": "app", ...}, check=True)
    assert not result.get("failed"), result.get("msg")
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from tests.support import ANSIBLE_HOME, REPO_ROOT, VENV_BIN, VENV_PYTHON, venv_env

DEFAULT_TIMEOUT = 900
JSON_CALLBACK = "ansible.posix.json"


class AnsibleRunError(RuntimeError):
    """Ansible itself did not produce a result (bad arguments, crash, unparsable output)."""


class ModuleResult(dict):
    """The module's result dict (``failed``, ``changed``, ``msg``, return values ...).

    Extra attributes, not keys: ``rc`` (the ansible command's exit code), ``stdout``, ``stderr``, ``cmd``.
    """

    rc: int
    stdout: str
    stderr: str
    cmd: list


def _ansible_bin(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        raise AnsibleRunError(f"{path} not found: run `make setup`")
    return str(path)


def ansible_env(env: dict | None = None, json_output: bool = False) -> dict:
    """The environment for an ansible command: venv on PATH, project ANSIBLE_HOME and config, no colour."""
    ANSIBLE_HOME.mkdir(exist_ok=True)
    extra = {
        "ANSIBLE_HOME": str(ANSIBLE_HOME),
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(ANSIBLE_HOME / "tmp"),
        "ANSIBLE_ASYNC_DIR": str(ANSIBLE_HOME / "async"),
        "PYTHONUNBUFFERED": "1",
    }
    if json_output:
        extra.update({"ANSIBLE_STDOUT_CALLBACK": JSON_CALLBACK, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"})
    merged = venv_env(extra)
    if env:
        merged.update({k: str(v) for k, v in env.items()})
    return merged


def _fqcn(module: str) -> str:
    return module if "." in module else f"atlasia.dr.{module}"


def run_module(
    module: str,
    args: dict | None = None,
    check: bool = False,
    diff: bool = False,
    env: dict | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    verbosity: int = 0,
) -> ModuleResult:
    """Run one module on localhost (connection local) and return its result dict.

    ``module`` is a FQCN, or a bare name meaning ``atlasia.dr.<name>``. ``args`` are passed as JSON (types
    kept). ``env`` adds environment variables for the ansible process (and so the module). A failed module
    returns normally with ``result["failed"]`` true; :class:`AnsibleRunError` means Ansible gave no result.
    """
    cmd = [
        _ansible_bin("ansible"), "localhost", "-i", "localhost,", "-c", "local",
        "-m", _fqcn(module),
        "-e", json.dumps({"ansible_python_interpreter": str(VENV_PYTHON)}),
    ]
    if args:  # no -a at all without arguments: modules without options refuse '{}' as raw params
        cmd[6:6] = ["-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=ansible_env(env, json_output=True), capture_output=True,
                          text=True, timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout)
        host_result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise AnsibleRunError(
            f"no module result from {' '.join(cmd[:7])} (rc={proc.returncode})\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        ) from None
    result = ModuleResult(host_result)
    result.rc = proc.returncode
    result.stdout = proc.stdout
    result.stderr = proc.stderr
    result.cmd = cmd
    return result


def run_playbook(
    path: str | os.PathLike,
    extra_vars: dict | None = None,
    inventory: str | os.PathLike | None = None,
    check: bool = False,
    env: dict | None = None,
    diff: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    json_output: bool = False,
    extra_args: list | None = None,
) -> subprocess.CompletedProcess:
    """Run ``ansible-playbook`` and return the CompletedProcess (text stdout/stderr; check ``returncode``).

    Without ``inventory`` the play runs against a generated inventory holding only ``localhost`` with
    connection local and the venv's Python. With an inventory, the interpreter of each host is the
    inventory's business (set ``ansible_python_interpreter`` there for localhost). ``extra_vars`` go in as
    JSON. ``json_output`` uses the json callback and sets ``proc.json`` to the parsed output.
    """
    cmd = [_ansible_bin("ansible-playbook")]
    tmp_inventory = None
    if inventory is None:
        handle = tempfile.NamedTemporaryFile("w", prefix="inventory-", suffix=".yml", delete=False,
                                             dir=_tmp_dir())
        with handle:
            json.dump({"all": {"hosts": {"localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(VENV_PYTHON),
            }}}}, handle)
        tmp_inventory = handle.name
        cmd += ["-i", tmp_inventory]
    else:
        cmd += ["-i", str(inventory)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += list(extra_args or [])
    cmd.append(str(path))
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=ansible_env(env, json_output=json_output),
                              capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        if tmp_inventory:
            os.unlink(tmp_inventory)
    if json_output:
        try:
            proc.json = json.loads(proc.stdout)
        except ValueError:
            proc.json = None
    return proc


def _tmp_dir() -> str:
    path = Path(REPO_ROOT) / ".tmp"
    path.mkdir(exist_ok=True)
    return str(path)
