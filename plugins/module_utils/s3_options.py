# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 connection options every S3 module takes (documented by the ``atlasia.dr.s3`` doc fragment).

Kept apart from :mod:`s3` so that a module which only passes these options on (``dr_file_repo`` gives them to
restic) does not import boto3; :mod:`s3` re-exports both functions.
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback


def s3_argument_spec():
    """Connection options of every S3 module (documented by the ``atlasia.dr.s3`` doc fragment)."""
    return dict(
        bucket=dict(type="str", required=True),
        endpoint_url=dict(type="str", aliases=["aws_endpoint_url"],
                          fallback=(env_fallback, ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])),
        region=dict(type="str", aliases=["aws_region"], fallback=(env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"])),
        access_key=dict(type="str", no_log=True, aliases=["aws_access_key", "aws_access_key_id"]),
        secret_key=dict(type="str", no_log=True, aliases=["aws_secret_key", "aws_secret_access_key"]),
        session_token=dict(type="str", no_log=True, aliases=["aws_session_token"]),
        profile=dict(type="str", aliases=["aws_profile"]),
        validate_certs=dict(type="bool", default=True),
        ca_bundle=dict(type="path"),
        addressing_style=dict(type="str", default="auto", choices=["auto", "path", "virtual"]),
        checksum_calculation=dict(type="str", choices=["when_supported", "when_required"]),
        timeout=dict(type="int", default=60),
        max_attempts=dict(type="int", default=3),
    )


def s3_module_kwargs():
    """Constraints between the connection options, to merge into ``AnsibleModule(...)``."""
    return dict(
        required_together=[["access_key", "secret_key"]],
        mutually_exclusive=[["profile", "access_key"], ["profile", "secret_key"], ["profile", "session_token"]],
    )
