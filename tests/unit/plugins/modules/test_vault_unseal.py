# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of atlasia.dr.vault_unseal and atlasia.dr.vault_init with a fake Vault (no HTTP).

The fake follows what OpenBao 2.7 answers (seen in tests/integration/test_vault_recover.py): a wrong key is a 400
"failed to decrypt keys from storage: cipher: message authentication failed", an uninitialised server answers
"Vault is not initialized", a Shamir unseal reports progress until the threshold is reached.
"""

from __future__ import annotations

import json

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils import vault
from ansible_collections.atlasia.dr.plugins.modules import vault_init, vault_unseal

URL = "http://127.0.0.1:8200"
KEYS = ["a2V5LW9uZQ==", "a2V5LXR3bw==", "a2V5LXRocmVl"]


class FakeVault(object):
    """A Shamir-sealed cluster with ``threshold`` of ``keys``; records every request."""

    def __init__(self, keys=None, threshold=2, sealed=True, initialized=True, reachable=True):
        self.keys = list(KEYS if keys is None else keys)
        self.threshold = threshold
        self.sealed = sealed
        self.initialized = initialized
        self.reachable = reachable
        self.progress = 0
        self.requests = []
        self.timeout = 60
        self.url = URL

    def status(self):
        answer = dict(type="shamir", initialized=self.initialized, sealed=self.sealed, t=self.threshold,
                      n=len(self.keys), progress=self.progress, version="2.7.2", storage_type="raft")
        if not self.sealed:
            answer["cluster_name"] = "vault-cluster-test"
        return answer

    def seal_status(self, timeout=None):
        self.requests.append(("GET", "sys/seal-status", None))
        if not self.reachable:
            raise vault.VaultError("cannot connect to Vault at %s: connection refused" % URL, kind=vault.UNREACHABLE)
        return self.status()

    def health(self, timeout=None):
        self.requests.append(("GET", "sys/health", None))
        return (503 if self.sealed else 200), {}

    def json(self, method, path, body=None, auth=True, timeout=None, ok=(200, 204), refine=True):
        self.requests.append((method, path, body))
        if path == "sys/unseal":
            if body.get("reset"):
                self.progress = 0
                return self.status()
            if not self.initialized:
                raise vault.VaultError("Vault is not initialized", kind=vault.NOT_INITIALIZED, status=400,
                                       errors=["Vault is not initialized"])
            if body["key"] == "not base64!":
                raise vault.VaultError("PUT sys/unseal failed with HTTP 400", status=400,
                                       errors=["'key' must be a valid hex or base64 string"])
            if body["key"] not in self.keys:
                self.progress = 0
                raise vault.VaultError("PUT sys/unseal failed with HTTP 400", status=400, errors=[
                    "unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: cipher: "
                    "message authentication failed"])
            self.progress += 1
            if self.progress >= self.threshold:
                self.sealed = False
                self.progress = 0
            return self.status()
        if path == "sys/init":
            if self.initialized:
                raise vault.VaultError("PUT sys/init failed with HTTP 400", status=400,
                                       errors=["Vault is already initialized"])
            self.initialized = True
            self.keys = ["bmV3LWtleS0x", "bmV3LWtleS0y"][: body["secret_shares"]]
            self.threshold = body["secret_threshold"]
            return dict(keys=["6e65772d6b65792d31"], keys_base64=list(self.keys), root_token="s.new-root-token")
        raise AssertionError("unexpected request %s %s" % (method, path))


@pytest.fixture
def fake(monkeypatch):
    server = FakeVault()
    monkeypatch.setattr(vault.VaultClient, "from_params", classmethod(lambda cls, params, token=None: server))
    monkeypatch.setattr(vault_unseal.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(vault_init.time, "sleep", lambda seconds: None)
    return server


def run(module, args, capsys, check_mode=False):
    return run_module(module.main, dict(args, url=URL), capsys, check_mode=check_mode, output=True)


def unseal_keys(fake):
    return [body["key"] for method, path, body in fake.requests if path == "sys/unseal" and "key" in body]


# -- vault_unseal -------------------------------------------------------------------------------------------------

def test_a_sealed_vault_gets_keys_until_the_threshold(fake, capsys):
    result, out = run(vault_unseal, dict(keys=KEYS), capsys)
    assert result["changed"] is True
    assert result["sealed"] is False
    assert result["keys_used"] == 2
    assert unseal_keys(fake) == KEYS[:2]  # the third key is not sent once unsealed
    assert result["cluster_name"] == "vault-cluster-test"
    for key in KEYS:
        assert key not in out  # no_log: the keys never come back


def test_an_unsealed_vault_is_left_alone(fake, capsys):
    fake.sealed = False
    result, out = run(vault_unseal, dict(keys=KEYS), capsys)
    assert result["changed"] is False
    assert unseal_keys(fake) == []


def test_check_mode_sends_no_key(fake, capsys):
    result, out = run(vault_unseal, dict(keys=KEYS), capsys, check_mode=True)
    assert result["changed"] is True
    assert result["sealed"] is True
    assert unseal_keys(fake) == []


def test_a_partial_unseal_of_someone_else_is_reset_first(fake, capsys):
    fake.progress = 1
    run(vault_unseal, dict(keys=KEYS), capsys)
    assert ("PUT", "sys/unseal", {"reset": True}) in fake.requests


def test_wrong_keys_are_classified_for_the_playbook(fake, capsys):
    result, out = run(vault_unseal, dict(keys=["d3Jvbmc="]), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == "wrong_key"
    assert "restore a snapshot" in result["msg"]
    assert result["sealed"] is True
    assert "d3Jvbmc=" not in out


def test_too_few_keys(fake, capsys):
    result, out = run(vault_unseal, dict(keys=KEYS[:1]), capsys)
    assert result["error_kind"] == "threshold"
    assert result["progress"] == 1 and result["threshold"] == 2


def test_a_key_that_is_not_base64(fake, capsys):
    result, out = run(vault_unseal, dict(keys=["not base64!"]), capsys)
    assert result["error_kind"] == "invalid_key"


@pytest.mark.parametrize("state, kind", [(dict(initialized=False), "not_initialized"),
                                         (dict(reachable=False), "unreachable")])
def test_nothing_to_unseal(fake, capsys, state, kind):
    for key, value in state.items():
        setattr(fake, key, value)
    result, out = run(vault_unseal, dict(keys=KEYS), capsys)
    assert result["error_kind"] == kind
    assert unseal_keys(fake) == []


def test_sealed_without_keys(fake, capsys):
    result, out = run(vault_unseal, dict(keys=[]), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == "threshold"


# -- vault_init -----------------------------------------------------------------------------------------------------

def test_a_fresh_cluster_is_initialised_and_unsealed(fake, capsys, tmp_path):
    fake.initialized = False
    output = tmp_path / "keys" / "init.json"
    result, out = run(vault_init, dict(require_fresh=True, output_file=str(output)), capsys)
    assert result["changed"] is True
    assert result["root_token"] == "s.new-root-token"
    assert result["keys_base64"] == ["bmV3LWtleS0x"]
    assert result["sealed"] is False and fake.sealed is False
    saved = json.loads(output.read_text())
    assert saved["root_token"] == "s.new-root-token"
    assert oct(output.stat().st_mode & 0o777) == "0o600"


def test_an_initialised_cluster_is_left_alone_or_refused(fake, capsys):
    result, out = run(vault_init, dict(), capsys)
    assert result["changed"] is False and result["initialized"] is True
    assert "root_token" not in result
    result, out = run(vault_init, dict(require_fresh=True), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == "initialized"
    assert not [r for r in fake.requests if r[1] == "sys/init"]


def test_init_check_mode_changes_nothing(fake, capsys):
    fake.initialized = False
    result, out = run(vault_init, dict(), capsys, check_mode=True)
    assert result["changed"] is True
    assert fake.initialized is False


def test_init_without_unseal_leaves_it_sealed(fake, capsys):
    fake.initialized = False
    result, out = run(vault_init, dict(unseal=False, secret_shares=2, secret_threshold=2), capsys)
    assert result["sealed"] is True and fake.sealed is True


def test_init_refuses_a_threshold_above_the_shares(fake, capsys):
    fake.initialized = False
    result, out = run(vault_init, dict(secret_shares=1, secret_threshold=2), capsys)
    assert result["failed"] is True
    assert fake.initialized is False
