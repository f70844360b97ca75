# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the pg_datadir_swap module: ``main()`` with its arguments, the commands played by a fake world.

``AnsibleModule.run_command`` is replaced by the :class:`FakeWorld` of the module_utils tests (directories and a
server in memory); the real swap runs in tests/integration/test_pgbackrest.py (playbooks/pitr.yml).
"""

from __future__ import annotations

import getpass
import json

import pytest
from ansible.module_utils.basic import AnsibleModule

from tests.support.modules import run_module
from tests.unit.plugins.module_utils.test_datadir_swap import DATA, NEW, PREV, FakeWorld, inspect_of
from ansible_collections.atlasia.dr.plugins.modules import pg_datadir_swap

USER = getpass.getuser()


def params(service, **extra):
    base = dict(pg_data=DATA, new_data=NEW, previous_data=PREV, service=service, os_user=USER,
                pg_log="/var/lib/postgresql/15/dr.log", pg_ctl_options="-p 5432", login_password="pw",
                start_timeout=10, ready_timeout=3, cleanup_dirs=[NEW + ".sock"])
    if service == "container":
        base.update(container="app-db-1", image="sha256:img", docker_bin="/usr/bin/docker", os_user="postgres",
                    label="org.atlasia.dr.pitr=run")
    if service == "systemd":
        base.update(systemd_unit="postgresql@15-main")
    base.update(extra)
    return base


class ModuleWorld(FakeWorld):
    """The fake world behind ``run_command``: argv prefixes of the module mapped to the test's."""

    def strip(self, argv):
        argv = [("docker" if a == "/usr/bin/docker" else a) for a in argv]
        if argv[:2] == ["docker", "run"]:
            return argv[argv.index("sha256:img") + 1:]
        if argv[:2] == ["docker", "exec"]:
            return argv[argv.index("app-db-1") + 1:]
        return argv

    def kind(self, argv):
        argv = [("docker" if a == "/usr/bin/docker" else a) for a in argv]
        if argv[:2] == ["docker", "run"] or argv[:2] == ["docker", "exec"]:
            body = self.strip(argv)
            return FakeWorld.kind(self, body if body[:1] in (["test"], ["mv"], ["rmdir"]) else ["x"] + body)
        if argv[:1] and argv[0].endswith("systemctl"):
            argv = ["systemctl"] + argv[1:]
        return FakeWorld.kind(self, argv)

    def __call__(self, argv, env=None):
        argv = [("docker" if a == "/usr/bin/docker" else a) for a in argv]
        if argv[:1] and argv[0].endswith("systemctl"):
            argv = ["systemctl"] + argv[1:]
        return FakeWorld.__call__(self, argv, env)


@pytest.fixture
def world(monkeypatch):
    holder = {}

    def run_command(module, argv, environ_update=None, **kwargs):
        return holder["world"](argv, environ_update or None)

    def make(service, **kwargs):
        holder["world"] = ModuleWorld("container" if service == "container" else "host", **kwargs)
        return holder["world"]

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda module, name, *a, **k: "/usr/bin/" + name)
    monkeypatch.setattr(pg_datadir_swap.time, "sleep", lambda seconds: None)
    return make


@pytest.mark.parametrize("service", ["pg_ctl", "systemd", "container"])
def test_swap_done(world, capsys, service):
    fake = world(service)
    result = run_module(pg_datadir_swap.main, params(service), capsys)
    assert result["changed"] and result["state"] == "done" and result["previous_data"] == PREV
    assert fake.dirs == {DATA: "restored", PREV: "live"} and fake.running == "restored"
    assert all("pw" not in c["argv"] for c in result["commands"])
    if service == "container":
        assert any(c["argv"][:7] == ["/usr/bin/docker", "run", "--rm", "--network", "none", "--volumes-from",
                                     "app-db-1"] for c in result["commands"])
        assert ["--label", "org.atlasia.dr.pitr=run"] == [a for a in result["commands"][1]["argv"]
                                                          if a in ("--label", "org.atlasia.dr.pitr=run")]


