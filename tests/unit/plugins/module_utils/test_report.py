# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run reports name the file data restored from the file repository."""

from __future__ import annotations

from ansible_collections.atlasia.dr.plugins.module_utils import report

SNAPSHOT = "4f1c2d3e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"


def test_the_report_names_each_file_set_restored_from_the_repository():
    entry = dict(name="uploads", snapshot_id=SNAPSHOT, source="s3", files=30,
                 repository="s3:http://127.0.0.1:8333/atlasia-backups/atlasia-backups/files-repository")
    built = report.build("rebuild", phases=[], checks=[], extra=dict(file_data=[entry]))
    assert built["file_data"] == [entry]
    assert ("- File data uploads: 30 files of snapshot %s from the s3 repository "
            "s3:http://127.0.0.1:8333/atlasia-backups/atlasia-backups/files-repository" % SNAPSHOT) \
        in report.markdown(built)


def test_a_report_without_file_data_has_no_such_line():
    assert "File data" not in report.markdown(report.build("rebuild", phases=[], checks=[], extra=dict(file_data=[])))
