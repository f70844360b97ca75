#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_datadir_swap
short_description: Swap a restored PostgreSQL data directory in for the live one, rolling back on any failure
version_added: 0.2.0
description:
  - The last step of a point-in-time restore. A data directory restored and checked beside the live one
    (O(new_data)) replaces it (O(pg_data)) by renames; the live one is kept as O(previous_data), never deleted.
  - "Steps: V(stop) the live cluster (when O(live_running)); V(move-aside) O(pg_data) to O(previous_data);
    V(move-in) O(new_data) to O(pg_data); V(start) the cluster; V(recovery): wait until it answers as a primary;
    V(verify): the container's health check (when it has one) and a C(CHECKPOINT) (so C(archive_timeout)
    bounds the RPO from then on)."
  - On a failure at any step the module rolls back what the earlier steps did; it stops whatever runs on
    O(pg_data), moves the restored directory back to O(new_data), moves O(previous_data) back to O(pg_data) and
    starts the previous cluster when it ran before. The failure message says at which step it failed, whether
    the rollback completed, whether the server runs, and where each data directory is.
  - Host layout (O(service=pg_ctl) or O(service=systemd)) runs C(pg_ctl) as the PostgreSQL OS user
    (C(runuser) when the module runs as root) or C(systemctl). Compose layout (O(service=container)) stops and
    starts the database container (C(docker stop) / C(docker start), as postgres is its main process) and renames in
    a throwaway container of its image sharing its volumes (C(docker run --rm --network none --volumes-from)).
  - Every command is a list of arguments, never a shell string; the password travels in C(PGPASSWORD).
  - With O(inspect_only=true) (Compose layout) the module only reads the database container before the restore
    starts and checks what the swap will need (the container runs, and O(pg_data) is a subdirectory of one of its
    volumes (not the mount point itself), so the restored and the previous data directories are siblings on the
    same filesystem and can be renamed). It returns RV(container) and changes nothing.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Checks the data directories (read only) and returns in RV(planned) the commands that would run;
        nothing is stopped, moved or started.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  pg_data:
    description:
      - The live data directory; after the swap it holds the restored data.
    type: str
    required: true
  new_data:
    description:
      - The restored data directory (recovered, promoted, checked and stopped), a sibling of O(pg_data) on the
        same filesystem.
      - Required unless O(inspect_only=true).
    type: str
  previous_data:
    description:
      - Where the live data directory is kept; must not exist yet.
      - Required unless O(inspect_only=true).
    type: str
  inspect_only:
    description:
      - Only read the database container (O(service=container)) and check its layout (see the description);
        nothing is stopped, moved or started.
    type: bool
    default: false
  service:
    description:
      - How the live cluster is stopped and started. V(pg_ctl) and V(systemd) on the host, V(container) for the
        database container of a Compose project.
    type: str
    required: true
    choices: [pg_ctl, systemd, container]
  live_running:
    description:
      - Whether the live cluster runs now. It is stopped first, and a rollback starts the previous cluster again
        only when it ran.
    type: bool
    default: true
  os_user:
    description:
      - The PostgreSQL OS user the commands run as (renames, C(pg_ctl), C(psql)).
    type: str
    default: postgres
  pg_bin_dir:
    description:
      - Directory of C(pg_ctl) and C(psql) (inside the container for O(service=container)).
    type: str
    default: /usr/lib/postgresql/15/bin
  pg_log:
    description:
      - Server log of C(pg_ctl start) (O(service=pg_ctl)).
    type: str
  pg_ctl_options:
    description:
      - Server options of C(pg_ctl start -o) (O(service=pg_ctl)), for example V(-p 5432).
    type: str
    default: ''
  systemd_unit:
    description:
      - The unit of the cluster (O(service=systemd)), for example V(postgresql@15-main).
    type: str
  container:
    description:
      - The database container (O(service=container)).
    type: str
  image:
    description:
      - Image of the throwaway container that renames inside the volumes (O(service=container)); defaults to
        the database container's image.
    type: str
  label:
    description:
      - A label (C(name=value)) put on the throwaway container, so a run's leftovers can be found.
    type: str
  docker_bin:
    description:
      - Path of the Docker CLI; found on the PATH by default.
    type: path
  start_timeout:
    description:
      - Seconds C(pg_ctl) and C(docker stop) wait, and the bound of the wait for the container's health check.
    type: int
    default: 300
  ready_timeout:
    description:
      - Seconds to wait, after the start, for the cluster to answer as a primary.
    type: int
    default: 60
  login_unix_socket:
    description:
      - Socket directory of the live cluster (C(psql -h)).
    type: str
    default: /var/run/postgresql
  port:
    description:
      - Port of the live cluster.
    type: int
    default: 5432
  login_user:
    description:
      - Database user of the readiness query and the C(CHECKPOINT) (a superuser or a member of pg_checkpoint).
    type: str
    default: postgres
  login_password:
    description:
      - Its password, passed as C(PGPASSWORD).
    type: str
  db:
    description:
      - Database connected to.
    type: str
    default: postgres
  checkpoint:
    description:
      - Run C(CHECKPOINT) once the cluster answers as a primary.
    type: bool
    default: true
  cleanup_dirs:
    description:
      - Empty directories to remove after a successful swap (the restored copy's socket directory); a failure
        to remove one is a warning.
    type: list
    elements: str
    default: []
notes:
  - The module refuses to overwrite O(previous_data). O(new_data) is left in place when the swap fails before
    V(move-in) or is rolled back.
seealso:
  - module: atlasia.dr.pgbackrest
"""

EXAMPLES = r"""
- name: Swap the restored data directory in (host, pg_ctl)
  atlasia.dr.pg_datadir_swap:
    pg_data: /var/lib/postgresql/15/main
    new_data: /var/lib/postgresql/15/main.pitr-20261126_104100
    previous_data: /var/lib/postgresql/15/main.previous-20261126_104100
    service: pg_ctl
    pg_log: /var/lib/postgresql/15/atlasia-dr-postgresql.log
    pg_ctl_options: -p 5432
  become: true

- name: Before the restore, check the database container's layout (Compose)
  atlasia.dr.pg_datadir_swap:
    inspect_only: true
    pg_data: /var/lib/postgresql/data/pgdata
    service: container
    container: app-db-1
  register: db_container

- name: Swap it in (Compose layout; the data directory is a subdirectory of the volume)
  atlasia.dr.pg_datadir_swap:
    pg_data: /var/lib/postgresql/data/pgdata
    new_data: /var/lib/postgresql/data/pgdata.pitr-20261126_104100
    previous_data: /var/lib/postgresql/data/pgdata.previous-20261126_104100
    service: container
    container: app-db-1
    pg_bin_dir: /usr/lib/postgresql/15/bin
    login_user: app
    login_password: "{{ db_password }}"
    db: app
  register: swap
"""

RETURN = r"""
container:
  description:
    - With O(inspect_only=true), what the swap needs of the database container.
  returned: when O(inspect_only=true)
  type: dict
  contains:
    image:
      description: The id of its image (the image of the throwaway container that renames).
      type: str
    config_image:
      description: The image name it was created from.
      type: str
    status:
      description: Its status (V(running)).
      type: str
    has_healthcheck:
      description: Whether it has a health check.
      type: bool
    mount_points:
      description: Its volumes and bind mounts.
      type: list
      elements: str
    data_volume:
      description: The mount point of the volume holding O(pg_data).
      type: str
    note:
      description: One line for the recovery report.
      type: str
  sample:
    image: sha256:4f2a
    config_image: postgres:15
    status: running
    has_healthcheck: true
    mount_points: [/var/lib/postgresql/data]
    data_volume: /var/lib/postgresql/data
    note: container app-db-1 (image postgres:15), data directory in the volume at /var/lib/postgresql/data
state:
  description:
    - Where the swap stands. V(done) on success; after a failure V(rolled-back) when the previous data directory is
      back (and runs again when it ran before), else the state the rollback reached (V(none), V(live-stopped),
      V(moved-aside), V(swapped)).
  returned: always
  type: str
  sample: done
failed_step:
  description: The step that failed (V(stop), V(move-aside), V(move-in), V(start), V(recovery), V(verify)), or null.
  returned: always
  type: str
  sample: null
rolled_back:
  description: Whether a failure was rolled back completely.
  returned: always
  type: bool
  sample: false
rollback_error:
  description: Why the rollback could not complete, or null.
  returned: always
  type: str
live_dir_existed:
  description: Whether there was a live data directory to move aside (null when the swap stopped before).
  returned: always
  type: bool
  sample: true
previous_data:
  description: Where the replaced data directory is kept (null when there was none).
  returned: always
  type: str
  sample: /var/lib/postgresql/15/main.previous-20261126_104100
pg_data:
  description: The live data directory.
  returned: always
  type: str
new_data:
  description: The restored data directory's name before the swap.
  returned: always
  type: str
commands:
  description: Every command run, with its step, argv and exit status.
  returned: always
  type: list
  elements: dict
planned:
  description: In check mode, the commands that would change something (step and argv).
  returned: always
  type: list
  elements: dict
rollback:
  description: The rollback's actions (action, argv, rc), empty when nothing failed.
  returned: always
  type: list
  elements: dict
"""

import json
import os
import pwd
import time

from ansible_collections.atlasia.dr.plugins.module_utils import datadir_swap as ds
from ansible_collections.atlasia.dr.plugins.module_utils import postgres
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.pgbackrest import wrap


def argument_spec():
    return dict(
        pg_data=dict(type="str", required=True),
        new_data=dict(type="str"),
        previous_data=dict(type="str"),
        inspect_only=dict(type="bool", default=False),
        service=dict(type="str", required=True, choices=["pg_ctl", "systemd", "container"]),
        live_running=dict(type="bool", default=True),
        os_user=dict(type="str", default="postgres"),
        pg_bin_dir=dict(type="str", default="/usr/lib/postgresql/15/bin"),
        pg_log=dict(type="str"),
        pg_ctl_options=dict(type="str", default=""),
        systemd_unit=dict(type="str"),
        container=dict(type="str"),
        image=dict(type="str"),
        label=dict(type="str"),
        docker_bin=dict(type="path"),
        start_timeout=dict(type="int", default=300),
        ready_timeout=dict(type="int", default=60),
        login_unix_socket=dict(type="str", default="/var/run/postgresql"),
        port=dict(type="int", default=5432),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        db=dict(type="str", default="postgres"),
        checkpoint=dict(type="bool", default=True),
        cleanup_dirs=dict(type="list", elements="str", default=[]),
    )


def build_layout(module):
    """The :class:`datadir_swap.Layout` of the module's options (fails the module when it cannot be built)."""
    p = module.params
    env_names = ["PGPASSWORD"] if p["login_password"] else []
    docker = None
    try:
        if p["service"] == "container":
            if not p["container"]:
                module.fail_json(msg="service=container needs the database container (container)")
            docker = p["docker_bin"] or module.get_bin_path("docker", required=True)
            image = p["image"] or container_image(module, docker, p["container"])
            exec_prefix = wrap([], env_names=env_names, os_user=p["os_user"], container=p["container"], docker=docker)
            fs_prefix = ds.sidecar_prefix(docker, p["container"], image, p["os_user"], p["label"])
        else:
            current = pwd.getpwuid(os.geteuid()).pw_name
            runuser = None
            if p["os_user"] != current:
                runuser = module.get_bin_path("runuser", required=True, opt_dirs=["/usr/sbin", "/sbin"])
            exec_prefix = wrap([], os_user=p["os_user"], runuser=runuser, current_user=current,
                               is_root=os.geteuid() == 0)
            fs_prefix = exec_prefix
        systemctl = "systemctl"
        if p["service"] == "systemd":
            systemctl = module.get_bin_path("systemctl", required=True)
        return ds.Layout(p["service"], p["pg_data"], p["pg_bin_dir"], exec_prefix, fs_prefix=fs_prefix,
                         container=p["container"], docker=docker or "docker", systemctl=systemctl,
                         systemd_unit=p["systemd_unit"], pg_log=p["pg_log"], pg_ctl_options=p["pg_ctl_options"],
                         start_timeout=p["start_timeout"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))


def inspect_container(module):
    """``inspect_only``: the database container's facts, or a failure saying what to fix (nothing changed)."""
    p = module.params
    if p["service"] != "container" or not p["container"]:
        module.fail_json(msg="inspect_only reads the database container: it needs service=container and container")
    docker = p["docker_bin"] or module.get_bin_path("docker", required=True)
    rc, out, err = module.run_command([docker, "container", "inspect", p["container"]])
    inspect = None
    if rc == 0:
        try:
            inspect = json.loads(out)
        except ValueError as exc:
            module.fail_json(msg="docker container inspect %s printed no JSON (%s): %s; nothing was changed"
                                 % (p["container"], exc, out.strip()[:300]))
    try:
        facts = ds.container_facts(inspect, p["pg_data"], p["container"], rc=rc, stderr=err)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, container=facts)


