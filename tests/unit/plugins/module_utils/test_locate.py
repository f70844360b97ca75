"""locate and setauth: every accepted form of backup=, and every refusal, on real sets written to disk.

The sets are made by the same code the backup uses (backupset.build, crypto.encrypt_stream, sidecars); S3 is
replaced by a folder that plays the bucket (the S3 engine itself is tested against a real server elsewhere).
"""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum, crypto, locate, setauth
from ansible_collections.atlasia.dr.plugins.modules import backup_locate
from tests.support.modules import run_module

KEY = "correct horse battery staple"
OTHER_KEY = "another passphrase entirely"


def _write(directory, name, content):
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(content)
    digests, size, texts = checksum.artifact_digests(path)
    checksum.write_sidecars(path, texts)
    return path


def _encrypt(directory, name, key):
    src = os.path.join(directory, name)
    out = src + crypto.EXTENSION
    with open(src, "rb") as source:
        checksum.write_with_sidecars(out, lambda sink: crypto.encrypt_stream(source, sink, key, 1024))
    for path in [src] + [os.path.join(directory, n) for n in (name + ".md5", name + ".sha256")]:
        os.remove(path)
    return name + crypto.EXTENSION


def flip_byte(path, offset):
    """Damage one byte for sure (writing a fixed byte leaves the file unchanged when it already holds it)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def make_set(root, set_id, key=None, encrypt=False, environment="prod", database="aiteam", tier="daily",
             content=b"-- dump of aiteam\nSELECT 1;\n"):
    directory = os.path.join(root, tier)
    os.makedirs(directory, exist_ok=True)
    names = []
    for name, component, data in (("backup_%s.sql.gz" % set_id, "database", content),
                                  ("vault_%s.snap" % set_id, "vault", b"raft snapshot")):
        _write(directory, name, data)
        if encrypt:
            name = _encrypt(directory, name, key)
        names.append(dict(name=name, component=component))
    path, data = backupset.build(directory, set_id, names, environment=environment, extra=dict(database=database),
                                 auth_key=key)
    return path, data


def policy(**kwargs):
    args = dict(key=KEY, encryption_required=True, environment="prod", database="aiteam")
    args.update(kwargs)
    return locate.Policy(**args)


def locator(root, tmp_path, pol=None, transfer=None, **kwargs):
    return locate.Locator(pol or policy(), roots=[os.path.join(str(root), t) for t in backupset.TIERS],
                          staging_dir=str(tmp_path / "staging"), transfer=transfer, bucket="bkt" if transfer else None,
                          prefix="p/", **kwargs)


# -- parse --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["2026-12-02", "nosuchthing", "20261302_020000", "relative/path.sql.gz",
                                  "s3://bucket", "s3://bucket/notes.txt", "latest "])
def test_parse_refuses_what_it_does_not_know(text):
    if text == "latest ":
        assert locate.parse(text).kind == "latest"
        return
    with pytest.raises(locate.LocateError):
        locate.parse(text)


def test_parse_accepted_forms(tmp_path):
    path, data = make_set(str(tmp_path), "20261201_020000")
    assert locate.parse("latest").kind == "latest"
    assert locate.parse("20261201_020000").kind == "set_id"
    assert locate.parse(path).kind == "manifest"
    assert locate.parse(str(tmp_path / "daily")).kind == "folder"
    assert locate.parse(str(tmp_path / "daily" / "backup_20261201_020000.sql.gz")).kind == "dump"
    assert locate.parse("s3://b/p/set_20261201_020000.json").kind == "s3_manifest"
    assert locate.parse("s3://b/p/backup_20261201_020000.sql.gz").kind == "s3_dump"
    with pytest.raises(locate.LocateError, match="not a set manifest"):
        open(str(tmp_path / "notes.json"), "w").close()
        locate.parse(str(tmp_path / "notes.json"))
    with pytest.raises(locate.LocateError, match="does not exist"):
        locate.parse(str(tmp_path / "set_20261201_030000.json"))


# -- setauth ------------------------------------------------------------------------------------------------

def test_mac_detects_every_change_it_covers(tmp_path):
    path, data = make_set(str(tmp_path), "20261201_020000", key=KEY, encrypt=True)
    setauth.check(data, KEY)
    for change in (lambda d: d.update(environment="staging"), lambda d: d.update(database="evil"),
                   lambda d: d["artifacts"][0].update(sha256="0" * 64), lambda d: d["artifacts"][0].update(size=1),
                   lambda d: d.update(set_id="20261201_030000")):
        forged = json.loads(json.dumps(data))
        change(forged)
        with pytest.raises(setauth.AuthError, match="changed after the backup"):
            setauth.check(forged, KEY)
    with pytest.raises(setauth.AuthError, match="another key"):
        setauth.check(data, OTHER_KEY)
    forged = dict(data)
    forged.pop("auth")
    with pytest.raises(setauth.AuthError, match="no authentication code"):
        setauth.check(forged, KEY)
    # what may change after a backup does not invalidate it
    later = dict(data, verified=dict(status="passed"), offsite=dict(s3=True))
    setauth.check(later, KEY)


SNAPSHOTS = [dict(name="uploads", component="files", store="repository", repository="/b/files-repository",
                  snapshot_id="a" * 64, paths=["/srv/uploads"], files=3, bytes=300, bytes_added=10, total_bytes=900),
             dict(name="uploads", component="files", store="repository", repository="s3:http://s3/b/p/files",
                  snapshot_id="b" * 64, paths=["/srv/uploads"], files=3, bytes=300, bytes_added=300, total_bytes=900)]


def test_mac_covers_the_file_snapshots(tmp_path):
    directory = tmp_path / "daily"
    directory.mkdir()
    _write(str(directory), "backup_20261201_020000.sql.gz", b"dump")
    dummy, data = backupset.build(str(directory), "20261201_020000", [dict(name="backup_20261201_020000.sql.gz",
                                                                           component="database")],
                                  environment="prod", extra=dict(database="aiteam", file_snapshots=SNAPSHOTS),
                                  auth_key=KEY)
    setauth.check(data, KEY)
    for change in (lambda d: d["file_snapshots"][0].update(snapshot_id="c" * 64),
                   lambda d: d["file_snapshots"][1].update(paths=["/etc"]),
                   lambda d: d["file_snapshots"].pop(0), lambda d: d.pop("file_snapshots"),
                   lambda d: d["file_snapshots"].append(dict(SNAPSHOTS[0], name="plugins"))):
        forged = json.loads(json.dumps(data))
        change(forged)
        with pytest.raises(setauth.AuthError, match="changed after the backup"):
            setauth.check(forged, KEY)
    # the repository-wide figures and the order of the entries are not what the set is
    later = json.loads(json.dumps(data))
    later["file_snapshots"].reverse()
    later["file_snapshots"][0].update(total_bytes=1, bytes_added=2)
    setauth.check(later, KEY)


def test_sets_signed_before_file_snapshots_still_verify(tmp_path):
    """A set signed by the payload that did not know file_snapshots (the same body without the key)."""
    path, data = make_set(str(tmp_path), "20261201_020000", key=KEY)
    assert "file_snapshots" not in data
    old_body = dict(version=1, set_id=data["set_id"], environment=data["environment"], database="aiteam",
                    artifacts=sorted((dict((f, e.get(f)) for f in ("name", "component", "size", "sha256", "md5"))
                                      for e in data["artifacts"]), key=lambda e: e["name"]))
    assert setauth.payload(data) == json.dumps(old_body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    setauth.check(backupset.load(path), KEY)


def test_mac_key_is_not_the_key_id():
    assert setauth.mac_key(KEY) != crypto.key_id(KEY)
    assert len(setauth.mac_key(KEY)) == 32


# -- Locator ------------------------------------------------------------------------------------------------

def test_latest_picks_the_newest_authentic_set_and_decrypts_it(tmp_path):
    root = str(tmp_path / "backups")
    make_set(root, "20261130_020000", key=KEY, encrypt=True)
    make_set(root, "20261201_020000", key=KEY, encrypt=True, content=b"newest")
    loc = locator(root, tmp_path)
    path, data, source = loc.locate(locate.parse("latest"))
    assert data["set_id"] == "20261201_020000" and source == "local"
    plain_dir, paths = loc.stage(os.path.dirname(path), data)
    with open(paths["backup_20261201_020000.sql.gz.enc"], "rb") as handle:
        assert handle.read() == b"newest"
    assert oct(os.stat(plain_dir).st_mode & 0o777) == "0o700"


def test_a_planted_plaintext_set_is_passed_over_and_named(tmp_path):
    root = str(tmp_path / "backups")
    make_set(root, "20261130_020000", key=KEY, encrypt=True)
    # someone with write access plants a newer plaintext set with consistent sidecars, but no valid MAC
    make_set(root, "20261201_020000", key=None, encrypt=False, content=b"\\! id > /tmp/pwned\n")
    loc = locator(root, tmp_path)
    path, data, source = loc.locate(locate.parse("latest"))
    assert data["set_id"] == "20261130_020000"
    assert loc.passed_over[0]["set_id"] == "20261201_020000"
    assert "no authentication code" in loc.passed_over[0]["reason"]
    assert "plaintext" in loc.passed_over[0]["reason"]
    with pytest.raises(locate.LocateError, match="plaintext"):
        locator(root, tmp_path).locate(locate.parse("20261201_020000"))


def test_a_planted_set_with_a_forged_mac_under_another_key_is_refused(tmp_path):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", key=OTHER_KEY, encrypt=True)
    with pytest.raises(locate.LocateError, match="another key"):
        locator(root, tmp_path).locate(locate.parse("20261201_020000"))


def test_a_set_of_another_database_or_environment_is_refused_unless_allowed(tmp_path):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", key=KEY, encrypt=True, database="evil")
    with pytest.raises(locate.LocateError, match="database 'evil', not 'aiteam'"):
        locator(root, tmp_path).locate(locate.parse("20261201_020000"))
    loc = locator(root, tmp_path, pol=policy(allow_foreign=True))
    assert loc.locate(locate.parse("20261201_020000"))[1]["database"] == "evil"
    make_set(root, "20261202_020000", key=KEY, encrypt=True, environment="staging")
    with pytest.raises(locate.LocateError, match="environment 'staging', not 'prod'"):
        locator(root, tmp_path).locate(locate.parse("20261202_020000"))


def test_an_unknown_set_id_names_the_sets_that_exist(tmp_path):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", key=KEY, encrypt=True)
    with pytest.raises(locate.LocateError) as info:
        locator(root, tmp_path).locate(locate.parse("20261202_020000"))
    assert "no backup set 20261202_020000" in str(info.value)
    assert "20261201_020000" in str(info.value)


def test_a_damaged_set_given_by_path_is_an_error_not_a_dump(tmp_path):
    root = str(tmp_path / "backups")
    path, data = make_set(root, "20261201_020000", key=KEY, encrypt=True)
    dump = os.path.join(root, "daily", "backup_20261201_020000.sql.gz.enc")
    flip_byte(dump, 60)
    with pytest.raises(locate.LocateError, match="cannot be used"):
        locator(root, tmp_path).locate(locate.parse(path))
    with pytest.raises(locate.LocateError, match="no backup set in .* can be used"):
        locator(root, tmp_path).locate(locate.parse(os.path.join(root, "daily")))


def test_a_plaintext_dump_is_refused_where_backups_are_encrypted(tmp_path):
    directory = str(tmp_path / "loose")
    os.makedirs(directory)
    dump = _write(directory, "backup_20261201_020000.sql.gz", b"plain")
    with pytest.raises(locate.LocateError, match="plaintext dump"):
        locator(str(tmp_path), tmp_path).locate(locate.parse(dump))
    no_key = locator(str(tmp_path), tmp_path, pol=locate.Policy())
    assert no_key.locate(locate.parse(dump))[0] == dump


def test_without_a_key_sets_are_checked_for_integrity_and_identity_only(tmp_path):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", environment="local")
    loc = locator(root, tmp_path, pol=locate.Policy(environment="local", database="aiteam"))
    path, data, source = loc.locate(locate.parse("latest"))
    assert data["set_id"] == "20261201_020000"
    plain_dir, paths = loc.stage(os.path.dirname(path), data)
    assert plain_dir is None and paths["backup_20261201_020000.sql.gz"].startswith(root)


def test_unauthenticated_old_sets_are_accepted_only_when_asked(tmp_path):
    root = str(tmp_path / "backups")
    path, data = make_set(root, "20261201_020000", key=KEY, encrypt=True)
    data.pop("auth")
    with open(path, "w") as handle:
        json.dump(data, handle)
    with pytest.raises(locate.LocateError, match="allow_unauthenticated_set"):
        locator(root, tmp_path).locate(locate.parse("latest"))
    loc = locator(root, tmp_path, pol=policy(allow_unauthenticated=True))
    assert loc.locate(locate.parse("latest"))[1]["set_id"] == "20261201_020000"


class FolderBucket(object):
    """A folder standing in for the bucket: ``transfer(mode, ...)`` with the engine's result shapes."""

    def __init__(self, folder):
        self.folder = folder
        self.calls = []

    def __call__(self, mode, bucket, key=None, prefix=None, dest=None, series=None):
        self.calls.append((mode, key))
        if mode == "list":
            names = sorted(os.listdir(os.path.join(self.folder, prefix)))
            return dict(backups=[dict(manifest=prefix + n) for n in names if n.startswith("set_")])
        if mode == "read":
            with open(os.path.join(self.folder, key), "rb") as handle:
                return dict(content=handle.read().decode())
        name = key.rsplit("/", 1)[-1]
        shutil.copy(os.path.join(self.folder, key), os.path.join(dest, name))
        for side in (name + ".md5", name + ".sha256"):
            if os.path.exists(os.path.join(self.folder, os.path.dirname(key), side)):
                shutil.copy(os.path.join(self.folder, os.path.dirname(key), side), os.path.join(dest, side))
        return dict(transferred=[key])


