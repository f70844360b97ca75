# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of atlasia.dr.vault_snapshot and plugins/module_utils/vault.py, with the HTTP layer mocked.

- error classification (HTTP answers and transport failures),
- snapshot archive validation (good, empty, short, truncated, flipped, inconsistent archives),
- the module's ``main()`` end to end against a fake Vault: naming, sidecars, manifest, check mode,
  leftovers after failures, refusals before any request, the streamed restore body.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
import os
import socket
import ssl
import tarfile
import urllib.error

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils import vault
from ansible_collections.atlasia.dr.plugins.module_utils.naming import parse_backup_name
from ansible_collections.atlasia.dr.plugins.modules import vault_snapshot

URL = "http://127.0.0.1:8200"
TOKEN = "s.unit-test-token"


# -- building snapshots ---------------------------------------------------------------------------------------


def make_snapshot(members=None, sums=True, extra_sums=None, state=b"state-data" * 100, meta=None, mtime=0,
                  compress=True):
    """A raft-snapshot-like gzip'd tar: meta.json, state.bin, SHA256SUMS (over the first two)."""
    if members is None:
        meta_doc = meta if meta is not None else {"Version": 1, "ID": "bolt-snapshot", "Index": 35, "Term": 3,
                                                  "Configuration": {"Servers": [{"ID": "n1", "Address": "a:1"}]},
                                                  "ConfigurationIndex": 1, "Size": len(state)}
        members = [("meta.json", json.dumps(meta_doc).encode()), ("state.bin", state)]
        if sums:
            lines = "".join("%s  %s\n" % (hashlib.sha256(data).hexdigest(), name) for name, data in members)
            lines += "".join("%s  %s\n" % (digest, name) for name, digest in (extra_sums or {}).items())
            members.append(("SHA256SUMS", lines.encode()))
            members.append(("SHA256SUMS.sealed", b"sealed-copy"))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o600
            archive.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0) if compress else tar_bytes


GOOD = make_snapshot()


def inspect(data, sink=None):
    return vault.inspect_snapshot(io.BytesIO(data), sink)


class TrickleReader(object):
    """Gives at most ``step`` bytes per read, like a socket."""

    def __init__(self, data, step=7):
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size=-1):
        return self._data.read(min(self._step, size if size and size > 0 else self._step))


# -- archive validation -------------------------------------------------------------------------------------------


def test_good_snapshot_is_inspected_and_copied():
    sink = io.BytesIO()
    info = inspect(GOOD, sink)
    assert sink.getvalue() == GOOD
    assert info["size"] == len(GOOD)
    assert info["digests"]["sha256"] == hashlib.sha256(GOOD).hexdigest()
    assert info["digests"]["md5"] == hashlib.md5(GOOD).hexdigest()
    assert [m["name"] for m in info["members"]] == ["meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"]
    assert info["meta"]["index"] == 35 and info["meta"]["term"] == 3
    assert info["meta"]["servers"] == [{"id": "n1", "address": "a:1"}]
    assert info["sha256sums"] == "verified"
    assert info["unknown_members"] == []


def test_small_reads_and_large_member_cross_chunk_boundaries():
    # highly compressible state: decompression output is bounded per read, many reads per input chunk
    state = os.urandom(300 * 1024) + b"\0" * (3 * vault.CHUNK_SIZE)
    data = make_snapshot(state=state)
    info = vault.inspect_snapshot(TrickleReader(data, step=4093))
    assert info["size"] == len(data)
    assert info["uncompressed_size"] >= len(state)
    assert info["members"][1]["size"] == len(state)


def test_snapshot_without_sha256sums_is_accepted_but_marked():
    info = inspect(make_snapshot(sums=False))
    assert info["sha256sums"] == "absent"


