# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/naming.py: the ``<prefix>_<YYYYMMDD>_<HHMMSS>.<ext>`` convention."""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import naming

UTC = datetime.timezone.utc
MOMENT = datetime.datetime(2026, 11, 26, 2, 0, 5, tzinfo=UTC)


def test_utc_now_is_aware_utc_whole_seconds():
    now = naming.utc_now()
    assert now.tzinfo is not None
    assert now.utcoffset() == datetime.timedelta(0)
    assert now.microsecond == 0


@pytest.mark.parametrize("moment, expected", [
    (MOMENT, "20261126_020005"),
    (datetime.datetime(2026, 11, 26, 2, 0, 5), "20261126_020005"),  # naive means UTC
    (datetime.datetime(2026, 11, 26, 4, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
     "20261126_020005"),
    (datetime.datetime(2026, 1, 1, 0, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=1))), "20251231_233000"),
])
def test_format_timestamp_is_utc(moment, expected):
    assert naming.format_timestamp(moment) == expected


def test_parse_timestamp_round_trip():
    assert naming.parse_timestamp("20261126_020005") == MOMENT
    assert naming.format_timestamp(naming.parse_timestamp("20240229_235959")) == "20240229_235959"


@pytest.mark.parametrize("text", ["2026-11-26", "20261126020005", "20261326_020000", "20261126_250000", "", "x"])
def test_parse_timestamp_rejects_malformed(text):
    with pytest.raises(ValueError):
        naming.parse_timestamp(text)


@pytest.mark.parametrize("prefix, ext, expected", [
    ("backup", "sql.gz", "backup_20261126_020005.sql.gz"),
    ("backup", ".sql.gz", "backup_20261126_020005.sql.gz"),
    ("schema", "sql", "schema_20261126_020005.sql"),
    ("prerestore", "sql.gz", "prerestore_20261126_020005.sql.gz"),
    ("vault", "snap", "vault_20261126_020005.snap"),
    ("my-db_copy", "dump", "my-db_copy_20261126_020005.dump"),
    ("backup", "", "backup_20261126_020005"),
])
def test_backup_name(prefix, ext, expected):
    assert naming.backup_name(prefix, MOMENT, ext) == expected


@pytest.mark.parametrize("prefix", ["", None, "_backup", "-x", "back up", "back/up", "bäckup", "a.b", "backup\n",
                                    # '_' followed by a digit (or another '_', or nothing) could not be parsed back
                                    "db_2", "backup_2024", "a_", "a__b"])
def test_backup_stem_rejects_bad_prefix(prefix):
    with pytest.raises(ValueError):
        naming.backup_stem(prefix, MOMENT)


@pytest.mark.parametrize("prefix", ["backup", "schema", "prerestore", "prerollback", "set", "A", "9", "a-1",
                                    "my_db", "x_y1", "db-2", "aiteam_prod-replica_b"])
@pytest.mark.parametrize("ext", ["sql.gz", "sql.zst", "sql", "dump", "dump.zst", "dir", "json", ""])
def test_every_accepted_prefix_parses_back(prefix, ext):
    """What backup_name writes, parse_backup_name recognises (retention and restore depend on it)."""
    name = naming.backup_name(prefix, MOMENT, ext)
    parsed = naming.parse_backup_name(name)
    assert parsed is not None, name
    assert parsed.prefix == prefix
    assert parsed.timestamp == MOMENT
    assert parsed.ext == ext
    assert parsed.stem == naming.backup_stem(prefix, MOMENT)


@pytest.mark.parametrize("name, role, artifact, ext", [
    ("backup_20261126_020005.sql.gz", "artifact", "backup_20261126_020005.sql.gz", "sql.gz"),
    ("backup_20261126_020005.sql.gz.md5", "md5", "backup_20261126_020005.sql.gz", "sql.gz.md5"),
    ("backup_20261126_020005.sql.gz.sha256", "sha256", "backup_20261126_020005.sql.gz", "sql.gz.sha256"),
    ("backup_20261126_020005.dir.md5", "md5", "backup_20261126_020005.dir", "dir.md5"),
    ("backup_20261126_020005.json", "manifest", None, "json"),
    ("backup_20261126_020005.dir", "artifact", "backup_20261126_020005.dir", "dir"),
    ("backup_20261126_020005", "artifact", "backup_20261126_020005", ""),
])
def test_parse_backup_name_roles(name, role, artifact, ext):
    parsed = naming.parse_backup_name(name)
    assert parsed.role == role
    assert parsed.artifact == artifact
    assert parsed.ext == ext
    assert parsed.prefix == "backup"
    assert parsed.stem == "backup_20261126_020005"
    assert parsed.timestamp == MOMENT
    assert parsed.name == name


@pytest.mark.parametrize("path", [
    "/srv/atlasia/backups/daily/backup_20261126_020005.sql.gz",
    "daily/backup_20261126_020005.sql.gz",
    "s3prefix/daily/backup_20261126_020005.sql.gz",
])
def test_parse_backup_name_uses_base_name(path):
    assert naming.parse_backup_name(path).name == "backup_20261126_020005.sql.gz"


