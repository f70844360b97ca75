# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Writing and checking database dumps; shared by pg_dump_backup and pg_restore_db (safety backups).

A dump is streamed ``pg_dump [| compressor] -> hashing writer -> hidden temporary file``; every stage's
exit status is checked; the dump is verified (full decompression test and, for plain dumps, the trailer
pg_dump writes last; ``pg_restore --file=/dev/null`` reading the whole archive for the other formats); then
the ``.md5``/``.sha256`` sidecars and the JSON manifest are written, and only then does the dump take its
final name.

Verification costs no second pass over a file dump: the checks read the very bytes being written, while
they are written (:class:`_StreamCheck`), and the file is then read back once and must have the SHA-256 of
those bytes, so what was verified is what is on disk. Checks that need a finished artifact (a directory
dump; an existing backup before a restore) run beside the checksum pass, in parallel.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time

from ansible_collections.atlasia.dr.plugins.module_utils import (
    artifact,
    atomic,
    checksum,
    compression,
    crypto,
    dbprops,
    naming,
    progress,
)
from ansible_collections.atlasia.dr.plugins.module_utils.pipeline import (
    BackgroundSink,
    FeedPipeline,
    PipelineError,
    run_pipeline,
)
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import PostgresError


class ArtifactError(Exception):
    """A backup file that must not be used: missing, damaged, incomplete or unreadable."""


def dump_argument_spec():
    """Options of a dump, shared by pg_dump_backup (and by the safety backup of pg_restore_db)."""
    return dict(
        dest=dict(type="path", required=True),
        prefix=dict(type="str"),
        kind=dict(type="str", default="full", choices=["full", "schema"]),
        format=dict(type="str", default="plain", choices=list(compression.FORMATS)),
        compression=dict(type="str", choices=list(compression.COMPRESSIONS)),
        compression_level=dict(type="int"),
        compression_threads=dict(type="int", default=0),
        jobs=dict(type="int", default=1),
        timestamp=dict(type="str"),
        dump_options=dict(type="list", elements="str", default=[]),
        mode=dict(type="raw", default="0600"),
    )


def resolve(params):
    """Fill the defaults that depend on other options; returns a new dict."""
    opts = dict(params)
    if not opts.get("prefix"):
        opts["prefix"] = "schema" if opts["kind"] == "schema" else "backup"
    if not opts.get("compression"):
        opts["compression"] = "none" if opts["kind"] == "schema" else "gzip"
    if opts.get("compression_level") is None:
        opts["compression_level"] = compression.DEFAULT_LEVEL[opts["compression"]]
    if opts.get("timestamp"):
        opts["moment"] = naming.parse_timestamp(opts["timestamp"])
    else:
        opts["moment"] = naming.utc_now()
    ext = compression.extension(opts["format"], opts["compression"])
    if opts.get("encryption_key"):
        ext += crypto.EXTENSION
    opts["name"] = naming.backup_name(opts["prefix"], opts["moment"], ext)
    opts["path"] = os.path.join(opts["dest"], opts["name"])
    atomic.parse_mode(opts.get("mode", "0600"))  # a malformed mode fails here (ValueError), before anything runs
    stem = naming.backup_stem(opts["prefix"], opts["moment"])
    opts["manifest_path"] = os.path.join(opts["dest"], naming.manifest_name(stem))
    return opts


def check_options(opts, client):
    """Reject combinations that cannot work, before anything runs. Returns an error message or None."""
    if opts["format"] == "directory":
        if client.container:
            return ("format=directory writes files inside the container and cannot be used with container; "
                    "use format=custom (or plain) instead")
        if opts["compression"] == "zstd":
            return "format=directory supports compression gzip or none (pg_dump 15 compresses each file with gzip)"
    if opts.get("encryption_key") and opts["format"] == "directory":
        return "an encrypted dump is a single file: use format=custom or plain with encryption"
    if opts["jobs"] > 1 and opts["format"] != "directory":
        return "jobs > 1 needs format=directory (pg_dump dumps in parallel only into a directory)"
    if not 0 <= opts["compression_level"] <= (19 if opts["compression"] == "zstd" else 9):
        return "compression_level %s is out of range for %s" % (opts["compression_level"], opts["compression"])
    return None