def test_latest_falls_back_to_s3_when_no_local_copy_exists(tmp_path):
    remote_root = str(tmp_path / "bucket-src")
    make_set(remote_root, "20261201_020000", key=KEY, encrypt=True)
    os.makedirs(str(tmp_path / "bucket"))
    shutil.copytree(os.path.join(remote_root, "daily"), str(tmp_path / "bucket" / "p"))
    bucket = FolderBucket(str(tmp_path / "bucket"))
    loc = locator(str(tmp_path / "empty"), tmp_path, transfer=bucket)
    path, data, source = loc.locate(locate.parse("latest"))
    assert source == "s3" and path.startswith(str(tmp_path / "staging"))
    assert ("read", "p/set_20261201_020000.json") in bucket.calls


def test_a_forged_set_in_s3_is_refused_before_its_artifacts_are_downloaded(tmp_path):
    remote_root = str(tmp_path / "bucket-src")
    make_set(remote_root, "20261201_020000", key=None, encrypt=False, content=b"\\! id\n")
    shutil.copytree(os.path.join(remote_root, "daily"), str(tmp_path / "bucket" / "p"))
    bucket = FolderBucket(str(tmp_path / "bucket"))
    with pytest.raises(locate.LocateError, match="no usable backup set"):
        locator(str(tmp_path / "empty"), tmp_path, transfer=bucket).locate(locate.parse("latest"))
    assert [c for c in bucket.calls if c[0] == "download"] == []


