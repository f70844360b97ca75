"""module_defaults with the connection-family groups of meta/runtime.yml, through the real ansible-playbook.

Each task points at a closed port: its failure message names the address it was given, which came only from
the group's defaults. No server is needed.
"""

from __future__ import annotations

import textwrap

from tests.support.ansible_run import run_playbook

PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      gather_facts: false
      module_defaults:
        group/atlasia.dr.postgres:
          login_host: 127.0.0.1
          port: 9
          connect_timeout: 2
        group/atlasia.dr.s3:
          bucket: group-defaults-bucket
          endpoint_url: http://127.0.0.1:9
          access_key: test-access
          secret_key: test-secret
          timeout: 2
          max_attempts: 1
        group/atlasia.dr.vault:
          url: http://127.0.0.1:9
          timeout: 2
      tasks:
        - name: PostgreSQL module with its connection from the postgres group
          atlasia.dr.pg_verify:
            db: appdb
          register: pg
          ignore_errors: true
        - name: S3 module with its connection from the s3 group
          atlasia.dr.s3_backup_transfer:
            mode: exists
            key: backup_20261126_020000.sql.gz
          register: s3
          ignore_errors: true
        - name: Vault module with its connection from the vault group
          atlasia.dr.vault_unseal:
            keys: []
          register: vault
          ignore_errors: true
        - name: Every module was reached with the group's options
          ansible.builtin.assert:
            that:
              - pg is failed and '"127.0.0.1", port 9' in pg.msg
              - s3 is failed and 's3://group-defaults-bucket/' in s3.msg and 'http://127.0.0.1:9' in s3.msg
              - vault is failed and 'http://127.0.0.1:9' in vault.msg
              - "'Unsupported parameters' not in (pg.msg ~ s3.msg ~ vault.msg)"
    """)


def test_connection_groups_set_each_connection_once(tmp_path):
    playbook = tmp_path / "groups.yml"
    playbook.write_text(PLAYBOOK)
    proc = run_playbook(playbook, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