def _dump_args(opts):
    args = ["--no-password"]
    if opts["kind"] == "schema":
        args.append("--schema-only")
    if opts["format"] == "plain":
        args.append("--format=plain")
    elif opts["format"] == "custom":
        native = 0 if opts["compression"] in ("none", "zstd") else opts["compression_level"]
        args += ["--format=custom", "--compress=%d" % native]
    else:
        native = 0 if opts["compression"] == "none" else opts["compression_level"]
        args += ["--format=directory", "--compress=%d" % native, "--jobs=%d" % opts["jobs"]]
    return args + list(opts.get("dump_options") or [])


def write_dump(module, client, opts, report=None):
    """Dump ``opts['db']`` to ``opts['path']``; returns the result dict (path, size, checksums, manifest...).

    ``report`` is the :class:`progress.Reporter` of the dump (by default the module's own, from its
    ``progress_file`` option; a dump running beside another step passes a child of that step's reporter).

    Raises :class:`PostgresError` (client or pipeline failure) or :class:`ArtifactError` (verification).
    Nothing with the final name exists unless every step succeeded.
    """
    started = naming.utc_now()
    t0 = time.time()
    artifact.prepare(opts["dest"])
    if os.path.lexists(opts["path"]):
        raise ArtifactError("%s already exists; a backup is never overwritten (pass another timestamp or "
                            "prefix)" % opts["path"])
    db = opts["db"]
    server_version = client.server_version_text(db=db)
    tables = client.table_estimates(db) if opts["kind"] == "full" else []
    properties = dbprops.capture(client, db)
    mode = atomic.parse_mode(opts.get("mode", "0600"))
    env_extra = {"PGDATABASE": db}
    dump_stage, env = client.stage("pg_dump", _dump_args(opts), env_extra)

    def manifest(out, uncompressed=None):
        return artifact.base_manifest(
            opts["name"], "postgresql", "atlasia.dr.pg_dump_backup", out.size, out.digests, started, t0,
            database=opts["db"], server_version=server_version, kind=opts["kind"], format=opts["format"],
            compression=opts["compression"],
            compression_level=opts["compression_level"] if opts["compression"] != "none" else None,
            uncompressed_size=uncompressed, tables=tables, database_properties=properties,
            container=client.container)

    if opts["format"] == "directory":
        with artifact.Writer(opts["path"], mode=0o700, directory=True, manifest_path=opts["manifest_path"],
                             manifest=manifest) as out:
            client.pipeline([(dump_stage[0], dump_stage[1] + ["--file=%s" % out.temp_path])], env_extra=env_extra)
            os.chmod(out.temp_path, 0o700)
            (digests, size, texts), dummy = _beside(
                lambda: checksum.artifact_digests(out.temp_path, final_name=opts["name"]),
                lambda: _verify(module, client, out.temp_path, opts["format"], opts["compression"]))
            out.record(digests, size, texts)
        return naming.artifact_result(opts, out.manifest)

    stages = [dump_stage]
    comp = compression.compressor_argv(module, opts["compression"], opts["compression_level"],
                                       opts["compression_threads"]) if opts["format"] != "custom" or \
        opts["compression"] == "zstd" else None
    if comp:
        stages.append((os.path.basename(comp[0]), comp))
    hasher = checksum.MultiHasher()  # of the dump itself (the plaintext)
    key = opts.get("encryption_key")
    check = _StreamCheck(module, client, opts["format"], opts["compression"])

    def verify(out):
        if hasher.size == 0:
            raise ArtifactError("pg_dump produced no output; nothing was written")
        uncompressed = check.finish(out.temp_path)
        _read_back(out.temp_path, out.size, out.digests["sha256"])
        return uncompressed

    def encrypted_manifest(out):
        data = manifest(out, out.verified)
        if key:
            data["encryption"] = crypto.manifest_entry(key, opts["name"][: -len(crypto.EXTENSION)], hasher.size,
                                                       hasher.hexdigests())
        return data

    # without encryption the file holds the dump itself: its checksums are the dump's, fed in the worker
    with artifact.Writer(opts["path"], mode=mode, manifest_path=opts["manifest_path"], verify=verify,
                         manifest=encrypted_manifest, hasher=None if key else hasher) as out:
        out.on_failure(check.abort)
        # this thread reads and writes; checksums and the check follow in a worker, block by block
        behind = BackgroundSink([hasher.update, check.feed])
        out.on_failure(behind.abort)
        # encrypted on the way: the plaintext never reaches the disk
        encryptor = crypto.Encryptor(key, out.write) if key else None
        write = encryptor.write if encryptor else out.handle.write

        if report is None:
            report = progress.Reporter.from_module(module, verb="written")
        if report.enabled and opts["format"] == "plain":
            # the plain SQL (measured by the check, after decompression) against the database's size: the only
            # estimate there is before the dump ends; an archive's compressed output has no such yardstick
            report.verb = "dumped"
            report.measure = lambda: check.keeper.size
            try:
                report.set_total(client.database_size(db, db), estimate=True)
            except PostgresError:
                pass  # no estimate: bytes and rate only

        def sink(block):
            write(block)
            behind(block)
            report.add(len(block))

        client.pipeline(stages, sink=sink, env_extra=env_extra)
        behind.close()
        if encryptor:
            encryptor.close()
    return naming.artifact_result(opts, out.manifest)