@pytest.mark.parametrize("data, message", [
    (b"", "empty (0 bytes)"),
    (b"\x1f\x8b\x08\x00", "only 4 bytes"),
    (b'{"errors":["permission denied"]}', "not gzip data"),
    (b"PK\x03\x04" + b"x" * 100, "not gzip data"),
    (GOOD[: len(GOOD) // 2], "truncated"),
    (GOOD[:-4], "truncated"),
    (GOOD + b"garbage", "after the end of the gzip stream"),
    (make_snapshot(compress=False), "not gzip data"),
    (gzip.compress(b"not a tar archive at all" * 40, mtime=0), "tar"),
    (gzip.compress(b"", mtime=0), "tar"),
])
def test_damaged_or_foreign_data_is_refused(data, message):
    with pytest.raises(vault.SnapshotError) as err:
        inspect(data)
    assert message in str(err.value)
    assert err.value.kind == vault.INVALID_SNAPSHOT


def test_flipped_byte_anywhere_is_refused_unless_harmless():
    # every position of a small snapshot: gzip header, deflate data, CRC-32, length
    data = make_snapshot(state=b"x" * 64)
    original = gzip.decompress(data)
    accepted = []
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        try:
            inspect(bytes(damaged))
        except vault.SnapshotError:
            continue
        accepted.append(position)
        # only flips that change nothing (gzip FLG.FTEXT, MTIME, XFL, OS; unused deflate bits) may pass
        assert gzip.decompress(bytes(damaged)) == original, position
    assert set(range(3, 10)) <= set(accepted)
    assert len(accepted) < len(data) // 10


def test_sha256sums_mismatch_is_refused():
    state = b"the real state"
    members = [("meta.json", b'{"Index": 1, "Term": 1}'), ("state.bin", state),
               ("SHA256SUMS", ("%s  state.bin\n%s  meta.json\n" % ("0" * 64, hashlib.sha256(
                   b'{"Index": 1, "Term": 1}').hexdigest())).encode())]
    with pytest.raises(vault.SnapshotError) as err:
        inspect(make_snapshot(members=members))
    assert "SHA-256 of state.bin" in str(err.value)


def test_sha256sums_listing_missing_member_is_refused():
    with pytest.raises(vault.SnapshotError) as err:
        inspect(make_snapshot(extra_sums={"other.bin": "1" * 64}))
    assert "lists other.bin" in str(err.value)


def test_meta_size_disagreeing_with_state_is_refused():
    data = make_snapshot(meta={"Index": 1, "Term": 1, "Size": 5}, sums=False)
    with pytest.raises(vault.SnapshotError) as err:
        inspect(data)
    assert "meta.json says 5" in str(err.value)


@pytest.mark.parametrize("members, message", [
    ([("meta.json", b"{}")], "lacks state.bin"),
    ([("state.bin", b"x")], "lacks meta.json"),
    ([("meta.json", b"not json"), ("state.bin", b"x")], "not valid JSON"),
    ([("meta.json", b"[1]"), ("state.bin", b"x")], "not a JSON object"),
    ([("../meta.json", b"{}"), ("state.bin", b"x")], "unexpected archive member path"),
    ([("meta.json", b"{}"), ("meta.json", b"{}"), ("state.bin", b"x")], "appears twice"),
    ([("meta.json", b"{}"), ("state.bin", b"x"), ("SHA256SUMS", b"nonsense\n")], "malformed line"),
])
def test_inconsistent_archives_are_refused(members, message):
    with pytest.raises(vault.SnapshotError) as err:
        inspect(make_snapshot(members=members))
    assert message in str(err.value)


def test_directory_member_is_refused():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("sub")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    with pytest.raises(vault.SnapshotError) as err:
        inspect(gzip.compress(raw.getvalue()))
    assert "unexpected archive member 'sub'" in str(err.value)


def test_unknown_members_are_reported():
    members = [("meta.json", b"{}"), ("state.bin", b"x"), ("extra.txt", b"hello")]
    assert inspect(make_snapshot(members=members))["unknown_members"] == ["extra.txt"]


def test_source_failure_is_not_called_a_damaged_snapshot():
    class Broken(object):
        def __init__(self):
            self.calls = 0

        def read(self, size=-1):
            self.calls += 1
            if self.calls > 1:
                raise socket.timeout("timed out")
            return GOOD[:20]

    with pytest.raises(vault.VaultError) as err:
        vault.inspect_snapshot(Broken())
    assert err.value.kind == vault.UNREACHABLE
    assert "after 20 bytes" in str(err.value)


# -- error classification -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, errors, path, kind", [
    (503, ["Vault is sealed"], "sys/storage/raft/snapshot", vault.SEALED),
    (403, ["permission denied"], "sys/storage/raft/snapshot", vault.PERMISSION_DENIED),
    (400, ["missing client token"], "sys/storage/raft/snapshot", vault.MISSING_TOKEN),
    (404, ["unsupported path"], "sys/storage/raft/snapshot", vault.NOT_RAFT),
    (404, ["no handler for route"], "secret/data/x", vault.HTTP_ERROR),
    (400, ["could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the "
           "snapshot-force API to bypass this check"], "sys/storage/raft/snapshot", vault.SEAL_MISMATCH),
    (400, ["Client sent an HTTP request to an HTTPS server."], "sys/seal-status", vault.TLS),
    (307, [], "sys/storage/raft/snapshot", vault.STANDBY),
    (501, ["Vault is not initialized"], "sys/storage/raft/snapshot", vault.NOT_INITIALIZED),
    (500, ["failed to read snapshot file: unexpected EOF"], "sys/storage/raft/snapshot", vault.HTTP_ERROR),
])
def test_http_errors_are_classified(status, errors, path, kind):
    error = vault.classify_http_error(status, errors, path, "GET", URL)
    assert error.kind == kind
    assert error.status == status


