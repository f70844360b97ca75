# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Connection options of the atlasia.dr S3 modules (``module_utils.s3.s3_argument_spec``)."""

    DOCUMENTATION = r"""
options:
  bucket:
    description:
      - Name of the S3 bucket.
    type: str
    required: true
  endpoint_url:
    description:
      - URL of an S3-compatible endpoint (MinIO, SeaweedFS, Ceph RGW...), for example C(https://s3.example.org).
      - Leave unset for AWS S3.
      - The E(AWS_ENDPOINT_URL_S3) or E(AWS_ENDPOINT_URL) environment variables are used when this is not set.
    type: str
    aliases: [aws_endpoint_url]
  region:
    description:
      - AWS region of the bucket.
      - Defaults to boto3's configuration (E(AWS_REGION), E(AWS_DEFAULT_REGION), C(~/.aws/config)); with
        O(endpoint_url) and no region configured, C(us-east-1) is used for request signing.
    type: str
    aliases: [aws_region]
  access_key:
    description:
      - Access key ID.
      - When neither O(access_key) nor O(profile) is set, boto3's credential chain applies (environment,
        shared credentials file, instance or task role).
    type: str
    aliases: [aws_access_key, aws_access_key_id]
  secret_key:
    description:
      - Secret access key. Required with O(access_key).
    type: str
    aliases: [aws_secret_key, aws_secret_access_key]
  session_token:
    description:
      - Session token of temporary (STS) credentials.
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - Named profile of the AWS shared configuration files.
      - Mutually exclusive with O(access_key), O(secret_key) and O(session_token).
    type: str
    aliases: [aws_profile]
  validate_certs:
    description:
      - Verify the endpoint's TLS certificate. Setting this to V(false) is strongly discouraged.
    type: bool
    default: true
  ca_bundle:
    description:
      - PEM file of the certificate authorities that sign the endpoint's certificate (self-hosted endpoints).
    type: path
  checksum_calculation:
    description:
      - When the SDK adds its own CRC checksums to requests and checks them in responses. Unset, the SDK's default
        (V(when_supported) in current botocore).
      - V(when_required) for S3-compatible servers that refuse the SDK's checksum trailers (for example
        C(InvalidAccessKeyId) on C(PutObject) over HTTPS). The backups' integrity does not depend on it, as
        every object carries our own SHA-256, checked end to end.
    type: str
    choices: [when_supported, when_required]
  addressing_style:
    description:
      - How the bucket name is put in request URLs. V(path) suits most self-hosted S3-compatible servers
        reached by a host name; V(auto) lets botocore choose (virtual-hosted on AWS, path style for IP addresses).
    type: str
    choices: [auto, path, virtual]
    default: auto
  timeout:
    description:
      - Seconds the endpoint may take. An unreachable endpoint fails after about this long in total (the
        connect timeout is O(timeout) divided by O(max_attempts)); each response or chunk read may take up
        to O(timeout) seconds.
    type: int
    default: 60
  max_attempts:
    description:
      - Attempts per request, the first included (botocore C(standard) retry mode, with backoff), for
        throttling, 5xx answers and connection errors.
    type: int
    default: 3
requirements:
  - boto3 >= 1.26.0
  - botocore >= 1.29.0
notes:
  - Credentials given as options are never logged (C(no_log)); prefer the credential chain or Ansible Vault.
"""
