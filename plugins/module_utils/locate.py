# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""From what the operator typed (``backup=``) to a verified, authenticated, decrypted set: the one place.

Restore, the restore test, the Vault recovery, the row recovery and the rebuild all call this (through the
``backup_locate`` module), so they accept the same forms and refuse the same things:

- :func:`parse` turns the text into a :class:`Spec` or raises :class:`LocateError` listing the accepted forms;
- :class:`Locator` finds the candidates (local tiers, then S3), checks each one (identity, authentication,
  encryption, checksums) before anything is downloaded in bulk or decrypted, fetches from S3 when needed,
  and decrypts the wanted components into a private staging folder.

Nothing here touches a database, a Vault or the application: a refused set leaves everything as it was.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum, crypto, naming, setauth
from ansible_collections.atlasia.dr.plugins.module_utils.s3_transfer import TransferError

SET_ID_RE = re.compile(r"^\d{8}_\d{6}$")
DUMP_SUFFIXES = (".sql.gz", ".sql.zst", ".sql", ".dump", ".dir", ".gz", ".zst", ".snap", ".enc")
ACCEPTED_FORMS = (
    "latest (the newest set that verifies, local copies first, then S3)",
    "a set id YYYYMMDD_HHMMSS",
    "the absolute path of a set manifest (/.../set_YYYYMMDD_HHMMSS.json)",
    "the absolute path of a folder of sets",
    "the absolute path of a single database dump (.sql.gz, .sql.zst, .sql, .dump, .dir) or Vault snapshot (.snap), "
    "or of its encrypted form (.enc)",
    "an s3://bucket/key URL of a set manifest or of a single dump or snapshot",
)


class LocateError(Exception):
    """What was asked for cannot be used; the message says why and what is accepted.

    ``kind`` says whose fault it is (:class:`Problem`): a restore test records a set as failed only for
    ``damaged``; the other kinds mean the test could not run or the set is not ours.
    """

    def __init__(self, message, kind="request"):
        super(LocateError, self).__init__(message)
        self.kind = kind


class Problem(str):
    """A sentence saying why a set cannot be used, with its ``kind``:

    ``damaged`` (missing or altered artifact, checksum mismatch), ``unauthentic`` (no or a wrong MAC, plaintext
    where the environment encrypts), ``foreign`` (another environment or database), ``key`` (encrypted under
    another key, or no key given), ``unreadable`` (the manifest cannot be read).
    """

    def __new__(cls, text, kind):
        obj = str.__new__(cls, text)
        obj.kind = kind
        return obj


def kind_of(problems):
    """The kind of the first problem (``damaged`` for plain strings)."""
    for problem in problems:
        return getattr(problem, "kind", "damaged")
    return "damaged"


class Spec(object):
    """A parsed ``backup=`` value: ``kind`` is latest, set_id, manifest, folder, dump, s3_manifest or s3_dump."""

    def __init__(self, kind, text, value=None, bucket=None, key=None):
        self.kind = kind
        self.text = text
        self.value = value
        self.bucket = bucket
        self.key = key


def accepted_forms():
    return "; ".join(ACCEPTED_FORMS)


def _is_dump_name(name):
    parsed = naming.parse_backup_name(name)
    if parsed is not None and parsed.role != "artifact":
        return False
    return any(name.endswith(suffix) for suffix in DUMP_SUFFIXES)


def single_component(name):
    """Component of a single artifact given alone: ``vault`` for a raft snapshot, else ``database``."""
    base = name[: -len(crypto.EXTENSION)] if name.endswith(crypto.EXTENSION) else name
    return "vault" if base.endswith(".snap") else "database"


def database_properties(data, directory):
    """Database-level properties recorded for the set's database dump (:mod:`dbprops`), or ``None``.

    A set carries them in its (authenticated) manifest; a single dump has them in its own manifest.
    """
    for entry in data.get("artifacts") or []:
        if entry.get("component") == "database":
            if entry.get("database_properties"):
                return entry["database_properties"]
            own = naming.manifest_path_for(os.path.join(directory, entry["name"]))
            if own and not data.get("set_id"):
                try:
                    with open(own) as handle:
                        return json.load(handle).get("database_properties")
                except (OSError, ValueError):
                    return None
    return None


