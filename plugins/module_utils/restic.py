# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""restic, the deduplicating repository of the file components (uploads, plugins, logs): the one place that
runs it.

- Every call is an argument list (``run(argv, environ_update=..., cwd=...)``, the signature of
  ``AnsibleModule.run_command``, or :func:`subprocess_runner` outside a module); ``--json`` output is parsed.
- Secrets travel in the environment, never on the command line: ``RESTIC_PASSWORD`` (the repository
  password), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``. Any
  ``RESTIC_PASSWORD_FILE`` / ``RESTIC_PASSWORD_COMMAND`` / ``RESTIC_REPOSITORY*`` of the caller's environment is
  blanked, so the repository and password used are exactly the ones given.
- The repository is a local directory or ``s3:<endpoint>/<bucket>/<prefix>`` (:func:`repository_location`).
- The repository password is derived from the environment's secret (the encryption passphrase of the sets,
  :func:`repository_password`): the same secret opens the repository on a fresh host, and the passphrase
  itself is never handed to another program.
- Failures raise :class:`ResticError` with a ``kind`` (``password``, ``missing``, ``locked``, ``credentials``,
  ``bucket``, ``unreachable``, ``space``, ``damaged``, ``restic``) and a message saying what to do.

restic 0.14 (Debian 12) is the oldest version this is written for: its exit status is 1 for every fatal
error, so the kind is read from the message on stderr.

Light keys (:func:`make_key_file`, :meth:`Restic.lighten`): ``restic init`` and ``restic key add`` wrap the master key
with scrypt parameters calibrated to cost about half a second of CPU, and restic pays it on every run. That cost
protects a password a person chose; this password is an HMAC-SHA256 output (256 bits of the environment's secret),
which no work factor makes stronger. So the key this password opens is rewritten once with scrypt N=2^14, r=8, p=1
(:data:`LIGHT_KDF`, a few milliseconds), in the key-file format of restic's design document (scrypt derives 64
bytes: AES-256-CTR key, then the Poly1305-AES key ``k`` and ``r``; ``data`` is IV, ciphertext and MAC), and
restic itself must open the repository with it before the calibrated key is removed with ``restic key remove``.
"""

from __future__ import annotations

import base64
import datetime
import getpass
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess

from ansible_collections.atlasia.dr.plugins.module_utils import atomic

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.poly1305 import Poly1305
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - depends on the host
    HAS_CRYPTOGRAPHY = False

PASSWORD_LABEL = b"atlasia.dr restic repository password v1"
"""Fixed label of the derivation: changing it changes every repository's password."""

_KEY_NAME = re.compile(r"^[0-9a-f]{64}$")  # a key file's name: the SHA-256 of its content

LIGHT_KDF = {"N": 2 ** 14, "r": 8, "p": 1}
"""scrypt parameters of the keys :meth:`Restic.lighten` writes (see the module's docstring for why)."""

TAG_SET = "set="
TAG_COMPONENT = "component="

_BLANKED = ("RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE",
            "RESTIC_KEY_HINT")
_S3_ENV = (("access_key", "AWS_ACCESS_KEY_ID"), ("secret_key", "AWS_SECRET_ACCESS_KEY"),
           ("session_token", "AWS_SESSION_TOKEN"), ("profile", "AWS_PROFILE"))
_SUBSET = re.compile(r"^(\d+/\d+|\d+(\.\d+)?%|\d+[KMGT]?)$")


