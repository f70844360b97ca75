# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The action plugin behind the atlasia.dr modules with a long streaming step: prints their progress.

Without it a module is one silent task: a two-hour dump shows nothing until it ends. :class:`ProgressAction` gives
the module the internal ``progress_file`` option (a new random name in the host's temporary folder, the first of
the shell's ``system_tmpdirs``, where the module's user can write and the login user can read; see
``module_utils/progress.py``), runs the module exactly as a normal task does (same transfer, pipelining, become,
result parsing) in a thread of the worker process, and meanwhile, every ``dr_progress_interval`` seconds (default
10, 0 turns this off), reads that file through a copy of the connection and prints one line such as
``pg_dump_backup on db1: 1.2 GiB of about 3.4 GiB dumped, 85 MiB/s, about 26 s left, 210 MiB written``.
The line goes to stderr when the stdout callback writes JSON, which any other line on stdout would break.

A module that ends before the first interval costs nothing more than a normal run: no extra command reaches the
host. The read uses no become (the file is world-readable and holds only byte counts and times) and a copy of the
connection, so it never touches the state of the module's own command. A failed read only skips a line; the
task's result is always the module's own. Check mode and tasks with their own ``async:`` run the normal way. The
module removes its progress file when it exits.
"""

from __future__ import annotations

import copy
import json
import secrets
import shlex
import threading
import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.atlasia.dr.plugins.module_utils.progress import format_line

display = Display()

DEFAULT_INTERVAL = 10.0


class ProgressAction(ActionBase):
    """Runs the task's module, printing its progress (see the module docstring)."""

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ProgressAction, self).run(tmp, task_vars)
        del tmp
        wrap_async = self._task.async_val and not self._connection.has_native_async
        interval = self._interval(task_vars)
        if wrap_async or interval <= 0 or self._task.check_mode:
            outcome = self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        else:
            outcome = self._run_watched(task_vars, interval)
        result = merge_hash(result, outcome)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _interval(self, task_vars):
        value = task_vars.get("dr_progress_interval", DEFAULT_INTERVAL)
        try:
            value = self._templar.template(value)
        except Exception:  # pylint: disable=broad-except
            pass
        try:
            return float(value)
        except (TypeError, ValueError):
            raise AnsibleError("dr_progress_interval must be a number of seconds (0 turns progress off), not %r"
                               % (value,))

    def _progress_path(self):
        shell = self._connection._shell
        try:
            folders = shell.get_option("system_tmpdirs") or ["/tmp"]
        except (KeyError, AttributeError, AnsibleError):
            folders = ["/tmp"]
        return shell.join_path(folders[0], "atlasia-dr-progress-%s.json" % secrets.token_hex(16))

    def _run_watched(self, task_vars, interval):
        path = self._progress_path()
        module_args = dict(self._task.args)
        module_args["progress_file"] = path
        label = "%s on %s" % (self._task.action.rsplit(".", 1)[-1], task_vars.get("inventory_hostname", "?"))
        box = {}

        def work():
            try:
                box["result"] = self._execute_module(module_args=module_args, task_vars=task_vars)
            except BaseException as exc:  # re-raised in the task's thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="atlasia-dr-module")
        worker.daemon = True
        worker.start()
        reader = None
        previous = None
        due = time.monotonic() + interval
        while True:
            worker.join(max(0.0, due - time.monotonic()))
            if not worker.is_alive():
                break
            due = time.monotonic() + interval
            if reader is None:
                reader = copy.copy(self._connection)
            state = self._read_state(reader, path)
            if state is not None:
                display.display(format_line(label, state, previous), stderr=_machine_readable_stdout())
                previous = state
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _read_state(self, connection, path):
        """The module's last state, or None (not written yet, or the read failed: a line is skipped)."""
        cmd = "cat %s" % shlex.quote(path)
        executable = self._play_context.executable
        if connection.allow_executable and executable:
            cmd = "%s -c %s" % (executable, shlex.quote(cmd))
        try:
            rc, out, dummy = connection.exec_command(cmd, in_data=None, sudoable=False)
        except Exception as exc:  # pylint: disable=broad-except
            display.vvv("progress: cannot read %s: %s" % (path, exc))
            return None
        if rc != 0:
            return None
        return load_state(to_text(out, errors="surrogate_or_strict"))


def _machine_readable_stdout():
    """A JSON stdout callback (ansible.posix.json, jsonl) owns stdout: a progress line there would break it."""
    name = str(C.config.get_config_value("DEFAULT_STDOUT_CALLBACK") or "")
    return name.rsplit(".", 1)[-1] in ("json", "jsonl")


def load_state(text):
    try:
        state = json.loads(text)
    except ValueError:
        return None
    if not isinstance(state, dict) or not all(key in state for key in ("done", "started", "updated")):
        return None
    return state
