# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Vault (and OpenBao) HTTP API helpers for the modules of atlasia.dr.

PRIVATE to this collection: names and signatures may change in any release; do not import this file from
outside ``atlasia.dr``.

- :func:`vault_argument_spec` / :func:`resolve_token` / :func:`obtain_token`: the connection options
  documented by the ``atlasia.dr.vault`` doc fragment; :func:`obtain_token` logs in with AppRole
  (``POST auth/<approle_mount>/login``) when no token is given and a role_id/secret_id pair is.
- :class:`VaultClient`: requests through ``ansible.module_utils.urls.Request`` (no third-party library),
  bodies streamed both ways, every failure raised as a :class:`VaultError` whose ``kind`` tells the
  on-call engineer what to fix (sealed, permission denied, invalid token, unreachable, TLS...).
- :func:`inspect_snapshot`: single-pass, constant-memory validation of a raft snapshot (gzip'd tar holding
  ``meta.json``, ``state.bin``, ``SHA256SUMS``...), optionally copying the bytes to a file while they are
  checked, so a download is validated before it takes its final name.
- :func:`write_snapshot` / :func:`read_back_snapshot`: the current cluster's snapshot streamed into a file,
  plain or encrypted in the ``.enc`` format of ``crypto.py`` (the plaintext never touches the disk), and the
  file read back whole (decrypted on the fly) to prove it holds a valid snapshot.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import tarfile
import threading
import time
import urllib.error
import zlib

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request
from ansible.module_utils.basic import env_fallback

from ansible_collections.atlasia.dr.plugins.module_utils import crypto
from ansible_collections.atlasia.dr.plugins.module_utils.checksum import MultiHasher, file_digests

CHUNK_SIZE = 1024 * 1024
USER_AGENT = "atlasia.dr"

# error kinds (the ``error_kind`` key of a failed task)
SEALED = "sealed"
NOT_INITIALIZED = "not_initialized"
PERMISSION_DENIED = "permission_denied"
INVALID_TOKEN = "invalid_token"
MISSING_TOKEN = "missing_token"
NOT_RAFT = "not_raft"
UNREACHABLE = "unreachable"
TLS = "tls"
SEAL_MISMATCH = "seal_mismatch"
STANDBY = "standby"
INVALID_SNAPSHOT = "invalid_snapshot"
HTTP_ERROR = "http_error"
BAD_RESPONSE = "bad_response"
INVALID_ARGUMENT = "invalid_argument"
IO = "io"

#: Members of a raft snapshot archive (Vault 1.x and OpenBao 2.x write these four, in this order).
SNAPSHOT_MEMBERS = ("meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed")
REQUIRED_MEMBERS = ("meta.json", "state.bin")
#: Members read into memory to be parsed; anything larger is not a snapshot's.
SMALL_MEMBER_LIMIT = 1024 * 1024
#: gzip header (10 bytes) + trailer (8 bytes): anything shorter cannot be a snapshot.
GZIP_MIN_SIZE = 18

SNAPSHOT_PATH = "sys/storage/raft/snapshot"
SNAPSHOT_FORCE_PATH = "sys/storage/raft/snapshot-force"


def vault_argument_spec():
    """Connection options (documented by the ``atlasia.dr.vault`` doc fragment)."""
    return dict(
        url=dict(type="str", fallback=(env_fallback, ["VAULT_ADDR"]), aliases=["addr"]),
        token=dict(type="str", no_log=True),
        token_file=dict(type="path"),
        role_id=dict(type="str", no_log=False),
        secret_id=dict(type="str", no_log=True),
        approle_mount=dict(type="str", default="approle"),
        namespace=dict(type="str", fallback=(env_fallback, ["VAULT_NAMESPACE"])),
        ca_cert=dict(type="path", fallback=(env_fallback, ["VAULT_CACERT"])),
        client_cert=dict(type="path"),
        client_key=dict(type="path", no_log=False),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=60),
    )


VAULT_MUTUALLY_EXCLUSIVE = [["token", "token_file"]]
VAULT_REQUIRED_TOGETHER = [["client_cert", "client_key"], ["role_id", "secret_id"]]


class VaultError(Exception):
    """A failure the module reports; ``kind`` is its ``error_kind``."""

    def __init__(self, message, kind=HTTP_ERROR, status=None, errors=None):
        super(VaultError, self).__init__(message)
        self.kind = kind
        self.status = status
        self.errors = list(errors or [])


class SnapshotError(VaultError):
    """The bytes are not a complete, self-consistent raft snapshot."""

    def __init__(self, message):
        super(SnapshotError, self).__init__(message, kind=INVALID_SNAPSHOT)