def test_seal_mismatch_message_says_use_force():
    error = vault.classify_http_error(400, ["could not verify hash file, possibly the snapshot is using a different "
                                            "set of unseal keys"], vault.SNAPSHOT_PATH, "POST", URL)
    assert "force=true" in str(error) and "ORIGINAL" in str(error)


def test_multierror_wrapping_is_removed():
    assert vault.clean_errors(["1 error occurred:\n\t* permission denied\n\n"]) == ["permission denied"]
    assert vault.clean_errors(["2 errors occurred:\n\t* a\n\t* b\n\n"]) == ["a", "b"]
    assert vault.clean_errors(["Vault is sealed"]) == ["Vault is sealed"]


@pytest.mark.parametrize("exc, kind, text", [
    (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), vault.UNREACHABLE, "refused"),
    (urllib.error.URLError(socket.timeout("timed out")), vault.UNREACHABLE, "within 7 s"),
    (socket.timeout("timed out"), vault.UNREACHABLE, "within 7 s"),
    (TimeoutError("timed out"), vault.UNREACHABLE, "within 7 s"),
    (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), vault.UNREACHABLE, "resolve"),
    (urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")), vault.TLS, "ca_cert"),
    (urllib.error.URLError(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")), vault.TLS,
     "does not speak TLS"),
    (ConnectionResetError(104, "Connection reset by peer"), vault.UNREACHABLE, "reset"),
])
def test_transport_errors_are_classified(exc, kind, text):
    error = vault.classify_transport_error(exc, URL, 7)
    assert error.kind == kind
    assert text in str(error)


# -- the client against a fake transport --------------------------------------------------------------------------


class FakeResponse(io.BytesIO):
    def __init__(self, body=b"", status=200):
        super(FakeResponse, self).__init__(body)
        self.status = status

    def getcode(self):
        return self.status


def http_error(url, status, errors):
    body = json.dumps({"errors": errors}).encode()
    return urllib.error.HTTPError(url, status, "error", {}, io.BytesIO(body))