class ResticError(Exception):
    """restic failed; ``kind`` says how, ``msg`` what to do, ``rc`` / ``stderr`` what restic said."""

    def __init__(self, msg, kind="restic", rc=None, stderr=""):
        super(ResticError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.rc = rc
        self.stderr = stderr


# (pattern on stderr, kind, advice). The first match wins: a lock message also names the repository.
_PROBLEMS = (
    (re.compile(r"wrong password or no key found", re.I), "password",
     "the repository password does not open {repo}: the repository password is derived from the environment's "
     "encryption key (dr_encryption_key); give the key the repository was created with"),
    (re.compile(r"repository is already locked|unable to create lock", re.I), "locked",
     "{repo} is locked by another restic run ({detail}): wait for it to finish; if that run is dead (host "
     "rebooted, process killed), remove its stale lock with `restic -r {repo} unlock` and run again"),
    (re.compile(r"NoSuchBucket|bucket does not exist", re.I), "bucket",
     "the bucket of {repo} does not exist: create it, or fix bucket/endpoint_url"),
    (re.compile(r"Access Key Id you provided does not exist|InvalidAccessKeyId|AccessDenied|Access Denied|"
                r"SignatureDoesNotMatch|signature we calculated does not match|no credentials|"
                r"Forbidden|status code 403", re.I), "credentials",
     "the S3 endpoint refused the credentials for {repo}: check access_key/secret_key (dr_s3_connection) and that "
     "the bucket policy allows listing, reading, writing and deleting under the prefix"),
    (re.compile(r"connection refused|no such host|i/o timeout|network is unreachable|TLS handshake|"
                r"certificate signed by unknown authority|x509:", re.I), "unreachable",
     "cannot reach the repository {repo} ({detail}): check endpoint_url, the network and TLS settings "
     "(ca_bundle, validate_certs)"),
    (re.compile(r"unable to open config file|Is there a repository at the following location", re.I), "missing",
     "there is no restic repository at {repo}: check the path or bucket/prefix; a first backup creates it "
     "(init: true)"),
    (re.compile(r"no space left on device", re.I), "space",
     "no space left while writing {repo} or restic's cache: free space, or set cache_dir on a larger disk"),
)


def repository_password(secret):
    """The repository password: HMAC-SHA256 of a fixed label under the environment's secret, in hex.

    Deterministic (a fresh host with the same secret opens the repository), one-way (the password does not
    reveal the secret) and separate from the set encryption and set authentication keys, which use their own
    derivations (``crypto``, ``setauth``).
    """
    if not secret:
        raise ResticError("the repository needs the environment's secret (dr_encryption_key) to derive its "
                          "password", kind="request")
    return hmac.new(secret.encode("utf-8"), PASSWORD_LABEL, hashlib.sha256).hexdigest()


def repository_location(path=None, bucket=None, prefix=None, endpoint_url=None, region=None):
    """``path`` (a local directory) or ``s3:<endpoint>/<bucket>/<prefix>``.

    Without ``endpoint_url`` the endpoint is AWS S3 (``s3.<region>.amazonaws.com`` when ``region`` is set).
    """
    if bucket:
        if path:
            raise ResticError("give either a local repository path or an S3 bucket, not both", kind="request")
        if endpoint_url:
            endpoint = endpoint_url.rstrip("/")
        else:
            endpoint = "s3.%s.amazonaws.com" % region if region else "s3.amazonaws.com"
        location = "s3:%s/%s" % (endpoint, bucket)
        prefix = (prefix or "").strip("/")
        return location + "/" + prefix if prefix else location
    if not path:
        raise ResticError("a repository needs a local path or an S3 bucket", kind="request")
    if not os.path.isabs(path):
        raise ResticError("the local repository path must be absolute, got %r" % path, kind="request")
    return path


def s3_settings(params):
    """(environment, global options) of the S3 connection options (``module_utils.s3.s3_argument_spec``)."""
    env = {}
    for option, name in _S3_ENV:
        if params.get(option):
            env[name] = params[option]
    options = []
    if params.get("region"):
        env["AWS_DEFAULT_REGION"] = params["region"]
        options += ["-o", "s3.region=%s" % params["region"]]
    style = params.get("addressing_style") or "auto"
    if style != "auto":
        options += ["-o", "s3.bucket-lookup=%s" % ("path" if style == "path" else "dns")]
    if params.get("validate_certs") is False:
        options.append("--insecure-tls")
    elif params.get("ca_bundle"):
        options += ["--cacert", params["ca_bundle"]]
    return env, options


# --- key files (restic's design document, "Keys, Encryption and MAC") -------------------------------------------
def _derive(password, doc):
    return hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(doc["salt"]), n=int(doc["N"]),
                          r=int(doc["r"]), p=int(doc["p"]), maxmem=2 ** 31 - 1, dklen=64)


def _mac_key(derived, iv):
    """Poly1305's one-time key of restic's Poly1305-AES: ``r``, then AES-128 of the IV under ``k``."""
    encryptor = Cipher(algorithms.AES(derived[32:48]), modes.ECB()).encryptor()  # nosec - one block, the nonce
    return derived[48:64] + encryptor.update(iv) + encryptor.finalize()


def key_is_light(doc):
    """True when a key file's KDF costs no more than :data:`LIGHT_KDF`."""
    try:
        return doc.get("kdf") == "scrypt" and int(doc["N"]) * int(doc["r"]) * int(doc["p"]) <= (
            LIGHT_KDF["N"] * LIGHT_KDF["r"] * LIGHT_KDF["p"])
    except (KeyError, TypeError, ValueError):
        return False