class _SourceError(Exception):
    """Reading the snapshot's source (socket or file) failed; ``original`` is the exception."""

    def __init__(self, original):
        super(_SourceError, self).__init__(str(original))
        self.original = original


def resolve_token(params, environ=None):
    """Token from O(token), else the first line of O(token_file), else ``VAULT_TOKEN``; ``None`` when none.

    The environment is consulted here rather than through ``env_fallback`` so that a ``VAULT_TOKEN`` in the
    controller's environment never conflicts with an explicit O(token_file).
    """
    environ = os.environ if environ is None else environ
    if params.get("token"):
        return params["token"].strip()
    if params.get("token_file"):
        try:
            with open(params["token_file"], "r") as handle:
                token = handle.read().strip()
        except (IOError, OSError) as exc:
            raise VaultError("cannot read token_file %s: %s" % (params["token_file"], exc), kind=MISSING_TOKEN)
        if not token:
            raise VaultError("token_file %s is empty" % params["token_file"], kind=MISSING_TOKEN)
        return token
    token = (environ.get("VAULT_TOKEN") or "").strip()
    return token or None


def approle_login(client, role_id, secret_id, mount="approle"):
    """Log in with AppRole (``POST auth/<mount>/login``); returns the client token of the login.

    Raises :class:`VaultError` with kind ``invalid_token`` when Vault refuses the role_id/secret_id pair.
    """
    mount = (mount or "approle").strip("/")
    try:
        answer = client.json("POST", "auth/%s/login" % mount, body=dict(role_id=role_id, secret_id=secret_id),
                             auth=False)
    except VaultError as exc:
        if exc.kind in (PERMISSION_DENIED, HTTP_ERROR) and exc.status in (400, 403):
            raise VaultError("AppRole login at auth/%s/login refused (%s): check role_id and secret_id, and that AppRole is enabled "
                             "at auth/%s (a secret_id can expire or be used up: generate a new one with bao/vault write -f auth/%s/role/"
                             "<role>/secret-id)" % (mount, "; ".join(exc.errors) or exc, mount, mount),
                             kind=INVALID_TOKEN, status=exc.status, errors=exc.errors)
        if exc.status == 404 or (exc.kind == HTTP_ERROR and "no handler" in str(exc).lower()):
            raise VaultError("no AppRole auth method at auth/%s: enable it (bao/vault auth enable approle) or set "
                             "approle_mount" % mount, kind=INVALID_ARGUMENT, status=exc.status, errors=exc.errors)
        raise
    token = ((answer or {}).get("auth") or {}).get("client_token")
    if not token:
        raise VaultError("AppRole login at auth/%s/login answered no client_token" % mount, kind=BAD_RESPONSE)
    return token


def obtain_token(params, client, environ=None):
    """The token to use: O(token), O(token_file), else an AppRole login with O(role_id)/O(secret_id), else
    ``VAULT_TOKEN``; ``None`` when there is none. ``client`` (a :class:`VaultClient`) does the login."""
    environ = os.environ if environ is None else environ
    if params.get("token") or params.get("token_file"):
        return resolve_token(params, environ)
    if params.get("role_id") or params.get("secret_id"):
        if not (params.get("role_id") and params.get("secret_id")):
            raise VaultError("AppRole login needs both role_id and secret_id", kind=MISSING_TOKEN)
        return approle_login(client, params["role_id"], params["secret_id"], params.get("approle_mount"))
    return resolve_token(params, environ)


def clean_errors(errors):
    """Vault's ``errors`` list, with the ``1 error occurred:\\n\\t* ...`` wrapping of go-multierror removed."""
    cleaned = []
    for text in errors or []:
        text = str(text)
        items = re.findall(r"^\s*\*\s*(.+?)\s*$", text, re.MULTILINE)
        if items and re.match(r"^\s*\d+ errors? occurred", text):
            cleaned.extend(items)
        elif text.strip():
            cleaned.append(text.strip())
    return cleaned


def _decode_errors(body):
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return [text[:500]] if text else []
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        return clean_errors(data["errors"])
    return []


