#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_init
short_description: Initialise a fresh HashiCorp Vault (or OpenBao) cluster, for instance to restore a snapshot into it
version_added: 0.1.0
description:
  - Waits until the API answers (a server that was just (re)started), then reads C(sys/init).
  - An uninitialised cluster is initialised through C(sys/init) with O(secret_shares) and O(secret_threshold); the
    new unseal keys and root token are returned (and written to O(output_file) when given), and the cluster is
    unsealed with them unless O(unseal=false).
  - An initialised cluster is left alone (C(changed=false), no keys returned), or refused with O(require_fresh=true),
    so that a cluster holding data is never taken for an empty one.
  - Disaster recovery (the plan's Scenario 3) uses it to get a cluster that accepts a raft snapshot through
    C(snapshot-force). After that restore, the keys and token of this new cluster no longer apply; the ORIGINAL
    cluster's do.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.vault
attributes:
  check_mode:
    support: full
    details: Reads the state and reports whether it would initialise; nothing is sent.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  secret_shares:
    description: Number of unseal key shares.
    type: int
    default: 1
  secret_threshold:
    description: Number of shares needed to unseal.
    type: int
    default: 1
  unseal:
    description: Unseal the new cluster with its new keys (a fresh cluster is sealed).
    type: bool
    default: true
  require_fresh:
    description: Fail when the cluster is already initialised instead of reporting it unchanged.
    type: bool
    default: false
  output_file:
    description:
      - File receiving the new keys and root token as JSON (mode 0600, written atomically). Keep it only as long as
        the new cluster's keys matter (they no longer do after a forced snapshot restore).
    type: path
  wait_timeout:
    description: Seconds to wait until the API answers, and until the node is active after unsealing.
    type: int
    default: 60
notes:
  - The result holds the new root token and keys, so register it with C(no_log=true).
seealso:
  - module: atlasia.dr.vault_unseal
  - module: atlasia.dr.vault_snapshot
  - name: Vault init API
    description: The C(sys/init) endpoint.
    link: https://developer.hashicorp.com/vault/api-docs/system/init
"""

EXAMPLES = r"""
- name: Initialise the fresh cluster the snapshot goes into
  atlasia.dr.vault_init:
    url: http://127.0.0.1:8200
    require_fresh: true
  register: fresh
  no_log: true

- name: Restore the snapshot with the new cluster's root token
  atlasia.dr.vault_snapshot:
    state: restored
    src: /srv/atlasia/backups/daily/vault_20261126_020000.snap
    force: true
    url: http://127.0.0.1:8200
    token: "{{ fresh.root_token }}"
"""

RETURN = r"""
initialized:
  description: Whether the cluster is initialised at the end (in check mode, now).
  returned: always
  type: bool
  sample: true
sealed:
  description: Whether the cluster is sealed at the end.
  returned: when Vault answered
  type: bool
  sample: false
root_token:
  description: Root token of the new cluster.
  returned: changed and not check mode
  type: str
  sample: s.XXXXXXXXXXXXXXXXXXXXXXXX
keys:
  description: Unseal keys of the new cluster (hex).
  returned: changed and not check mode
  type: list
  elements: str
keys_base64:
  description: Unseal keys of the new cluster (base64).
  returned: changed and not check mode
  type: list
  elements: str
output_file:
  description: File the keys and token were written to, or null.
  returned: always
  type: str
  sample: /root/.atlasia-dr/vault-init.json
version:
  description: Version of the server.
  returned: when Vault answered
  type: str
  sample: 2.7.2
error_kind:
  description: Classification of a failure (V(unreachable), V(initialized), V(tls), V(http_error)...).
  returned: failure
  type: str
  sample: initialized
"""

import os
import time

from ansible_collections.atlasia.dr.plugins.module_utils import atomic
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.vault import (
    UNREACHABLE,
    VAULT_REQUIRED_TOGETHER,
    VaultClient,
    VaultError,
    vault_argument_spec,
)


def connection_argument_spec():
    spec = vault_argument_spec()
    spec.pop("token")
    spec.pop("token_file")
    return spec


def wait_answering(client, wait_timeout, interval=0.5):
    """The seal status, once the API answers (a server just restarted needs a moment)."""
    deadline = time.monotonic() + wait_timeout
    while True:
        try:
            return client.seal_status(timeout=max(1, min(client.timeout, wait_timeout)))
        except VaultError as exc:
            if exc.kind != UNREACHABLE or time.monotonic() >= deadline:
                raise
        time.sleep(interval)


def wait_active(client, wait_timeout, interval=0.5):
    deadline = time.monotonic() + wait_timeout
    code = None
    while True:
        try:
            code, dummy = client.health(timeout=max(1, min(client.timeout, wait_timeout)))
            if code in (200, 429, 473):
                return
        except VaultError:
            pass
        if time.monotonic() >= deadline:
            raise VaultError("the new cluster did not report an active node within %d s (sys/health answered %s)"
                             % (wait_timeout, code))
        time.sleep(interval)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        secret_shares=dict(type="int", default=1, no_log=False),
        secret_threshold=dict(type="int", default=1, no_log=False),
        unseal=dict(type="bool", default=True),
        require_fresh=dict(type="bool", default=False),
        output_file=dict(type="path"),
        wait_timeout=dict(type="int", default=60),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True,
                      required_together=VAULT_REQUIRED_TOGETHER)
    p = module.params
    result = dict(changed=False, initialized=False, output_file=None)
    if not 1 <= p["secret_threshold"] <= p["secret_shares"]:
        module.fail_json(msg="secret_threshold must be between 1 and secret_shares", error_kind="invalid_argument",
                         **result)
    try:
        client = VaultClient.from_params(p)
        status = wait_answering(client, p["wait_timeout"])
        result.update(initialized=bool(status.get("initialized")), sealed=bool(status.get("sealed")),
                      version=status.get("version"))
        if result["initialized"]:
            if p["require_fresh"]:
                module.fail_json(msg="Vault at %s is already initialised: it is not a fresh cluster (reset its storage "
                                     "first; nothing was changed)" % client.url, error_kind="initialized", **result)
            module.exit_json(**result)
        if module.check_mode:
            result["changed"] = True
            module.exit_json(**result)
        answer = client.json("PUT", "sys/init", auth=False,
                             body={"secret_shares": p["secret_shares"], "secret_threshold": p["secret_threshold"]})
        secrets = dict(root_token=answer.get("root_token"), keys=answer.get("keys") or [],
                       keys_base64=answer.get("keys_base64") or [])
        if not secrets["root_token"] or not secrets["keys_base64"]:
            module.fail_json(msg="sys/init answered without keys or root token", error_kind="bad_response", **result)
        result.update(changed=True, initialized=True, **secrets)
        if p["output_file"]:
            directory = os.path.dirname(os.path.abspath(p["output_file"]))
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
            atomic.write_json(p["output_file"], dict(url=client.url, created=time.time(), **secrets), mode=0o600)
            result["output_file"] = p["output_file"]
        if p["unseal"]:
            for key in secrets["keys_base64"][: p["secret_threshold"]]:
                status = client.json("PUT", "sys/unseal", body={"key": key}, auth=False)
            if status.get("sealed"):
                module.fail_json(msg="the new cluster is still sealed after its own keys", error_kind="sealed",
                                 **result)
            wait_active(client, p["wait_timeout"])
            result["sealed"] = False
        else:
            result["sealed"] = True
    except VaultError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, **result)
    except OSError as exc:
        module.fail_json(msg="cannot write %s: %s" % (p["output_file"], exc), error_kind="io", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
