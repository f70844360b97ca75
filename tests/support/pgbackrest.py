# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Servers and settings for pgBackRest tests: an S3 server over TLS, a PostgreSQL with WAL archiving.

pgBackRest 2.45 speaks HTTPS only to S3 repositories, and checks the endpoint's name against the certificate's
DNS names (not its IP addresses). So:

- :func:`make_tls_cert` writes a self-signed certificate for ``127.0.0.1`` (as a DNS name for pgBackRest and
  as an IP address for Python's ssl) and its key;
- :class:`TLSSeaweedS3Server` is the test S3 server (:class:`tests.support.seaweedfs.SeaweedS3Server`) serving
  its S3 API over HTTPS with that certificate (``-s3.cert.file``/``-s3.key.file``), telemetry off;
- :data:`ARCHIVE_SETTINGS` are the server settings a cluster needs before the role can switch archiving on
  without a restart (``archive_mode``, ``wal_level``), with production-like durability and commit timestamps
  (so a test knows exactly which transactions a point-in-time restore must bring back).

CLI (Molecule scenarios; stop the server with ``python -m tests.support.seaweedfs stop --state FILE``)::

    python -m tests.support.pgbackrest cert --dir DIR                      # DIR/s3.crt and DIR/s3.key
    python -m tests.support.pgbackrest start-s3 --state FILE --cert-dir DIR [--bucket NAME]
                                               # HTTPS S3 server (certificate of DIR, made when missing);
                                               # writes and prints the state JSON, with ca_file
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import sys

from tests.support.process import pid_alive, pid_cmdline
from tests.support.seaweedfs import SeaweedS3Server, identities_option, write_state

ARCHIVE_SETTINGS = {
    "archive_mode": "on",
    "wal_level": "replica",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "track_commit_timestamp": "on",
    "max_wal_size": "256MB",
}


def make_tls_cert(directory, name="127.0.0.1"):
    """Write ``s3.crt`` (self-signed, 1 day) and ``s3.key`` into ``directory``; return both paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names = [x509.DNSName(name), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, "s3.crt")
    key_path = os.path.join(directory, "s3.key")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(cert_path, 0o644)
    os.chmod(key_path, 0o600)
    return cert_path, key_path


class TLSSeaweedS3Server(SeaweedS3Server):
    """The SeaweedFS test server with its S3 API over HTTPS (``https://127.0.0.1:<port>``)."""

    def __init__(self, cert_file, key_file, **kwargs):
        self.cert_file = cert_file
        self.key_file = key_file
        self._url = None
        super(TLSSeaweedS3Server, self).__init__(**kwargs)

    @property
    def endpoint_url(self):
        return self._url

    @endpoint_url.setter
    def endpoint_url(self, value):
        self._url = value.replace("http://", "https://", 1) if value else value

    @property
    def port(self):
        return self.ports[3] if self.ports else None

    def command(self):
        return super(TLSSeaweedS3Server, self).command() + [
            "-s3.cert.file=%s" % self.cert_file, "-s3.key.file=%s" % self.key_file, "-master.telemetry=false"]

    def client(self, connect_timeout=5, read_timeout=30):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, verify=self.cert_file,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                          retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": "path"}))


class AuthenticatingTLSSeaweedS3Server(TLSSeaweedS3Server):
    """The HTTPS server checking credentials, as a real one does (restic's chunk-signed uploads need it: the file
    sets of the prod profile go to its S3 file repository)."""

    def command(self):
        return super(AuthenticatingTLSSeaweedS3Server, self).command() + [identities_option(self)]


def _cli(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.support.pgbackrest",
                                     description="Certificate and HTTPS S3 server for pgBackRest tests.")
    sub = parser.add_subparsers(dest="action", required=True)
    cert = sub.add_parser("cert", help="write a self-signed certificate for 127.0.0.1 (s3.crt, s3.key)")
    cert.add_argument("--dir", required=True)
    start = sub.add_parser("start-s3", help="start a detached HTTPS SeaweedFS S3 server, write its state JSON")
    start.add_argument("--state", required=True, help="JSON file receiving pid, dir, endpoint_url, keys, ca_file")
    start.add_argument("--cert-dir", required=True, help="directory of s3.crt and s3.key (made when missing)")
    start.add_argument("--bucket", help="bucket to create")
    start.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    if args.action == "cert":
        cert_path, key_path = make_tls_cert(args.dir)
        print(json.dumps({"cert_file": cert_path, "key_file": key_path}))
        return 0

    if os.path.exists(args.state):
        with open(args.state) as handle:
            old = json.load(handle)
        if old.get("pid") and pid_alive(old["pid"]) and "weed" in pid_cmdline(old["pid"]):
            parser.error("%s records a running server (pid %s): stop it first" % (args.state, old["pid"]))
    cert_path = os.path.join(args.cert_dir, "s3.crt")
    key_path = os.path.join(args.cert_dir, "s3.key")
    if not (os.path.isfile(cert_path) and os.path.isfile(key_path)):
        cert_path, key_path = make_tls_cert(args.cert_dir)
    server = TLSSeaweedS3Server(cert_path, key_path)
    server.start(bucket=args.bucket, timeout=args.timeout, detach=True)
    state = server.state()
    state.update(bucket=args.bucket, own_dir=True, ca_file=cert_path)
    write_state(args.state, state)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