# -- the module ---------------------------------------------------------------------------------------------

def test_module_refuses_an_unknown_form_listing_what_exists(tmp_path, capsys):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", key=KEY, encrypt=True)
    result = run_module(backup_locate.main, dict(backup="2026-12-01", root=root, staging_dir=str(tmp_path / "st"),
                                                 encryption_key=KEY, encryption_required=True, environment="prod",
                                                 database="aiteam"), capsys)
    assert result["failed"]
    assert "Accepted forms" in result["msg"] and "20261201_020000" in result["msg"]
    assert not os.path.exists(str(tmp_path / "st"))


def test_module_returns_usable_paths_and_no_skipped_key(tmp_path, capsys):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", key=KEY, encrypt=True)
    result = run_module(backup_locate.main, dict(backup="latest", root=root, staging_dir=str(tmp_path / "st"),
                                                 encryption_key=KEY, encryption_required=True, environment="prod",
                                                 database="aiteam", required_components=["database"]), capsys)
    assert not result.get("failed"), result
    assert "skipped" not in result
    assert result["authenticated"] and result["encrypted"]
    with open(result["paths"]["database"][0], "rb") as handle:
        assert handle.read().startswith(b"-- dump of aiteam")
    assert KEY not in json.dumps(result)


def test_module_check_mode_writes_nothing(tmp_path, capsys):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", key=KEY, encrypt=True)
    result = run_module(backup_locate.main, dict(backup="latest", root=root, staging_dir=str(tmp_path / "st"),
                                                 encryption_key=KEY, encryption_required=True, environment="prod",
                                                 database="aiteam"), capsys, check_mode=True)
    assert not result.get("failed"), result
    assert not os.path.exists(str(tmp_path / "st"))
    assert result["paths"]["database"][0].startswith(str(tmp_path / "st"))