class FakeVault(object):
    """Stands in for ``ansible.module_utils.urls.Request``: routes by (method, path)."""

    def __init__(self, snapshot=GOOD, sealed=False, storage="raft", token=TOKEN, policies=("root",),
                 capabilities=("root",), restore_status=204):
        self.snapshot = snapshot
        self.sealed = sealed
        self.storage = storage
        self.token = token
        self.policies = list(policies)
        self.capabilities = list(capabilities)
        self.restore_status = restore_status
        self.calls = []
        self.posted = None

    def open(self, method, url, data=None, headers=None, timeout=None, follow_redirects=None):
        path = url.split("/v1/", 1)[1]
        self.calls.append((method, path))
        headers = headers or {}
        if path == "sys/seal-status":
            return FakeResponse(json.dumps({"initialized": True, "sealed": self.sealed, "version": "2.7.2",
                                            "storage_type": self.storage, "cluster_name": "c1",
                                            "cluster_id": "id-1"}).encode())
        if path == "sys/health":
            if self.sealed:
                raise http_error(url, 503, [])
            return FakeResponse(b'{"initialized": true, "sealed": false}')
        if self.sealed:
            raise http_error(url, 503, ["Vault is sealed"])
        if headers.get("X-Vault-Token") != self.token:
            raise http_error(url, 403, ["permission denied"])
        if path == "auth/token/lookup-self":
            return FakeResponse(json.dumps({"data": {"policies": self.policies}}).encode())
        if path == "sys/capabilities-self":
            wanted = json.loads(data)["paths"][0]
            return FakeResponse(json.dumps({wanted: self.capabilities, "capabilities": self.capabilities}).encode())
        if path.startswith("sys/storage/raft/") and self.storage != "raft":
            raise http_error(url, 404, ["1 error occurred:\n\t* unsupported path\n\n"])
        if "root" not in self.policies:
            raise http_error(url, 403, ["1 error occurred:\n\t* permission denied\n\n"])
        if path == "sys/storage/raft/autopilot/state":
            return FakeResponse(b'{"data": {"leader": "n1", "servers": {"n1": {"last_index": 9, "last_term": 3}}}}')
        if method == "GET" and path == vault.SNAPSHOT_PATH:
            return FakeResponse(self.snapshot)
        if method == "POST" and path in (vault.SNAPSHOT_PATH, vault.SNAPSHOT_FORCE_PATH):
            assert hasattr(data, "read"), "the restore body must be streamed from the file, not read into memory"
            assert headers["Content-Length"] == str(os.fstat(data.fileno()).st_size)
            self.posted = (path, data.read())
            if self.restore_status != 204:
                raise http_error(url, self.restore_status, ["could not verify hash file, possibly the snapshot is "
                                                            "using a different set of unseal keys"])
            return FakeResponse(b"", status=204)
        raise http_error(url, 404, ["no handler for route"])


def client_for(fake, token=TOKEN):
    return vault.VaultClient(URL, token=token, timeout=5, request=fake)


def test_403_with_unusable_token_is_invalid_token():
    with pytest.raises(vault.VaultError) as err:
        client_for(FakeVault(), token="s.wrong").open("GET", vault.SNAPSHOT_PATH)
    assert err.value.kind == vault.INVALID_TOKEN
    assert "invalid, expired or revoked" in str(err.value)


def test_403_with_valid_token_lacking_policy_is_permission_denied():
    with pytest.raises(vault.VaultError) as err:
        client_for(FakeVault(policies=["default", "ro"])).open("GET", vault.SNAPSHOT_PATH)
    assert err.value.kind == vault.PERMISSION_DENIED
    assert "policies: default, ro" in str(err.value)
    assert "'read'" in str(err.value)


def test_preflight_reports_sealed_and_non_raft():
    with pytest.raises(vault.VaultError) as err:
        client_for(FakeVault(sealed=True)).preflight()
    assert err.value.kind == vault.SEALED
    with pytest.raises(vault.VaultError) as err:
        client_for(FakeVault(storage="file")).preflight()
    assert err.value.kind == vault.NOT_RAFT
    assert "'file' storage backend" in str(err.value)


def test_check_capabilities():
    assert client_for(FakeVault()).check_capabilities(vault.SNAPSHOT_PATH, ["read"]) == ["root"]
    with pytest.raises(vault.VaultError) as err:
        client_for(FakeVault(capabilities=["read"])).check_capabilities(vault.SNAPSHOT_PATH, ["update"])
    assert err.value.kind == vault.PERMISSION_DENIED and "lacks update" in str(err.value)
    with pytest.raises(vault.VaultError) as err:
        client_for(FakeVault(), token="s.wrong").check_capabilities(vault.SNAPSHOT_PATH, ["read"])
    assert err.value.kind == vault.INVALID_TOKEN


