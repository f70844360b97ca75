# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Vault AppRole instead of a token (what AWX credentials carry), against a real OpenBao server: the Vault modules
log in with ``POST auth/approle/login`` when no token is given, with the policy of the role and nothing more.
"""

from __future__ import annotations

import pytest

from tests.support.ansible_run import run_module
from tests.support.openbao import OpenBaoServer

pytestmark = pytest.mark.integration

SNAPSHOT_POLICY = 'path "sys/storage/raft/snapshot" { capabilities = ["read"] }\n'


def approle(server, name, policies):
    """``(role_id, secret_id)`` of a new AppRole ``name`` whose tokens carry ``policies``."""
    server._ok("POST", "auth/approle/role/%s" % name, body={"token_policies": list(policies), "token_ttl": "10m"})
    role_id = server._ok("GET", "auth/approle/role/%s/role-id" % name)["data"]["role_id"]
    secret_id = server._ok("POST", "auth/approle/role/%s/secret-id" % name, body={})["data"]["secret_id"]
    return role_id, secret_id


@pytest.fixture(scope="module")
def bao():
    server = OpenBaoServer(node_id="approle")
    try:
        server.setup()
        server.write_secret("app/db", {"password": "approle-test"})
        server._ok("POST", "sys/auth/approle", body={"type": "approle"})
        server.put_policy("dr-snapshot", SNAPSHOT_POLICY)
        yield server
    finally:
        server.stop()


def test_snapshot_with_an_approle_whose_policy_allows_it(bao, tmp_path):
    role_id, secret_id = approle(bao, "dr-backup", ["dr-snapshot"])
    result = run_module("atlasia.dr.vault_snapshot", {"url": bao.addr, "role_id": role_id, "secret_id": secret_id,
                                                      "dest": str(tmp_path), "timeout": 10},
                        env={"VAULT_TOKEN": ""})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["size"] > 0
    assert (tmp_path / result["path"].rsplit("/", 1)[-1]).is_file()
    assert secret_id not in result.stdout  # no_log

    # the preflight logs in the same way and reports the Vault as ready
    preflight = run_module("atlasia.dr.preflight", {"vault": {"url": bao.addr, "role_id": role_id,
                                                              "secret_id": secret_id, "timeout": 10},
                                                    "fail_on_problems": False},
                           env={"VAULT_TOKEN": ""})
    assert not preflight.get("failed"), preflight.get("msg")
    vault = [c for c in preflight["checks"] if c["check"] == "vault"]
    assert vault and all(c["ready"] for c in vault), preflight["checks"]


def test_approle_failures_say_what_to_fix(bao, tmp_path):
    role_id, secret_id = approle(bao, "no-snapshot", ["default"])
    denied = run_module("atlasia.dr.vault_snapshot", {"url": bao.addr, "role_id": role_id, "secret_id": secret_id,
                                                      "dest": str(tmp_path), "timeout": 10})
    assert denied.get("failed") and denied["error_kind"] == "permission_denied", denied
    assert not list(tmp_path.iterdir())

    refused = run_module("atlasia.dr.vault_snapshot", {"url": bao.addr, "role_id": role_id,
                                                       "secret_id": "00000000-0000-0000-0000-000000000000",
                                                       "dest": str(tmp_path), "timeout": 10})
    assert refused.get("failed") and refused["error_kind"] == "invalid_token", refused
    assert "AppRole login" in refused["msg"] and "secret_id" in refused["msg"]

    half = run_module("atlasia.dr.vault_snapshot", {"url": bao.addr, "role_id": role_id, "dest": str(tmp_path)})
    assert half.get("failed") and "secret_id" in half["msg"], half
