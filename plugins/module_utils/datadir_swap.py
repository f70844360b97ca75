# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The data-directory swap of a point-in-time restore, as a small state machine with a rollback for each step.

A restored data directory (``new_data``, already recovered and checked on a scratch port) replaces the live
one (``pg_data``) by renames; the live one is kept as ``previous_data``::

    stop        the live cluster is stopped (when it runs)           state none -> live-stopped
    move-aside  pg_data -> previous_data (when pg_data exists)       state live-stopped -> moved-aside
    move-in     new_data -> pg_data                                  state moved-aside -> swapped
    start       the cluster starts on the restored data              (state stays swapped)
    recovery    wait until it answers as a primary
    verify      health check of the container (when it has one), CHECKPOINT
                                                                     state swapped -> done

After a complete rollback the state is ``rolled-back``; after an incomplete one it is the state the rollback
reached (the message then says where each data directory is).

On a failure at any step, :meth:`Swap.rollback` undoes what the steps before it did, in reverse: stop
whatever runs on ``pg_data``, move the restored directory back to ``new_data``, move ``previous_data`` back to
``pg_data``, and start the previous cluster when it ran before. Every command is an argument list (never a
shell string).

Two layouts (:class:`Layout`):

* host: ``pg_ctl`` or ``systemctl`` on the host, renames and checks run as the PostgreSQL OS user
  (``runuser`` when the module runs as root);
* container (Compose): ``docker stop`` / ``docker start`` of the database container (postgres is its main
  process), renames in a throwaway container of its image sharing its volumes (nothing runs in a stopped
  container), ``psql`` through ``docker exec``.

The commands are run by a callable ``run(argv, env=None) -> (rc, stdout, stderr)`` and waits use
``sleep(seconds)``, so the whole machine is driven by fakes in unit tests.
"""

from __future__ import annotations

STATES = ("none", "live-stopped", "moved-aside", "swapped", "done", "rolled-back")
STEPS = ("stop", "move-aside", "move-in", "start", "recovery", "verify")

READY_QUERY = "SELECT pg_is_in_recovery()"


class SwapError(Exception):
    """A step failed; the message says what and why."""


class Layout(object):
    """How the cluster is stopped and started, and where commands run, for one layout.

    ``service``: ``pg_ctl``, ``systemd`` or ``container``. ``exec_prefix``: argv prefix running a program as
    the PostgreSQL OS user where the cluster runs (``[]``, ``runuser -u postgres --`` or ``docker exec -u
    postgres [-e PGPASSWORD] <container>``). ``fs_prefix``: argv prefix of the renames and directory checks
    (the throwaway container in the Compose layout, else ``exec_prefix``).
    """

    def __init__(self, service, pg_data, pg_bin_dir, exec_prefix, fs_prefix=None, container=None, docker="docker",
                 systemctl="systemctl", systemd_unit=None, pg_log=None, pg_ctl_options="", start_timeout=300):
        if service not in ("pg_ctl", "systemd", "container"):
            raise ValueError("service is pg_ctl, systemd or container (got %r)" % service)
        if service == "container" and not container:
            raise ValueError("service=container needs the database container (container)")
        if service == "systemd" and not systemd_unit:
            raise ValueError("service=systemd needs the unit (systemd_unit)")
        self.service = service
        self.pg_data = pg_data
        self.pg_ctl = pg_bin_dir.rstrip("/") + "/pg_ctl"
        self.psql = pg_bin_dir.rstrip("/") + "/psql"
        self.exec_prefix = list(exec_prefix)
        self.fs_prefix = list(fs_prefix if fs_prefix is not None else exec_prefix)
        self.container = container
        self.docker = docker
        self.systemctl = systemctl
        self.systemd_unit = systemd_unit
        self.pg_log = pg_log
        self.pg_ctl_options = pg_ctl_options or ""
        self.start_timeout = int(start_timeout)

    @property
    def is_container(self):
        return self.service == "container"

    def describe(self):
        if self.is_container:
            return "container %s" % self.container
        if self.service == "systemd":
            return "systemd unit %s" % self.systemd_unit
        return "pg_ctl -D %s" % self.pg_data

    def stop_argv(self):
        timeout = str(self.start_timeout)
        if self.is_container:
            return [self.docker, "stop", "--time", timeout, self.container]
        if self.service == "systemd":
            return [self.systemctl, "stop", self.systemd_unit]
        return self.exec_prefix + [self.pg_ctl, "-D", self.pg_data, "-w", "-t", timeout, "-m", "fast", "stop"]

    def start_argv(self):
        if self.is_container:
            return [self.docker, "start", self.container]
        if self.service == "systemd":
            return [self.systemctl, "start", self.systemd_unit]
        argv = self.exec_prefix + [self.pg_ctl, "-D", self.pg_data, "-w", "-t", str(self.start_timeout)]
        if self.pg_log:
            argv += ["-l", self.pg_log]
        if self.pg_ctl_options:
            argv += ["-o", self.pg_ctl_options]
        return argv + ["start"]

    def status_argv(self):
        """Whether the cluster runs (rc 0), for a start that must not fail on a running cluster."""
        if self.is_container:
            return [self.docker, "container", "inspect", "--format", "{{.State.Running}}", self.container]
        if self.service == "systemd":
            return [self.systemctl, "is-active", "--quiet", self.systemd_unit]
        return self.exec_prefix + [self.pg_ctl, "-D", self.pg_data, "status"]

    def health_argv(self):
        """The container's health status (empty without a health check); None outside a container."""
        if not self.is_container:
            return None
        return [self.docker, "container", "inspect", "--format",
                "{{if .State.Health}}{{.State.Health.Status}}{{end}}", self.container]

    def fs(self, *args):
        return self.fs_prefix + list(args)


