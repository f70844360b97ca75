# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the operations tests (verify, drill, monitor, AWX): inventories, playbook runs, a webhook receiver.

The playbooks of these tests run against real servers (tests.support) through inventories written here: the
settings of the local environment are *group* variables of ``local`` (extra variables would beat the per-host
values several hosts need), and every host uses ``ansible_connection: local`` with the venv's Python.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from tests.support import REPO_ROOT, VENV_BIN, VENV_PYTHON
from tests.support.ansible_run import ansible_env

PLAYBOOK_TIMEOUT = 1200


def local_host(**hostvars):
    """Host variables of a host reached with connection local and the venv's Python."""
    return dict(ansible_connection="local", ansible_python_interpreter=str(VENV_PYTHON), **hostvars)


def write_inventory(path, group_vars, groups, env="local"):
    """A YAML inventory: group ``env`` with ``group_vars`` and the child groups ``{name: {host: hostvars}}``."""
    data = {env: {"vars": group_vars, "children": dict(
        (name, {"hosts": dict((host, local_host(**hostvars)) for host, hostvars in hosts.items())})
        for name, hosts in groups.items())}}
    path = Path(path)
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    path.chmod(0o600)
    return path


def playbook(name, inventory, *args, env="local", timeout=PLAYBOOK_TIMEOUT, extra_env=None):
    """``ansible-playbook playbooks/<name> -i <inventory> -e env=<env> ARGS`` from the repository root."""
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/%s" % name, "-i", str(inventory), "-e", "env=%s" % env]
    argv += list(args)
    return subprocess.run(argv, cwd=str(REPO_ROOT), env=ansible_env(extra_env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def extra(data):
    """``-e`` argument carrying ``data`` as JSON (types kept)."""
    return ["-e", json.dumps(data)]


def tail(proc, size=6000):
    """The end of a run's output, for assertion messages."""
    return "rc=%s\n%s\n%s" % (proc.returncode, proc.stdout[-size:], proc.stderr[-2000:])


def newest_report(directory, kind):
    """The newest ``<kind>-<ts>.json`` under ``directory`` as a dict (with ``_path``), or None."""
    paths = sorted(Path(directory).glob("%s-*.json" % kind))
    if not paths:
        return None
    data = json.loads(paths[-1].read_text())
    data["_path"] = str(paths[-1])
    return data


def promtool():
    """Path of promtool (Debian package prometheus), or None."""
    return shutil.which("promtool")


def check_metrics(path):
    """``promtool check metrics`` on a textfile; returns (rc, output)."""
    with open(path, "rb") as handle:
        proc = subprocess.run([promtool(), "check", "metrics"], stdin=handle, capture_output=True, text=True,
                              timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def metric_lines(path):
    """``{name{labels}: value}`` of a Prometheus textfile."""
    values = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


class WebhookReceiver(object):
    """A Slack-compatible webhook on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self):
        self.bodies = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    receiver.bodies.append(json.loads(raw.decode("utf-8")))
                except ValueError:
                    receiver.bodies.append({"raw": raw.decode("utf-8", "replace")})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hooks/atlasia-dr" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def texts(self):
        return [body.get("text", "") for body in self.bodies]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
