# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Options of the Vault modules (plugins/module_utils/vault.py, vault_argument_spec()): DOCUMENTATION for the
    # connection (atlasia.dr.vault), TOKEN for the modules that authenticate (atlasia.dr.vault.token).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Address of the Vault (or OpenBao) API, for instance V(https://vault.example.org:8200).
      - When not set, the C(VAULT_ADDR) environment variable is used.
      - Point it at the active node; a standby that redirects is reported as such.
    type: str
    aliases: [addr]
  namespace:
    description:
      - Vault Enterprise / OpenBao namespace, sent as C(X-Vault-Namespace). Raft endpoints live in the root
        namespace, so this is rarely needed.
      - When not set, the C(VAULT_NAMESPACE) environment variable is used.
    type: str
  ca_cert:
    description:
      - CA certificate (PEM) that signed Vault's TLS certificate. When not set, C(VAULT_CACERT) is used, then
        the system's CA bundle.
    type: path
  client_cert:
    description:
      - Client certificate (PEM) for TLS client authentication. Requires O(client_key).
    type: path
  client_key:
    description:
      - Private key (PEM) of O(client_cert).
    type: path
  validate_certs:
    description:
      - Verify Vault's TLS certificate. Turn off only for throw-away test servers.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for Vault to connect and answer each read of a request; an unreachable or silent
        server fails after this long.
    type: int
    default: 60
  role_id:
    description:
      - Role ID of a Vault AppRole. With O(secret_id), and when no token is given (neither C(token) nor
        C(token_file) where the module takes them), the module logs in with AppRole
        (C(POST auth/<approle_mount>/login)) and uses the token of that login for its requests.
      - The AppRole login takes precedence over the C(VAULT_TOKEN) environment variable.
      - The modules that do not authenticate (M(atlasia.dr.vault_init), M(atlasia.dr.vault_unseal)) accept and
        ignore it, so one connection fits the whole group in C(module_defaults).
    type: str
  secret_id:
    description:
      - Secret ID of the AppRole O(role_id). Required together with O(role_id).
    type: str
  approle_mount:
    description:
      - Path the AppRole auth method is mounted at (C(bao/vault auth enable -path=<mount> approle)).
    type: str
    default: approle
"""

    TOKEN = r"""
options:
  token:
    description:
      - Vault token.
      - When neither O(token) nor O(token_file) is set, the module logs in with AppRole when O(role_id) and
        O(secret_id) are set, else the C(VAULT_TOKEN) environment variable is used.
      - Raft snapshots need a token whose policy grants C(read) on C(sys/storage/raft/snapshot) (save), or
        C(update) on C(sys/storage/raft/snapshot) and C(sys/storage/raft/snapshot-force) (restore); in
        practice a root or operator token.
    type: str
  token_file:
    description:
      - File whose content is the token (for instance C(~/.vault-token) or a file written by Vault Agent).
      - Mutually exclusive with O(token).
    type: path
"""
