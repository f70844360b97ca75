# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""atlasia.dr.vault_snapshot against real OpenBao servers (raft storage, 127.0.0.1), run through real Ansible.

Every assertion on a restore reads the secrets back from the server. One OpenBao (``bao``) serves the whole
module; a second, freshly initialised one (``fresh_bao``) receives the forced restore. Both are stopped by
their fixtures. Select with ``pytest tests/integration/test_vault_snapshot.py`` or ``-m integration -k vault``.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import threading
import time

import pytest

from tests.support.ansible_run import run_module
from tests.support.openbao import OpenBaoServer, free_port

pytestmark = pytest.mark.integration

MODULE = "atlasia.dr.vault_snapshot"
ORIGINAL = {"username": "aiteam", "password": "original-password"}
CHANGED = {"username": "aiteam", "password": "changed-after-snapshot"}
ENC_MAGIC = b"age-encryption.org/v1\n"
KEY = "safety-snapshot-test-key"
SAFETY_NAME = re.compile(r"^vault-prerestore_\d{8}_\d{6}\.snap(\.enc)?$")


def _files(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _ok(result):
    assert not result.get("failed"), "%s\n%s" % (result.get("msg"), result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def bao():
    server = OpenBaoServer(node_id="primary")
    try:
        server.setup()
        server.write_secret("app/db", ORIGINAL)
        server.write_secret("app/api", {"key": "k-1"})
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vault-backups")


@pytest.fixture(scope="module")
def saved(bao, snapshot_dir):
    """One snapshot of ``bao`` holding ORIGINAL, taken through the module."""
    result = _ok(run_module(MODULE, {"url": bao.addr, "token": bao.token, "dest": str(snapshot_dir / "daily")}))
    return result


def conn(server, **extra):
    args = {"url": server.addr, "token": server.token, "timeout": 10}
    args.update(extra)
    return args


def test_save_writes_verified_snapshot(saved, snapshot_dir, bao):
    daily = snapshot_dir / "daily"
    name = os.path.basename(saved["path"])
    stem = name[: -len(".snap")]
    assert name.startswith("vault_") and len(stem) == len("vault_YYYYMMDD_HHMMSS")
    assert _files(daily) == sorted([name, name + ".md5", name + ".sha256", stem + ".json"])
    data = (daily / name).read_bytes()
    assert data[:2] == b"\x1f\x8b" and len(data) == saved["size"]
    assert (daily / (name + ".sha256")).read_text() == "%s  %s\n" % (hashlib.sha256(data).hexdigest(), name)
    assert (daily / (name + ".md5")).read_text() == "%s  %s\n" % (hashlib.md5(data).hexdigest(), name)
    manifest = json.loads((daily / (stem + ".json")).read_text())
    assert manifest["sha256"] == saved["sha256"] and manifest["md5"] == saved["md5"]
    assert manifest["server_version"] == bao.seal_status()["version"]
    assert manifest["raft"]["index"] > 0 and manifest["raft"]["term"] > 0
    assert [m["name"] for m in manifest["members"]][:2] == ["meta.json", "state.bin"]
    assert manifest["sha256sums"] == "verified"
    assert oct((daily / name).stat().st_mode & 0o777) == "0o600"
    assert bao.token not in json.dumps(manifest) and bao.token not in saved.stdout


def test_check_mode_writes_nothing_and_restores_nothing(bao, saved, tmp_path):
    result = _ok(run_module(MODULE, conn(bao, dest=str(tmp_path / "never")), check=True))
    assert result["changed"] is True and result["path"].startswith(str(tmp_path / "never") + "/vault_")
    assert not (tmp_path / "never").exists()

    bao.write_secret("app/db", {"username": "aiteam", "password": "check-mode"})
    safety = tmp_path / "safety"
    try:
        result = _ok(run_module(MODULE, conn(bao, state="restored", src=saved["path"], safety_dir=str(safety),
                                             encryption_key=KEY), check=True))
        assert result["changed"] is True
        assert os.path.dirname(result["safety_snapshot"]) == str(safety)
        assert SAFETY_NAME.match(os.path.basename(result["safety_snapshot"]))
        assert result["safety_snapshot"].endswith(".snap.enc")
        assert "would be saved" in result["safety_snapshot_reason"]
        assert not safety.exists()  # check mode writes nothing, not even the folder
        assert bao.read_secret("app/db")["password"] == "check-mode"
        # a real run would need safety_dir: check mode says so too
        result = run_module(MODULE, conn(bao, state="restored", src=saved["path"]), check=True)
        assert result.get("failed") and result["error_kind"] == "invalid_argument", result
        assert "safety_dir" in result["msg"]
    finally:
        bao.write_secret("app/db", ORIGINAL)


def _sidecars_verify(path):
    data = open(path, "rb").read()
    name = os.path.basename(path)
    for algo in ("md5", "sha256"):
        with open("%s.%s" % (path, algo)) as handle:
            assert handle.read() == "%s  %s\n" % (hashlib.new(algo, data).hexdigest(), name), algo
    return data


def _safety_files(safety_dir, path):
    name = os.path.basename(path)
    stem = name.split(".", 1)[0]
    assert _files(safety_dir) == sorted([name, name + ".md5", name + ".sha256", stem + ".json"])
    with open(os.path.join(str(safety_dir), stem + ".json")) as handle:
        return json.load(handle)


def test_restore_brings_back_the_snapshot_after_saving_the_current_vault(bao, saved, tmp_path):
    bao.write_secret("app/db", CHANGED)
    bao.write_secret("app/new", {"x": "1"})
    safety = tmp_path / "safety"
    try:
        result = _ok(run_module(MODULE, conn(bao, state="restored", src=saved["path"], safety_dir=str(safety))))
        assert result["changed"] is True and result["sealed"] is False
        assert result["checksums"] == {"md5": "ok", "sha256": "ok"}
        assert result["sha256"] == saved["sha256"]
        # the wait ended on the node's new activation, and the secrets read at once are the snapshot's
        assert result["wait_ended"] == "activation"
        assert bao.read_secret("app/db") == ORIGINAL
        assert bao.read_secret("app/api") == {"key": "k-1"}
        assert bao.read_secret("app/new") is None

        # the Vault as it was before the restore: a plain, verified snapshot with its sidecars and manifest
        path = result["safety_snapshot"]
        assert os.path.dirname(path) == str(safety) and SAFETY_NAME.match(os.path.basename(path))
        assert not path.endswith(".enc")
        assert "saved" in result["safety_snapshot_reason"] and "verified" in result["safety_snapshot_reason"]
        manifest = _safety_files(safety, path)
        data = _sidecars_verify(path)
        assert data[:2] == b"\x1f\x8b" and oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert oct(safety.stat().st_mode & 0o777) == "0o700"
        assert manifest["artifact"] == os.path.basename(path) and manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["purpose"] == "pre-restore safety snapshot" and manifest["restore_of"] == saved["path"]
        assert "encryption" not in manifest
        assert result["safety_snapshot_data"]["checksums"] == {"md5": "ok", "sha256": "ok"}

        # restoring it undoes the restore: the secrets written after the snapshot come back
        back = _ok(run_module(MODULE, conn(bao, state="restored", src=path, safety_snapshot=False)))
        assert back["safety_snapshot"] is None and "safety_snapshot=false" in back["safety_snapshot_reason"]
        assert bao.read_secret("app/db") == CHANGED
        assert bao.read_secret("app/new") == {"x": "1"}
    finally:
        bao.write_secret("app/db", ORIGINAL)


def test_safety_snapshot_is_encrypted_with_the_key(bao, saved, tmp_path):
    from ansible_collections.atlasia.dr.plugins.module_utils import crypto

    bao.write_secret("app/db", CHANGED)
    safety = tmp_path / "safety"
    try:
        result = _ok(run_module(MODULE, conn(bao, state="restored", src=saved["path"], safety_dir=str(safety),
                                             encryption_key=KEY)))
        assert KEY not in result.stdout
        assert bao.read_secret("app/db") == ORIGINAL
        path = result["safety_snapshot"]
        assert SAFETY_NAME.match(os.path.basename(path)) and path.endswith(".snap.enc")
        manifest = _safety_files(safety, path)  # no plaintext .snap next to it, not even for a while
        data = _sidecars_verify(path)
        assert data.startswith(ENC_MAGIC) and oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert manifest["artifact"] == os.path.basename(path) and manifest["size"] == len(data)
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["encryption"]["key_id"] == crypto.key_id(KEY).hex()
        assert manifest["encryption"]["algorithm"] == crypto.ALGORITHM
        assert manifest["encryption"]["plaintext"]["name"] == os.path.basename(path)[: -len(".enc")]
        assert result["safety_snapshot_data"]["encrypted"] is True
        assert KEY not in json.dumps(manifest)

        # the collection's own decryption gives back the Vault as it was before the restore
        plain = _ok(run_module("atlasia.dr.dr_crypt",
                               {"state": "decrypted", "src": path, "key": KEY, "dest": str(tmp_path / "plain")}))
        assert hashlib.sha256(open(plain["path"], "rb").read()).hexdigest() == \
            manifest["encryption"]["plaintext"]["sha256"]
        _ok(run_module(MODULE, conn(bao, state="restored", src=plain["path"], safety_snapshot=False)))
        assert bao.read_secret("app/db") == CHANGED
    finally:
        bao.write_secret("app/db", ORIGINAL)


class _FaultyProxy(object):
    """HTTP proxy to a real OpenBao that breaks the snapshot download (GET sys/storage/raft/snapshot).

    ``fault``: ``forbidden`` (403, as for a token that may not read snapshots) or ``truncated`` (half the
    snapshot, then the connection closes). Every other request is forwarded; ``posts`` lists the restore
    requests that reached it (none are forwarded).
    """

    def __init__(self, target, fault):
        self.target = target
        self.fault = fault
        self.posts = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path.split("?", 1)[0]
                if path.startswith("/v1/sys/storage/raft/snapshot") and self.command == "POST":
                    proxy.posts.append(path)
                    return self._answer(500, b'{"errors": ["restore refused by the test proxy"]}')
                if path == "/v1/sys/storage/raft/snapshot" and proxy.fault == "forbidden":
                    return self._answer(403, b'{"errors": ["1 error occurred:\\n\\t* permission denied\\n\\n"]}')
                connection = http.client.HTTPConnection(proxy.target, timeout=30)
                try:
                    headers = dict((k, v) for k, v in self.headers.items() if k.lower() not in ("host", "connection"))
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    payload = answer.read()
                finally:
                    connection.close()
                if path == "/v1/sys/storage/raft/snapshot" and proxy.fault == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return self._answer(answer.status, payload, answer.getheader("Content-Type"))

            def _answer(self, status, payload, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle  # noqa: N815 (http.server's naming)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.mark.parametrize("fault, key, error_kinds", [
    ("forbidden", None, ("permission_denied",)),
    ("truncated", KEY, ("invalid_snapshot", "unreachable")),
    ("not_a_directory", None, ("io",)),
])
def test_failed_safety_snapshot_leaves_vault_untouched(bao, saved, tmp_path, fault, key, error_kinds):
    marker = {"written": "after the snapshot, %s" % fault}
    bao.write_secret("app/marker", marker)
    safety = tmp_path / "safety"
    proxy = None
    args = conn(bao, state="restored", src=saved["path"], safety_dir=str(safety))
    if key:
        args["encryption_key"] = key
    if fault == "not_a_directory":
        (tmp_path / "a-file").write_text("x")
        safety = tmp_path / "a-file" / "safety"
        args["safety_dir"] = str(safety)
    else:
        proxy = _FaultyProxy("127.0.0.1:%d" % bao.port, fault)
        args["url"] = proxy.addr
    try:
        result = run_module(MODULE, args)
    finally:
        if proxy:
            proxy.close()
    assert result.get("failed"), result
    assert result["error_kind"] in error_kinds, result["msg"]
    assert "no restore done" in result["msg"] and "safety snapshot" in result["msg"]
    assert result["safety_snapshot"] is None and result["safety_snapshot_reason"]
    if proxy:
        assert proxy.posts == []  # the restore was never sent
        assert _files(safety) == []  # no safety snapshot, sidecar, manifest or temporary file left
    assert bao.read_secret("app/marker") == marker
    assert bao.read_secret("app/db") == ORIGINAL
    assert bao.seal_status()["sealed"] is False


def _damage(kind, src, dest_dir):
    name = os.path.basename(src)
    target = os.path.join(str(dest_dir), name)
    for suffix in ("", ".md5", ".sha256"):
        shutil.copy(src + suffix, target + suffix)
    with open(target, "rb") as handle:
        data = handle.read()
    if kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "flipped":
        data = bytearray(data)
        data[len(data) // 2] ^= 0x40
        data = bytes(data)
    elif kind == "wrong_sidecar":
        with open(target + ".sha256", "w") as handle:
            handle.write("%s  %s\n" % (hashlib.sha256(b"something else").hexdigest(), name))
    elif kind == "flipped_resigned":
        # damaged and its sidecars recomputed: only the archive validation can tell
        data = bytearray(data)
        data[len(data) // 2] ^= 0x40
        data = bytes(data)
        for algo in ("md5", "sha256"):
            with open("%s.%s" % (target, algo), "w") as handle:
                handle.write("%s  %s\n" % (hashlib.new(algo, data).hexdigest(), name))
    with open(target, "wb") as handle:
        handle.write(data)
    return target


@pytest.mark.parametrize("kind, error_kind", [
    ("truncated", "checksum"),
    ("flipped", "checksum"),
    ("wrong_sidecar", "checksum"),
    ("flipped_resigned", "invalid_snapshot"),
])
def test_damaged_snapshot_is_refused_and_vault_unchanged(bao, saved, tmp_path, kind, error_kind):
    marker = {"written": "after the snapshot, %s" % kind}
    bao.write_secret("app/marker", marker)
    target = _damage(kind, saved["path"], tmp_path)
    result = run_module(MODULE, conn(bao, state="restored", src=target))
    assert result.get("failed"), result
    assert result["error_kind"] == error_kind, result["msg"]
    assert "Vault was not touched" in result["msg"]
    assert bao.read_secret("app/marker") == marker
    assert bao.seal_status()["sealed"] is False


def test_wrong_token_and_missing_policy(bao, tmp_path):
    result = run_module(MODULE, conn(bao, token="s.not-a-real-token", dest=str(tmp_path)))
    assert result.get("failed") and result["error_kind"] == "invalid_token", result
    assert "invalid, expired or revoked" in result["msg"]

    bao.put_policy("kv-reader", 'path "secret/*" { capabilities = ["read"] }')
    limited = bao.create_token(["kv-reader"])
    result = run_module(MODULE, conn(bao, token=limited, dest=str(tmp_path)))
    assert result.get("failed") and result["error_kind"] == "permission_denied", result
    assert "permission denied" in result["msg"] and "kv-reader" in result["msg"]
    result = run_module(MODULE, conn(bao, token=limited, dest=str(tmp_path)), check=True)
    assert result.get("failed") and result["error_kind"] == "permission_denied", result
    assert _files(tmp_path) == []


def test_sealed_vault_is_reported(bao, saved, tmp_path):
    bao.seal()
    try:
        result = run_module(MODULE, conn(bao, dest=str(tmp_path)))
        assert result.get("failed") and result["error_kind"] == "sealed", result
        assert "sealed" in result["msg"] and "unseal" in result["msg"]
        # nothing can be saved from a sealed Vault: the restore is refused unless force=true says so
        result = run_module(MODULE, conn(bao, state="restored", src=saved["path"], safety_dir=str(tmp_path)))
        assert result.get("failed") and result["error_kind"] == "sealed", result
        assert result["safety_snapshot"] is None and "sealed" in result["safety_snapshot_reason"]
        assert "force=true" in result["msg"] and "safety_snapshot=false" in result["msg"]
        result = run_module(MODULE, conn(bao, state="restored", src=saved["path"], force=True))
        assert result.get("failed") and result["error_kind"] == "sealed", result
        assert result["safety_snapshot"] is None and "force=true" in result["safety_snapshot_reason"]
    finally:
        bao.unseal()
    assert _files(tmp_path) == []
    assert bao.read_secret("app/db") == ORIGINAL


def test_unreachable_endpoint_fails_within_timeout(tmp_path):
    # nothing listens: refused at once
    start = time.monotonic()
    result = run_module(MODULE, {"url": "http://127.0.0.1:%d" % free_port(), "token": "s.x", "dest": str(tmp_path),
                                 "timeout": 3})
    assert result.get("failed") and result["error_kind"] == "unreachable", result
    assert "refused" in result["msg"]
    assert time.monotonic() - start < 20

    # something accepts connections but never answers: the module gives up after `timeout`
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        result = run_module(MODULE, {"url": "http://127.0.0.1:%d" % silent.getsockname()[1], "token": "s.x",
                                     "dest": str(tmp_path), "timeout": 2})
        elapsed = time.monotonic() - start
    assert result.get("failed") and result["error_kind"] == "unreachable", result
    assert "did not answer within 2 s" in result["msg"]
    assert 2 <= elapsed < 20, elapsed
    assert _files(tmp_path) == []


@pytest.fixture
def fresh_bao():
    server = OpenBaoServer(node_id="rebuilt")
    try:
        server.setup()
        yield server
    finally:
        server.stop()


def test_force_restore_into_fresh_cluster_needs_original_keys(bao, saved, fresh_bao, tmp_path):
    assert fresh_bao.read_secret("app/db") is None
    # a plain restore is refused: the snapshot was sealed with other keys (after the safety snapshot was taken,
    # which the failed result names)
    result = run_module(MODULE, conn(fresh_bao, state="restored", src=saved["path"], safety_dir=str(tmp_path)))
    assert result.get("failed") and result["error_kind"] == "seal_mismatch", result
    assert "force=true" in result["msg"]
    assert os.path.isfile(result["safety_snapshot"]) and os.path.dirname(result["safety_snapshot"]) == str(tmp_path)

    result = _ok(run_module(MODULE, conn(fresh_bao, state="restored", src=saved["path"], force=True,
                                         safety_snapshot=False)))
    assert result["endpoint"] == "sys/storage/raft/snapshot-force"
    assert result["sealed"] is True and result["wait_ended"] == "steady"  # a sealed node is waited for as before
    assert any("ORIGINAL" in w or "taken from" in w for w in result.get("warnings", []))
    assert fresh_bao.seal_status()["sealed"] is True

    # the fresh cluster's own key no longer opens it; the ORIGINAL key does
    status, answer = fresh_bao.api("PUT", "sys/unseal", body={"key": fresh_bao.unseal_key}, auth=False)
    assert status != 200 or answer.get("sealed") is True
    fresh_bao.unseal(key=bao.unseal_key)
    assert fresh_bao.read_secret("app/db", token=bao.token) == ORIGINAL
    assert fresh_bao.read_secret("app/api", token=bao.token) == {"key": "k-1"}
    status, dummy = fresh_bao.api("GET", "auth/token/lookup-self", token=fresh_bao.token)
    assert status == 403


def _self_signed(directory):
    """A CA-less self-signed certificate for 127.0.0.1 (written as PEM files); returns (cert, key) paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(str(directory), "cert.pem"), os.path.join(str(directory), "key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_endpoint(tmp_path):
    """An HTTPS server on 127.0.0.1 answering ``sys/seal-status`` as a sealed Vault; yields (url, ca_cert)."""
    import http.server
    import ssl
    import threading

    cert_path, key_path = _self_signed(tmp_path)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = json.dumps({"initialized": True, "sealed": True, "version": "tls-fake", "storage_type": "raft"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield "https://127.0.0.1:%d" % server.server_address[1], cert_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_tls_failures_are_reported(tls_endpoint, bao, tmp_path):
    url, ca_cert = tls_endpoint
    dest = str(tmp_path / "out")
    # certificate not trusted
    result = run_module(MODULE, {"url": url, "token": "s.x", "dest": dest, "timeout": 5})
    assert result.get("failed") and result["error_kind"] == "tls", result
    assert "ca_cert" in result["msg"]
    # trusted through ca_cert: TLS passes and the (fake, sealed) Vault's state is reported
    result = run_module(MODULE, {"url": url, "token": "s.x", "dest": dest, "timeout": 5, "ca_cert": ca_cert})
    assert result.get("failed") and result["error_kind"] == "sealed", result
    # https:// against a plain-HTTP Vault
    result = run_module(MODULE, conn(bao, url=bao.addr.replace("http://", "https://"), dest=dest))
    assert result.get("failed") and result["error_kind"] == "tls", result
    assert not os.path.exists(dest)


def test_older_safety_snapshots_follow_the_retention(bao, saved, tmp_path):
    """Safety snapshots do not pile up: the newest ones are kept (the one just taken always), others removed."""
    safety = tmp_path / "safety"
    safety.mkdir(mode=0o700)
    old = []
    for day in (1, 2, 3):
        stem = "vault-prerestore_2026110%d_031500" % day
        name = stem + ".snap"
        (safety / name).write_bytes(b"older snapshot %d" % day)
        for algo in ("md5", "sha256"):
            (safety / (name + "." + algo)).write_text("%s  %s\n" % (hashlib.new(algo, b"x").hexdigest(), name))
        (safety / (stem + ".json")).write_text("{}")
        old.append(name)
    (safety / "notes.txt").write_text("not ours")
    bad = run_module(MODULE, conn(bao, state="restored", src=saved["path"], safety_dir=str(safety), safety_retention=0))
    assert bad.get("failed") and "safety_retention" in bad["msg"]
    result = _ok(run_module(MODULE, conn(bao, state="restored", src=saved["path"], safety_dir=str(safety),
                                         safety_retention=2)))
    assert result["removed_safety_snapshots"] == [old[1], old[0]]
    made = os.path.basename(result["safety_snapshot"])
    assert _files(safety) == sorted([made, made + ".md5", made + ".sha256", made.split(".", 1)[0] + ".json",
                                     old[2], old[2] + ".md5", old[2] + ".sha256", "vault-prerestore_20261103_031500.json",
                                     "notes.txt"])
    assert bao.read_secret("app/db") == ORIGINAL