def _beside(main_task, side_task):
    """Run ``side_task`` in a thread while ``main_task`` runs here; returns both results.

    The checksum pass (hashlib) and the decompression tests (zlib, or child processes) release the GIL, so
    on a machine with two CPUs the two passes take the time of the longer one. The main task's exception
    wins (the checksum's message names the damage best); then the side task's.
    """
    box = {}

    def run():
        try:
            box["result"] = side_task()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run)
    worker.daemon = True
    worker.start()
    try:
        result = main_task()
    except Exception:
        worker.join()
        if isinstance(box.get("error"), SystemExit):  # the side task already reported through fail_json
            raise box["error"]
        raise
    finally:
        worker.join()
    if "error" in box:
        raise box["error"]
    return result, box.get("result")


def _read_back(path, size, sha256):
    """Read the written file once: it must hold exactly the bytes that were streamed and verified."""
    digest = hashlib.sha256()
    total = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(checksum.CHUNK_SIZE)
            if not block:
                break
            total += len(block)
            digest.update(block)
    if total != size or digest.hexdigest() != sha256:
        raise ArtifactError("%s does not read back as written (%d bytes, SHA-256 %s; %d bytes, SHA-256 %s were "
                            "written): the disk or filesystem damaged it" % (path, total, digest.hexdigest(), size,
                                                                             sha256))


