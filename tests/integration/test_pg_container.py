"""pg_dump_backup and pg_restore_db with ``container``: client programs run by ``docker exec`` in a real
``atlasia/postgres:15`` container (host network, its own port on 127.0.0.1), files and checksums on the host.

The Docker engine and the image come from scripts/docker-engine.sh and scripts/build-images.sh (through the
``docker_images`` fixture of conftest.py). The password must never appear in a process list: ``ps -eo args``
is sampled while the modules run.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid

import pytest

from tests.integration import pg_helpers as h
from tests.support import SAMPLE_SCHEMA
from tests.support.postgres import table_digests

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def container(docker_images):
    usable, why = h.docker_usable()
    if not usable:
        pytest.skip(f"Docker cannot run on this machine: {why}")
    server = h.ContainerServer(password="ctr-" + uuid.uuid4().hex)
    server.image = docker_images["postgres"]
    try:
        server.start()
        yield server
    finally:
        server.remove()
    assert subprocess.run(["docker", "inspect", server.name], capture_output=True, check=False).returncode != 0


@pytest.fixture(scope="module")
def container_source(container):
    name = h.unique("ctr_src")
    container.createdb(name)
    container.psql(SAMPLE_SCHEMA.read_text(encoding="utf-8"), db=name)
    return name


class PsSampler:
    """Samples ``ps -ww -eo args`` (full width) of the whole machine while a module runs."""

    def __init__(self):
        self.lines = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=False).stdout
            self.lines.update(out.splitlines())
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def container_args(container, db, tcp=True, **extra):
    args = dict(db=db, container=container.name, port=container.port, login_user=container.user, **extra)
    if tcp:  # over 127.0.0.1 with the password; else the container's unix socket (trust)
        args.update(login_host="127.0.0.1", login_password=container.password)
    return args


@pytest.mark.parametrize("combo, tcp", [
    (("plain", "gzip", 1), True),
    (("custom", "zstd", 1), False),
], ids=["plain-gzip-tcp", "custom-zstd-socket"])
def test_round_trip_through_container(container, container_source, tmp_path, combo, tcp):
    """Back up through the container, restore into a new database and in place of another one, in one play."""
    fmt, comp, jobs = combo
    expected = table_digests(container, container_source)
    facts = h.content_facts(container, container_source)
    dest = tmp_path / "daily"
    timestamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
    name = f"backup_{timestamp}." + ("sql.gz" if fmt == "plain" else "dump.zst")
    new_db, target = h.unique("ctr_new"), h.unique("ctr_tgt")
    container.createdb(target)
    container.psql("CREATE TABLE leftover (id int)", db=target)
    try:
        with PsSampler() as sampler:
            dumped, restored, replaced = h.run_play([
                ("pg_dump_backup", container_args(container, container_source, tcp, dest=str(dest), format=fmt,
                                                  compression=comp, timestamp=timestamp)),
                ("pg_restore_db", container_args(container, new_db, tcp, src=str(dest / name), mode="new")),
                ("pg_restore_db", container_args(container, target, tcp, src=str(dest / name),
                                                 safety_backup_dir=str(tmp_path / "safety"))),
            ], tmp_path / "play")
        assert not dumped.get("failed"), dumped.get("msg")
        assert dumped["path"] == str(dest / name)
        assert dumped["manifest_data"]["container"] == container.name
        assert dumped["server_version"].startswith("15.")
        assert h.final_names(dest) == sorted([name, name + ".md5", name + ".sha256", f"backup_{timestamp}.json"])
        for tool, suffix in (("md5sum", ".md5"), ("sha256sum", ".sha256")):
            proc = subprocess.run([tool, "-c", name + suffix], cwd=dest, capture_output=True, text=True,
                                  check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr

        assert not restored.get("failed"), restored.get("msg")
        assert table_digests(container, new_db) == expected
        assert h.content_facts(container, new_db) == facts

        assert not replaced.get("failed"), replaced.get("msg")
        assert table_digests(container, target) == expected
        assert "public.leftover" in table_digests(container, replaced["previous_db"])["tables"]
        assert os.path.exists(replaced["safety_backup"])  # dumped through the container, written on the host
    finally:
        for db in [new_db, target] + [d for d in container.databases() if d.startswith(target + "_")]:
            container.dropdb(db)

    # the password never appeared in a process list; the docker exec calls were seen, naming variables only
    assert not any(container.password in line for line in sampler.lines)
    execs = [line for line in sampler.lines if "docker exec" in line and container.name in line]
    assert execs, "no docker exec seen: sampling missed the runs"
    if tcp:
        assert any("-e PGPASSWORD" in line for line in execs), "\n".join(sorted(execs))


@pytest.fixture(scope="module")
def container_errors(container, container_source, tmp_path_factory):
    root = tmp_path_factory.mktemp("ctr_errors")
    runs = [
        dict(container_args(container, container_source, dest=str(root / "missing")),
             container="no_such_container_atlasia"),
        dict(container_args(container, container_source, dest=str(root / "auth")), login_password="not-the-password"),
        container_args(container, container_source, dest=str(root / "directory"), format="directory"),
    ]
    return root, h.run_tasks("pg_dump_backup", runs, root / "play")


def test_missing_container(container_errors):
    root, results = container_errors
    result = results[0]
    assert result["failed"] and result["error_kind"] == "no_container", result
    assert h.final_names(root / "missing") == [] and h.hidden_names(root / "missing") == []


def test_wrong_password_through_container(container_errors):
    root, results = container_errors
    result = results[1]
    assert result["failed"] and result["error_kind"] == "auth", result
    assert h.final_names(root / "auth") == []
    assert "not-the-password" not in str(result)


def test_directory_format_refused_with_container(container_errors):
    root, results = container_errors
    result = results[2]
    assert result["failed"] and "cannot be used with container" in result["msg"]
    assert not (root / "directory").exists()