def classify_http_error(status, errors, path, method="GET", url=""):
    """:class:`VaultError` for an HTTP error answer of Vault (before any 403 refinement)."""
    text = "; ".join(errors) if errors else "no error message"
    lowered = text.lower()
    where = "%s %s" % (method, path)
    if status == 503 and "sealed" in lowered:
        return VaultError("Vault at %s is sealed: unseal it (bao/vault operator unseal) and retry" % url,
                          kind=SEALED, status=status, errors=errors)
    if status == 501 or "not initialized" in lowered or "not yet initialized" in lowered:
        return VaultError("Vault at %s is not initialized" % url, kind=NOT_INITIALIZED, status=status,
                          errors=errors)
    if status == 403:
        return VaultError("permission denied for %s: %s" % (where, text), kind=PERMISSION_DENIED,
                          status=status, errors=errors)
    if status == 400 and "missing client token" in lowered:
        return VaultError("Vault answered 'missing client token': set token, token_file or VAULT_TOKEN",
                          kind=MISSING_TOKEN, status=status, errors=errors)
    if status == 400 and ("unseal keys" in lowered or "could not verify hash file" in lowered):
        return VaultError("Vault refused the snapshot (%s). The snapshot comes from another cluster (or another "
                          "set of unseal keys): restore it with force=true, then unseal with the ORIGINAL "
                          "cluster's unseal keys" % text, kind=SEAL_MISMATCH, status=status, errors=errors)
    if status == 400 and "http request to an https server" in lowered:
        return VaultError("%s speaks HTTPS: use an https:// url" % url, kind=TLS, status=status, errors=errors)
    if status == 404 and path.startswith("sys/storage/raft"):
        return VaultError("%s answered 404 (%s): Vault does not use integrated (raft) storage, so it has no raft "
                          "snapshots; back up its storage backend instead" % (where, text), kind=NOT_RAFT,
                          status=status, errors=errors)
    if status in (301, 302, 303, 307, 308):
        return VaultError("%s was redirected (HTTP %s): the node is a standby; point url at the active node"
                          % (where, status), kind=STANDBY, status=status, errors=errors)
    if status == 429:
        return VaultError("%s: the node is an unsealed standby (HTTP 429): point url at the active node" % where,
                          kind=STANDBY, status=status, errors=errors)
    return VaultError("%s failed with HTTP %s: %s" % (where, status, text), kind=HTTP_ERROR, status=status,
                      errors=errors)


def _reason_chain(exc):
    seen = []
    current = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = getattr(current, "reason", None) if isinstance(current, urllib.error.URLError) else (
            current.__cause__ or current.__context__)
    return seen


def classify_transport_error(exc, url, timeout):
    """:class:`VaultError` for a failure below HTTP (refused, timed out, TLS, DNS...)."""
    chain = _reason_chain(exc)
    for item in chain:
        if isinstance(item, (ssl.SSLError, ssl.CertificateError)) or (
                isinstance(item, UrlsConnectionError) and "ssl" in str(item).lower()):
            detail = getattr(item, "verify_message", None) or getattr(item, "reason", None) or str(item)
            hint = ""
            if "WRONG_VERSION_NUMBER" in str(item) or "wrong version number" in str(item).lower():
                hint = " (the server does not speak TLS there: use an http:// url?)"
            elif "CERTIFICATE_VERIFY_FAILED" in str(item) or "verify" in str(detail).lower():
                hint = " (set ca_cert to the CA that signed Vault's certificate)"
            return VaultError("TLS failure talking to %s: %s%s" % (url, detail, hint), kind=TLS)
    for item in chain:
        if isinstance(item, (socket.timeout, TimeoutError)):
            return VaultError("Vault at %s did not answer within %s s (timeout)" % (url, timeout), kind=UNREACHABLE)
        if isinstance(item, ConnectionRefusedError):
            return VaultError("cannot connect to Vault at %s: connection refused (is it running? is url right?)"
                              % url, kind=UNREACHABLE)
        if isinstance(item, socket.gaierror):
            return VaultError("cannot resolve the host of %s: %s" % (url, item), kind=UNREACHABLE)
        if isinstance(item, (ConnectionError, http.client.HTTPException)):
            return VaultError("connection to Vault at %s failed: %s" % (url, item), kind=UNREACHABLE)
    if isinstance(exc, (ValueError, http.client.InvalidURL)):
        return VaultError("invalid url %r: %s" % (url, exc), kind=INVALID_ARGUMENT)
    return VaultError("cannot reach Vault at %s: %s" % (url, exc), kind=UNREACHABLE)


