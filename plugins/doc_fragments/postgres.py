# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Connection options shared by pg_dump_backup and pg_restore_db (plugins/module_utils/postgres.py).
    DOCUMENTATION = r"""
options:
  db:
    description:
      - Name of the database.
    type: str
    required: true
    aliases: [login_db, name]
  login_host:
    description:
      - Host running the database server.
      - When neither O(login_host) nor O(login_unix_socket) is set, the client's default applies (the local
        Unix socket, or the one inside O(container)).
    type: str
    aliases: [host]
  login_unix_socket:
    description:
      - Directory of the server's Unix-domain socket. Takes precedence over O(login_host).
    type: str
  port:
    description:
      - Database server port.
    type: int
    default: 5432
    aliases: [login_port]
  login_user:
    description:
      - Role to connect as. Backups need read access to every object; restores need the right to create,
        rename and drop databases.
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - Password of O(login_user). Passed to the client programs through the environment (C(PGPASSWORD)),
        never on their command line.
    type: str
  ssl_mode:
    description:
      - libpq C(sslmode) of the connection.
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file checked with O(ssl_mode=verify-ca) or O(ssl_mode=verify-full).
    type: path
    aliases: [ssl_rootcert]
  connect_timeout:
    description:
      - Seconds to wait for a connection before failing.
    type: int
    default: 10
  container:
    description:
      - Name of a Docker container in which the PostgreSQL client programs run (through C(docker exec)),
        for instance C(aiteam_db_prod). The client then always matches the server's version.
      - The data streams through the C(docker exec) pipe; compression, checksums and files stay on the host.
      - Connection settings are passed with C(docker exec -e NAME), whose values come from the environment,
        so the password never appears in a process list.
    type: str
  docker_bin:
    description:
      - Path of the Docker CLI used with O(container).
    type: path
  pg_bin_dir:
    description:
      - Directory holding C(pg_dump), C(pg_restore) and C(psql) on the host, for instance
        C(/usr/lib/postgresql/15/bin). By default they are looked up in E(PATH).
    type: path
"""