@pytest.mark.parametrize("service", ["pg_ctl", "container"])
@pytest.mark.parametrize("step,fail", [
    ("move-aside", {("mv-aside", 1): (1, "mv: busy")}),
    ("move-in", {("mv-in", 1): (1, "mv: denied")}),
    ("start", {("start", 1): (1, "could not start")}),
    ("recovery", {("ready", None): (2, "starting up")}),
    ("verify", {("checkpoint", 1): (1, "must be superuser")}),
])
def test_failure_is_rolled_back_and_reported(world, capsys, service, step, fail):
    fake = world(service, fail=fail)
    result = run_module(pg_datadir_swap.main, params(service), capsys)
    assert result["failed"] and result["failed_step"] == step and result["rolled_back"]
    assert result["state"] == "rolled-back" and result["changed"]
    assert "Rolled back: the previous data directory is back at %s" % DATA in result["msg"]
    assert fake.dirs == {DATA: "live", NEW: "restored"} and fake.running == "live"


def test_incomplete_rollback_fails_with_where_things_are(world, capsys):
    fake = world("pg_ctl", fail={("start", None): (1, "could not start")})
    result = run_module(pg_datadir_swap.main, params("pg_ctl"), capsys)
    assert result["failed"] and not result["rolled_back"] and "ROLLBACK INCOMPLETE" in result["msg"]
    assert fake.dirs == {DATA: "live", NEW: "restored"}


@pytest.mark.parametrize("service", ["pg_ctl", "container"])
def test_check_mode_changes_nothing(world, capsys, service):
    fake = world(service)
    result = run_module(pg_datadir_swap.main, params(service), capsys, check_mode=True)
    assert result["changed"] and result["state"] == "done"
    assert set(fake.counts) == {"test"} and fake.dirs == {DATA: "live", NEW: "restored"}
    assert [p["step"] for p in result["planned"]][:3] == ["stop", "move-aside", "move-in"]


def test_container_service_needs_the_container(world, capsys):
    world("container")
    p = params("pg_ctl")
    p["service"] = "container"
    result = run_module(pg_datadir_swap.main, p, capsys)
    assert result["failed"] and "needs the database container" in result["msg"]


def test_container_image_is_read_when_not_given(world, capsys, monkeypatch):
    fake = world("container")
    inner = fake.__call__

    def answering(argv, env=None):
        if "{{.Image}}" in argv:
            return 0, "sha256:img\n", ""
        return inner(argv, env)

    monkeypatch.setattr(AnsibleModule, "run_command", lambda module, argv, environ_update=None, **k: answering(
        argv, environ_update or None))
    p = params("container")
    del p["image"]
    result = run_module(pg_datadir_swap.main, p, capsys)
    assert result["state"] == "done"


def test_inspect_only_reads_the_container_and_changes_nothing(world, capsys, monkeypatch):
    calls = []

    def inspect(module, argv, environ_update=None, **kwargs):
        calls.append(argv)
        return 0, json.dumps(inspect_of()), ""

    monkeypatch.setattr(AnsibleModule, "run_command", inspect)
    result = run_module(pg_datadir_swap.main, dict(inspect_only=True, service="container", container="app-db-1",
                                                   pg_data="/var/lib/postgresql/data/pgdata"), capsys)
    assert not result.get("failed") and result["changed"] is False
    assert calls == [["/usr/bin/docker", "container", "inspect", "app-db-1"]]
    assert result["container"]["image"] == "sha256:img"
    assert result["container"]["data_volume"] == "/var/lib/postgresql/data"


@pytest.mark.parametrize("answer,words", [
    ((1, "", "Error: No such container: app-db-1"), "No container app-db-1"),
    ((0, json.dumps(inspect_of(running=False, status="exited")), ""), "The container app-db-1 is exited"),
    ((0, json.dumps(inspect_of()), ""), "must be a SUBDIRECTORY"),
    ((0, "not json", ""), "printed no JSON"),
])
def test_inspect_only_fails_with_what_to_fix(world, capsys, monkeypatch, answer, words):
    monkeypatch.setattr(AnsibleModule, "run_command", lambda module, argv, **kwargs: answer)
    result = run_module(pg_datadir_swap.main, dict(inspect_only=True, service="container", container="app-db-1",
                                                   pg_data="/var/lib/postgresql/data"
                                                   if "SUBDIRECTORY" in words else "/var/lib/postgresql/data/pg"),
                        capsys)
    assert result["failed"] and words in result["msg"]


def test_inspect_only_needs_the_container_and_a_swap_needs_its_directories(world, capsys):
    result = run_module(pg_datadir_swap.main, dict(inspect_only=True, service="pg_ctl", pg_data=DATA), capsys)
    assert result["failed"] and "service=container" in result["msg"]
    result = run_module(pg_datadir_swap.main, dict(service="pg_ctl", pg_data=DATA), capsys)
    assert result["failed"] and "new_data" in result["msg"] and "previous_data" in result["msg"]