def test_client_rejects_bad_urls():
    for url in (None, "", "127.0.0.1:8200", "ftp://x"):
        with pytest.raises(vault.VaultError) as err:
            vault.VaultClient(url, token=TOKEN)
        assert err.value.kind == vault.INVALID_ARGUMENT


def test_wait_until_answering_times_out_clearly():
    class Silent(object):
        def open(self, *args, **kwargs):
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    client = vault.VaultClient(URL, token=TOKEN, timeout=1, request=Silent())
    with pytest.raises(vault.VaultError) as err:
        client.wait_until_answering(0.3, interval=0.05)
    assert err.value.kind == vault.UNREACHABLE
    assert "wait_timeout=0.3" in str(err.value) and "refused" in str(err.value)


class _Restoring(FakeVault):
    """A node that installs a restored snapshot: ``sys/leader`` names its first activation until ``installed_after``
    calls, then a new one (``leader=None``: a server whose ``sys/leader`` says nothing of it)."""

    def __init__(self, installed_after=3, leader=True):
        super(_Restoring, self).__init__()
        self.installed_after = installed_after
        self.leader = leader
        self.leader_calls = 0

    def open(self, method, url, data=None, headers=None, timeout=None, follow_redirects=None):
        if url.endswith("/v1/sys/leader"):
            self.leader_calls += 1
            if not self.leader:
                raise http_error(url, 404, ["no handler for route"])
            installed = self.leader_calls > self.installed_after
            return FakeResponse(json.dumps({
                "ha_enabled": True, "is_self": True, "raft_applied_index": 50 if installed else 45,
                "active_time": "2026-12-04T21:55:%02dZ" % (40 if installed else 12)}).encode())
        return super(_Restoring, self).open(method, url, data, headers, timeout, follow_redirects)


def test_the_wait_ends_when_the_node_reports_its_new_activation():
    fake = _Restoring(installed_after=3)
    client = client_for(fake)
    before = client.activation()
    assert before == ("2026-12-04T21:55:12Z", 45)
    started = time.monotonic()
    assert client.wait_until_answering(20, interval=0.01, settle=15, before=before)[1] == "activation"
    assert time.monotonic() - started < 10, "the new activation must end the wait, not the settle time"
    assert fake.leader_calls == 4


def test_without_an_activation_to_compare_the_wait_is_the_settle_time():
    fake = _Restoring(leader=False)
    client = client_for(fake)
    assert client.activation() is None
    started = time.monotonic()
    assert client.wait_until_answering(20, interval=0.01, settle=0.3, before=client.activation())[1] == "steady"
    assert time.monotonic() - started >= 0.3
    fake = _Restoring(installed_after=10 ** 6)  # never installs: steady for the settle time is the answer
    client = client_for(fake)
    started = time.monotonic()
    client.wait_until_answering(20, interval=0.01, settle=0.3, before=client.activation())
    assert time.monotonic() - started >= 0.3


def test_installed_compares_the_activation_time_else_the_raft_index():
    installed = vault.VaultClient._installed
    assert installed(("t1", 45), ("t2", 45))
    assert not installed(("t1", 45), ("t1", 99)), "a write moves the index; only a new activation counts"
    assert installed((None, 45), (None, 46)) and not installed((None, 45), (None, 45))
    assert not installed(None, ("t2", 50)) and not installed(("t1", 45), None)