def test_parse_backup_name_directory_with_trailing_slash():
    assert naming.parse_backup_name("/x/backup_20261126_020005.dir/").artifact == "backup_20261126_020005.dir"


@pytest.mark.parametrize("name", [
    "",
    "backup.sql.gz",
    "backup_2026112_020005.sql.gz",
    "backup_20261126_02000.sql.gz",
    "backup_20261326_020005.sql.gz",       # month 13
    "backup_20261126_246000.sql.gz",       # hour 24
    "_20261126_020005.sql.gz",
    ".backup_20261126_020005.sql.gz",      # hidden
    ".backup_20261126_020005.sql.gz.tmp-123-0a1b2c3d",
    "backup_20261126_020005.sql.gz.tmp-123-0a1b2c3d",
    "backup_20261126_020005.",
    "backup_20261126_020005..gz",
    "notes.txt",
    "backup_20261126_020005 copy.sql.gz",
])
def test_parse_backup_name_ignores_foreign_names(name):
    assert naming.parse_backup_name(name) is None


def test_manifest_and_sidecar_names():
    assert naming.manifest_name("backup_20261126_020005") == "backup_20261126_020005.json"
    assert naming.sidecar_names("backup_20261126_020005.sql.gz") == {
        "md5": "backup_20261126_020005.sql.gz.md5",
        "sha256": "backup_20261126_020005.sql.gz.sha256",
    }


def test_temp_name_is_hidden_unparseable_and_carries_our_pid():
    final = "/srv/backups/backup_20261126_020005.sql.gz"
    first = naming.temp_name(final)
    second = naming.temp_name(final)
    assert first != second  # random part: two writers never collide
    for name in (first, second):
        assert name.startswith(".backup_20261126_020005.sql.gz" + naming.TEMP_MARKER)
        assert "/" not in name
        assert naming.parse_backup_name(name) is None
        assert naming.temp_owner_pid(name) == os.getpid()
        assert naming.temp_owner_pid(os.path.join("/some/dir", name)) == os.getpid()


@pytest.mark.parametrize("name", [
    "backup_20261126_020005.sql.gz",
    ".backup_20261126_020005.sql.gz.tmp-abc-0a1b2c3d",
    ".backup_20261126_020005.sql.gz.tmp-123-0A1B2C3D",
    ".backup_20261126_020005.sql.gz.tmp-123-0a1b2c",
    "backup.tmp-123-0a1b2c3d",  # not hidden
    ".tmp-123-0a1b2c3d",
])
def test_temp_owner_pid_rejects_other_names(name):
    assert naming.temp_owner_pid(name) is None


def test_temp_owner_pid_parses():
    assert naming.temp_owner_pid(".x.dump.tmp-4242-deadbeef") == 4242


@pytest.mark.parametrize("kind", ["restore", "previous"])
def test_scratch_db_name_round_trip(kind):
    name = naming.scratch_db_name("aiteam_prod", MOMENT, kind=kind)
    assert name == "aiteam_prod_%s_20261126_020005" % kind
    assert naming.parse_scratch_db_name(name, "aiteam_prod", kind=kind) == MOMENT


def test_scratch_db_name_fits_postgres_identifier_limit():
    long_db = "d" * 63
    for kind in ("restore", "previous"):
        name = naming.scratch_db_name(long_db, MOMENT, kind=kind)
        assert len(name.encode("utf-8")) <= 63
        assert name.endswith("_%s_20261126_020005" % kind)
        assert naming.parse_scratch_db_name(name, long_db, kind=kind) == MOMENT


@pytest.mark.parametrize("name, db, kind", [
    ("aiteam_prod_previous_20261126_020005", "aiteam_prod", "restore"),  # a kept previous db is not a scratch
    ("aiteam_prod_restore_20261126_020005", "aiteam", "restore"),        # another database's scratch
    ("aiteam_restore_20261126_020005", "aiteam_prod", "restore"),
    ("aiteam_prod", "aiteam_prod", "restore"),
    ("aiteam_prod_restore_20261326_020005", "aiteam_prod", "restore"),   # not a valid timestamp
    ("aiteam_prod_restore_20261126_020005x", "aiteam_prod", "restore"),
    ("xaiteam_prod_restore_20261126_020005", "aiteam_prod", "restore"),
])
def test_parse_scratch_db_name_rejects(name, db, kind):
    assert naming.parse_scratch_db_name(name, db, kind=kind) is None


def test_parse_scratch_db_name_escapes_regex_characters():
    db = "a.b+c"
    name = naming.scratch_db_name(db, MOMENT)
    assert naming.parse_scratch_db_name(name, db) == MOMENT
    assert naming.parse_scratch_db_name("aXb+c_restore_20261126_020005", db) is None