def sidecar_prefix(docker, container, image, os_user, label=None):
    """argv prefix of a throwaway container of ``image`` sharing the volumes of ``container``.

    It has no network, runs as ``os_user``, and its entrypoint is ``env`` so the argv that follows runs as is.
    """
    argv = [docker, "run", "--rm", "--network", "none", "--volumes-from", container, "--user", os_user]
    if label:
        argv += ["--label", label]
    return argv + ["--entrypoint", "env", image]


def container_facts(inspect, pg_data, container, rc=0, stderr=""):
    """What the swap needs of the database container (Compose layout), from ``docker container inspect``.

    ``inspect``: the parsed output (a list of one object) when ``rc`` is 0. Returns ``image`` (the image id the
    throwaway container uses), ``config_image`` (its name), ``status``, ``has_healthcheck``, ``mount_points``
    (every volume and bind mount), ``data_volume`` (the deepest mount point holding ``pg_data``) and ``note``
    (one line for the report). Raises ``ValueError`` with what to do when the container does not exist, does not
    run (the restore and its checks run inside it before it is stopped), or when ``pg_data`` is not a
    SUBDIRECTORY of one of its volumes (the restored and the previous data directories must be its siblings on
    the same filesystem to be renamed, and a mount point itself cannot be renamed).
    """
    if rc != 0:
        raise ValueError("No container %s: %s" % (container, (stderr or "").strip()))
    info = (inspect or [{}])[0] or {}
    state = info.get("State") or {}
    mounts = [m.get("Destination") for m in info.get("Mounts") or [] if m.get("Destination")]
    holders = sorted(m for m in mounts if pg_data.startswith(m.rstrip("/") + "/"))
    data_volume = holders[-1] if holders else ""
    if not state.get("Running"):
        raise ValueError(
            "The container %s is %s: the restore and its checks run inside it before it is stopped for the swap."
            " Start it (docker compose up -d) and run the restore again; if it cannot start (data directory lost"
            " or damaged), restore by hand (docs/physical.md, \"Compose layout\")."
            % (container, state.get("Status") or "not running"))
    if not data_volume or pg_data.rstrip("/") in mounts:
        raise ValueError(
            "The data directory %s must be a SUBDIRECTORY of a volume of %s (for example the volume at"
            " /var/lib/postgresql/data and PGDATA=/var/lib/postgresql/data/pgdata), so the restored and the previous"
            " data directories are its siblings on the same filesystem and can be renamed. Volumes and bind mounts"
            " of the container: %s." % (pg_data, container, ", ".join(mounts) or "none"))
    config_image = (info.get("Config") or {}).get("Image")
    return dict(
        image=info.get("Image"), config_image=config_image, status=state.get("Status"),
        has_healthcheck="Health" in state, mount_points=mounts, data_volume=data_volume,
        note="container %s (image %s), data directory in the volume at %s" % (container, config_image, data_volume))