def open_key_file(doc, password):
    """The master key (restic's JSON, bytes) a key file wraps, or None when ``password`` does not open it."""
    if doc.get("kdf") != "scrypt":
        return None
    try:
        derived = _derive(password, doc)
        data = base64.b64decode(doc["data"])
    except (KeyError, TypeError, ValueError):
        return None
    iv, ciphertext, tag = data[:16], data[16:-16], data[-16:]
    if len(iv) != 16 or len(tag) != 16:
        return None
    try:
        Poly1305.verify_tag(_mac_key(derived, iv), ciphertext, tag)
    except InvalidSignature:
        return None
    decryptor = Cipher(algorithms.AES(derived[:32]), modes.CTR(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def make_key_file(password, master_key, kdf=None, username=None, hostname=None):
    """``(id, content)`` of a new key file that ``password`` opens, wrapping ``master_key`` (restic's JSON)."""
    kdf = dict(kdf or LIGHT_KDF)
    doc = {"created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
           "username": username or getpass.getuser(), "hostname": hostname or socket.gethostname(),
           "kdf": "scrypt", "N": kdf["N"], "r": kdf["r"], "p": kdf["p"],
           "salt": base64.b64encode(os.urandom(64)).decode("ascii")}
    derived = _derive(password, doc)
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(master_key) + encryptor.finalize()
    tag = Poly1305.generate_tag(_mac_key(derived, iv), ciphertext)
    doc["data"] = base64.b64encode(iv + ciphertext + tag).decode("ascii")
    content = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(content).hexdigest(), content


class LocalKeys(object):
    """The key files of a local repository (``<repository>/keys/<id>``)."""

    def __init__(self, folder):
        self.folder = os.path.join(folder, "keys")

    def list(self):
        names = sorted(os.listdir(self.folder)) if os.path.isdir(self.folder) else []
        return [name for name in names if _KEY_NAME.match(name)]

    def read(self, key_id):
        with open(os.path.join(self.folder, key_id), "rb") as handle:
            return handle.read()

    def write(self, key_id, content):
        """Written under the project's temporary name in the repository's root (restic reads every file of
        ``keys/``, never a partial key there), then fsynced and renamed into ``keys/``, read-only as restic leaves
        it."""
        with atomic.atomic_file(os.path.join(self.folder, key_id), mode=0o400,
                                temp_dir=os.path.dirname(self.folder)) as handle:
            handle.write(content)

    def delete(self, key_id):
        path = os.path.join(self.folder, key_id)
        if os.path.exists(path):
            os.chmod(path, 0o600)
            os.unlink(path)


class S3Keys(object):
    """The key files of a repository in S3 (``<prefix>/keys/<id>``), through a boto3 client."""

    def __init__(self, client, bucket, prefix):
        self.client = client
        self.bucket = bucket
        self.prefix = ((prefix or "").strip("/") + "/keys/").lstrip("/")

    def list(self):
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents") or []:
                name = item["Key"][len(self.prefix):]
                if _KEY_NAME.match(name):
                    found.append(name)
        return sorted(found)

    def read(self, key_id):
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key_id)["Body"].read()

    def write(self, key_id, content):
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key_id, Body=content)

    def delete(self, key_id):
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key_id)


def subprocess_runner(argv, environ_update=None, cwd=None, check_rc=False, data=None):  # pylint: disable=unused-argument
    """``AnsibleModule.run_command``'s contract with :mod:`subprocess` (scripts and tests)."""
    env = dict(os.environ)
    env.update(environ_update or {})
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False,
                          input=None if data is None else data + "\n")
    return proc.returncode, proc.stdout, proc.stderr


