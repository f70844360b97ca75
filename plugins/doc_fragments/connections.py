# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The connection options of the PostgreSQL, Vault and S3 modules as three dict options (postgres, vault, s3), for
    # a module that talks to all three at once (preflight). Built from the fragments postgres, vault (+ token) and
    # s3 by tests/unit/test_doc_fragments.py, which fails when they drift apart and prints the text to paste here.
    DOCUMENTATION = r"""
options:
  postgres:
    description:
    - Database connection to check, as for M(atlasia.dr.pg_dump_backup). Omit to skip.
    suboptions:
      ca_cert:
        aliases:
        - ssl_rootcert
        description:
        - CA certificate file checked with O(postgres.ssl_mode=verify-ca) or O(postgres.ssl_mode=verify-full).
        type: path
      connect_timeout:
        default: 10
        description:
        - Seconds to wait for a connection before failing.
        type: int
      container:
        description:
        - Name of a Docker container in which the PostgreSQL client programs run (through
          C(docker exec)), for instance C(aiteam_db_prod). The client then always
          matches the server's version.
        - The data streams through the C(docker exec) pipe; compression, checksums
          and files stay on the host.
        - Connection settings are passed with C(docker exec -e NAME), whose values
          come from the environment, so the password never appears in a process list.
        type: str
      db:
        aliases:
        - login_db
        - name
        description:
        - Name of the database.
        required: true
        type: str
      docker_bin:
        description:
        - Path of the Docker CLI used with O(postgres.container).
        type: path
      login_host:
        aliases:
        - host
        description:
        - Host running the database server.
        - When neither O(postgres.login_host) nor O(postgres.login_unix_socket) is
          set, the client's default applies (the local Unix socket, or the one inside
          O(postgres.container)).
        type: str
      login_password:
        description:
        - Password of O(postgres.login_user). Passed to the client programs through
          the environment (C(PGPASSWORD)), never on their command line.
        type: str
      login_unix_socket:
        description:
        - Directory of the server's Unix-domain socket. Takes precedence over O(postgres.login_host).
        type: str
      login_user:
        aliases:
        - login
        default: postgres
        description:
        - Role to connect as. Backups need read access to every object; restores need
          the right to create, rename and drop databases.
        type: str
      pg_bin_dir:
        description:
        - Directory holding C(pg_dump), C(pg_restore) and C(psql) on the host, for
          instance C(/usr/lib/postgresql/15/bin). By default they are looked up in
          E(PATH).
        type: path
      port:
        aliases:
        - login_port
        default: 5432
        description:
        - Database server port.
        type: int
      ssl_mode:
        choices:
        - allow
        - disable
        - prefer
        - require
        - verify-ca
        - verify-full
        default: prefer
        description:
        - libpq C(sslmode) of the connection.
        type: str
    type: dict
  s3:
    description:
    - S3 connection to check, as for M(atlasia.dr.s3_backup_transfer). Omit to skip.
    suboptions:
      access_key:
        aliases:
        - aws_access_key
        - aws_access_key_id
        description:
        - Access key ID.
        - When neither O(s3.access_key) nor O(s3.profile) is set, boto3's credential
          chain applies (environment, shared credentials file, instance or task role).
        type: str
      addressing_style:
        choices:
        - auto
        - path
        - virtual
        default: auto
        description:
        - How the bucket name is put in request URLs. V(path) suits most self-hosted
          S3-compatible servers reached by a host name; V(auto) lets botocore choose
          (virtual-hosted on AWS, path style for IP addresses).
        type: str
      bucket:
        description:
        - Name of the S3 bucket.
        required: true
        type: str
      ca_bundle:
        description:
        - PEM file of the certificate authorities that sign the endpoint's certificate
          (self-hosted endpoints).
        type: path
      checksum_calculation:
        choices:
        - when_supported
        - when_required
        description:
        - When the SDK adds its own CRC checksums to requests and checks them in responses.
          Unset, the SDK's default (V(when_supported) in current botocore).
        - V(when_required) for S3-compatible servers that refuse the SDK's checksum
          trailers (for example C(InvalidAccessKeyId) on C(PutObject) over HTTPS).
          The backups' integrity does not depend on it, as every object carries our
          own SHA-256, checked end to end.
        type: str
      endpoint_url:
        aliases:
        - aws_endpoint_url
        description:
        - URL of an S3-compatible endpoint (MinIO, SeaweedFS, Ceph RGW...), for example
          C(https://s3.example.org).
        - Leave unset for AWS S3.
        - The E(AWS_ENDPOINT_URL_S3) or E(AWS_ENDPOINT_URL) environment variables
          are used when this is not set.
        type: str
      max_attempts:
        default: 3
        description:
        - Attempts per request, the first included (botocore C(standard) retry mode,
          with backoff), for throttling, 5xx answers and connection errors.
        type: int
      profile:
        aliases:
        - aws_profile
        description:
        - Named profile of the AWS shared configuration files.
        - Mutually exclusive with O(s3.access_key), O(s3.secret_key) and O(s3.session_token).
        type: str
      region:
        aliases:
        - aws_region
        description:
        - AWS region of the bucket.
        - Defaults to boto3's configuration (E(AWS_REGION), E(AWS_DEFAULT_REGION),
          C(~/.aws/config)); with O(s3.endpoint_url) and no region configured, C(us-east-1)
          is used for request signing.
        type: str
      secret_key:
        aliases:
        - aws_secret_key
        - aws_secret_access_key
        description:
        - Secret access key. Required with O(s3.access_key).
        type: str
      session_token:
        aliases:
        - aws_session_token
        description:
        - Session token of temporary (STS) credentials.
        type: str
      timeout:
        default: 60
        description:
        - Seconds the endpoint may take. An unreachable endpoint fails after about
          this long in total (the connect timeout is O(s3.timeout) divided by O(s3.max_attempts));
          each response or chunk read may take up to O(s3.timeout) seconds.
        type: int
      validate_certs:
        default: true
        description:
        - Verify the endpoint's TLS certificate. Setting this to V(false) is strongly
          discouraged.
        type: bool
    type: dict
  vault:
    description:
    - Vault connection to check, as for M(atlasia.dr.vault_snapshot). Omit to skip.
    suboptions:
      approle_mount:
        default: approle
        description:
        - Path the AppRole auth method is mounted at (C(bao/vault auth enable -path=<mount>
          approle)).
        type: str
      ca_cert:
        description:
        - CA certificate (PEM) that signed Vault's TLS certificate. When not set,
          C(VAULT_CACERT) is used, then the system's CA bundle.
        type: path
      client_cert:
        description:
        - Client certificate (PEM) for TLS client authentication. Requires O(vault.client_key).
        type: path
      client_key:
        description:
        - Private key (PEM) of O(vault.client_cert).
        type: path
      namespace:
        description:
        - Vault Enterprise / OpenBao namespace, sent as C(X-Vault-Namespace). Raft
          endpoints live in the root namespace, so this is rarely needed.
        - When not set, the C(VAULT_NAMESPACE) environment variable is used.
        type: str
      role_id:
        description:
        - Role ID of a Vault AppRole. With O(vault.secret_id), and when no token is
          given (neither C(token) nor C(token_file) where the module takes them),
          the module logs in with AppRole (C(POST auth/<approle_mount>/login)) and
          uses the token of that login for its requests.
        - The AppRole login takes precedence over the C(VAULT_TOKEN) environment variable.
        - The modules that do not authenticate (M(atlasia.dr.vault_init), M(atlasia.dr.vault_unseal))
          accept and ignore it, so one connection fits the whole group in C(module_defaults).
        type: str
      secret_id:
        description:
        - Secret ID of the AppRole O(vault.role_id). Required together with O(vault.role_id).
        type: str
      timeout:
        default: 60
        description:
        - Seconds to wait for Vault to connect and answer each read of a request;
          an unreachable or silent server fails after this long.
        type: int
      token:
        description:
        - Vault token.
        - When neither O(vault.token) nor O(vault.token_file) is set, the module logs
          in with AppRole when O(vault.role_id) and O(vault.secret_id) are set, else
          the C(VAULT_TOKEN) environment variable is used.
        - Raft snapshots need a token whose policy grants C(read) on C(sys/storage/raft/snapshot)
          (save), or C(update) on C(sys/storage/raft/snapshot) and C(sys/storage/raft/snapshot-force)
          (restore); in practice a root or operator token.
        type: str
      token_file:
        description:
        - File whose content is the token (for instance C(~/.vault-token) or a file
          written by Vault Agent).
        - Mutually exclusive with O(vault.token).
        type: path
      url:
        aliases:
        - addr
        description:
        - Address of the Vault (or OpenBao) API, for instance V(https://vault.example.org:8200).
        - When not set, the C(VAULT_ADDR) environment variable is used.
        - Point it at the active node; a standby that redirects is reported as such.
        type: str
      validate_certs:
        default: true
        description:
        - Verify Vault's TLS certificate. Turn off only for throw-away test servers.
        type: bool
    type: dict
"""