def test_token_resolution(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s.from-file\n")
    assert vault.resolve_token({"token": "s.a"}, {"VAULT_TOKEN": "s.env"}) == "s.a"
    assert vault.resolve_token({"token_file": str(token_file)}, {"VAULT_TOKEN": "s.env"}) == "s.from-file"
    assert vault.resolve_token({}, {"VAULT_TOKEN": "s.env"}) == "s.env"
    assert vault.resolve_token({}, {}) is None
    (tmp_path / "empty").write_text("")
    for bad in (str(tmp_path / "empty"), str(tmp_path / "missing")):
        with pytest.raises(vault.VaultError) as err:
            vault.resolve_token({"token_file": bad}, {})
        assert err.value.kind == vault.MISSING_TOKEN


class _LoginStub(object):
    """Answers an AppRole login like Vault; records the requests."""

    def __init__(self, answer=None):
        self.calls = []
        self.answer = answer if answer is not None else {"auth": {"client_token": "s.approle"}}

    def json(self, method, path, body=None, auth=True, **kwargs):
        self.calls.append((method, path, body, auth))
        return self.answer


def test_obtain_token_prefers_a_token_then_approle_then_the_environment():
    client = _LoginStub()
    params = {"token": "s.a", "role_id": "r", "secret_id": "x"}
    assert vault.obtain_token(params, client, {"VAULT_TOKEN": "s.env"}) == "s.a" and not client.calls
    params = {"role_id": "r", "secret_id": "x", "approle_mount": "ci/"}
    assert vault.obtain_token(params, client, {"VAULT_TOKEN": "s.env"}) == "s.approle"
    assert client.calls == [("POST", "auth/ci/login", {"role_id": "r", "secret_id": "x"}, False)]
    assert vault.obtain_token({}, client, {"VAULT_TOKEN": "s.env"}) == "s.env"
    with pytest.raises(vault.VaultError) as err:
        vault.obtain_token({"role_id": "r"}, client, {})
    assert err.value.kind == vault.MISSING_TOKEN
    with pytest.raises(vault.VaultError) as err:
        vault.obtain_token({"role_id": "r", "secret_id": "x"}, _LoginStub(answer={"auth": None}), {})
    assert err.value.kind == vault.BAD_RESPONSE


# -- the module's main() ------------------------------------------------------------------------------------------


@pytest.fixture
def fake(monkeypatch):
    """A FakeVault wired into the module; the post-restore wait is shortened."""
    vault_fake = FakeVault()
    original_from_params = vault.VaultClient.from_params.__func__
    original_wait = vault.VaultClient.wait_until_answering

    def from_params(cls, params, token=None):
        client = original_from_params(cls, params, token)
        client._request = vault_fake
        return client

    monkeypatch.setattr(vault.VaultClient, "from_params", classmethod(from_params))
    monkeypatch.setattr(vault.VaultClient, "wait_until_answering",
                        lambda self, wait_timeout, before=None: original_wait(self, wait_timeout, interval=0.01,
                                                                              settle=0.05, before=before))
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    return vault_fake


def run_main(capsys, args, check=False):
    return run_module(vault_snapshot.main, args, capsys, check_mode=check)


def save_args(dest, **extra):
    args = {"url": URL, "token": TOKEN, "dest": str(dest), "timestamp": "20261126_020000"}
    args.update(extra)
    return args


def test_save_writes_named_snapshot_sidecars_and_manifest(fake, capsys, tmp_path):
    result = run_main(capsys, save_args(tmp_path / "b"))
    assert not result.get("failed"), result
    path = tmp_path / "b" / "vault_20261126_020000.snap"
    assert result["path"] == str(path)
    assert path.read_bytes() == GOOD
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "b").stat().st_mode & 0o777) == "0o700"
    parsed = parse_backup_name(path.name)
    assert parsed.prefix == "vault" and parsed.ext == "snap" and parsed.role == "artifact"
    sha = hashlib.sha256(GOOD).hexdigest()
    md5 = hashlib.md5(GOOD).hexdigest()
    assert (tmp_path / "b" / (path.name + ".sha256")).read_text() == "%s  %s\n" % (sha, path.name)
    assert (tmp_path / "b" / (path.name + ".md5")).read_text() == "%s  %s\n" % (md5, path.name)
    manifest = json.loads((tmp_path / "b" / "vault_20261126_020000.json").read_text())
    assert result["manifest"] == str(tmp_path / "b" / "vault_20261126_020000.json")
    assert manifest["sha256"] == result["sha256"] == sha
    assert manifest["md5"] == result["md5"] == md5
    assert manifest["size"] == result["size"] == len(GOOD)
    assert manifest["server_version"] == "2.7.2"
    assert manifest["raft"]["index"] == 35 and manifest["raft"]["term"] == 3 and manifest["raft"]["leader"] == "n1"
    assert manifest["type"] == "vault_raft_snapshot"
    assert set(["started", "finished", "duration"]) <= set(manifest)
    assert result["changed"] is True
    assert TOKEN not in json.dumps(result) and TOKEN not in json.dumps(manifest)
    stem = "vault_20261126_020000"
    assert sorted(os.listdir(tmp_path / "b")) == [stem + ".json", stem + ".snap", stem + ".snap.md5", stem + ".snap.sha256"]