def container_image(module, docker, container):
    rc, out, err = module.run_command([docker, "container", "inspect", "--format", "{{.Image}}", container])
    if rc != 0 or not out.strip():
        module.fail_json(msg="cannot read the image of container %s: %s; nothing was changed"
                             % (container, (err or out).strip()[-300:]))
    return out.strip()


def main():
    module = DRModule(argument_spec=argument_spec(), supports_check_mode=True,
                      required_if=[("inspect_only", False, ["new_data", "previous_data"])])
    p = module.params
    if p["inspect_only"]:
        inspect_container(module)
    layout = build_layout(module)
    env = postgres.password_env(p)

    def run(argv, env_update=None):
        return module.run_command(argv, environ_update=env_update or {}, cwd="/", check_rc=False)

    try:
        swap = ds.Swap(layout, p["pg_data"], p["new_data"], p["previous_data"], run=run, sleep=time.sleep,
                       psql=postgres.psql_argv(layout.psql, p),
                       env=env, live_running=p["live_running"], ready_timeout=p["ready_timeout"],
                       checkpoint=p["checkpoint"], cleanup_dirs=p["cleanup_dirs"], check_mode=module.check_mode)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        swap.execute()
    except ds.SwapError as exc:
        module.fail_json(msg=str(exc), changed=bool(swap.commands), **swap.result())
    for warning in swap.warnings:
        module.warn(warning)
    module.exit_json(changed=True, **swap.result())


if __name__ == "__main__":
    main()