def parse(text):
    """The :class:`Spec` of ``text``; :class:`LocateError` naming the accepted forms for anything else."""
    raw = "" if text is None else str(text).strip()
    if raw in ("", "latest"):
        return Spec("latest", raw or "latest")
    if SET_ID_RE.match(raw):
        try:
            naming.parse_timestamp(raw)
        except ValueError:
            raise LocateError("%r looks like a set id but is not a valid date and time (YYYYMMDD_HHMMSS)" % raw)
        return Spec("set_id", raw, value=raw)
    if raw.startswith("s3://"):
        rest = raw[len("s3://"):]
        bucket, _sep, key = rest.partition("/")
        key = key.strip("/")
        if not bucket or not key:
            raise LocateError("%r names no object: use s3://bucket/prefix/set_YYYYMMDD_HHMMSS.json" % raw)
        name = key.rsplit("/", 1)[-1]
        if backupset.is_set_manifest(naming.parse_backup_name(name)):
            return Spec("s3_manifest", raw, bucket=bucket, key=key)
        if _is_dump_name(name):
            return Spec("s3_dump", raw, bucket=bucket, key=key)
        raise LocateError("%r is neither a set manifest (set_YYYYMMDD_HHMMSS.json) nor a database dump" % raw)
    if raw.startswith("/"):
        path = os.path.normpath(raw)
        name = os.path.basename(path)
        if not os.path.lexists(path):
            raise LocateError("%s does not exist" % path)
        if backupset.is_set_manifest(naming.parse_backup_name(name)):
            if not os.path.isfile(path):
                raise LocateError("%s is not a file" % path)
            return Spec("manifest", raw, value=path)
        if os.path.isdir(path):
            if name.endswith(".dir") and naming.parse_backup_name(name) is not None:
                return Spec("dump", raw, value=path)
            return Spec("folder", raw, value=path)
        if name.endswith(".json"):
            raise LocateError("%s is a JSON file but not a set manifest (set_YYYYMMDD_HHMMSS.json)" % path)
        if _is_dump_name(name):
            return Spec("dump", raw, value=path)
        raise LocateError("%s is neither a set manifest, a folder of sets nor a database dump" % path)
    raise LocateError("backup=%r is not understood" % raw)


def _set_id_of_name(name):
    parsed = naming.parse_backup_name(name)
    return naming.format_timestamp(parsed.timestamp) if parsed else None