def test_save_prefix_and_default_timestamp(fake, capsys, tmp_path):
    args = save_args(tmp_path, prefix="vault-prod")
    del args["timestamp"]
    result = run_main(capsys, args)
    parsed = parse_backup_name(os.path.basename(result["path"]))
    assert parsed.prefix == "vault-prod" and parsed.ext == "snap"


def test_save_check_mode_writes_nothing(fake, capsys, tmp_path):
    result = run_main(capsys, save_args(tmp_path / "new"), check=True)
    assert result["changed"] is True
    assert result["path"] == str(tmp_path / "new" / "vault_20261126_020000.snap")
    assert not (tmp_path / "new").exists()
    assert ("GET", vault.SNAPSHOT_PATH) not in fake.calls


@pytest.mark.parametrize("body, text", [
    (b"", "empty (0 bytes)"),
    (GOOD[:10], "only 10 bytes"),
    (GOOD[:-100], "truncated"),
    (b"<html>proxy error</html>", "not gzip data"),
])
def test_save_bad_answer_leaves_nothing(fake, capsys, tmp_path, body, text):
    fake.snapshot = body
    result = run_main(capsys, save_args(tmp_path))
    assert result["failed"] and result["error_kind"] == "invalid_snapshot"
    assert text in result["msg"] and "nothing was written" in result["msg"]
    assert os.listdir(tmp_path) == []


def test_save_never_overwrites(fake, capsys, tmp_path):
    (tmp_path / "vault_20261126_020000.snap").write_bytes(b"older")
    result = run_main(capsys, save_args(tmp_path))
    assert result["failed"] and result["error_kind"] == "exists"
    assert (tmp_path / "vault_20261126_020000.snap").read_bytes() == b"older"


@pytest.mark.parametrize("setup, kind", [
    (dict(sealed=True), "sealed"),
    (dict(storage="consul"), "not_raft"),
    (dict(token="s.other"), "invalid_token"),
    (dict(policies=["default"]), "permission_denied"),
])
def test_save_errors_are_classified(fake, capsys, tmp_path, setup, kind):
    for key, value in setup.items():
        setattr(fake, key, value)
    result = run_main(capsys, save_args(tmp_path))
    assert result["failed"] and result["error_kind"] == kind, result
    assert os.listdir(tmp_path) == []


def test_missing_token_fails_before_any_request(fake, capsys, tmp_path):
    args = save_args(tmp_path)
    del args["token"]
    result = run_main(capsys, args)
    assert result["failed"] and result["error_kind"] == "missing_token"
    assert fake.calls == []


