# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data-directory swap's state machine against a fake world: directories, a server, and failures on demand.

:class:`FakeWorld` plays the commands the swap runs (``test``, ``mv``, ``pg_ctl``, ``systemctl``, ``docker``,
``psql``, ``rmdir``) on an in-memory set of directories and a server that runs on one of them, for the host
layout (pg_ctl, systemd) and the Compose layout (docker stop/start, renames in a throwaway container). Each
rollback point (failure at stop, move-aside, move-in, start, recovery, verify) is checked in both layouts: the
previous data directory is back under its name, the server runs on it exactly when it ran before, the restored
copy is back under its own name, and the message says so.
"""

from __future__ import annotations

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import datadir_swap as ds
from ansible_collections.atlasia.dr.plugins.module_utils import postgres

DATA = "/var/lib/postgresql/15/main"
NEW = DATA + ".pitr-20261126_104100"
PREV = DATA + ".previous-20261126_104100"
SIDECAR = ds.sidecar_prefix("docker", "app-db-1", "sha256:img", "postgres", "org.atlasia.dr.pitr=run")
EXEC_HOST = ["runuser", "-u", "postgres", "--"]
EXEC_CONTAINER = ["docker", "exec", "-u", "postgres", "-e", "PGPASSWORD", "app-db-1"]
CONNECTION = dict(login_unix_socket="/var/run/postgresql", port=5432, login_user="postgres", db="postgres",
                  login_password="pw")


class FakeWorld(object):
    """Directories (name -> identity) and a server; ``fail``: {(kind, occurrence or None): (rc, stderr)}."""

    def __init__(self, layout, live_running=True, live_exists=True, fail=None, recovery_polls=2, health="healthy"):
        self.layout = layout
        self.dirs = {NEW: "restored"}
        if live_exists:
            self.dirs[DATA] = "live"
        self.running = self.dirs.get(DATA) if live_running else None
        self.fail = dict(fail or {})
        self.recovery_polls = recovery_polls
        self.polls = 0
        self.health = health
        self.calls = []
        self.counts = {}
        self.sleeps = []

    # -- the fake command line ------------------------------------------------------------------------------
    def kind(self, argv):
        body = self.strip(argv)
        if body[:1] == ["test"]:
            return "test"
        if body[:1] == ["mv"]:
            return "mv-aside" if body[-2:] == [DATA, PREV] else ("mv-in" if body[-2:] == [NEW, DATA] else "mv")
        if body[:1] == ["rmdir"]:
            return "rmdir"
        if argv[:2] == ["docker", "stop"] or argv[:2] == ["systemctl", "stop"] or body[-1:] == ["stop"]:
            return "stop"
        if argv[:2] == ["docker", "start"] or argv[:2] == ["systemctl", "start"] or body[-1:] == ["start"]:
            return "start"
        if "{{.State.Running}}" in argv or argv[:2] == ["systemctl", "is-active"] or body[-1:] == ["status"]:
            return "status"
        if "{{if .State.Health}}{{.State.Health.Status}}{{end}}" in argv:
            return "health"
        if body[-1:] == [ds.READY_QUERY]:
            return "ready"
        if body[-1:] == ["CHECKPOINT"]:
            return "checkpoint"
        raise AssertionError(argv)

    def strip(self, argv):
        for prefix in (SIDECAR, EXEC_HOST, EXEC_CONTAINER):
            if argv[:len(prefix)] == prefix:
                return argv[len(prefix):]
        return list(argv)

    def __call__(self, argv, env=None):
        kind = self.kind(argv)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.calls.append((kind, list(argv), dict(env or {})))
        for key in ((kind, self.counts[kind]), (kind, None)):
            if key in self.fail:
                return self.fail[key][0], "", self.fail[key][1]
        body = self.strip(argv)
        if self.layout == "container" and kind in ("test", "mv", "mv-aside", "mv-in"):
            assert argv[:len(SIDECAR)] == SIDECAR, "renames in the Compose layout run in the throwaway container"
            assert kind == "test" or self.running is None, "the volume is renamed under a running server"
        if kind == "test":
            path = body[2]
            if body[1] == "-f":
                return (0 if path == DATA + "/PG_VERSION" and DATA in self.dirs else 1), "", ""
            return (0 if path in self.dirs else 1), "", ""
        if kind.startswith("mv"):
            src, dst = body[-2], body[-1]
            if src not in self.dirs or dst in self.dirs:
                return 1, "", "mv: cannot move '%s' to '%s'" % (src, dst)
            self.dirs[dst] = self.dirs.pop(src)
            return 0, "", ""
        if kind == "stop":
            self.running = None
            return 0, "", ""
        if kind == "start":
            if DATA not in self.dirs:
                return 1, "", "pg_ctl: directory \"%s\" does not exist" % DATA
            self.running = self.dirs[DATA]
            self.polls = 0
            return 0, "", ""
        if kind == "status":
            if self.layout == "container":
                return 0, "true\n" if self.running else "false\n", ""
            return (0 if self.running else 3), "", ""
        if kind == "ready":
            assert env == {"PGPASSWORD": "pw"}
            if not self.running:
                return 2, "", "psql: error: connection to server failed: No such file or directory"
            self.polls += 1
            return 0, ("f\n" if self.polls >= self.recovery_polls else "t\n"), ""
        if kind == "health":
            return 0, self.health + "\n", ""
        if kind == "checkpoint":
            return 0, "", ""
        if kind == "rmdir":
            return 0, "", ""
        raise AssertionError(kind)

    def sleep(self, seconds):
        self.sleeps.append(seconds)


LAYOUTS = ("pg_ctl", "systemd", "container")


def make(service, world, **kwargs):
    if service == "container":
        layout = ds.Layout("container", DATA, "/usr/lib/postgresql/15/bin", EXEC_CONTAINER, fs_prefix=SIDECAR,
                           container="app-db-1", docker="docker", start_timeout=10)
    else:
        layout = ds.Layout(service, DATA, "/usr/lib/postgresql/15/bin", EXEC_HOST, systemd_unit="postgresql@15-main",
                           pg_log="/var/lib/postgresql/15/dr.log", pg_ctl_options="-p 5432", start_timeout=10)
    psql = postgres.psql_argv(layout.psql, CONNECTION)
    kwargs.setdefault("cleanup_dirs", [NEW + ".sock"])
    return ds.Swap(layout, DATA, NEW, PREV, run=world, sleep=world.sleep, psql=psql, env={"PGPASSWORD": "pw"},
                   ready_timeout=kwargs.pop("ready_timeout", 5), **kwargs)


def world_for(service, **kwargs):
    return FakeWorld("container" if service == "container" else "host", **kwargs)


# -- the happy path -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", LAYOUTS)
def test_swap_puts_the_restored_directory_in_and_keeps_the_live_one(service):
    world = world_for(service)
    swap = make(service, world)
    result = swap.execute()
    assert world.dirs == {DATA: "restored", PREV: "live"}
    assert world.running == "restored"
    assert result["state"] == "done" and result["failed_step"] is None and result["rollback"] == []
    assert result["previous_data"] == PREV and result["live_dir_existed"] is True
    kinds = [kind for kind, argv, env in world.calls]
    assert kinds.index("stop") < kinds.index("mv-aside") < kinds.index("mv-in") < kinds.index("start") \
        < kinds.index("ready") < kinds.index("checkpoint") < kinds.index("rmdir")
    assert world.counts["ready"] == 2 and world.sleeps[:1] == [1]  # polled until it answered as a primary
    for kind, argv, env in world.calls:
        assert all(isinstance(arg, str) for arg in argv)
        assert "pw" not in argv  # the password travels in the environment only


def test_host_commands_are_the_ones_the_role_ran():
    world = world_for("pg_ctl")
    make("pg_ctl", world).execute()
    argvs = dict((kind, argv) for kind, argv, env in world.calls)
    assert argvs["stop"] == EXEC_HOST + ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", DATA, "-w", "-t", "10",
                                         "-m", "fast", "stop"]
    assert argvs["start"] == EXEC_HOST + ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", DATA, "-w", "-t", "10",
                                          "-l", "/var/lib/postgresql/15/dr.log", "-o", "-p 5432", "start"]
    assert argvs["mv-aside"] == EXEC_HOST + ["mv", "--no-target-directory", DATA, PREV]
    assert argvs["mv-in"] == EXEC_HOST + ["mv", "--no-target-directory", NEW, DATA]


def test_container_layout_stops_the_container_and_renames_in_a_throwaway_one():
    world = world_for("container")
    make("container", world).execute()
    argvs = dict((kind, argv) for kind, argv, env in world.calls)
    assert argvs["stop"] == ["docker", "stop", "--time", "10", "app-db-1"]
    assert argvs["start"] == ["docker", "start", "app-db-1"]
    assert argvs["mv-in"] == SIDECAR + ["mv", "--no-target-directory", NEW, DATA]
    assert SIDECAR[:7] == ["docker", "run", "--rm", "--network", "none", "--volumes-from", "app-db-1"]
    assert argvs["ready"][:len(EXEC_CONTAINER)] == EXEC_CONTAINER
    assert world.counts["health"] == 1


def test_container_without_health_check_is_not_waited_for():
    world = world_for("container", health="")
    assert make("container", world).execute()["state"] == "done"


def test_container_health_check_is_polled_until_it_decides():
    world = world_for("container", health="starting")
    swap = make("container", world)
    with pytest.raises(ds.SwapError) as exc:
        swap.execute()
    assert swap.failed_step == "verify" and world.counts["health"] == 5  # start_timeout 10 // 2 polls
    assert "reports starting" in str(exc.value) and swap.rolled_back


def test_a_stopped_live_cluster_is_not_stopped_and_the_restored_one_starts():
    world = world_for("pg_ctl", live_running=False)
    result = make("pg_ctl", world, live_running=False).execute()
    assert "stop" not in world.counts and world.running == "restored" and result["state"] == "done"


def test_no_live_data_directory_swaps_without_a_previous_one():
    world = world_for("pg_ctl", live_running=False, live_exists=False)
    result = make("pg_ctl", world, live_running=False).execute()
    assert world.dirs == {DATA: "restored"} and result["previous_data"] is None and result["live_dir_existed"] is False


def test_an_existing_previous_directory_is_never_overwritten():
    world = world_for("pg_ctl")
    world.dirs[PREV] = "older"
    swap = make("pg_ctl", world)
    with pytest.raises(ds.SwapError) as exc:
        swap.execute()
    assert swap.failed_step == "move-aside" and "already exists" in str(exc.value)
    assert world.dirs == {DATA: "live", NEW: "restored", PREV: "older"} and world.running == "live"


def test_cleanup_failure_is_a_warning_not_a_rollback():
    world = world_for("pg_ctl", fail={("rmdir", None): (1, "rmdir: failed: Permission denied")})
    swap = make("pg_ctl", world)
    assert swap.execute()["state"] == "done" and "Permission denied" in swap.warnings[0]


# -- every rollback point, every layout -----------------------------------------------------------------------
FAILURES = {
    "stop": {("stop", 1): (1, "pg_ctl: server does not shut down")},
    "move-aside": {("mv-aside", 1): (1, "mv: cannot move: Device or resource busy")},
    "move-in": {("mv-in", 1): (1, "mv: cannot move: Permission denied")},
    "start": {("start", 1): (1, "pg_ctl: could not start server")},
    "recovery": {("ready", None): (2, "psql: error: FATAL: the database system is starting up")},
    "verify": {("checkpoint", 1): (1, "ERROR: must be superuser or have privileges of pg_checkpoint")},
}


@pytest.mark.parametrize("service", LAYOUTS)
@pytest.mark.parametrize("step", sorted(FAILURES))
def test_each_failed_step_is_rolled_back_to_the_previous_cluster(service, step):
    world = world_for(service, fail=FAILURES[step])
    swap = make(service, world)
    with pytest.raises(ds.SwapError) as exc:
        swap.execute()
    result = swap.result()
    assert result["failed_step"] == step and result["rolled_back"] and result["rollback_error"] is None
    assert result["state"] == "rolled-back"
    assert world.dirs == {DATA: "live", NEW: "restored"}  # the live directory back, the restored copy kept
    assert world.running == "live"  # the previous cluster runs again
    message = str(exc.value)
    assert "failed at step %s" % step in message and "Rolled back" in message
    assert "is back at %s" % DATA in message and "kept in %s" % NEW in message
    assert "runs again" in message
    if step in ("start", "recovery", "verify"):  # stopped whatever ran on the restored data first
        actions = [a["action"] for a in result["rollback"]]
        assert actions[0].startswith("stopping whatever runs")
    assert "rmdir" not in world.counts  # no clean-up after a failure


@pytest.mark.parametrize("service", LAYOUTS)
@pytest.mark.parametrize("step", ["move-aside", "move-in", "start", "recovery", "verify"])
def test_a_cluster_that_was_stopped_stays_stopped_after_a_rollback(service, step):
    world = world_for(service, live_running=False, fail=FAILURES[step])
    swap = make(service, world, live_running=False)
    with pytest.raises(ds.SwapError) as exc:
        swap.execute()
    assert world.dirs == {DATA: "live", NEW: "restored"} and world.running is None
    assert swap.rolled_back and "the server is stopped, as it was before" in str(exc.value)


@pytest.mark.parametrize("service", LAYOUTS)
def test_failure_to_put_the_previous_directory_back_says_where_everything_is(service):
    fail = dict(FAILURES["start"])
    fail[("mv", 2)] = (1, "mv: cannot move: Input/output error")  # restored copy moved back, previous stuck
    world = world_for(service, fail=fail)
    swap = make(service, world)
    with pytest.raises(ds.SwapError) as exc:
        swap.execute()
    message = str(exc.value)
    assert not swap.rolled_back and "Input/output error" in swap.rollback_error
    assert "ROLLBACK INCOMPLETE" in message and "CHECK THE DATA DIRECTORY" in message
    assert "previous data directory is at %s" % PREV in message and "restored copy is at %s" % NEW in message
    assert world.dirs == {PREV: "live", NEW: "restored"} and world.running is None
    assert swap.result()["state"] == "moved-aside"


@pytest.mark.parametrize("service", LAYOUTS)
def test_failure_to_start_the_previous_cluster_is_reported(service):
    fail = {("start", None): (1, "could not start")}
    world = world_for(service, fail=fail)
    swap = make(service, world)
    with pytest.raises(ds.SwapError) as exc:
        swap.execute()
    assert world.dirs == {DATA: "live", NEW: "restored"}  # the directories are back, the server is not
    assert not swap.rolled_back and "starting the previous cluster failed" in swap.rollback_error
    assert "ROLLBACK INCOMPLETE" in str(exc.value)


def test_failed_stop_of_a_cluster_that_still_runs_does_not_start_it_twice():
    world = world_for("pg_ctl", fail=FAILURES["stop"])
    swap = make("pg_ctl", world)
    with pytest.raises(ds.SwapError):
        swap.execute()
    assert "start" not in world.counts and world.running == "live"
    assert swap.rollback_actions[-1]["action"] == "the previous cluster still runs"


def test_an_unexpected_exception_is_rolled_back_too():
    world = world_for("pg_ctl")

    def exploding(argv, env=None):
        if world.kind(argv) == "start":
            raise OSError("No such file or directory: pg_ctl")
        return world(argv, env)

    layout = ds.Layout("pg_ctl", DATA, "/usr/lib/postgresql/15/bin", EXEC_HOST, pg_log="/l", start_timeout=10)
    swap = ds.Swap(layout, DATA, NEW, PREV, run=exploding, sleep=world.sleep, psql=["psql"], env={})
    with pytest.raises(ds.SwapError) as exc:
        swap.execute()
    assert "OSError" in str(exc.value) and swap.failed_step == "start"
    assert world.dirs == {DATA: "live", NEW: "restored"} and world.running is None  # start raised again: not back up
    assert not swap.rolled_back


# -- check mode and argument checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("service", LAYOUTS)
def test_check_mode_changes_nothing_and_plans_every_step(service):
    world = world_for(service)
    swap = make(service, world, check_mode=True)
    result = swap.execute()
    assert world.dirs == {DATA: "live", NEW: "restored"} and world.running == "live"
    assert set(world.counts) == {"test"}  # only read-only checks ran
    assert [p["step"] for p in result["planned"]] == ["stop", "move-aside", "move-in", "start", "recovery",
                                                      "verify", "cleanup"]


@pytest.mark.parametrize("paths", [(DATA, DATA, PREV), ("relative", NEW, PREV), (DATA, NEW, "/")])
def test_paths_are_checked(paths):
    layout = ds.Layout("pg_ctl", DATA, "/bin", [])
    with pytest.raises(ValueError):
        ds.Swap(layout, paths[0], paths[1], paths[2], run=None, sleep=None, psql=[])


@pytest.mark.parametrize("kwargs", [dict(service="docker"), dict(service="container"), dict(service="systemd")])
def test_layouts_are_checked(kwargs):
    with pytest.raises(ValueError):
        ds.Layout(kwargs["service"], DATA, "/bin", [])


# -- the connection of the readiness query and the CHECKPOINT (module_utils/postgres.py) ------------------------
@pytest.mark.parametrize("service", LAYOUTS)
def test_psql_reaches_the_live_cluster_with_the_password_in_the_environment_only(service):
    world = world_for(service)
    make(service, world).execute()
    psql_calls = [(argv, env) for kind, argv, env in world.calls if kind in ("ready", "checkpoint")]
    assert psql_calls
    for argv, env in psql_calls:
        body = world.strip(argv)
        assert body[0] == "/usr/lib/postgresql/15/bin/psql"
        assert body[1:body.index("-c")] == ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                            "-h", "/var/run/postgresql", "-p", "5432", "-U", "postgres",
                                            "-d", "postgres"]
        assert "pw" not in argv and env == {"PGPASSWORD": "pw"}
        if service == "container":
            assert argv[:len(EXEC_CONTAINER)] == EXEC_CONTAINER


# -- the database container before the restore (Compose layout) -------------------------------------------------
VOLUME = "/var/lib/postgresql/data"


def inspect_of(running=True, status="running", mounts=(VOLUME,), health=True):
    state = dict(Running=running, Status=status)
    if health:
        state["Health"] = dict(Status="healthy")
    return [dict(Image="sha256:img", Config=dict(Image="postgres:15"), State=state,
                 Mounts=[dict(Destination=m) for m in mounts])]


def test_container_facts_of_a_running_container_with_the_data_directory_in_a_volume():
    facts = ds.container_facts(inspect_of(mounts=("/etc/app.conf", VOLUME, "/var/lib")), VOLUME + "/pgdata",
                               "app-db-1")
    assert facts == dict(image="sha256:img", config_image="postgres:15", status="running", has_healthcheck=True,
                         mount_points=["/etc/app.conf", VOLUME, "/var/lib"], data_volume=VOLUME,
                         note="container app-db-1 (image postgres:15), data directory in the volume at " + VOLUME)
    assert ds.container_facts(inspect_of(health=False, mounts=(VOLUME + "/",)), VOLUME + "/pgdata",
                              "app-db-1")["has_healthcheck"] is False


@pytest.mark.parametrize("inspect,rc,stderr,pg_data,words", [
    (None, 1, "Error: No such container: app-db-1\n", VOLUME + "/pgdata",
     ["No container app-db-1: Error: No such container: app-db-1"]),
    (inspect_of(running=False, status="exited"), 0, "", VOLUME + "/pgdata",
     ["The container app-db-1 is exited", "docker compose up -d", "docs/physical.md"]),
    ([dict(Image="sha256:img", State={}, Mounts=[])], 0, "", VOLUME + "/pgdata",
     ["The container app-db-1 is not running"]),
    (inspect_of(), 0, "", VOLUME, ["must be a SUBDIRECTORY of a volume of app-db-1",
                                   "Volumes and bind mounts of the container: " + VOLUME + "."]),
    (inspect_of(), 0, "", VOLUME + "/", ["must be a SUBDIRECTORY"]),
    (inspect_of(mounts=("/srv",)), 0, "", VOLUME + "/pgdata", ["must be a SUBDIRECTORY", "container: /srv."]),
    (inspect_of(mounts=()), 0, "", VOLUME + "/pgdata", ["must be a SUBDIRECTORY", "container: none."]),
    (inspect_of(mounts=(VOLUME + "2",)), 0, "", VOLUME + "/pgdata", ["must be a SUBDIRECTORY"]),
])
def test_container_facts_refuse_what_the_swap_cannot_work_with(inspect, rc, stderr, pg_data, words):
    with pytest.raises(ValueError) as info:
        ds.container_facts(inspect, pg_data, "app-db-1", rc=rc, stderr=stderr)
    for word in words:
        assert word in str(info.value)