class Policy(object):
    """What makes a set acceptable for this target.

    - ``key``: the environment's secret; with it, every set must carry a valid MAC and a single dump must be
      encrypted under it (its encryption authenticates it: the MACs of age, the tags of the earlier AES-GCM format).
    - ``encryption_required``: every artifact must be encrypted under ``key``; a plaintext artifact is refused.
    - ``environment``/``database``: the target's; a set of another one is refused unless ``allow_foreign``.
    - ``allow_unauthenticated``: accept a set without a MAC (made before sets were authenticated); a MAC that
      is present must still be valid.
    """

    def __init__(self, key=None, encryption_required=False, environment=None, database=None, allow_foreign=False,
                 allow_unauthenticated=False):
        self.key = key or None
        self.key_id = crypto.key_id(key).hex() if key else None
        self.encryption_required = encryption_required
        self.environment = environment
        self.database = database
        self.allow_foreign = allow_foreign
        self.allow_unauthenticated = allow_unauthenticated

    def manifest_problems(self, data):
        """Problems found from the manifest alone (identity, MAC, plaintext names): a list of sentences."""
        problems = []
        name = data.get("set_id")
        if not self.allow_foreign:
            env = data.get("environment")
            if self.environment and env and env != self.environment:
                problems.append(Problem("set %s belongs to environment %r, not %r (-e allow_foreign_set=yes restores "
                                        "it anyway)" % (name, env, self.environment), "foreign"))
            db = setauth.set_database(data)
            if self.database and db and db != self.database:
                problems.append(Problem("set %s is a backup of database %r, not %r (-e allow_foreign_set=yes "
                                        "restores it anyway)" % (name, db, self.database), "foreign"))
        if self.key:
            try:
                setauth.check(data, self.key, self.key_id)
            except setauth.AuthError as exc:
                if data.get("auth") or not self.allow_unauthenticated:
                    problems.append(Problem(str(exc) + ("" if data.get("auth") else
                                                        " (-e allow_unauthenticated_set=yes accepts it)"), exc.kind))
        if self.encryption_required:
            plain = [entry["name"] for entry in data.get("artifacts") or []
                     if not str(entry.get("name", "")).endswith(crypto.EXTENSION)]
            if plain:
                problems.append(Problem("set %s holds plaintext artifacts although this environment encrypts its "
                                        "backups: %s" % (name, ", ".join(plain)), "unauthentic"))
        return problems

    def file_problems(self, path, name, authenticated=False):
        """Problems of one artifact file on disk: encryption required, key.

        ``authenticated``: the file belongs to a set whose MAC was checked under this key; the set's checksums,
        verified next, then prove the file is the one written with this key, so its key is not opened again (an
        age file's key costs one scrypt to open, and sets are checked many times).
        """
        if not name.endswith(crypto.EXTENSION):
            return []
        if os.path.isdir(path):
            return [Problem("%s is a folder, not an encrypted artifact" % name, "unauthentic")]
        if not crypto.is_encrypted(path):
            return [Problem("%s is named as encrypted but holds plaintext (no encryption header)" % name, "unauthentic")]
        if self.key is None:
            return [Problem("%s is encrypted: give the environment's key (dr_encryption_key)" % name, "key")]
        if authenticated:
            return []
        try:
            crypto.check_key(path, self.key)
        except crypto.CryptoError as exc:
            return [Problem("%s: %s" % (name, exc), "key")]
        except OSError as exc:
            return [Problem("%s: %s" % (name, exc), "damaged")]
        return []