def test_module_names_a_missing_component(tmp_path, capsys):
    root = str(tmp_path / "backups")
    make_set(root, "20261201_020000", key=KEY, encrypt=True)
    result = run_module(backup_locate.main, dict(backup="latest", root=root, staging_dir=str(tmp_path / "st"),
                                                 encryption_key=KEY, environment="prod", database="aiteam",
                                                 required_components=["config"]), capsys)
    assert result["failed"] and "holds no config artifact" in result["msg"]


def test_encrypt_stream_roundtrip_helper():
    sink = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(b"abc"), sink.write, KEY, 1024)
    out = io.BytesIO()
    crypto.decrypt_stream(io.BytesIO(sink.getvalue()), out.write, KEY)
    assert out.getvalue() == b"abc"


def test_a_set_staged_by_a_download_needs_only_the_components_fetched(tmp_path):
    """A rebuild stages the components it needs; the restore then names the staged manifest (partial by design)."""
    staging = str(tmp_path / "staging")
    path, data = make_set(staging, "20261201_020000", key=KEY, encrypt=True, tier="20261201_020000")
    vault = os.path.join(os.path.dirname(path), "vault_20261201_020000.snap.enc")
    for name in (vault, vault + ".md5", vault + ".sha256"):
        os.remove(name)
    found, got, source = locator(tmp_path / "backups", tmp_path, components=["database"]).locate(locate.parse(path))
    assert found == path and got["set_id"] == "20261201_020000"
    with pytest.raises(locate.LocateError, match="vault_20261201_020000.snap.enc"):  # wanted, but not fetched
        locator(tmp_path / "backups", tmp_path, components=["database", "vault"]).locate(locate.parse(path))
    dump = os.path.join(os.path.dirname(path), "backup_20261201_020000.sql.gz.enc")
    flip_byte(dump, 60)  # what is there is still verified
    with pytest.raises(locate.LocateError, match="cannot be used"):
        locator(tmp_path / "backups", tmp_path, components=["database"]).locate(locate.parse(path))