class Swap(object):
    """One swap of ``new_data`` into ``pg_data``, keeping the live directory as ``previous_data``.

    ``live_running``: the live cluster ran before (it is stopped first, and started again by a rollback).
    ``psql``: argv of ``psql`` connecting to the live cluster (without ``-c``), run through the layout's
    ``exec_prefix``; ``env``: its environment (PGPASSWORD). ``ready_timeout``: seconds to wait for the
    cluster to answer as a primary. ``checkpoint``: run CHECKPOINT once it does (archive_timeout then bounds
    the RPO). ``cleanup_dirs``: empty directories removed after a successful swap (best effort).
    """

    def __init__(self, layout, pg_data, new_data, previous_data, run, sleep, psql, env=None, live_running=True,
                 ready_timeout=60, checkpoint=True, cleanup_dirs=(), check_mode=False):
        for name, path in (("pg_data", pg_data), ("new_data", new_data), ("previous_data", previous_data)):
            if not path or not path.startswith("/") or path.rstrip("/") in ("", "/"):
                raise ValueError("%s must be an absolute path below / (got %r)" % (name, path))
        if len(set(p.rstrip("/") for p in (pg_data, new_data, previous_data))) != 3:
            raise ValueError("pg_data, new_data and previous_data must be three different paths")
        self.layout = layout
        self.pg_data = pg_data.rstrip("/")
        self.new_data = new_data.rstrip("/")
        self.previous_data = previous_data.rstrip("/")
        self._run = run
        self._sleep = sleep
        self.psql = list(psql)
        self.env = dict(env or {})
        self.live_running = bool(live_running)
        self.ready_timeout = int(ready_timeout)
        self.checkpoint = bool(checkpoint)
        self.cleanup_dirs = list(cleanup_dirs or [])
        self.check_mode = check_mode
        self.state = "none"
        self.live_dir_existed = None
        self.failed_step = None
        self.error = None
        self.rolled_back = False
        self.rollback_error = None
        self.commands = []   # every command run: {step, argv, rc}
        self.planned = []    # check mode: what would run
        self.rollback_actions = []
        self.warnings = []

    # -- running commands -------------------------------------------------------------------------------------
    def run(self, step, argv, env=None, changes=True):
        """Run ``argv`` (unless check mode and it ``changes`` something); ``(rc, stdout, stderr)``."""
        if changes and self.check_mode:
            self.planned.append(dict(step=step, argv=list(argv)))
            return 0, "", ""
        rc, out, err = self._run(list(argv), env)
        self.commands.append(dict(step=step, argv=list(argv), rc=rc))
        return rc, out or "", err or ""

    def must(self, step, argv, what, env=None):
        rc, out, err = self.run(step, argv, env)
        if rc != 0:
            raise SwapError("%s failed (rc %s): %s" % (what, rc, (err or out).strip()[-500:] or "no output"))
        return out

    def exists(self, step, path, kind="-d"):
        rc, out, err = self.run(step, self.layout.fs("test", kind, path), changes=False)
        if rc not in (0, 1):
            raise SwapError("cannot check %s (test %s, rc %s): %s" % (path, kind, rc, (err or out).strip()[-300:]))
        return rc == 0

    # -- the steps --------------------------------------------------------------------------------------------
    def step_stop(self):
        if self.live_running:
            self.must("stop", self.layout.stop_argv(), "stopping the live cluster (%s)" % self.layout.describe())
        self.state = "live-stopped"

    def step_move_aside(self):
        self.live_dir_existed = self.exists("move-aside", self.pg_data)
        if self.live_dir_existed:
            if self.exists("move-aside", self.previous_data):
                raise SwapError("%s already exists: it would be replaced" % self.previous_data)
            self.must("move-aside", self.layout.fs("mv", "--no-target-directory", self.pg_data, self.previous_data),
                      "moving the live data directory %s aside to %s" % (self.pg_data, self.previous_data))
        self.state = "moved-aside"

    def step_move_in(self):
        self.must("move-in", self.layout.fs("mv", "--no-target-directory", self.new_data, self.pg_data),
                  "moving the restored data directory %s to %s" % (self.new_data, self.pg_data))
        self.state = "swapped"

    def step_start(self):
        self.must("start", self.layout.start_argv(), "starting the cluster on the restored data (%s)"
                  % self.layout.describe())

    def step_recovery(self):
        if self.check_mode:
            self.planned.append(dict(step="recovery", argv=self.layout.exec_prefix + self.psql + ["-c", READY_QUERY]))
            return
        last = ""
        for attempt in range(max(1, self.ready_timeout)):
            rc, out, err = self.run("recovery", self.layout.exec_prefix + self.psql + ["-c", READY_QUERY], self.env,
                                    changes=False)
            if rc == 0 and out.strip() == "f":
                return
            last = "still in recovery" if rc == 0 else (err or out).strip()[-300:]
            if attempt + 1 < self.ready_timeout:
                self._sleep(1)
        raise SwapError("the cluster did not answer as a primary within %ss (%s)" % (self.ready_timeout, last))

    def step_verify(self):
        health = self.layout.health_argv()
        if health is not None and not self.check_mode:
            status = ""
            for attempt in range(max(1, self.layout.start_timeout // 2)):
                rc, out, err = self.run("verify", health, changes=False)
                status = out.strip() if rc == 0 else "unknown (%s)" % (err or out).strip()[-200:]
                if status in ("", "healthy", "unhealthy"):
                    break
                self._sleep(2)
            if status not in ("", "healthy"):
                raise SwapError("the health check of container %s reports %s" % (self.layout.container, status))
        if self.checkpoint:
            self.must("verify", self.layout.exec_prefix + self.psql + ["-c", "CHECKPOINT"], "CHECKPOINT", self.env)
        self.state = "done"

    def cleanup(self):
        for path in self.cleanup_dirs:
            if self.check_mode:
                self.planned.append(dict(step="cleanup", argv=self.layout.exec_prefix + ["rmdir", path]))
                continue
            rc, out, err = self.run("cleanup", self.layout.exec_prefix + ["rmdir", "--ignore-fail-on-non-empty", path])
            if rc != 0 and "No such file" not in err:
                self.warnings.append("could not remove %s: %s" % (path, err.strip()[-200:]))

    # -- the machine ------------------------------------------------------------------------------------------
    def execute(self):
        """Run every step; on a failure roll back and raise SwapError with a message for the on-call engineer."""
        steps = (("stop", self.step_stop), ("move-aside", self.step_move_aside), ("move-in", self.step_move_in),
                 ("start", self.step_start), ("recovery", self.step_recovery), ("verify", self.step_verify))
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # pylint: disable=broad-except  # any failure must roll back
                self.failed_step = name
                self.error = str(exc) if isinstance(exc, SwapError) else "%s: %s" % (type(exc).__name__, exc)
                self.rollback()
                raise SwapError(self.failure_message())
        self.cleanup()
        return self.result()

    def _undo(self, what, argv, env=None, ignore=False):
        rc, out, err = self.run("rollback", argv, env)
        self.rollback_actions.append(dict(action=what, argv=list(argv), rc=rc))
        if rc != 0 and not ignore:
            raise SwapError("%s failed (rc %s): %s" % (what, rc, (err or out).strip()[-300:] or "no output"))
        return rc

    def _ensure_started(self):
        rc, out, dummy = self.run("rollback", self.layout.status_argv(), changes=False)
        running = rc == 0 and (out.strip() == "true" if self.layout.is_container else True)
        if running:
            self.rollback_actions.append(dict(action="the previous cluster still runs", argv=[], rc=0))
            return
        self._undo("starting the previous cluster", self.layout.start_argv())

    def rollback(self):
        """Undo the steps done so far, in reverse. Sets ``rolled_back`` (or ``rollback_error``)."""
        try:
            if self.state == "swapped":
                self._undo("stopping whatever runs on %s" % self.pg_data, self.layout.stop_argv(), ignore=True)
                if self.exists("rollback", self.new_data):
                    raise SwapError("%s exists again: the restored directory cannot be moved back" % self.new_data)
                self._undo("moving the restored data directory back to %s" % self.new_data,
                           self.layout.fs("mv", "--no-target-directory", self.pg_data, self.new_data))
                self.state = "moved-aside"
            if self.state in ("live-stopped", "moved-aside"):
                if self.exists("rollback", self.previous_data) and not self.exists("rollback", self.pg_data):
                    self._undo("putting the previous data directory back to %s" % self.pg_data,
                               self.layout.fs("mv", "--no-target-directory", self.previous_data, self.pg_data))
            back = self.exists("rollback", self.pg_data + "/PG_VERSION", "-f")
            if self.live_running and back:
                self._ensure_started()
            self.rolled_back = back or self.live_dir_existed is False
            if self.rolled_back:
                self.state = "rolled-back"
        except SwapError as exc:
            self.rollback_error = str(exc)
        except Exception as exc:  # pylint: disable=broad-except  # report, never hide the first failure
            self.rollback_error = "%s: %s" % (type(exc).__name__, exc)

    # -- reporting --------------------------------------------------------------------------------------------
    def failure_message(self):
        head = "The data-directory swap failed at step %s: %s." % (self.failed_step, self.error)
        if self.rolled_back and not self.rollback_error:
            if self.live_dir_existed is False:
                return ("%s Rolled back: there was no live data directory at %s; the restored copy is back in %s. "
                        "The server is stopped." % (head, self.pg_data, self.new_data))
            running = ("the previous cluster runs again (%s)" % self.layout.describe() if self.live_running
                       else "the server is stopped, as it was before")
            return ("%s Rolled back: the previous data directory is back at %s and %s. The restored copy is "
                    "kept in %s for inspection; fix the cause and run the point-in-time restore again."
                    % (head, self.pg_data, running, self.new_data))
        where = self.where()
        return ("%s ROLLBACK INCOMPLETE (%s): CHECK THE DATA DIRECTORY BY HAND. Swap state: %s; the server (%s) is "
                "probably stopped. The previous data directory is at %s; the restored copy is at %s. To go back: "
                "stop the server, move the restored copy out of %s, move %s back to %s, start the server."
                % (head, self.rollback_error or "the previous data directory is not back", self.state,
                   self.layout.describe(), where["previous"], where["restored"], self.pg_data, self.previous_data,
                   self.pg_data))

    def where(self):
        """Where the previous and the restored data directories are, as far as the state tells."""
        if self.state in ("swapped", "done"):
            return dict(previous=self.previous_data if self.live_dir_existed else "-", restored=self.pg_data)
        if self.state == "moved-aside":
            return dict(previous=self.previous_data if self.live_dir_existed else "-", restored=self.new_data)
        return dict(previous=self.pg_data, restored=self.new_data)

    def result(self):
        return dict(
            state=self.state,
            failed_step=self.failed_step,
            error=self.error,
            rolled_back=self.rolled_back,
            rollback_error=self.rollback_error,
            live_dir_existed=self.live_dir_existed,
            pg_data=self.pg_data,
            new_data=self.new_data,
            previous_data=self.previous_data if self.live_dir_existed is not False else None,
            commands=self.commands,
            planned=self.planned,
            rollback=self.rollback_actions,
        )