class Locator(object):
    """Find, fetch, check and decrypt one set for one target.

    ``transfer`` is a callable ``transfer(mode, **params)`` returning the result dict of the S3 engine
    (:class:`s3_transfer.BackupTransfer`) or ``None`` when S3 is not configured; ``bucket``/``prefix`` say
    where the environment's sets are.
    """

    def __init__(self, policy, roots=(), staging_dir=None, transfer=None, bucket=None, prefix="", components=None,
                 check_mode=False, fall_back=True):
        self.policy = policy
        self.roots = [r for r in roots if r]
        self.staging_dir = staging_dir
        self.transfer = transfer
        self.bucket = bucket
        self.prefix = prefix or ""
        self.components = set(components) if components else None
        self.check_mode = check_mode
        self.fall_back = fall_back
        self.passed_over = []
        self.seen = []
        self.downloaded = []

    # -- what exists ------------------------------------------------------------------------------------
    def local_sets(self, roots=None):
        """``{set_id: manifest path}`` of the sets under ``roots`` (first root wins)."""
        found = {}
        for path in backupset.discover(roots if roots is not None else self.roots):
            set_id = _set_id_of_name(os.path.basename(path))
            if set_id:
                found.setdefault(set_id, path)
        return found

    def s3_sets(self):
        """``{set_id: key}`` of the set manifests under the environment's prefix; empty without S3."""
        if self.transfer is None or not self.bucket:
            return {}
        listing = self.transfer("list", bucket=self.bucket, prefix=self.prefix, series=["set"])
        found = {}
        for backup in listing.get("backups") or []:
            if backup.get("manifest"):
                set_id = _set_id_of_name(backup["manifest"])
                if set_id:
                    found.setdefault(set_id, backup["manifest"])
        return found

    def newest(self, local, remote, limit=5):
        """The newest set ids seen, with where they are: for messages."""
        rows = []
        for set_id in sorted(set(local) | set(remote), reverse=True)[:limit]:
            where = (["local " + os.path.dirname(local[set_id])] if set_id in local else []) + \
                    (["s3://%s/%s" % (self.bucket, remote[set_id])] if set_id in remote else [])
            rows.append(dict(set_id=set_id, where=where))
        return rows

    @staticmethod
    def describe_newest(rows):
        if not rows:
            return "no set exists there"
        return "newest sets: " + "; ".join("%s (%s)" % (row["set_id"], ", ".join(row["where"])) for row in rows)

    # -- checks -----------------------------------------------------------------------------------------
    def _wanted(self, entry):
        return self.components is None or entry.get("component") in self.components

    def check_local(self, manifest_path, data=None, every_artifact=True):
        """Problems of a set on disk (empty when it can be used).

        Every artifact of a set on disk is checked, whatever the components wanted: a set is used whole or not at
        all. After a download (``every_artifact=False``) only the wanted ones are there, each already verified
        against the object's checksums by the transfer.
        """
        if data is None:
            data = backupset.load(manifest_path)
        problems = self.policy.manifest_problems(data)
        if problems:
            return problems
        directory = os.path.dirname(manifest_path)
        wanted = [e for e in data["artifacts"] if every_artifact or self._wanted(e)]
        authenticated = bool(self.policy.key and data.get("auth"))
        for entry in wanted:
            path = os.path.join(directory, entry["name"])
            if os.path.lexists(path):
                problems.extend(self.policy.file_problems(path, entry["name"], authenticated))
        if problems:
            return problems
        return backupset.verify(directory, data, None if every_artifact or not self.components else
                                sorted(self.components))

    def _pass_over(self, set_id, where, problems):
        self.passed_over.append(dict(set_id=set_id, where=where, reason="; ".join(problems), kind=kind_of(problems)))

    @property
    def passed_over_kind(self):
        return self.passed_over[0]["kind"] if self.passed_over else "not_found"

    # -- S3 ---------------------------------------------------------------------------------------------
    def _read_remote_manifest(self, bucket, key):
        result = self.transfer("read", bucket=bucket, key=key)
        try:
            data = json.loads(result["content"])
        except (TypeError, ValueError) as exc:
            raise backupset.SetError("set manifest s3://%s/%s is unreadable: %s" % (bucket, key, exc))
        if not isinstance(data, dict) or "artifacts" not in data or "set_id" not in data:
            raise backupset.SetError("s3://%s/%s is not a backup-set manifest" % (bucket, key))
        return data

    def _staged(self, path):
        """Whether ``path`` lies in the staging folder (a set downloaded there, possibly in part)."""
        if not self.staging_dir:
            return False
        staging = os.path.realpath(self.staging_dir)
        return os.path.realpath(path).startswith(staging + os.sep)

    def _staging_for(self, set_id):
        return os.path.join(self.staging_dir, set_id or "adhoc")

    def _private_staging(self):
        """Create the staging folder (mode 0700) when it is missing; an existing one is left as it is."""
        if not os.path.isdir(self.staging_dir):
            os.makedirs(self.staging_dir, 0o700)

    def fetch_remote(self, bucket, key, data):
        """Download the wanted artifacts of a checked manifest (each verified by the engine), then the manifest."""
        directory = self._staging_for(data["set_id"])
        folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        if self.check_mode:
            return os.path.join(directory, key.rsplit("/", 1)[-1])
        self._private_staging()
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        for entry in data["artifacts"]:
            if self._wanted(entry):
                result = self.transfer("download", bucket=bucket, key=folder + entry["name"], dest=directory + "/")
                self.downloaded.extend(result.get("transferred") or [])
        result = self.transfer("download", bucket=bucket, key=key, dest=directory + "/")
        self.downloaded.extend(result.get("transferred") or [])
        return os.path.join(directory, key.rsplit("/", 1)[-1])

    def try_remote(self, bucket, key):
        """``(manifest path, data)`` of a set fetched from S3 and checked, or ``(None, problems)``."""
        try:
            data = self._read_remote_manifest(bucket, key)
        except backupset.SetError as exc:
            return None, [Problem(str(exc), "unreadable")]
        problems = self.policy.manifest_problems(data)
        if problems:
            return None, problems
        try:
            manifest_path = self.fetch_remote(bucket, key, data)
        except TransferError as exc:
            return None, [Problem(str(exc), "damaged" if "corrupt" in str(exc) else "unavailable")]
        if self.check_mode:
            return manifest_path, data
        local = backupset.load(manifest_path)
        if setauth.payload(local) != setauth.payload(data):
            return None, [Problem("the set manifest changed in the bucket while it was downloaded", "damaged")]
        problems = self.check_local(manifest_path, local, every_artifact=False)
        if problems:
            return None, problems
        return manifest_path, local

    # -- selection --------------------------------------------------------------------------------------
    def select_newest(self, local, remote, only=None):
        """The newest usable set among ``local``/``remote`` (or only the set id ``only``): ``(path, data, source)``."""
        ids = sorted(set(local) | set(remote), reverse=True)
        if only is not None:
            ids = [i for i in ids if i == only]
        for set_id in ids:
            if set_id in local:
                where = local[set_id]
                try:
                    data = backupset.load(where)
                    problems = self.check_local(where, data)
                except (backupset.SetError, OSError) as exc:
                    problems = [Problem(str(exc), "unreadable")]
                if not problems:
                    return where, data, "local"
                self._pass_over(set_id, where, problems)
                if not self.fall_back:  # a damaged local copy is a finding, even when S3 holds a good one
                    raise LocateError("backup set %s (%s) cannot be used: %s" % (set_id, where, "; ".join(problems)),
                                      kind_of(problems))
            if set_id in remote:
                where = "s3://%s/%s" % (self.bucket, remote[set_id])
                path, data = self.try_remote(self.bucket, remote[set_id])
                if path is not None:
                    return path, data, "s3"
                self._pass_over(set_id, where, data)
                if not self.fall_back:
                    raise LocateError("backup set %s (%s) cannot be used: %s" % (set_id, where, "; ".join(data)),
                                      kind_of(data))
        return None, None, None

    def locate(self, spec):
        """``(manifest path or dump path, set data, source)`` for a :class:`Spec`; raises :class:`LocateError`."""
        if spec.kind in ("latest", "set_id"):
            local = self.local_sets()
            remote = self.s3_sets()
            self.seen = self.newest(local, remote)
            path, data, source = self.select_newest(local, remote, spec.value)
            if path is not None:
                return path, data, source
            where = ", ".join(self.roots) + (" and s3://%s/%s" % (self.bucket, self.prefix) if self.transfer else "")
            if spec.kind == "set_id" and spec.value not in local and spec.value not in remote:
                raise LocateError("no backup set %s under %s; %s" % (spec.value, where, self.describe_newest(self.seen)),
                                  "not_found")
            if not self.passed_over:
                raise LocateError("No backup set under %s: take a backup first (playbooks/backup.yml)" % where,
                                  "not_found")
            raise LocateError("no usable backup set under %s: %s" % (where, self.describe_passed_over()),
                              self.passed_over_kind)
        if spec.kind == "folder":
            local = self.local_sets([spec.value] + [os.path.join(spec.value, t) for t in backupset.TIERS])
            self.seen = self.newest(local, {})
            path, data, source = self.select_newest(local, {})
            if path is None:
                if not local:
                    raise LocateError("%s holds no backup set (set_YYYYMMDD_HHMMSS.json)" % spec.value, "not_found")
                raise LocateError("no backup set in %s can be used: %s" % (spec.value, self.describe_passed_over()),
                                  self.passed_over_kind)
            return path, data, "path"
        if spec.kind == "manifest":
            try:
                data = backupset.load(spec.value)
                # a set staged by an earlier download holds the components that run fetched, each verified then
                problems = self.check_local(spec.value, data, every_artifact=not self._staged(spec.value))
            except (backupset.SetError, OSError) as exc:
                problems = [Problem(str(exc), "unreadable")]
            if problems:
                raise LocateError("backup set %s cannot be used: %s" % (spec.value, "; ".join(problems)),
                                  kind_of(problems))
            return spec.value, data, "path"
        if spec.kind == "s3_manifest":
            if self.transfer is None:
                raise LocateError("%s is in S3 but no S3 connection is configured (dr_s3_* variables)" % spec.text,
                                  "request")
            path, data = self.try_remote(spec.bucket, spec.key)
            if path is None:
                raise LocateError("backup set %s cannot be used: %s" % (spec.text, "; ".join(data)), kind_of(data))
            return path, data, "s3"
        if spec.kind == "s3_dump":
            if self.transfer is None:
                raise LocateError("%s is in S3 but no S3 connection is configured (dr_s3_* variables)" % spec.text,
                                  "request")
            name = spec.key.rsplit("/", 1)[-1]
            directory = self._staging_for(_set_id_of_name(name))
            path = os.path.join(directory, name)
            if not self.check_mode:
                self._private_staging()
                if not os.path.isdir(directory):
                    os.makedirs(directory, 0o700)
                result = self.transfer("download", bucket=spec.bucket, key=spec.key, dest=directory + "/")
                self.downloaded.extend(result.get("transferred") or [])
            return self._dump(path, spec.text), None, "s3"
        return self._dump(spec.value, spec.text), None, "path"

    def _dump(self, path, text):
        """A single dump or snapshot: checked against the policy (a set of one artifact)."""
        name = os.path.basename(path.rstrip("/"))
        problems = []
        if self.policy.encryption_required and not name.endswith(crypto.EXTENSION):
            problems.append(Problem("%s is a plaintext dump although this environment encrypts its backups" % name,
                                    "unauthentic"))
        elif self.policy.key and not name.endswith(crypto.EXTENSION) and not self.policy.allow_unauthenticated:
            problems.append(Problem("%s is a plaintext dump: nothing authenticates it (-e "
                                    "allow_unauthenticated_set=yes restores it anyway)" % name, "unauthentic"))
        if os.path.lexists(path):
            problems.extend(self.policy.file_problems(path, name))
            own = naming.manifest_path_for(path)
            if own and not self.policy.allow_foreign:
                try:
                    with open(own) as handle:
                        db = json.load(handle).get("database")
                except (OSError, ValueError):
                    db = None
                if db and self.policy.database and db != self.policy.database:
                    problems.append(Problem("%s is a dump of database %r, not %r (-e allow_foreign_set=yes "
                                            "restores it anyway)" % (name, db, self.policy.database), "foreign"))
            try:
                status, dummy = checksum.verify_sidecars(path)
            except (checksum.ChecksumError, OSError) as exc:
                problems.append(str(exc))
        elif not self.check_mode:
            problems.append(Problem("%s does not exist" % path, "not_found"))
        if problems:
            raise LocateError("%s cannot be used: %s" % (text, "; ".join(problems)), kind_of(problems))
        return path

    def describe_passed_over(self):
        if not self.passed_over:
            return "nothing was found"
        return "; ".join("%s (%s): %s" % (p["set_id"], p["where"], p["reason"]) for p in self.passed_over)

    # -- staging ----------------------------------------------------------------------------------------
    def stage(self, directory, data):
        """Decrypt the wanted encrypted artifacts into ``<staging>/<set_id>.plain``; ``(plain dir, paths)``.

        ``paths`` maps each artifact name of the set to the path of its usable (plaintext) form.
        """
        paths = {}
        encrypted = [e for e in data["artifacts"] if self._wanted(e) and e["name"].endswith(crypto.EXTENSION)]
        plain_dir = os.path.join(self.staging_dir, "%s.plain" % (data.get("set_id") or "adhoc")) if encrypted else None
        for entry in data["artifacts"]:
            if not self._wanted(entry):
                continue
            src = os.path.join(directory, entry["name"])
            if entry in encrypted:
                out = os.path.join(plain_dir, entry["name"][: -len(crypto.EXTENSION)])
                if not self.check_mode:
                    self._private_staging()
                    if not os.path.isdir(plain_dir):
                        os.makedirs(plain_dir, 0o700)
                    own = naming.manifest_path_for(src)
                    expected = None
                    if own:
                        with open(own) as handle:
                            expected = ((json.load(handle).get("encryption") or {}).get("plaintext") or {}).get("sha256")
                    crypto.decrypt_file(src, out, self.policy.key, expected)
                paths[entry["name"]] = out
            else:
                paths[entry["name"]] = src
        return plain_dir, paths