class _StreamCheck(object):
    """The post-write verification, made on the bytes while they are written (no second pass).

    Plain dumps: the full decompression test (in-process for gzip, ``zstd -d`` for zstd) and pg_dump's
    completion trailer at the end of the decompressed stream. Archives: ``[zstd -d |] pg_restore
    --file=/dev/null`` reading the whole archive from the stream. A check that fails mid-stream stops
    reading; the failure is reported by :meth:`finish` once the dump itself ended (a failing dump wins).
    """

    def __init__(self, module, client, fmt, comp):
        self.module = module
        self.client = client
        self.fmt = fmt
        self.comp = comp
        self.keeper = compression.TailKeeper()
        self.failed = None
        self.gzip = None
        self.feeder = None
        self.started = False

    def _start(self):
        """Start the checking processes with the first block (nothing runs for a dump that never began)."""
        self.started = True
        module, client = self.module, self.client
        if self.fmt == "plain":
            if self.comp == "gzip":
                self.gzip = compression.GzipTester(self.keeper)
            elif self.comp == "zstd":
                self.feeder = FeedPipeline([("zstd -d", compression.decompressor_argv(module, "zstd"))],
                                           sink=self.keeper)
        else:
            read_stage, env = client.stage("pg_restore", ["--file=/dev/null"])
            stages = [read_stage]
            if self.comp == "zstd":
                stages.insert(0, ("zstd -d", compression.decompressor_argv(module, "zstd")))
            self.feeder = FeedPipeline(stages, env_update=client.env())

    def feed(self, block):
        if not self.started:
            self._start()
        if self.failed is not None:
            return
        if self.gzip is not None:
            try:
                self.gzip.feed(block)
            except compression.DecompressionError as exc:
                self.failed = exc
        else:
            feeder = self.feeder  # abort() may drop it from another thread
            if feeder is not None:
                feeder.feed(block)
            elif self.fmt == "plain" and self.comp == "none":
                self.keeper(block)

    def abort(self):
        if self.feeder is not None:
            self.feeder.abort()
            self.feeder = None

    def finish(self, path):
        """Raise :class:`ArtifactError` unless the stream passed; returns the uncompressed size of plain dumps."""
        if not self.started:
            self._start()
        feeder, self.feeder = self.feeder, None
        if self.fmt != "plain":
            try:
                feeder.close()
            except PipelineError as exc:
                raise ArtifactError("%s is not a complete, readable %s-format archive: %s" % (path, self.fmt, exc))
            return None
        if self.gzip is not None and self.failed is None:
            try:
                self.gzip.close()
            except compression.DecompressionError as exc:
                self.failed = exc
        elif feeder is not None:
            try:
                feeder.close()
            except PipelineError as exc:
                self.failed = exc
        if self.failed is not None:
            raise ArtifactError("%s fails the %s decompression test (truncated or damaged): %s" % (
                path, self.comp, self.failed))
        if not self.keeper.plain_dump_complete():
            raise ArtifactError("%s is incomplete: it lacks the '-- PostgreSQL database dump complete' line pg_dump "
                                "writes last (the dump was cut short)" % path)
        return self.keeper.size


def _verify(module, client, path, fmt, comp):
    """Verification after writing and before restoring. Returns the uncompressed size of plain dumps.

    Archives are read whole by ``pg_restore --file=/dev/null`` (it decodes every table's data, so a
    truncated or damaged archive fails), not only their table of contents.
    """
    if fmt == "plain":
        return verify_plain(module, path, comp)
    if fmt == "directory" and client.container:
        raise ArtifactError("a directory-format dump cannot be read inside a container; restore it on the host")
    if fmt == "directory" and compression.cpu_count() > 1:
        return _verify_directory(client, path)
    from_stdin = client.container or comp == "zstd"
    read_stage, env = client.stage("pg_restore", ["--file=/dev/null"] + ([] if from_stdin else [path]))
    stages = [read_stage]
    stdin_path = None
    if comp == "zstd":
        stages.insert(0, ("zstd -d", compression.decompressor_argv(module, "zstd", path)))
    elif from_stdin:
        stdin_path = path
    try:
        client.pipeline(stages, stdin_path=stdin_path)
    except PostgresError as exc:
        raise ArtifactError("%s is not a complete, readable %s-format archive: %s" % (path, fmt, exc))
    return None


def _split_listing(path, listing, parts):
    """Split a ``pg_restore --list`` of a directory dump into ``parts`` lists of about equal data size.

    Every entry lands in exactly one list; entries without a data file all go to the first one. Returns
    ``None`` when there are fewer than two data entries (nothing to share).
    """
    entries = [line for line in listing.splitlines() if line.strip() and not line.lstrip().startswith(";")]
    data, other = [], []
    for line in entries:
        head = line.split(";", 1)[0].strip()
        if " TABLE DATA " in line and head.isdigit():
            size = 0
            for name in ("%s.dat.gz" % head, "%s.dat" % head):
                if os.path.exists(os.path.join(path, name)):
                    size = os.path.getsize(os.path.join(path, name))
                    break
            data.append((size, line))
        else:
            other.append(line)
    if len(data) < 2:
        return None
    lists = [[] for dummy in range(min(parts, len(data)))]
    loads = [0] * len(lists)
    for size, line in sorted(data, key=lambda item: -item[0]):  # largest first onto the lightest list
        index = loads.index(min(loads))
        lists[index].append(line)
        loads[index] += size
    lists[0] = other + lists[0]
    return ["\n".join(lines) + "\n" for lines in lists]


