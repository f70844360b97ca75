# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of atlasia.dr.image_bundle without a Docker engine.

``docker save`` is replaced by ``cat`` of a small archive shaped like docker's (manifest.json naming the tags), so the
real pipeline, compression, read-back verification, sidecars and manifest run. Loading runs against a fake engine
(a dict of images) that records pulls and loads. Real bundles (saved on the host's engine, loaded into the engine of a
container) are exercised by the Molecule scenario rebuild.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils import pipeline
from ansible_collections.atlasia.dr.plugins.modules import image_bundle

PG = "atlasia/postgres:15"
APP = "ghcr.io/atlasia/ai-orchestrator:1.4.2"
IDS = {PG: "sha256:" + "1" * 64, APP: "sha256:" + "2" * 64}
DIGESTS = {PG: [], APP: ["ghcr.io/atlasia/ai-orchestrator@sha256:" + "3" * 64]}
STAMP = "20261126_020000"


def docker_archive(path, refs=(PG, APP), truncate=False):
    """A tar like `docker save` writes: layers, config blobs, manifest.json (at the end)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        manifest = []
        for ref in refs:
            hex_id = IDS[ref].split(":", 1)[1]
            for name, data in (("%s/layer.tar" % hex_id[:12], os.urandom(2048)),
                               ("%s.json" % hex_id, b'{"config": {}}')):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            manifest.append({"Config": "%s.json" % hex_id, "RepoTags": [ref], "Layers": ["%s/layer.tar" % hex_id[:12]]})
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    blob = raw.getvalue()
    path.write_bytes(blob[: len(blob) // 2] if truncate else blob)
    return path


class Engine(object):
    """The images a fake engine holds, and what was done to it."""

    def __init__(self, images=None):
        self.images = dict(images or {})
        self.pulls = []
        self.loads = 0
        self.registry = {}
        self.tags = []


@pytest.fixture
def engine(monkeypatch):
    state = Engine()

    def inspect(self, ref):
        if ref not in state.images:
            return None
        return dict(ref=ref, id=state.images[ref], repo_tags=[ref], repo_digests=DIGESTS.get(ref, []), size=1000,
                    created="2026-11-26T00:00:00Z", architecture="amd64", os="linux")

    def pull(self, ref, timeout):
        state.pulls.append(ref)
        if ref in state.registry:
            state.images[ref] = state.registry[ref]
            return None
        return "timed out after %d s" % timeout

    def tag(self, source, target):
        state.tags.append((source, target))
        state.images[target] = state.images[source]

    monkeypatch.setattr(image_bundle.Docker, "__init__", lambda self, module: setattr(self, "bin", "docker"))
    monkeypatch.setattr(image_bundle.Docker, "inspect", inspect)
    monkeypatch.setattr(image_bundle.Docker, "pull", pull)
    monkeypatch.setattr(image_bundle.Docker, "tag", tag)
    monkeypatch.setattr(image_bundle.Docker, "server_version", lambda self: "20.10.24")
    return state


@pytest.fixture
def saver(monkeypatch, tmp_path):
    """`docker save` -> `cat <archive>`; returns the archive path (tests may rewrite it)."""
    archive = docker_archive(tmp_path / "save.tar")
    real = pipeline.run_pipeline

    def run(stages, **kwargs):
        if stages[0][0] == "docker save":
            stages = [("docker save", ["cat", str(archive)])] + list(stages[1:])
        return real(stages, **kwargs)

    monkeypatch.setattr(image_bundle, "run_pipeline", run)
    return archive


def run(args, capsys, check_mode=False):
    return run_module(image_bundle.main, args, capsys, check_mode=check_mode)


def save(tmp_path, capsys, **extra):
    args = dict(images=[PG, APP], dest=str(tmp_path / "daily"), timestamp=STAMP)
    args.update(extra)
    return run(args, capsys)


@pytest.mark.parametrize("comp, ext", [("gzip", "tar.gz"), ("zstd", "tar.zst"), ("none", "tar")])
def test_save_writes_a_verified_bundle_with_sidecars_and_manifest(engine, saver, tmp_path, capsys, comp, ext):
    if comp == "zstd" and subprocess.run(["which", "zstd"], capture_output=True, check=False).returncode:
        pytest.skip("zstd not installed")
    engine.images.update(IDS)
    result = save(tmp_path, capsys, compression=comp)
    daily = tmp_path / "daily"
    name = "images_%s.%s" % (STAMP, ext)
    assert result["changed"] is True
    assert result["path"] == str(daily / name)
    assert sorted(os.listdir(daily)) == sorted([name, name + ".md5", name + ".sha256", "images_%s.json" % STAMP])
    assert subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=str(daily), capture_output=True,
                          check=False).returncode == 0
    assert oct((daily / name).stat().st_mode & 0o777) == "0o600"
    manifest = json.loads((daily / ("images_%s.json" % STAMP)).read_text())
    assert manifest["type"] == "image_bundle"
    assert [image["ref"] for image in manifest["images"]] == [PG, APP]
    assert manifest["images"][1]["repo_digests"] == DIGESTS[APP]
    assert manifest["sha256"] == result["sha256"]


def test_save_refuses_a_missing_image_before_writing(engine, saver, tmp_path, capsys):
    engine.images[PG] = IDS[PG]
    result = save(tmp_path, capsys)
    assert result["failed"] is True
    assert APP in result["msg"]
    assert not (tmp_path / "daily").exists()


def test_save_refuses_an_archive_that_lacks_an_image(engine, saver, tmp_path, capsys):
    engine.images.update(IDS)
    docker_archive(saver, refs=(PG,))
    result = save(tmp_path, capsys)
    assert result["failed"] is True
    assert "%s is not in the archive" % APP in result["msg"]
    assert os.listdir(tmp_path / "daily") == []  # no sidecar, manifest or bundle with a final name


def test_save_refuses_a_truncated_archive(engine, saver, tmp_path, capsys):
    engine.images.update(IDS)
    docker_archive(saver, truncate=True)
    result = save(tmp_path, capsys, compression="none")
    assert result["failed"] is True
    assert os.listdir(tmp_path / "daily") == []


def test_save_never_overwrites_and_check_mode_writes_nothing(engine, saver, tmp_path, capsys):
    engine.images.update(IDS)
    result = run(dict(images=[PG], dest=str(tmp_path / "daily"), timestamp=STAMP), capsys, check_mode=True)
    assert result["changed"] is True
    assert not (tmp_path / "daily").exists()
    save(tmp_path, capsys)
    again = save(tmp_path, capsys)
    assert again["failed"] is True
    assert "never overwritten" in again["msg"]


@pytest.fixture
def bundle(engine, saver, tmp_path, capsys):
    engine.images.update(IDS)
    saved = save(tmp_path, capsys)
    engine.images.clear()
    return saved["path"]


@pytest.fixture
def loader(monkeypatch, engine):
    calls = []

    def run_pipeline(stages, **kwargs):
        calls.append(stages)
        engine.loads += 1
        engine.images.update(IDS)
        return []

    monkeypatch.setattr(image_bundle, "run_pipeline", run_pipeline)
    return calls


def test_load_takes_registry_images_by_digest_and_the_rest_from_the_bundle(engine, bundle, loader, capsys):
    engine.registry[DIGESTS[APP][0]] = IDS[APP]
    result = run(dict(state="loaded", src=bundle), capsys)
    assert result["changed"] is True
    assert engine.pulls == [DIGESTS[APP][0]]  # the locally built image is never asked of a registry
    assert engine.tags == [(DIGESTS[APP][0], APP)]
    assert result["pulled"] == [APP]
    assert result["loaded"] == [PG]
    assert {i["ref"]: i["action"] for i in result["images"]} == {PG: "loaded", APP: "pulled"}
    stages = loader[0]
    assert stages[-1] == ("docker load", ["docker", "load"])
    assert result["checksums"] == {"md5": "ok", "sha256": "ok"}


def test_load_falls_back_to_the_bundle_when_the_registry_does_not_answer(engine, bundle, loader, capsys):
    result = run(dict(state="loaded", src=bundle, pull_timeout=5), capsys)
    assert result["changed"] is True
    assert result["pull_errors"] == [{"ref": DIGESTS[APP][0], "error": "timed out after 5 s"}]
    assert sorted(result["loaded"]) == sorted([PG, APP])


def test_load_is_idempotent(engine, bundle, loader, capsys):
    engine.images.update(IDS)
    result = run(dict(state="loaded", src=bundle), capsys)
    assert result["changed"] is False
    assert loader == [] and engine.pulls == []


def test_an_image_with_another_id_is_replaced(engine, bundle, loader, capsys):
    engine.images.update(IDS)
    engine.images[PG] = "sha256:" + "9" * 64
    result = run(dict(state="loaded", src=bundle, source="bundle"), capsys)
    assert result["loaded"] == [PG]


def test_source_bundle_never_pulls_and_check_mode_loads_nothing(engine, bundle, loader, capsys):
    result = run(dict(state="loaded", src=bundle, source="bundle"), capsys, check_mode=True)
    assert result["changed"] is True
    assert sorted(result["loaded"]) == sorted([PG, APP])
    assert loader == [] and engine.pulls == []


def test_a_damaged_bundle_is_refused_before_loading(engine, bundle, loader, capsys):
    with open(bundle, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 16)
    result = run(dict(state="loaded", src=bundle, source="bundle"), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == "checksum"
    assert loader == []


def test_without_bundle_missing_images_fail(engine, loader, capsys):
    result = run(dict(state="loaded", images=[PG], source="bundle"), capsys)
    assert result["failed"] is True
    assert "no bundle" in result["msg"]


def test_registry_only(engine, loader, capsys):
    engine.registry[PG] = IDS[PG]
    result = run(dict(state="loaded", images=[PG], source="registry"), capsys)
    assert result["pulled"] == [PG]
    assert loader == []


@pytest.mark.parametrize("ref, repo", [
    ("atlasia/postgres:15", "atlasia/postgres"),
    ("registry.example:5000/a/b:1.2", "registry.example:5000/a/b"),
    ("registry.example:5000/a/b", "registry.example:5000/a/b"),
    ("ghcr.io/a/b@sha256:abc", "ghcr.io/a/b"),
])
def test_repository_of(ref, repo):
    assert image_bundle.repository_of(ref) == repo


def test_registry_digest_matches_docker_hub_names():
    assert image_bundle.registry_digest("postgres:15", ["docker.io/library/postgres@sha256:aa"]) == \
        "docker.io/library/postgres@sha256:aa"
    assert image_bundle.registry_digest("postgres:15", ["other/postgres@sha256:aa"]) is None


def test_gzip_bundle_is_a_real_gzip(engine, saver, tmp_path, capsys):
    engine.images.update(IDS)
    result = save(tmp_path, capsys)
    with gzip.open(result["path"]) as handle:
        assert tarfile.open(fileobj=handle, mode="r|").next() is not None


def test_the_scanner_follows_long_names_and_chunk_boundaries(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in (("blobs/sha256/" + "a" * 120, os.urandom(3000)), ("manifest.json", b'[{"RepoTags": ["x:1"]}]')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    blob = raw.getvalue()
    scanner = image_bundle.TarScanner()
    for start in range(0, len(blob), 777):  # chunks that never align with the 512-byte blocks
        scanner(blob[start:start + 777])
    assert scanner.finish() == [{"RepoTags": ["x:1"]}]
    assert scanner.members == 2
    cut = image_bundle.TarScanner()
    cut(blob[:1500])
    with pytest.raises(image_bundle.BundleError, match="truncated"):
        cut.finish()