def test_url_and_token_from_environment(fake, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", URL)
    monkeypatch.setenv("VAULT_TOKEN", TOKEN)
    result = run_main(capsys, {"dest": str(tmp_path), "timestamp": "20261126_020000"})
    assert not result.get("failed"), result


def test_invalid_mode_and_timestamp(fake, capsys, tmp_path):
    result = run_main(capsys, save_args(tmp_path, mode="rw-all"))
    assert result["failed"] and result["error_kind"] == "invalid_argument"
    result = run_main(capsys, save_args(tmp_path, timestamp="2026-11-26"))
    assert result["failed"] and result["error_kind"] == "invalid_argument"


def saved_snapshot(tmp_path, data=GOOD, name="vault_20261126_020000.snap"):
    path = tmp_path / name
    path.write_bytes(data)
    (tmp_path / (name + ".sha256")).write_text("%s  %s\n" % (hashlib.sha256(data).hexdigest(), name))
    (tmp_path / (name + ".md5")).write_text("%s  %s\n" % (hashlib.md5(data).hexdigest(), name))
    return path


def restore_args(src, **extra):
    args = {"url": URL, "token": TOKEN, "state": "restored", "src": str(src), "safety_snapshot": False}
    args.update(extra)
    return args


def test_restore_streams_the_file(fake, capsys, tmp_path):
    src = saved_snapshot(tmp_path)
    result = run_main(capsys, restore_args(src))
    assert not result.get("failed"), result
    assert fake.posted == (vault.SNAPSHOT_PATH, GOOD)
    assert result["changed"] is True and result["sealed"] is False
    assert result["checksums"] == {"md5": "ok", "sha256": "ok"}
    assert result["sha256"] == hashlib.sha256(GOOD).hexdigest()
    assert result["snapshot"]["index"] == 35


def test_restore_force_uses_snapshot_force(fake, capsys, tmp_path):
    result = run_main(capsys, restore_args(saved_snapshot(tmp_path), force=True))
    assert fake.posted[0] == vault.SNAPSHOT_FORCE_PATH
    assert result["endpoint"] == vault.SNAPSHOT_FORCE_PATH


def test_restore_seal_mismatch_says_force(fake, capsys, tmp_path):
    fake.restore_status = 400
    result = run_main(capsys, restore_args(saved_snapshot(tmp_path)))
    assert result["failed"] and result["error_kind"] == "seal_mismatch"
    assert "force=true" in result["msg"]


def test_restore_check_mode_posts_nothing(fake, capsys, tmp_path):
    result = run_main(capsys, restore_args(saved_snapshot(tmp_path)), check=True)
    assert result["changed"] is True and not result.get("failed")
    assert fake.posted is None
    assert ("POST", "sys/capabilities-self") in fake.calls


def _flip(data, position):
    damaged = bytearray(data)
    damaged[position] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize("damage, kind", [
    ("truncate", "checksum"),
    ("flip", "checksum"),
    ("wrong_sidecar", "checksum"),
    ("resigned_truncate", "invalid_snapshot"),
    ("resigned_flip", "invalid_snapshot"),
    ("no_sidecar", "checksum"),
])
def test_damaged_snapshot_is_refused_before_vault_is_contacted(fake, capsys, tmp_path, damage, kind):
    src = saved_snapshot(tmp_path)
    name = src.name
    if damage == "truncate":
        src.write_bytes(GOOD[: len(GOOD) // 2])
    elif damage == "flip":
        src.write_bytes(_flip(GOOD, len(GOOD) // 2))
    elif damage == "wrong_sidecar":
        (tmp_path / (name + ".sha256")).write_text("%s  %s\n" % ("ab" * 32, name))
    elif damage.startswith("resigned_"):
        # damaged AND sidecars recomputed: only the archive check can catch it
        data = GOOD[: len(GOOD) // 2] if damage == "resigned_truncate" else _flip(GOOD, len(GOOD) // 2)
        saved_snapshot(tmp_path, data)
    elif damage == "no_sidecar":
        os.unlink(str(tmp_path / (name + ".sha256")))
        os.unlink(str(tmp_path / (name + ".md5")))
    result = run_main(capsys, restore_args(src))
    assert result["failed"] and result["error_kind"] == kind, result
    assert "Vault was not touched" in result["msg"]
    assert fake.calls == []


def test_restore_without_sidecar_when_not_required(fake, capsys, tmp_path):
    src = tmp_path / "raft.snap"
    src.write_bytes(GOOD)
    result = run_main(capsys, restore_args(src, require_checksum=False))
    assert not result.get("failed"), result
    assert result["checksums"] == {"md5": "missing", "sha256": "missing"}
    assert result["manifest"] is None


def test_restore_into_sealed_vault_is_refused(fake, capsys, tmp_path):
    fake.sealed = True
    result = run_main(capsys, restore_args(saved_snapshot(tmp_path)))
    assert result["failed"] and result["error_kind"] == "sealed"
    assert fake.posted is None


def test_required_options(fake, capsys, tmp_path):
    result = run_main(capsys, {"url": URL, "token": TOKEN, "state": "restored"})
    assert result["failed"] and "src" in result["msg"]
    result = run_main(capsys, {"url": URL, "token": TOKEN, "token_file": "/x", "dest": str(tmp_path)})
    assert result["failed"] and "mutually exclusive" in result["msg"]