def test_a_set_in_the_backup_root_is_used_whole_or_not_at_all(tmp_path):
    root = str(tmp_path / "backups")
    path, data = make_set(root, "20261201_020000", key=KEY, encrypt=True)
    vault = os.path.join(root, "daily", "vault_20261201_020000.snap.enc")
    os.remove(vault)
    with pytest.raises(locate.LocateError, match="vault_20261201_020000.snap.enc"):
        locator(root, tmp_path, components=["database"]).locate(locate.parse(path))


# --- database-level properties recorded with the dump --------------------------------------------------------
PROPS = dict(owner="gis_owner", encoding="UTF8", settings=["search_path=app, public"], role_settings={}, acl=None)


def test_database_properties_come_from_the_set_entry_or_the_dump_manifest(tmp_path):
    dump = tmp_path / "backup_20261126_020000.sql.gz"
    dump.write_bytes(b"x")
    checksum.write_sidecars(str(dump), checksum.artifact_digests(str(dump))[2])
    (tmp_path / "backup_20261126_020000.json").write_text(json.dumps(dict(database="gis", database_properties=PROPS)))
    entry = backupset.artifact_entry(str(tmp_path), dump.name, "database")
    assert entry["database_properties"] == PROPS  # the set manifest carries them (under its MAC)
    in_set = dict(set_id="20261126_020000", artifacts=[dict(entry, database_properties=dict(PROPS, owner="x"))])
    assert locate.database_properties(in_set, str(tmp_path))["owner"] == "x"  # the set's copy wins
    single = dict(set_id=None, artifacts=[dict(name=dump.name, component="database")])
    assert locate.database_properties(single, str(tmp_path)) == PROPS
    old = dict(set_id="20261126_020000", artifacts=[dict(name=dump.name, component="database")])
    assert locate.database_properties(old, str(tmp_path)) is None  # an older set: nothing recorded