def classify(stderr, repo):
    """(kind, message) of a failed run from what restic wrote on stderr."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("Fatal:")]
    detail = (fatal or lines or ["no message"])[-1]
    if detail.startswith("Fatal: "):
        detail = detail[len("Fatal: "):]
    for pattern, kind, advice in _PROBLEMS:
        if pattern.search(stderr or ""):
            return kind, advice.format(repo=repo, detail=detail)
    return "restic", "restic failed on %s: %s" % (repo, detail)


def json_lines(text):
    """Every JSON object of a ``--json`` output (one per line; other lines are skipped)."""
    found = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def tag_value(snapshot, key):
    """The value of the ``key=`` tag of a snapshot (``set=``, ``component=``), else None."""
    for tag in snapshot.get("tags") or []:
        if tag.startswith(key):
            return tag[len(key):]
    return None


def check_subset(value):
    """``n/t``, ``x%`` or a size (``50M``) for ``check --read-data-subset``; raises on anything else."""
    if value is None or value == "":
        return None
    value = str(value).strip()
    if not _SUBSET.match(value):
        raise ResticError("read_data_subset must be n/t (1/10), a percentage (5%%) or a size (100M), got %r"
                          % value, kind="request")
    return value


class Restic(object):
    """One repository: ``run`` runs restic, ``location`` names the repository, ``password`` opens it."""

    def __init__(self, run, binary, location, password, env=None, options=None, cache_dir=None):
        self.run_command = run
        self.binary = binary
        self.location = location
        self.env = dict((name, "") for name in _BLANKED)
        self.env.update(env or {})
        self.env["RESTIC_PASSWORD"] = password
        if cache_dir:
            self.env["RESTIC_CACHE_DIR"] = cache_dir
        self.options = list(options or [])
        self.commands = []
        self.unlocked = False  # unlock_stale ran

    def argv(self, command, args=(), json_output=True, lock=True):
        options = self.options if lock or "--no-lock" in self.options else self.options + ["--no-lock"]
        argv = [self.binary, "--repo", self.location] + options + [command]
        if json_output:
            argv.append("--json")
        return argv + list(args)

    def run(self, command, args=(), json_output=True, cwd=None, ok=(0,), data=None, lock=True):
        """Run ``restic <command> <args>``; returns ``(rc, out, err)`` or raises :class:`ResticError`.

        ``lock=False`` is for commands that only read (``cat``, ``snapshots``, ``ls``, ``stats``, ``key list``):
        they run with ``--no-lock``. restic 0.14 waits 200 ms after writing a lock before it looks for other
        locks, and in S3 a lock is three more requests; a reader needs none, as what it reads is either there or
        not (a snapshot forgotten meanwhile is an error, never a wrong answer). Backups, restores, checks,
        forgets and prunes keep their locks.
        """
        argv = self.argv(command, args, json_output, lock=lock)
        self.commands.append(argv)
        if data is None:
            rc, out, err = self.run_command(argv, environ_update=self.env, cwd=cwd, check_rc=False)
        else:  # a secret restic reads from its standard input (the password of a new key)
            rc, out, err = self.run_command(argv, environ_update=self.env, cwd=cwd, check_rc=False, data=data)
        if rc not in ok:
            kind, msg = classify(err, self.location)
            if kind == "locked" and command != "unlock" and self.unlock_stale():
                return self.run(command, args, json_output=json_output, cwd=cwd, ok=ok, data=data, lock=lock)
            raise ResticError(msg, kind=kind, rc=rc, stderr=err)
        return rc, out, err

    def unlock_stale(self):
        """Remove the locks restic calls stale, once per instance; True when ``restic unlock`` ran.

        A run killed on this host (SIGKILL, a reboot) leaves its lock, and a later ``forget`` or ``prune`` (which
        lock the repository exclusively) refuses to start. ``restic unlock`` without ``--remove-all`` removes only
        the locks restic itself calls stale: made on this host by a process that no longer exists, or older than
        30 minutes; the lock of a live run, here or on another host, stays and the command is refused as before.
        """
        if self.unlocked:
            return False
        self.unlocked = True
        self.run("unlock", json_output=False)
        return True

    # --- the repository ----------------------------------------------------------------------------------
    def exists(self):
        """True when the repository opens, False when there is none; any other failure raises."""
        try:
            self.run("cat", ["config"], json_output=False, lock=False)
        except ResticError as exc:
            if exc.kind == "missing":
                return False
            raise
        return True

    def init(self):
        self.run("init")

    def with_password(self, password):
        """The same repository opened with another password."""
        other = Restic(self.run_command, self.binary, self.location, password, options=self.options)
        other.env = dict(self.env, RESTIC_PASSWORD=password)
        return other

    def opens(self):
        """True when the password opens the repository, False when it does not (another failure raises)."""
        try:
            self.run("cat", ["config"], json_output=False, lock=False)
        except ResticError as exc:
            if exc.kind == "password":
                return False
            raise
        return True

    def keys(self):
        """The repository's keys (``key list``): id, current (the one this password opens), created..."""
        dummy, out, dummy = self.run("key", ["list"], lock=False)
        return json.loads(out or "[]") or []

    def add_key(self, new_password):
        """Add a key opened by ``new_password`` (given on restic's standard input, never in argv)."""
        self.run("key", ["add"], json_output=False, data=new_password)

    def remove_key(self, key_id):
        self.run("key", ["remove", key_id], json_output=False)

    def lighten(self, store):
        """Rewrite the key this password opens with :data:`LIGHT_KDF`; a list of what was done (empty when
        nothing was to do: then no restic run and no key derivation but the light ones' are made).

        ``store`` lists, reads, writes and deletes the repository's key files (:class:`LocalKeys`,
        :class:`S3Keys`). The light key is written next to the calibrated one, restic must open the repository
        with it (``key list`` with it as the hint names it current), and only then is the calibrated one removed
        by ``restic key remove``; a light key restic does not take is deleted again and the repository keeps its
        keys. Keys other passwords open are left alone. Resumable: a light key of this password written by an
        interrupted run is used as it is."""
        if not HAS_CRYPTOGRAPHY:
            raise ResticError("lightening the repository key needs the Python library cryptography "
                              "(Debian python3-cryptography) on this host", kind="request")
        password = self.env["RESTIC_PASSWORD"]
        docs = {}
        for key_id in store.list():
            try:
                docs[key_id] = json.loads(store.read(key_id).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
        if all(key_is_light(doc) for doc in docs.values()):
            return []
        light, heavy, master = None, [], None
        for key_id, doc in docs.items():
            plain = open_key_file(doc, password)
            if plain is None:
                continue
            master = plain
            if key_is_light(doc):
                light = key_id
            else:
                heavy.append(key_id)
        if not heavy:
            return []
        added = light is None
        if added:
            light, content = make_key_file(password, master)
            store.write(light, content)
        try:
            dummy, out, dummy = self.run("key", ["list", "--key-hint", light], lock=False)
            current = [k.get("id") for k in json.loads(out or "[]") or [] if k.get("current")]
        except (ResticError, ValueError) as exc:
            current = []
            reason = str(exc)
        else:
            reason = "restic opened it with key %s" % ", ".join(current)
        if len(current) != 1 or not current[0] or not light.startswith(current[0]):  # restic 0.14 lists short ids
            if added:
                store.delete(light)
            raise ResticError("the light key written to %s was not taken by restic (%s): it was deleted again and "
                              "the repository keeps its keys" % (self.location, reason))
        done = ["added " + light] if added else []
        for key_id in heavy:
            try:
                self.run("key", ["remove", "--key-hint", light, key_id[:16]], json_output=False)
            except ResticError:
                if key_id in store.list():
                    raise
                continue  # removed meanwhile by another host's run doing the same
            done.append("removed " + key_id)
        return done

    def ensure(self, create=True):
        """Open the repository, creating it when missing and ``create``; True when it was created."""
        if self.exists():
            return False
        if not create:
            raise ResticError(classify("Is there a repository at the following location?", self.location)[1],
                              kind="missing")
        self.init()
        return True

    # --- snapshots ---------------------------------------------------------------------------------------
    def snapshots(self, tags=None):
        """Snapshots (oldest first), those carrying every tag of ``tags`` when given; raises ``missing``."""
        args = []
        if tags:
            args += ["--tag", ",".join(tags)]
        dummy, out, dummy = self.run("snapshots", args, lock=False)
        data = json.loads(out or "[]") if (out or "").strip() else []
        return sorted(data or [], key=lambda snap: snap.get("time", ""))

    def local_dir(self):
        """The folder of a local repository; None for a repository in S3."""
        return None if self.location.startswith("s3:") else self.location

    def full_id(self, short):
        """The full id of the snapshot whose id starts with ``short``.

        A local repository names each snapshot file by its full id: the folder answers without opening the
        repository again (a restic run costs its key derivation and index load); S3 asks restic.
        """
        folder = self.local_dir()
        if folder:
            try:
                names = [name for name in os.listdir(os.path.join(folder, "snapshots")) if name.startswith(short)]
            except OSError:
                names = []
            if len(names) == 1 and len(names[0]) == 64:
                return names[0]
        return self.find(short)["id"]

    def find(self, snapshot):
        """The snapshot whose id or short id is ``snapshot``; raises ``not_found``."""
        for snap in self.snapshots():
            if snapshot in (snap.get("id"), snap.get("short_id")) or snap.get("id", "").startswith(snapshot):
                return snap
        raise ResticError("snapshot %s is not in %s: list them with state=snapshots" % (snapshot, self.location),
                          kind="not_found")

    def backup(self, paths=None, tags=(), files_from=None, exclude=(), host=None, parent=None, full_id=True):
        """Back ``paths`` (absolute) or the list in ``files_from`` up; restic's summary (``snapshot_id``...).

        restic 0.14 names the new snapshot by its short id; ``full_id`` looks the full one up (one more run).
        """
        args = ["--quiet"]
        for tag in tags:
            args += ["--tag", tag]
        for pattern in exclude or ():
            args += ["--exclude", pattern]
        if host:
            args += ["--host", host]
        if parent:
            args += ["--parent", parent]
        if files_from:
            args += ["--files-from-verbatim", files_from]
        args += list(paths or [])
        rc, out, err = self.run("backup", args, ok=(0, 3))
        summary = [item for item in json_lines(out) if item.get("message_type") == "summary"]
        if not summary:
            raise ResticError("restic backup to %s wrote no summary: %s" % (self.location, err.strip() or out[-500:]),
                              rc=rc, stderr=err)
        result = dict(summary[-1])
        short = result.get("snapshot_id") or ""
        if full_id and short and len(short) < 64:
            result["snapshot_id"] = self.full_id(short)
        result["incomplete"] = rc == 3
        result["errors"] = [item for item in json_lines(out) if item.get("message_type") == "error"]
        if rc == 3:
            result["stderr"] = err
        return result

    def file_nodes(self, snapshot, paths=()):
        """The file nodes of a snapshot (``restic ls --json``: path, size, mode, mtime...), at or below ``paths``
        when given. The whole snapshot is listed and filtered here: ``restic ls <snapshot> <dir>`` does not
        descend into the subdirectories of ``<dir>`` in every restic version."""
        dummy, out, dummy = self.run("ls", [snapshot], lock=False)
        prefixes = [path.rstrip("/") for path in paths or ()]
        return [node for node in json_lines(out) if node.get("struct_type") == "node" and node.get("type") == "file"
                and (not prefixes or any(node.get("path", "") == prefix or node.get("path", "").startswith(prefix + "/")
                                         for prefix in prefixes))]

    def list_files(self, snapshot, paths=()):
        """(files, bytes) of a snapshot (at or below ``paths`` when given)."""
        nodes = self.file_nodes(snapshot, paths)
        return len(nodes), sum(int(node.get("size") or 0) for node in nodes)

    def restore(self, snapshot, target, include=()):
        """Restore a snapshot (or the ``include`` paths of it) under ``target``."""
        args = [snapshot, "--target", target]
        for path in include or ():
            args += ["--include", path]
        self.run("restore", args, json_output=False)

    def forget(self, snapshot_ids):
        """Forget these snapshots (their data stays until :meth:`prune`)."""
        if snapshot_ids:
            self.run("forget", list(snapshot_ids))

    def prune(self):
        self.run("prune", json_output=False)

    def check(self, read_data_subset=None):
        """Check the repository's structure and, with a subset, read that part of the data back; the output."""
        args = []
        subset = check_subset(read_data_subset)
        if subset:
            args.append("--read-data-subset=%s" % subset)
        try:
            dummy, out, err = self.run("check", args, json_output=False)
        except ResticError as exc:
            if exc.kind == "restic":
                raise ResticError("restic check found damage in %s: %s. The snapshots whose data is damaged cannot "
                                  "be restored whole; restore from another copy of the repository (local or S3) or "
                                  "from a set's archive, then run `restic rebuild-index` / a new backup"
                                  % (self.location, _damage(exc.stderr)), kind="damaged", rc=exc.rc,
                                  stderr=exc.stderr)
            raise
        return (out or "") + (err or "")

    def stored_bytes(self):
        """Bytes the repository stores: of a local one, its pack files on disk (no restic run); else :meth:`stats`."""
        folder = self.local_dir()
        data = os.path.join(folder, "data") if folder else None
        if not data or not os.path.isdir(data):
            return self.stats()
        total = 0
        for root, dummy, files in os.walk(data):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:  # a pack a concurrent prune removed
                    pass
        return total

    def stats(self):
        """Bytes the repository stores (``stats --mode raw-data``: packed blobs, after compression)."""
        dummy, out, dummy = self.run("stats", ["--mode", "raw-data"], lock=False)
        found = json_lines(out)
        return int(found[-1].get("total_size") or 0) if found else 0


_PROGRESS = ("using temporary", "create exclusive", "load indexes", "check all packs", "check snapshots", "read ",
             "[", "no errors")


def _damage(stderr):
    lines = [line.strip() for line in (stderr or "").splitlines()
             if line.strip() and not line.startswith(_PROGRESS)]
    return "; ".join(lines[:5]) or "see restic's output"
