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
"""

    TOKEN = r"""
options:
  token:
    description:
      - Vault token.
      - When neither O(token) nor O(token_file) is set, the C(VAULT_TOKEN) environment variable is used.
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