class VaultClient(object):
    """Minimal Vault HTTP API client: the requests the DR modules need, classified errors, streamed bodies."""

    def __init__(self, url, token=None, namespace=None, ca_cert=None, client_cert=None, client_key=None,
                 validate_certs=True, timeout=60, request=None):
        if not url:
            raise VaultError("no Vault address: set url (or VAULT_ADDR)", kind=INVALID_ARGUMENT)
        if not re.match(r"^https?://", url):
            raise VaultError("url %r must start with http:// or https://" % url, kind=INVALID_ARGUMENT)
        self.url = url.rstrip("/")
        self.token = token
        self.namespace = namespace
        self.timeout = timeout
        self._request = request or Request(
            http_agent=USER_AGENT, timeout=timeout, validate_certs=validate_certs, ca_path=ca_cert,
            client_cert=client_cert, client_key=client_key, decompress=False, use_netrc=False)

    @classmethod
    def from_params(cls, params, token=None):
        return cls(params["url"], token=token, namespace=params.get("namespace"), ca_cert=params.get("ca_cert"),
                   client_cert=params.get("client_cert"), client_key=params.get("client_key"),
                   validate_certs=params.get("validate_certs", True), timeout=params.get("timeout") or 60)

    def _headers(self, auth=True, extra=None):
        headers = {"X-Vault-Request": "true"}
        if auth and self.token:
            headers["X-Vault-Token"] = self.token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        headers.update(extra or {})
        return headers

    def open(self, method, path, data=None, auth=True, headers=None, timeout=None, ok=(200, 204),
             follow_redirects="safe", refine=True):
        """Send a request; returns the open response (caller reads and closes it).

        Raises :class:`VaultError`: HTTP answers outside ``ok`` are classified (a 403 on an authenticated
        request is refined into ``invalid_token`` or ``permission_denied`` by a token self-lookup).
        """
        url = "%s/v1/%s" % (self.url, path.lstrip("/"))
        timeout = self.timeout if timeout is None else timeout
        try:
            response = self._request.open(method, url, data=data, headers=self._headers(auth, headers),
                                          timeout=timeout, follow_redirects=follow_redirects)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                body = exc.read(65536) if exc.fp is not None else b""
            except (OSError, http.client.HTTPException, ValueError):
                body = b""
            finally:
                exc.close()
            if status in ok:  # urllib raises for some codes a caller may accept (e.g. 429 from sys/health)
                return _BufferedResponse(status, body)
            error = classify_http_error(status, _decode_errors(body), path, method, self.url)
            if error.kind == PERMISSION_DENIED and auth and refine:
                error = self._refine_403(error, path, method)
            raise error
        except (urllib.error.URLError, UrlsConnectionError, OSError, http.client.HTTPException, ValueError) as exc:
            raise classify_transport_error(exc, self.url, timeout)
        status = response.getcode() or response.status
        if status not in ok:
            body = response.read(65536)
            response.close()
            raise classify_http_error(status, _decode_errors(body), path, method, self.url)
        return response

    def _refine_403(self, error, path, method):
        """Tell an unusable token from a valid token that lacks a policy."""
        if not self.token:
            return VaultError("Vault denied %s %s: no token given (set token, token_file or VAULT_TOKEN)"
                              % (method, path), kind=MISSING_TOKEN, status=403, errors=error.errors)
        try:
            info = self.json("GET", "auth/token/lookup-self", refine=False)
        except VaultError as exc:
            if exc.kind == PERMISSION_DENIED:
                return VaultError("Vault rejected the token (403 permission denied, and the token cannot look "
                                  "itself up): it is invalid, expired or revoked; give a valid token",
                                  kind=INVALID_TOKEN, status=403, errors=error.errors)
            return error
        data = info.get("data") or {}
        policies = ", ".join(data.get("policies") or []) or "none"
        return VaultError("permission denied: the token (policies: %s) may not %s %s; it needs a policy granting "
                          "%s on that path" % (policies, method, path,
                                               "'read'" if method == "GET" else "'update'"),
                          kind=PERMISSION_DENIED, status=403, errors=error.errors)

    def json(self, method, path, body=None, auth=True, timeout=None, ok=(200, 204), refine=True):
        """Request with an optional JSON body; returns the decoded JSON answer (``{}`` for 204)."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        response = self.open(method, path, data=data, auth=auth, headers=headers, timeout=timeout, ok=ok,
                             refine=refine)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise classify_transport_error(exc, self.url, self.timeout if timeout is None else timeout)
        finally:
            response.close()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise VaultError("%s %s answered something that is not JSON: %r" % (method, path, raw[:200]),
                             kind=BAD_RESPONSE)

    # -- the requests the modules need -------------------------------------------------------------------

    def seal_status(self, timeout=None):
        """``sys/seal-status`` (unauthenticated): sealed, initialized, version, storage_type..."""
        return self.json("GET", "sys/seal-status", auth=False, timeout=timeout)

    def health(self, timeout=None):
        """``(status_code, body)`` of ``sys/health``; every documented code is an answer, not an error."""
        response = self.open("GET", "sys/health", auth=False, timeout=timeout,
                             ok=(200, 429, 472, 473, 501, 503, 530))
        try:
            raw = response.read()
        finally:
            response.close()
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except ValueError:
            body = {}
        return getattr(response, "status", None) or response.getcode(), body

    def preflight(self):
        """Check Vault answers, is initialized, unsealed and uses raft storage; returns the seal status."""
        status = self.seal_status()
        if not status.get("initialized", True):
            raise VaultError("Vault at %s is not initialized" % self.url, kind=NOT_INITIALIZED)
        if status.get("sealed"):
            raise VaultError("Vault at %s is sealed: unseal it (bao/vault operator unseal) and retry" % self.url,
                             kind=SEALED)
        storage = status.get("storage_type")
        if storage and storage != "raft":
            raise VaultError("Vault at %s uses the '%s' storage backend, not integrated (raft) storage: raft "
                             "snapshots do not exist there; back up that storage backend instead"
                             % (self.url, storage), kind=NOT_RAFT)
        return status

    def check_capabilities(self, path, needed):
        """Raise ``permission_denied`` unless the token has every capability in ``needed`` on ``path``.

        An invalid token fails here (``invalid_token``). A valid token that may not query its own
        capabilities (no ``default`` policy) is not judged: ``None`` is returned.
        """
        try:
            answer = self.json("POST", "sys/capabilities-self", body={"paths": [path]})
        except VaultError as exc:
            if exc.kind == PERMISSION_DENIED:
                return None
            raise
        caps = answer.get(path) or (answer.get("data") or {}).get(path) or answer.get("capabilities") or []
        if "root" in caps:
            return caps
        missing = [cap for cap in needed if cap not in caps]
        if missing:
            raise VaultError("permission denied: the token lacks %s on %s (it has: %s)"
                             % (", ".join(missing), path, ", ".join(caps) or "nothing"), kind=PERMISSION_DENIED)
        return caps

    def raft_state(self):
        """Leader, last index and term from ``sys/storage/raft/autopilot/state``; ``{}`` when not readable."""
        try:
            data = self.json("GET", "sys/storage/raft/autopilot/state", refine=False).get("data") or {}
        except VaultError:
            return {}
        leader = data.get("leader")
        server = (data.get("servers") or {}).get(leader) or {}
        return dict(leader=leader, last_index=server.get("last_index"), last_term=server.get("last_term"),
                    voters=data.get("voters"), healthy=data.get("healthy"))

    def save_snapshot(self, sink):
        """Stream ``GET sys/storage/raft/snapshot`` into ``sink`` while validating it (see :func:`inspect_snapshot`)."""
        response = self.open("GET", SNAPSHOT_PATH)
        try:
            return inspect_snapshot(response, sink)
        finally:
            response.close()

    def restore_snapshot(self, handle, size, force=False):
        """POST the snapshot file ``handle`` (``size`` bytes), streamed, to the restore endpoint."""
        path = SNAPSHOT_FORCE_PATH if force else SNAPSHOT_PATH
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        response = self.open("POST", path, data=handle, headers=headers, follow_redirects="none")
        try:
            response.read()
        except (OSError, http.client.HTTPException):
            pass  # the status line said success; a body lost afterwards does not undo the restore
        finally:
            response.close()
        return path

    def activation(self, timeout=None):
        """``(active_time, raft_applied_index)`` from ``sys/leader`` (unauthenticated), ``None`` when the node does
        not say (sealed, not HA, an older server or an error): what :meth:`wait_until_answering` compares to tell
        that a restore was installed."""
        try:
            leader = self.json("GET", "sys/leader", auth=False, timeout=timeout)
        except VaultError:
            return None
        if not isinstance(leader, dict) or not leader.get("is_self"):
            return None
        active_time, index = leader.get("active_time"), leader.get("raft_applied_index")
        if not active_time and not isinstance(index, int):
            return None
        return (active_time or None, index if isinstance(index, int) else None)

    @staticmethod
    def _installed(before, now):
        """Whether ``now`` (an :meth:`activation`) shows the node went through a restore since ``before``: it
        became active again (a new ``active_time``: installing a snapshot re-runs the node's activation), or, when
        the server gives no activation time, its raft index moved past the one before the restore."""
        if before is None or now is None:
            return False
        if before[0] and now[0]:
            return now[0] != before[0]
        return before[1] is not None and now[1] is not None and now[1] > before[1]

    def wait_until_answering(self, wait_timeout, interval=0.5, settle=2.0, before=None):
        """Poll until Vault answers steadily after a restore; returns ``(seal status, how)``, ``how`` being
        ``activation`` (the node reported a new activation) or ``steady`` (the same answer for ``settle`` seconds).

        "Answering" is a seal status, and for an unsealed node a ``sys/health`` that reports an active node
        (200) or a standby (429/473). The restore endpoint answers before the snapshot is installed: the node
        first reports its previous state, then stops answering while it installs the snapshot (OpenBao 2.7
        pauses about 5.5 s there), and a node restored with ``snapshot-force`` from another cluster then seals
        itself. With ``before`` (the node's :meth:`activation` read just before the restore was sent), an active
        node that reports a new activation has installed the snapshot: the wait ends there. Otherwise (sealed,
        standby, or a server that says nothing of its activation) the same state must hold for ``settle`` seconds.
        """
        deadline = time.monotonic() + wait_timeout
        last_error = None
        steady_since = None
        last_state = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            per_request = max(0.5, min(self.timeout, remaining))
            try:
                status = self.seal_status(timeout=per_request)
                state = ("sealed",) if status.get("sealed") else None
                if state is None:
                    code, dummy = self.health(timeout=per_request)
                    state = ("unsealed", code) if code in (200, 429, 473) else None
                    last_error = None if state else "sys/health answered %s" % code
                    if code == 200 and before is not None and self._installed(before, self.activation(per_request)):
                        return status, "activation"
                if state is not None:
                    if state != last_state:
                        last_state, steady_since = state, time.monotonic()
                    elif time.monotonic() - steady_since >= settle:
                        return status, "steady"
                else:
                    last_state = None
            except VaultError as exc:
                last_error = str(exc)
                last_state = None
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        raise VaultError("Vault at %s did not answer steadily within wait_timeout=%s s after the restore%s"
                         % (self.url, wait_timeout, (": %s" % last_error) if last_error else ""),
                         kind=UNREACHABLE)


class _BufferedResponse(object):
    """Stand-in response for an HTTP error code that the caller accepts."""

    def __init__(self, status, body):
        self.status = status
        self._body = body

    def getcode(self):
        return self.status

    def read(self, size=-1):
        if size is None or size < 0:
            data, self._body = self._body, b""
        else:
            data, self._body = self._body[:size], self._body[size:]
        return data

    def close(self):
        self._body = b""


# -- snapshot archives -------------------------------------------------------------------------------------


class _TeeReader(object):
    """``read()`` from ``source``; every byte is hashed and written to ``sink`` on the way."""

    def __init__(self, source, sink=None, hasher=None):
        self._source = source
        self._sink = sink
        self.hasher = hasher or MultiHasher()
        self.eof = False

    def read(self, size=CHUNK_SIZE):
        if self.eof:
            return b""
        try:
            data = self._source.read(size)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _SourceError(exc)
        if not data:
            self.eof = True
            return b""
        self.hasher.update(data)
        if self._sink is not None:
            self._sink.write(data)
        return data


class _GunzipReader(object):
    """Decompresses a gzip stream; zlib checks the trailer (CRC-32 and length); output bounded per read."""

    def __init__(self, raw):
        self._raw = raw
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.size = 0
        self._started = False

    def read(self, size=-1):
        if size is None or size <= 0:
            size = CHUNK_SIZE
        while not self._z.eof:
            compressed = self._z.unconsumed_tail
            if not compressed:
                compressed = self._raw.read(CHUNK_SIZE)
                if not compressed:
                    raise SnapshotError("the gzip stream ends early: the snapshot is truncated")
            if not self._started:
                self._started = True
                if compressed[:2] != b"\x1f\x8b":
                    raise SnapshotError("not gzip data (starts with %r): not a raft snapshot" % (compressed[:16],))
            try:
                out = self._z.decompress(compressed, size)
            except zlib.error as exc:
                raise SnapshotError("corrupt gzip data (%s): the snapshot is damaged" % exc)
            if out:
                self.size += len(out)
                return out
        if self._z.unused_data or self._raw.read(CHUNK_SIZE):
            raise SnapshotError("unexpected data after the end of the gzip stream")
        return b""


def _parse_sha256sums(text):
    sums = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = re.match(r"^([0-9a-fA-F]{64})\s+\*?(.+)$", line)
        if not match:
            raise SnapshotError("malformed line in the archive's SHA256SUMS: %r" % line[:120])
        sums[match.group(2)] = match.group(1).lower()
    return sums


def inspect_snapshot(source, sink=None, require=REQUIRED_MEMBERS):
    """Read a whole raft snapshot from ``source`` (``read(n)``), validate it, optionally copy it to ``sink``.

    Checks, in one pass and constant memory: gzip framing and CRC, a readable tar whose members are regular
    files with plain names, the ``require``'d members, ``meta.json`` as JSON, and every digest listed in the
    archive's ``SHA256SUMS`` (``SHA256SUMS.sealed`` is Vault's seal-wrapped copy and can only be checked by
    Vault). Raises :class:`SnapshotError`, or :class:`VaultError` when reading ``source`` fails.

    Returns a dict: ``size``, ``digests`` (md5/sha256 of the file), ``members`` (name, size, sha256),
    ``meta`` (raft ``index``, ``term``, ``configuration_index``, ``servers``), ``sha256sums``
    (``verified`` or ``absent``), ``unknown_members``.
    """
    tee = _TeeReader(source, sink)
    gunzip = _GunzipReader(tee)
    members = []
    small = {}
    try:
        try:
            archive = tarfile.open(fileobj=gunzip, mode="r|")
        except (tarfile.TarError, EOFError) as exc:
            _raise_short(tee, "not a tar archive inside the gzip stream (%s)" % exc)
        with archive:
            for member in archive:
                name = member.name
                if not member.isfile():
                    raise SnapshotError("unexpected archive member %r (type %r): not a raft snapshot"
                                        % (name, member.type))
                if "/" in name or name in ("", ".", ".."):
                    raise SnapshotError("unexpected archive member path %r: not a raft snapshot" % name)
                if any(item["name"] == name for item in members):
                    raise SnapshotError("archive member %r appears twice" % name)
                digest = hashlib.sha256()
                keep = name in ("meta.json", "SHA256SUMS")
                kept = []
                handle = archive.extractfile(member)
                read = 0
                while True:
                    block = handle.read(CHUNK_SIZE)
                    if not block:
                        break
                    read += len(block)
                    digest.update(block)
                    if keep:
                        if read > SMALL_MEMBER_LIMIT:
                            raise SnapshotError("archive member %s is too large (%d bytes)" % (name, member.size))
                        kept.append(block)
                if read != member.size:
                    raise SnapshotError("archive member %s is truncated (%d of %d bytes)" % (name, read, member.size))
                if keep:
                    small[name] = b"".join(kept)
                members.append(dict(name=name, size=member.size, sha256=digest.hexdigest()))
        # the tar ended: the rest of the gzip stream (tar padding) must be zeros, then the gzip trailer
        while True:
            block = gunzip.read(CHUNK_SIZE)
            if not block:
                break
            if block.strip(b"\0"):
                raise SnapshotError("unexpected data after the end of the tar archive")
    except _SourceError as exc:
        network = isinstance(exc.original, (socket.timeout, ConnectionError, http.client.HTTPException))
        raise VaultError("reading the snapshot failed after %d bytes: %s" % (tee.hasher.size, exc.original),
                         kind=UNREACHABLE if network else IO)
    except SnapshotError as exc:
        _raise_short(tee, str(exc))
    except (tarfile.TarError, EOFError) as exc:
        _raise_short(tee, "the tar archive inside is damaged (%s)" % exc)

    names = [item["name"] for item in members]
    missing = [name for name in require if name not in names]
    if missing:
        raise SnapshotError("the archive lacks %s (members: %s): not a raft snapshot"
                            % (", ".join(missing), ", ".join(names) or "none"))
    meta = {}
    if "meta.json" in small:
        try:
            meta_doc = json.loads(small["meta.json"].decode("utf-8"))
        except ValueError as exc:
            raise SnapshotError("meta.json in the archive is not valid JSON (%s)" % exc)
        if not isinstance(meta_doc, dict):
            raise SnapshotError("meta.json in the archive is not a JSON object")
        servers = ((meta_doc.get("Configuration") or {}).get("Servers")) or []
        meta = dict(index=meta_doc.get("Index"), term=meta_doc.get("Term"), id=meta_doc.get("ID"),
                    version=meta_doc.get("Version"), configuration_index=meta_doc.get("ConfigurationIndex"),
                    state_size=meta_doc.get("Size"),
                    servers=[dict(id=s.get("ID"), address=s.get("Address")) for s in servers if isinstance(s, dict)])
    by_name = dict((item["name"], item) for item in members)
    if "state.bin" in by_name and isinstance(meta.get("state_size"), int) and \
            meta["state_size"] != by_name["state.bin"]["size"]:
        raise SnapshotError("state.bin holds %d bytes but meta.json says %d: the snapshot is damaged"
                            % (by_name["state.bin"]["size"], meta["state_size"]))
    sums_state = "absent"
    if "SHA256SUMS" in small:
        sums = _parse_sha256sums(small["SHA256SUMS"].decode("utf-8", "replace"))
        for name, expected in sorted(sums.items()):
            if name not in by_name:
                raise SnapshotError("SHA256SUMS lists %s, which the archive lacks" % name)
            if by_name[name]["sha256"] != expected:
                raise SnapshotError("SHA-256 of %s inside the archive is %s but SHA256SUMS says %s: the snapshot is "
                                    "damaged" % (name, by_name[name]["sha256"], expected))
        for name in require:
            if name not in sums:
                raise SnapshotError("SHA256SUMS does not list %s" % name)
        sums_state = "verified"
    return dict(
        size=tee.hasher.size,
        digests=tee.hasher.hexdigests(),
        uncompressed_size=gunzip.size,
        members=members,
        meta=meta,
        sha256sums=sums_state,
        unknown_members=[name for name in names if name not in SNAPSHOT_MEMBERS],
    )


def _raise_short(tee, message):
    """Prefer 'empty' / 'too short' over a decoder's message when the input is that small."""
    while not tee.eof and tee.hasher.size < GZIP_MIN_SIZE:
        if not tee.read(GZIP_MIN_SIZE):
            break
    if tee.eof and tee.hasher.size == 0:
        raise SnapshotError("the snapshot is empty (0 bytes); Vault can answer an empty body instead of an error "
                            "(hashicorp/vault#9650)")
    if tee.eof and tee.hasher.size < GZIP_MIN_SIZE:
        raise SnapshotError("the snapshot is only %d bytes, shorter than a gzip header and trailer"
                            % tee.hasher.size)
    raise SnapshotError(message)


# -- snapshot files, plain or encrypted -------------------------------------------------------------------------


def _through_pipe(produce, consume):
    """Run ``produce(write_handle)`` in a thread and ``consume(read_handle)`` here, joined by a pipe.

    Returns ``(produced, consumed)``. Constant memory: the bytes go through the pipe, never into a buffer or
    onto the disk. When both sides fail, the root cause is raised: the producer's error (the consumer then
    saw a stream that ended early), unless the producer only failed because the consumer had stopped reading
    (broken pipe).
    """
    read_fd, write_fd = os.pipe()
    outcome = {}

    def run():
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                outcome["value"] = produce(pipe)
        except BaseException as exc:  # raised in the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe:  # closed before the join: a blocked producer gets EPIPE
            consumed = consume(pipe)
    except BaseException as exc:
        worker.join()
        error = outcome.get("error")
        if error is not None and not isinstance(error, BrokenPipeError):
            raise error from exc
        raise
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value"), consumed


def write_snapshot(client, handle, passphrase=None, chunk_size=crypto.DEFAULT_CHUNK):
    """Stream the current cluster's snapshot into the binary file ``handle``, validated while it streams.

    With ``passphrase`` the bytes are encrypted on the way (``crypto.encrypt_stream``, the ``.enc`` format
    that ``atlasia.dr.dr_crypt`` reads), so the plaintext is never written. Returns ``(info, written)``:
    ``info`` is :func:`inspect_snapshot`'s description of the snapshot itself (plaintext size and digests,
    members, raft meta), ``written`` the ``size`` and ``digests`` of the bytes in ``handle``.
    Raises :class:`VaultError` (or ``OSError`` when writing fails).
    """
    if not passphrase:
        info = client.save_snapshot(handle)
        return info, dict(size=info["size"], digests=dict(info["digests"]))
    hasher = MultiHasher()

    def sink(block):
        hasher.update(block)
        handle.write(block)

    info, dummy = _through_pipe(client.save_snapshot,
                                lambda pipe: crypto.encrypt_stream(pipe, sink, passphrase, chunk_size))
    return info, dict(size=hasher.size, digests=hasher.hexdigests())


def read_back_snapshot(path, passphrase=None):
    """Read a snapshot file written by :func:`write_snapshot` back whole and validate the snapshot in it.

    An encrypted file is decrypted on the fly (a wrong key or a damaged chunk raises ``crypto.CryptoError``).
    Returns ``(info, digests)``: :func:`inspect_snapshot`'s description of the (plaintext) snapshot and the
    digests of the file as it is on disk. Raises :class:`SnapshotError` when the content is not a valid
    snapshot.
    """
    digests, dummy = file_digests(path)
    with open(path, "rb") as handle:
        if not passphrase:
            return inspect_snapshot(handle), digests
        dummy, info = _through_pipe(lambda pipe: crypto.decrypt_stream(handle, pipe.write, passphrase),
                                    inspect_snapshot)
    return info, digests