def _verify_directory(client, path):
    """``pg_restore --file=/dev/null`` over a directory dump, its data files shared among one process per CPU.

    Each process reads the whole table of contents and the entries of its ``--use-list``; together they
    read every entry once, exactly as one process would, in about half the time on two CPUs.
    """
    fail = "%s is not a complete, readable directory-format archive: %%s" % path
    try:
        rc, listing, err = client.run("pg_restore", ["--list", path])
    except PostgresError as exc:
        raise ArtifactError(fail % exc)
    lists = _split_listing(path, listing, compression.cpu_count())
    if lists is None:
        try:
            client.pipeline([client.stage("pg_restore", ["--file=/dev/null", path])[0]])
        except PostgresError as exc:
            raise ArtifactError(fail % exc)
        return None
    folder = tempfile.mkdtemp(prefix=".pg-verify-")
    try:
        tasks = []
        for index, text in enumerate(lists):
            list_path = os.path.join(folder, "part%d.list" % index)
            with open(list_path, "w") as handle:
                handle.write(text)
            stage = client.stage("pg_restore", ["--file=/dev/null", "--use-list=%s" % list_path, path])[0]
            tasks.append(lambda stage=stage: client.pipeline([stage]))
        try:
            _all_beside(tasks)
        except PostgresError as exc:
            raise ArtifactError(fail % exc)
    finally:
        atomic.remove_path(folder)
    return None


def _all_beside(tasks):
    """Run every task at once (the first here, the others in threads); re-raise the first failure."""
    if len(tasks) == 1:
        return [tasks[0]()]
    first, rest = _beside(tasks[0], lambda: _all_beside(tasks[1:]))
    return [first] + rest


def verify_plain(module, path, comp):
    """Decompress ``path`` fully (the decompression test) and check pg_dump's completion trailer."""
    keeper = compression.TailKeeper()
    argv = None if comp in ("none", "gzip") else compression.decompressor_argv(module, comp, path)
    try:
        if argv is None:
            tester = compression.GzipTester(keeper) if comp == "gzip" else None
            with open(path, "rb") as handle:
                while True:
                    block = handle.read(checksum.CHUNK_SIZE)
                    if not block:
                        break
                    if tester is None:
                        keeper(block)
                    else:
                        tester.feed(block)
            if tester is not None:
                tester.close()
        else:
            try:
                run_pipeline([(os.path.basename(argv[0]) + " -d", argv)], sink=keeper)
            except PipelineError as exc:
                raise ArtifactError("%s fails the %s decompression test (truncated or damaged): %s" % (
                    path, comp, exc))
    except compression.DecompressionError as exc:
        raise ArtifactError("%s fails the %s decompression test (truncated or damaged): %s" % (path, comp, exc))
    except OSError as exc:
        raise ArtifactError("cannot read %s: %s" % (path, exc))
    if not keeper.plain_dump_complete():
        raise ArtifactError("%s is incomplete: it lacks the '-- PostgreSQL database dump complete' line pg_dump "
                            "writes last (the dump was cut short)" % path)
    return keeper.size


def inspect(module, client, path, require_checksum=False):
    """Check an existing artifact before use: sidecars, format, compression, readability.

    Returns ``dict(format, compression, checksums, uncompressed_size)``; raises :class:`ArtifactError`.
    """
    if not os.path.exists(path):
        raise ArtifactError("backup %s does not exist" % path)

    def sidecars():
        try:
            return checksum.verify_sidecars(path, required=require_checksum)
        except checksum.ChecksumError as exc:
            raise ArtifactError(str(exc))
        except OSError as exc:
            raise ArtifactError("cannot read %s: %s" % (path, exc))

    def content():
        # the decompression test runs beside the checksum pass; a checksum failure is reported first
        try:
            fmt, comp = compression.detect(path)
        except OSError as exc:
            raise ArtifactError("cannot read %s: %s" % (path, exc))
        if fmt is None:
            raise ArtifactError("%s is empty or not a PostgreSQL dump this collection can restore" % path)
        return fmt, comp, _verify(module, client, path, fmt, comp)

    (status, digests), (fmt, comp, uncompressed) = _beside(sidecars, content)
    return dict(format=fmt, compression=comp, checksums=status, digests=digests or {},
                uncompressed_size=uncompressed)
