#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_unseal
short_description: Unseal HashiCorp Vault (or OpenBao) with its unseal keys, and report its seal status
version_added: 0.1.0
description:
  - Reads C(sys/seal-status). A Vault that is already unsealed is left alone (C(changed=false)).
  - A sealed Vault gets the unseal keys O(keys) one by one through C(sys/unseal) until it reports unsealed, then
    the module waits until the node is active (C(sys/health) answers 200, or 429/473 for a standby).
  - The keys are never logged and never sent anywhere else; a partial unseal left by an earlier attempt is
    discarded first (O(reset)).
  - Failures carry an C(error_kind) a playbook can branch on, for instance to restore a snapshot when the keys
    do not open the data any more (the plan's Scenario 3) - V(unreachable), V(not_initialized), V(wrong_key)
    (the storage cannot be decrypted with these keys, because they belong to another cluster or the keyring is
    damaged), V(threshold) (too few keys), V(invalid_key) (a key is not hex or base64), V(tls), V(http_error).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.vault
attributes:
  check_mode:
    support: full
    details: Reads the seal status and reports whether it would unseal; no key is sent.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  keys:
    description:
      - Unseal keys (base64 or hex), as many as the key threshold needs. Keep them Ansible Vault-encrypted.
    type: list
    elements: str
    required: true
  reset:
    description:
      - Discard an unseal in progress (keys given earlier by someone else) before giving the keys.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait, once unsealed, until the node answers as active (or standby) on C(sys/health).
    type: int
    default: 60
notes:
  - The unseal endpoints need no token.
  - Works with HashiCorp Vault and OpenBao (same API), Shamir seals. An auto-unseal (KMS, HSM) Vault needs no keys
    and is reported as it is.
seealso:
  - module: atlasia.dr.vault_init
  - module: atlasia.dr.vault_snapshot
  - name: Vault unseal API
    description: The C(sys/unseal) endpoint.
    link: https://developer.hashicorp.com/vault/api-docs/system/unseal
"""

EXAMPLES = r"""
- name: Unseal Vault with the keys kept in an Ansible Vault-encrypted variable
  atlasia.dr.vault_unseal:
    url: http://127.0.0.1:8200
    keys: "{{ vault_unseal_keys }}"

- name: Only read the seal status
  atlasia.dr.vault_unseal:
    url: http://127.0.0.1:8200
    keys: []
  check_mode: true
  register: vault_status

- name: Try to unseal, decide afterwards (Scenario 3)
  atlasia.dr.vault_unseal:
    url: http://127.0.0.1:8200
    keys: "{{ lookup('ansible.builtin.unvault', 'files/unseal-keys.json') | from_json }}"
  register: unseal
  failed_when: false
"""

RETURN = r"""
sealed:
  description: Whether Vault is sealed at the end (in check mode, now).
  returned: when Vault answered
  type: bool
  sample: false
initialized:
  description: Whether Vault is initialized.
  returned: when Vault answered
  type: bool
  sample: true
progress:
  description: Unseal keys accepted so far toward the threshold (0 once unsealed).
  returned: when Vault answered
  type: int
  sample: 0
threshold:
  description: Number of keys needed to unseal.
  returned: when Vault answered
  type: int
  sample: 3
shares:
  description: Number of key shares of the cluster.
  returned: when Vault answered
  type: int
  sample: 5
keys_used:
  description: Number of keys sent.
  returned: always
  type: int
  sample: 3
version:
  description: Version of the server.
  returned: when Vault answered
  type: str
  sample: 2.7.2
cluster_name:
  description: Name of the cluster (known once unsealed).
  returned: when Vault answered and is unsealed
  type: str
  sample: vault-cluster-2e394ec1
storage_type:
  description: Storage backend of the server.
  returned: when Vault answered
  type: str
  sample: raft
error_kind:
  description:
    - Classification of a failure, V(unreachable), V(not_initialized), V(wrong_key), V(threshold),
      V(invalid_key), V(tls), V(invalid_argument) or V(http_error).
  returned: failure
  type: str
  sample: wrong_key
"""

import time

from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.vault import (
    NOT_INITIALIZED,
    VAULT_REQUIRED_TOGETHER,
    VaultClient,
    VaultError,
    vault_argument_spec,
)

WRONG_KEY = "wrong_key"
THRESHOLD = "threshold"
INVALID_KEY = "invalid_key"
_WRONG_KEY_MARKERS = ("message authentication failed", "failed to decrypt", "invalid key")


def connection_argument_spec():
    """The Vault connection options without the token (the seal endpoints are unauthenticated)."""
    spec = vault_argument_spec()
    spec.pop("token")
    spec.pop("token_file")
    return spec


def describe(status):
    """The seal status keys this module returns."""
    result = dict(sealed=bool(status.get("sealed")), initialized=bool(status.get("initialized", True)),
                  progress=status.get("progress", 0), threshold=status.get("t"), shares=status.get("n"),
                  version=status.get("version"), storage_type=status.get("storage_type"))
    if status.get("cluster_name"):
        result["cluster_name"] = status["cluster_name"]
    return result


def classify_unseal_error(exc):
    """``error_kind`` of a failed ``sys/unseal`` call."""
    text = " ".join([str(exc)] + list(exc.errors)).lower()
    if "must be a valid hex or base64" in text:
        return INVALID_KEY
    if any(marker in text for marker in _WRONG_KEY_MARKERS):
        return WRONG_KEY
    return exc.kind


def wait_active(client, wait_timeout, interval=0.5):
    """Wait until ``sys/health`` reports an active node or a standby; returns the last health code."""
    deadline = time.monotonic() + wait_timeout
    code = None
    while True:
        try:
            code, dummy = client.health(timeout=max(1, min(client.timeout, wait_timeout)))
            if code in (200, 429, 473):
                return code
        except VaultError:
            pass
        if time.monotonic() >= deadline:
            raise VaultError("Vault is unsealed but did not report an active node within %d s (sys/health answered "
                             "%s)" % (wait_timeout, code))
        time.sleep(interval)


def unseal(module, client):
    """Give the keys until unsealed; returns the result dict (exits through fail_json on errors)."""
    p = module.params
    result = dict(changed=False, keys_used=0)
    try:
        status = client.seal_status()
    except VaultError as exc:
        module.fail_json(msg="cannot read the seal status: %s" % exc, error_kind=exc.kind, **result)
    result.update(describe(status))
    if not result["initialized"]:
        module.fail_json(msg="Vault at %s is not initialized: there is nothing to unseal (restore a snapshot into a "
                             "freshly initialised cluster instead)" % client.url, error_kind=NOT_INITIALIZED, **result)
    if not result["sealed"]:
        return result
    if module.check_mode:
        result["changed"] = True
        return result
    keys = [key.strip() for key in p["keys"] if key and key.strip()]
    if not keys:
        module.fail_json(msg="Vault is sealed and no unseal key was given", error_kind=THRESHOLD, **result)
    try:
        if p["reset"] and status.get("progress"):
            client.json("PUT", "sys/unseal", body={"reset": True}, auth=False)
        for key in keys:
            result["keys_used"] += 1
            result["changed"] = True
            try:
                status = client.json("PUT", "sys/unseal", body={"key": key}, auth=False)
            except VaultError as exc:
                kind = classify_unseal_error(exc)
                result.update(describe(client.seal_status()))
                hint = {
                    WRONG_KEY: "these keys do not open this Vault's storage (keys of another cluster, or the keyring "
                               "is damaged): restore a snapshot into a fresh cluster and unseal with the keys of the "
                               "cluster the snapshot came from",
                    INVALID_KEY: "a key is not a hex or base64 string",
                }.get(kind, "")
                reason = "; ".join(exc.errors) or str(exc)
                module.fail_json(msg="unseal key %d was refused: %s%s" % (
                    result["keys_used"], reason, (" -- " + hint) if hint else ""), error_kind=kind, **result)
            result.update(describe(status))
            if not result["sealed"]:
                break
        if result["sealed"]:
            module.fail_json(msg="Vault is still sealed after %d key(s): %s of %s keys accepted; give more keys"
                                 % (result["keys_used"], result["progress"], result["threshold"]),
                             error_kind=THRESHOLD, **result)
        wait_active(client, p["wait_timeout"])
        result.update(describe(client.seal_status()))
    except VaultError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, **result)
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        keys=dict(type="list", elements="str", required=True, no_log=True),
        reset=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=60),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True,
                      required_together=VAULT_REQUIRED_TOGETHER)
    if module.params["timeout"] <= 0 or module.params["wait_timeout"] <= 0:
        module.fail_json(msg="timeout and wait_timeout must be positive", error_kind="invalid_argument", keys_used=0)
    try:
        client = VaultClient.from_params(module.params)
    except VaultError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, keys_used=0)
    module.exit_json(**unseal(module, client))


if __name__ == "__main__":
    main()
