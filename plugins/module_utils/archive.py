# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""File archives of a backup set (configuration, uploads, plugin artifacts, recent logs), used by dr_archive.

Creating: the module selects the entries itself (paths, globs expanded with :mod:`glob`, exclusions, age
filter) and hands GNU tar the exact list (``--no-recursion --null --files-from``), so the archive holds what
was counted and nothing else. The stream ``tar --create | compressor`` is hashed while it is written under a
hidden temporary name; the temporary file is then read back whole (decompression and ``tar --list``) and its
member names compared with the selection; only then are the ``.md5``/``.sha256`` sidecars and the JSON
manifest written and the archive renamed to ``<prefix>_<YYYYMMDD>_<HHMMSS>.tar.gz|.tar.zst|.tar``.

Extracting: sidecars are checked and the archive is read whole before anything under the destination is
touched; the entries that differ from the destination are computed from the listing (type, size, mtime,
mode, link target) and only those are written, so extracting the same archive twice changes nothing the second
time.

Nothing is written outside the destination: before tar runs, every member's path is resolved component by
component (:func:`resolve_beneath`, the semantics of ``openat2(RESOLVE_BENEATH)``) through the symbolic links
already on disk under the destination (an earlier archive of the same restore may have made them) and those the
archive writes before it; a member that leaves the destination, a symbolic link pointing out of it and a hard
link to a file outside it make the whole archive refused (:func:`check_beneath`). GNU tar alone does not
prevent this: it follows an existing link in a member's parent path whatever its options (``--unlink-first``
only removes the last component), and ``--keep-directory-symlink`` writes into a kept link to a directory.
"""

from __future__ import annotations

import calendar
import errno
import fnmatch
import glob
import json
import os
import re
import stat
import tempfile
import time
from collections import namedtuple

from ansible_collections.atlasia.dr.plugins.module_utils import artifact, checksum, compression, naming
from ansible_collections.atlasia.dr.plugins.module_utils.atomic import parse_mode
from ansible_collections.atlasia.dr.plugins.module_utils.pipeline import PipelineError, run_pipeline

EXTENSIONS = {"gzip": "tar.gz", "zstd": "tar.zst", "none": "tar"}
STATES = ("created", "extracted")
MISSING_CHOICES = ("ignore", "warn", "fail")
OVERWRITE_CHOICES = ("always", "never", "older")
TAR_FORMAT = "posix"
# pax headers keep modification times to the nanosecond (an edited file is told from the archived copy even
# within the same second); access and change times are left out (they differ at every run).
PAX_OPTION = "delete=atime,delete=ctime"
# tar's listing is parsed: fixed locale (C quoting of every non-ASCII byte) and time zone.
TAR_ENV = {"LC_ALL": "C", "TZ": "UTC"}
USTAR_MAGIC_OFFSET = 257
LIST_LIMIT = 1000
_CHANGED_WHILE_READ = ": file changed as we read it"
_VANISHED = ": Cannot stat: No such file or directory"
_TAR_EXITING = "Exiting with failure status due to previous errors"
_TAIL_LIMIT = 3900  # run_pipeline keeps the last 4000 bytes of a stage's error output

Entry = namedtuple("Entry", ["path", "kind", "size", "inode"])
"""One selected entry: absolute ``path``, ``kind`` (``file``, ``dir``, ``link``, ``other``), ``size`` (bytes
of a regular file, else 0) and ``inode`` (``(st_dev, st_ino)``, to count hard-linked data once)."""

Member = namedtuple("Member", ["name", "type", "mode", "uid", "gid", "size", "mtime", "link", "mtime_ns"])
"""One member of an archive, from ``tar --list --verbose``: ``type`` is tar's first letter (``-``, ``d``, ``l``,
``h``, ``p``, ``c``, ``b``), ``mode`` the permission bits, ``mtime`` whole seconds since the epoch and
``mtime_ns`` nanoseconds, ``link`` the target of a symbolic (``l``) or hard (``h``) link."""


class ArchiveError(Exception):
    """The archive cannot be made or used: bad options, damaged or foreign file, verification failure."""


def archive_argument_spec():
    """Options of dr_archive."""
    return dict(
        state=dict(type="str", default="created", choices=list(STATES)),
        paths=dict(type="list", elements="path"),
        exclude=dict(type="list", elements="str", default=[]),
        max_age_days=dict(type="int"),
        dest=dict(type="path"),
        prefix=dict(type="str"),
        timestamp=dict(type="str"),
        compression=dict(type="str", default="gzip", choices=list(compression.COMPRESSIONS)),
        compression_level=dict(type="int"),
        compression_threads=dict(type="int", default=0),
        mode=dict(type="raw", default="0600"),
        missing=dict(type="str", default="warn", choices=list(MISSING_CHOICES)),
        allow_empty=dict(type="bool", default=False),
        src=dict(type="path"),
        overwrite=dict(type="str", default="always", choices=list(OVERWRITE_CHOICES)),
        require_checksum=dict(type="bool", default=False),
    )


def resolve(params):
    """Options of ``state=created`` with the defaults that depend on others; returns a new dict.

    Raises :class:`ArchiveError` on invalid values.
    """
    opts = dict(params)
    try:
        opts["moment"] = naming.parse_timestamp(opts["timestamp"]) if opts.get("timestamp") else naming.utc_now()
    except ValueError:
        raise ArchiveError("timestamp %r is not YYYYMMDD_HHMMSS" % opts["timestamp"])
    try:
        opts["stem"] = naming.backup_stem(opts["prefix"], opts["moment"])
        opts["file_mode"] = parse_mode(opts.get("mode", "0600"))
    except ValueError as exc:
        raise ArchiveError(str(exc))
    comp = opts["compression"]
    if opts.get("compression_level") is None:
        opts["compression_level"] = compression.DEFAULT_LEVEL[comp]
    if comp != "none" and not 1 <= opts["compression_level"] <= (19 if comp == "zstd" else 9):
        raise ArchiveError("compression_level %s is out of range for %s" % (opts["compression_level"], comp))
    if opts.get("max_age_days") is not None and opts["max_age_days"] < 0:
        raise ArchiveError("max_age_days must be 0 or more")
    opts["name"] = "%s.%s" % (opts["stem"], EXTENSIONS[comp])
    opts["path"] = os.path.join(opts["dest"], opts["name"])
    opts["manifest_path"] = os.path.join(opts["dest"], naming.manifest_name(opts["stem"]))
    return opts


# --- selection ---------------------------------------------------------------------------------------------

def has_magic(pattern):
    """True when ``pattern`` holds glob wildcards (``*``, ``?``, ``[``)."""
    return glob.escape(pattern) != pattern


def excluded(path, patterns):
    """True when ``path`` matches one of ``patterns``.

    A pattern holding ``/`` is matched against the whole absolute path (``*`` then also matches ``/``); any
    other pattern against the base name only.
    """
    base = os.path.basename(path)
    for pattern in patterns:
        if fnmatch.fnmatchcase(path if "/" in pattern else base, pattern):
            return True
    return False


class Selection(object):
    """The entries to archive, in archive order, and what was left out and why."""

    def __init__(self, exclude=None, cutoff=None):
        self.exclude = list(exclude or [])
        self.cutoff = cutoff
        self.entries = []
        self.missing = []
        self.linked_dirs = []
        self.omitted = dict(excluded=0, older=0, sockets=0)
        self._seen = set()

    @property
    def files(self):
        """Entries that are not directories (files, symbolic links, FIFOs, devices)."""
        return sum(1 for entry in self.entries if entry.kind != "dir")

    @property
    def directories(self):
        return sum(1 for entry in self.entries if entry.kind == "dir")

    @property
    def total_bytes(self):
        """Bytes of regular-file data (hard-linked data counted once)."""
        seen = set()
        total = 0
        for entry in self.entries:
            if entry.kind == "file" and entry.inode not in seen:
                seen.add(entry.inode)
                total += entry.size
        return total

    def names(self):
        """Member names: absolute paths relative to ``/`` (tar runs with ``--directory=/``)."""
        return [entry.path.lstrip("/") for entry in self.entries]

    def add_root(self, path):
        """Add ``path`` (a file, link or directory tree) unless excluded or already added."""
        if excluded(path, self.exclude):
            self.omitted["excluded"] += 1
            return
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) and os.path.isdir(path):
            self.linked_dirs.append(path)
        self._add(path, st, top=True)

    def _keep(self, st):
        return self.cutoff is None or st.st_mtime >= self.cutoff

    def _add(self, path, st, top=False):
        if path in self._seen:
            return
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._add_dir(path, st, top)
            return
        if stat.S_ISSOCK(mode):  # tar cannot archive sockets (it skips them): never count them
            self.omitted["sockets"] += 1
            return
        if not self._keep(st):
            self.omitted["older"] += 1
            return
        self._seen.add(path)
        if stat.S_ISREG(mode):
            self.entries.append(Entry(path, "file", st.st_size, (st.st_dev, st.st_ino)))
        elif stat.S_ISLNK(mode):
            self.entries.append(Entry(path, "link", 0, None))
        else:
            self.entries.append(Entry(path, "other", 0, None))

    def _add_dir(self, path, st, top):
        self._seen.add(path)
        index = len(self.entries)
        self.entries.append(Entry(path, "dir", 0, None))
        try:
            with os.scandir(path) as iterator:
                children = sorted(iterator, key=lambda item: item.name)
        except FileNotFoundError:
            if top:
                raise
            self.entries.pop()  # removed since its parent was read (a rotated log directory)
            return
        for child in children:
            if excluded(child.path, self.exclude):
                self.omitted["excluded"] += 1
                continue
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the directory was read
            self._add(child.path, st)
        # with an age filter, a directory is kept only when it holds something kept (or was named)
        if self.cutoff is not None and not top and len(self.entries) == index + 1:
            self.entries.pop()
            self._seen.discard(path)


def select(paths, exclude=None, max_age_days=None, now=None):
    """Expand ``paths`` (files, directories, globs) into a :class:`Selection`.

    A path that does not exist and a pattern that matches nothing are recorded in ``missing``. A path that
    exists is taken literally even when it holds glob characters. Raises :class:`ArchiveError` for a relative
    path and for ``/``; ``OSError`` for an unreadable directory.
    """
    now = time.time() if now is None else now
    cutoff = None if max_age_days is None else now - max_age_days * 86400
    selection = Selection(exclude, cutoff)
    for raw in paths:
        pattern = os.path.expanduser(raw)
        if not os.path.isabs(pattern):
            raise ArchiveError("path %r is not absolute; name files and directories by absolute path" % raw)
        pattern = os.path.normpath(pattern)
        if pattern in ("/", "//"):
            raise ArchiveError("refusing to archive the whole filesystem (/)")
        if os.path.lexists(pattern):
            matches = [pattern]
        elif has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
        else:
            matches = []
        if not matches:
            selection.missing.append(raw)
            continue
        for match in matches:
            selection.add_root(match)
    return selection


# --- tar ---------------------------------------------------------------------------------------------------

def gnu_tar(module):
    """Path of GNU tar; fails the module when ``tar`` is another implementation (busybox, bsdtar)."""
    tar = module.get_bin_path("tar", required=True)
    rc, out, err = module.run_command([tar, "--version"], environ_update=TAR_ENV)
    if rc != 0 or "GNU tar" not in out:
        module.fail_json(msg="%s is not GNU tar (%s); dr_archive needs GNU tar" % (
            tar, (out or err).strip().splitlines()[0] if (out or err).strip() else "no version"))
    return tar


_C_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "?": 63, "'": 39}


def c_unquote(text):
    """Name quoted by tar's ``--quoting-style=c`` (without the outer quotes) to a ``str`` of the raw bytes."""
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char != "\\" or index + 1 == len(text):
            out.extend(char.encode("utf-8", "surrogateescape"))
            index += 1
            continue
        nxt = text[index + 1]
        if nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", text[index + 1:]).group(0)
            out.append(int(digits, 8) & 0xFF)
            index += 1 + len(digits)
        else:
            out.append(_C_ESCAPES.get(nxt, ord(nxt) if ord(nxt) < 128 else 63))
            index += 2
    return os.fsdecode(bytes(out))


_LIST_RE = re.compile(
    r"^(?P<perm>\S+)\s+(?P<uid>\d+)/(?P<gid>\d+)\s+(?P<size>\S+)\s+"
    r"(?P<date>\d{4}-\d\d-\d\d) (?P<time>\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d{1,9}))?\s+"
    r'"(?P<name>(?:[^"\\]|\\.)*)"'
    r'(?: (?:->|link to) "(?P<link>(?:[^"\\]|\\.)*)")?$'
)

_PERM_TABLE = (
    (0o400, "r", "", 0), (0o200, "w", "", 0), (0o100, "x", "sS", 0o4000),
    (0o40, "r", "", 0), (0o20, "w", "", 0), (0o10, "x", "sS", 0o2000),
    (0o4, "r", "", 0), (0o2, "w", "", 0), (0o1, "x", "tT", 0o1000),
)


def perm_bits(perm):
    """``rwsr-x--T`` (the 9 characters after ``ls``'s type letter) to mode bits (``0o4751``)."""
    bits = 0
    for char, (bit, letter, specials, special_bit) in zip(perm, _PERM_TABLE):
        if char == letter or (specials and char == specials[0]):
            bits |= bit
        if specials and char in specials:
            bits |= special_bit
    return bits


def parse_listing(text):
    """Members of ``tar --list --verbose --full-time --numeric-owner --quoting-style=c`` output (TZ=UTC)."""
    members = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _LIST_RE.match(line)
        if not match:
            raise ArchiveError("unexpected line in the archive listing: %r" % line[:200])
        perm = match.group("perm")
        size_text = match.group("size")
        moment = time.strptime("%s %s" % (match.group("date"), match.group("time")), "%Y-%m-%d %H:%M:%S")
        name = c_unquote(match.group("name"))
        if name != "/":
            name = name.rstrip("/")
        link = c_unquote(match.group("link")) if match.group("link") is not None else None
        seconds = calendar.timegm(moment)
        fraction = int((match.group("fraction") or "0").ljust(9, "0"))
        members.append(Member(name=name, type=perm[0], mode=perm_bits(perm[1:10]), uid=int(match.group("uid")),
                              gid=int(match.group("gid")), size=int(size_text) if size_text.isdigit() else 0,
                              mtime=seconds, link=link, mtime_ns=seconds * 10 ** 9 + fraction))
    return members


def detect_compression(path):
    """``gzip``, ``zstd`` or ``none`` (an uncompressed tar) from the content; :class:`ArchiveError` otherwise."""
    with open(path, "rb") as handle:
        head = handle.read(USTAR_MAGIC_OFFSET + 8)
    if head.startswith(compression.GZIP_MAGIC):
        return "gzip"
    if head.startswith(compression.ZSTD_MAGIC):
        return "zstd"
    if head[USTAR_MAGIC_OFFSET:USTAR_MAGIC_OFFSET + 5] == b"ustar":
        return "none"
    raise ArchiveError("%s is empty or not a tar archive (plain, gzip or zstd)" % path)


def _read_stages(module, tar, path, comp, tar_args):
    """Pipeline stages reading the archive ``path`` whole with ``tar <tar_args>``."""
    decomp = compression.decompressor_argv(module, comp, path)
    if decomp is None:
        return [("tar", [tar] + tar_args + ["--file=%s" % path])]
    return [(os.path.basename(decomp[0]) + " -d", decomp), ("tar", [tar] + tar_args + ["--file=-"])]


def list_members(module, tar, path, comp):
    """Read the whole archive (decompression and tar) and return its members; :class:`ArchiveError` when it
    is damaged or truncated."""
    chunks = []
    args = ["--list", "--verbose", "--full-time", "--numeric-owner", "--quoting-style=c"]
    try:
        run_pipeline(_read_stages(module, tar, path, comp, args), sink=chunks.append, env_update=TAR_ENV)
    except PipelineError as exc:
        raise ArchiveError("%s cannot be read whole (truncated or damaged): %s" % (path, exc))
    except OSError as exc:
        raise ArchiveError("cannot read %s: %s" % (path, exc))
    return parse_listing(b"".join(chunks).decode("ascii", "replace"))


def create_stages(module, tar, list_path, opts):
    """``tar --create`` of the entries listed (NUL-separated, relative to /) in ``list_path`` [| compressor]."""
    stages = [("tar", [tar, "--create", "--file=-", "--directory=/", "--format=%s" % TAR_FORMAT,
                       "--pax-option=%s" % PAX_OPTION, "--numeric-owner",
                       "--no-recursion", "--null", "--verbatim-files-from", "--files-from=%s" % list_path])]
    comp = compression.compressor_argv(module, opts["compression"], opts["compression_level"],
                                       opts["compression_threads"])
    if comp:
        stages.append((os.path.basename(comp[0]), comp))
    return stages


def tar_problems(exc, program="tar"):
    """Files GNU tar reported as changed while it read them, or removed before it could, when those are the only
    problems of the failed pipeline ``exc``: ``dict(changed=[...], vanished=[...], other=[...])`` (``other``: the
    further messages of an exit status 1); else ``None``.

    Both happen to live logs (appended to, rotated away). Exit status 1 of ``tar --create`` means only "some files
    changed while being archived"; the archive is complete. Exit status 2 is accepted only when every line of
    tar's (complete) error output is about a vanished or changed file; the vanished files are then not in the
    archive, which the verification checks. tar starts its messages with ``program`` (its argv[0]) and ``: ``.
    """
    prefixes = tuple(set((program + ": ", os.path.basename(program) + ": ")))
    if len(exc.failures) != 1 or exc.cause is not None:
        return None
    name, returncode, stderr = exc.failures[0]
    if name != "tar" or returncode not in (1, 2):
        return None
    stderr = stderr or ""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and not lines[0].startswith(prefixes):
        if returncode == 2:
            return None  # the error output was cut: something else may have gone wrong
        lines = lines[1:]
    problems = dict(changed=[], vanished=[], other=[])
    for line in lines:
        prefix = [p for p in prefixes if line.startswith(p)]
        body = line[len(prefix[0]):] if prefix else None
        if body == _TAR_EXITING:
            continue
        if body is not None and body.endswith(_CHANGED_WHILE_READ):
            problems["changed"].append(body[:-len(_CHANGED_WHILE_READ)])
        elif body is not None and body.endswith(_VANISHED):
            problems["vanished"].append(body[:-len(_VANISHED)])
        elif returncode == 2:
            return None
        else:
            problems["other"].append(line)
    if returncode == 2 and (not problems["vanished"] or len(stderr.encode("utf-8")) >= _TAIL_LIMIT):
        return None
    return problems


def verify_members(members, expected_names):
    """Compare an archive's member names with the names that were archived; :class:`ArchiveError` on a
    difference."""
    listed = [member.name for member in members]
    if len(listed) != len(expected_names) or set(listed) != set(expected_names):
        missing = sorted(set(expected_names) - set(listed))[:5]
        extra = sorted(set(listed) - set(expected_names))[:5]
        raise ArchiveError("the archive lists %d entries where %d were added (missing: %s; unexpected: %s)" % (
            len(listed), len(expected_names), ", ".join(missing) or "none", ", ".join(extra) or "none"))


# --- create ------------------------------------------------------------------------------------------------

def create(module, opts, selection, warn=None):
    """Write the archive of ``selection`` to ``opts['path']``; returns the result dict.

    Raises :class:`ArchiveError` (tar or verification failure) or ``OSError``. Nothing with the final name
    exists unless every step succeeded.
    """
    started = naming.utc_now()
    t0 = time.time()
    artifact.prepare(opts["dest"])
    if os.path.lexists(opts["path"]):
        raise ArchiveError("%s already exists; an archive is never overwritten (pass another timestamp or prefix)"
                           % opts["path"])
    tar = gnu_tar(module)
    names = selection.names()
    problems = dict(changed=[], vanished=[], other=[])

    def verify(out):
        members = list_members(module, tar, out.temp_path, opts["compression"])
        vanished = set(problems["vanished"])
        verify_members(members, [name for name in names if name not in vanished])
        return members

    def manifest(out):
        return _manifest(opts, selection, out.verified, out.size, out.digests, started, t0, problems)

    with tempfile.NamedTemporaryFile(prefix=".dr_archive-list-", suffix=".txt") as listing:
        listing.write(b"".join(os.fsencode(name) + b"\0" for name in names))
        listing.flush()
        with artifact.Writer(opts["path"], mode=opts["file_mode"], manifest_path=opts["manifest_path"],
                             verify=verify, manifest=manifest) as out:
            try:
                run_pipeline(create_stages(module, tar, listing.name, opts), sink=out.write, env_update=TAR_ENV)
            except PipelineError as exc:
                problems = tar_problems(exc, tar)
                if problems is None:
                    raise ArchiveError("tar failed: %s" % exc)
    manifest = out.manifest
    if warn is not None and problems["changed"]:
        warn("%d file(s) changed while they were archived (their archived copy may mix old and new content): %s"
             % (len(problems["changed"]), ", ".join(problems["changed"][:10])))
    if warn is not None and problems["other"]:
        warn("tar reported: %s" % " | ".join(problems["other"][:10]))
    if warn is not None and problems["vanished"]:
        warn("%d file(s) were removed while the archive was made and are not in it: %s"
             % (len(problems["vanished"]), ", ".join(problems["vanished"][:10])))
    return naming.artifact_result(opts, manifest, files=manifest["files"], directories=manifest["directories"],
                                  total_bytes=manifest["total_bytes"])


def _manifest(opts, selection, members, size, digests, started, t0, problems):
    """The manifest; the counts are those of the verified archive."""
    return artifact.base_manifest(
        opts["name"], "archive", "atlasia.dr.dr_archive", size, digests, started, t0,
        prefix=opts["prefix"],
        format="tar",
        tar_format=TAR_FORMAT,
        compression=opts["compression"],
        compression_level=opts["compression_level"] if opts["compression"] != "none" else None,
        paths=list(opts["paths"]),
        exclude=list(opts.get("exclude") or []),
        max_age_days=opts.get("max_age_days"),
        files=sum(1 for member in members if member.type != "d"),
        directories=sum(1 for member in members if member.type == "d"),
        members=len(members),
        total_bytes=sum(member.size for member in members if member.type in ("-", "0")),
        omitted=dict(selection.omitted),
        skipped_missing=list(selection.missing),
        changed_while_read=list(problems["changed"]),
        vanished_while_read=list(problems["vanished"]),
    )


# --- extract -----------------------------------------------------------------------------------------------

def inspect(module, tar, src, require_checksum=False):
    """Check an archive before extracting: sidecars, compression, a whole read, safe member names.

    Returns ``(compression, members, checksum_status)``; raises :class:`ArchiveError`.
    """
    if not os.path.isfile(src):
        raise ArchiveError("archive %s does not exist or is not a file" % src)
    try:
        status, digests = checksum.verify_sidecars(src, required=require_checksum)
    except checksum.ChecksumError as exc:
        raise ArchiveError(str(exc))
    except OSError as exc:
        raise ArchiveError("cannot read %s: %s" % (src, exc))
    comp = detect_compression(src)
    members = list_members(module, tar, src, comp)
    recorded = manifest_members(src)
    if recorded is not None and recorded != len(members):
        raise ArchiveError("%s lists %d members where its manifest records %d (truncated or replaced)" % (
            src, len(members), recorded))
    for member in members:
        unsafe = member.name.startswith("/") or ".." in member.name.split("/")
        if member.type == "h" and member.link is not None:
            unsafe = unsafe or member.link.startswith("/") or ".." in member.link.split("/")
        if unsafe:
            raise ArchiveError("%s holds the member %r, which would be written outside the destination" % (
                src, member.name))
    return comp, members, status


def manifest_members(src):
    """Member count recorded by the manifest of ``src`` (``<stem>.json`` next to it), or ``None``.

    GNU tar lists some truncated plain tar files without an error; the count catches them even without
    sidecars. A manifest that is missing, unreadable or about another file is ignored.
    """
    parsed = naming.parse_backup_name(os.path.basename(src))
    if parsed is None or parsed.role != "artifact":
        return None
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(src)), naming.manifest_name(parsed.stem))) as handle:
            data = json.load(handle)
    except (OSError, IOError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("type") != "archive" or data.get("artifact") != parsed.name:
        return None
    members = data.get("members")
    return members if isinstance(members, int) and not isinstance(members, bool) else None


class UnsafeMember(ArchiveError):
    """A member would be written, or would point, outside the destination.

    ``name`` is the member, ``link`` and ``target`` the symbolic link it goes through (``None`` when a ``..``
    leaves the destination without one).
    """

    def __init__(self, msg, name=None, link=None, target=None):
        super(UnsafeMember, self).__init__(msg)
        self.name, self.link, self.target = name, link, target


class _Outside(Exception):
    """Raised by :func:`resolve_beneath`: the path leaves the destination (through ``link`` -> ``target``)."""

    def __init__(self, link=None, target=None, loop=False):
        super(_Outside, self).__init__(link, target)
        self.link, self.target, self.loop = link, target, loop


_MAX_LINKS = 40  # symbolic links followed in one resolution, as the kernel (ELOOP)


def _parts(path):
    return [part for part in path.split("/") if part not in ("", ".")]


def _disk_link(path):
    """Target of the symbolic link ``path``, or ``None`` when ``path`` is something else or does not exist."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    return os.readlink(path) if stat.S_ISLNK(st.st_mode) else None


def resolve_beneath(root, path, links=None, follow=False, start="", cache=None):
    """Resolve ``path`` under the directory ``root`` component by component, like ``openat2(RESOLVE_BENEATH)``.

    ``root`` is the real path of the destination (no symbolic link in it, :func:`os.path.realpath`). ``path``
    is relative to ``start`` (a resolved path relative to ``root``). An absolute ``path`` or link target is
    read from the real ``/``, as the kernel reads the links tar creates (tar writes link targets verbatim): it
    is beneath ``root`` only when it names ``root`` or something under it. Each component is looked up in
    ``links`` (resolved path relative to ``root`` -> target: the links the archive writes before the member)
    and else on disk (:func:`os.lstat`, :func:`os.readlink`); symbolic links are followed, the last component
    only when ``follow`` is true (tar replaces a link it writes over, but keeps a link to a directory where the
    archive holds that directory). A component that does not exist is taken as written. ``cache`` (a dict) keeps
    what was read from disk, for the members of one archive.

    Returns the resolved path relative to ``root`` (``""`` for ``root`` itself). Raises :class:`_Outside` when
    a ``..`` or an absolute link target leaves ``root`` (naming the link whose target does, ``None`` for a ``..``
    of ``path`` itself), or after 40 links (a loop).
    """
    links = links or {}
    root_parts = _parts(root)
    resolved = _parts(start)
    if path.startswith("/"):
        resolved, parts = [], _rebase(root_parts, path, None, path)
    else:
        parts = _parts(path)
    # a stack of (component, the link whose target it comes from), the next component last
    pending = [(part, (None, None)) for part in reversed(parts)]
    hops = 0
    while pending:
        part, origin = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            elif root_parts:  # the parent of / is / itself
                raise _Outside(*origin)
            continue
        resolved.append(part)
        if not pending and not follow:
            break
        name = "/".join(resolved)
        target = _link_text(root, links, name, cache)
        if target is None:
            continue
        hops += 1
        if hops > _MAX_LINKS:
            raise _Outside(name, target, loop=True)
        resolved.pop()
        if target.startswith("/"):
            resolved, parts = [], _rebase(root_parts, target, name, target)
        else:
            parts = _parts(target)
        pending.extend((item, (name, target)) for item in reversed(parts))
    return "/".join(resolved)


def _rebase(root_parts, absolute, link, target):
    """Components of the absolute path ``absolute`` after those of ``root``; :class:`_Outside` (through ``link``
    -> ``target``) when it does not start at ``root``."""
    parts = _parts(absolute)
    if parts[:len(root_parts)] != root_parts:
        raise _Outside(link, target)
    return parts[len(root_parts):]


def _refusal(member, what, exc, dest):
    """Message of :class:`UnsafeMember`: the member, what it is, and the link it goes through."""
    if exc.loop:
        how = "cannot be resolved under the destination %s: too many levels of symbolic links at %s -> %s" % (
            dest, exc.link, exc.target)
    elif exc.link is not None:
        how = "resolves outside the destination %s through the symbolic link %s -> %s" % (dest, exc.link, exc.target)
    else:
        how = "resolves outside the destination %s%s" % (dest, " (%s)" % exc.target if exc.target else "")
    return UnsafeMember("the member %s%s %s" % (member.name, what, how), name=member.name, link=exc.link,
                        target=exc.target)


def _link_text(root, links, path, cache=None):
    """Target of the symbolic link at ``path`` (relative to ``root``) after the archive's earlier links, or
    ``None`` when ``path`` is not a link."""
    if links and path in links:
        return links[path]
    if cache is None:
        return _disk_link(os.path.join(root, path))
    if path not in cache:
        cache[path] = _disk_link(os.path.join(root, path))
    return cache[path]


def check_beneath(members, dest, written=None):
    """Refuse an archive whose members would be written, or would point, outside ``dest``.

    Every member's path is resolved (:func:`resolve_beneath`) against the links already on disk under ``dest``
    (whoever made them: an earlier archive of the same restore, the application, an attacker) and the links
    the archive itself writes before that member (``written``: names of the members tar writes; all when
    ``None``; every member is checked). A symbolic link member must point under ``dest`` (its target read from
    the member's directory), a hard link member must name a file under ``dest``; a directory member is followed
    where it is an existing link (``tar --keep-directory-symlink`` keeps it and writes into it).

    Raises :class:`UnsafeMember` for the first member that does not; returns ``None`` otherwise.
    """
    root = os.path.realpath(dest)
    writes = None if written is None else set(written)
    links, cache = {}, {}
    for member in members:
        what, text = "", None
        try:
            where = resolve_beneath(root, member.name, links, follow=member.type == "d", cache=cache)
            directory = where.rpartition("/")[0]
            if member.type == "l":
                what, text = " (a symbolic link to %s)" % member.link, member.link
            elif member.type == "h" and member.link is not None:
                what = " (a hard link to %s)" % member.link
                linked = resolve_beneath(root, member.link, links, cache=cache)
                text = _link_text(root, links, linked, cache)  # a hard link to a symbolic link is that link again
            if text is not None:
                resolve_beneath(root, text, links, follow=True, start=directory, cache=cache)
        except _Outside as exc:
            raise _refusal(member, what, exc, dest)
        if writes is None or member.name in writes:
            if text is not None:
                links[where] = text
            else:
                links.pop(where, None)


def _same_owner(member, st):
    return os.geteuid() != 0 or (st.st_uid == member.uid and st.st_gid == member.gid)


def differs(member, dest):
    """True when extracting ``member`` under ``dest`` would change the destination."""
    target = os.path.join(dest, member.name)
    try:
        st = os.lstat(target)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return True
        raise
    mode = st.st_mode
    if member.type == "d":
        if stat.S_ISLNK(mode) and os.path.isdir(target):
            return False  # an existing link to a directory is kept (tar --keep-directory-symlink)
        return not stat.S_ISDIR(mode) or stat.S_IMODE(mode) != member.mode or not _same_owner(member, st)
    if member.type == "l":
        return not stat.S_ISLNK(mode) or os.readlink(target) != member.link
    if member.type == "h":
        try:
            return not os.path.samefile(target, os.path.join(dest, member.link))
        except OSError:
            return True
    if member.type in ("-", "0"):
        return (not stat.S_ISREG(mode) or st.st_size != member.size or st.st_mtime_ns != member.mtime_ns
                or stat.S_IMODE(mode) != member.mode or not _same_owner(member, st))
    kinds = {"p": stat.S_ISFIFO, "c": stat.S_ISCHR, "b": stat.S_ISBLK}
    return not kinds.get(member.type, lambda m: False)(mode)


def plan(members, dest, overwrite):
    """Members that extracting with ``overwrite`` (always, never, older) would write under ``dest``.

    Hard links to a file that is written are written too, so they keep sharing its data. Raises
    :class:`UnsafeMember` when a member would be written, or would point, outside ``dest``
    (:func:`check_beneath`): the archive is then refused whole, in check mode too.
    """
    written = []
    for member in members:
        target = os.path.join(dest, member.name)
        if overwrite == "never":
            if not os.path.lexists(target):
                written.append(member)
            continue
        if not differs(member, dest):
            continue
        if overwrite == "older" and member.type != "d" and os.path.lexists(target):
            if os.lstat(target).st_mtime_ns >= member.mtime_ns:
                continue  # tar --keep-newer-files keeps a destination file that is newer or the same age
        written.append(member)
    names = set(member.name for member in written)
    linked = [member for member in members if member.type == "h" and member.link in names and member.name not in names]
    if linked:
        linked = set(member.name for member in linked)
        written = [member for member in members if member.name in names or member.name in linked]
    check_beneath(members, dest, [member.name for member in written])
    return written


def extract_stages(module, tar, src, comp, dest, overwrite, list_path=None):
    args = ["--extract", "--directory=%s" % dest, "--numeric-owner", "--preserve-permissions",
            "--keep-directory-symlink"]
    if overwrite == "never":
        args.append("--skip-old-files")
    elif overwrite == "older":
        args.append("--keep-newer-files")
    if list_path:
        args += ["--null", "--verbatim-files-from", "--no-recursion", "--no-wildcards", "--files-from=%s" % list_path]
    return _read_stages(module, tar, src, comp, args)


def extract(module, tar, src, comp, dest, overwrite, names=None):
    """Extract ``src`` under ``dest`` (created 0700 when missing); only the members ``names`` when given.

    The members must have been checked with :func:`plan` (which refuses any member leading out of ``dest``)
    just before: tar itself follows the links already in a member's path.

    Raises :class:`ArchiveError` on failure.
    """
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o700)
    with tempfile.NamedTemporaryFile(prefix=".dr_archive-extract-", suffix=".txt") as listing:
        if names is not None:
            listing.write(b"".join(os.fsencode(name) + b"\0" for name in names))
            listing.flush()
        try:
            run_pipeline(extract_stages(module, tar, src, comp, dest, overwrite,
                                        listing.name if names is not None else None), env_update=TAR_ENV)
        except PipelineError as exc:
            raise ArchiveError("extraction of %s into %s failed (it may be partial): %s" % (src, dest, exc))


# --- a tree restored elsewhere (a restic snapshot in a staging folder), applied with the archive's rules ----

_TREE_TYPES = ((stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"), (stat.S_ISREG, "-"), (stat.S_ISFIFO, "p"),
               (stat.S_ISCHR, "c"), (stat.S_ISBLK, "b"))


def _tree_member(name, st, link=None, kind=None):
    if kind is None:
        kind = next((letter for test, letter in _TREE_TYPES if test(st.st_mode)), None)
    return Member(name=name, type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                  size=st.st_size if kind == "-" else 0, mtime=int(st.st_mtime), link=link, mtime_ns=st.st_mtime_ns)


def tree_members(staging, roots):
    """Members (as :func:`parse_listing` gives them, names relative to ``/``) of the tree under ``staging``
    at or below ``roots`` (absolute paths as they were backed up; their parent directories are not members).

    A file linked more than once is a hard link member after its first name, as tar stores it; sockets are
    left out (tar cannot write them). Directories come before what they hold.
    """
    members, seen = [], {}
    for root in sorted(set(roots)):
        relative = root.strip("/")
        top = os.path.join(staging, relative)
        if not relative or not os.path.lexists(top):
            continue
        stack = [relative]
        while stack:
            name = stack.pop()
            path = os.path.join(staging, name)
            st = os.lstat(path)
            if stat.S_ISSOCK(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode):
                members.append(_tree_member(name, st, link=os.readlink(path)))
            elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
                members.append(_tree_member(name, st, link=seen[(st.st_dev, st.st_ino)], kind="h"))
            else:
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    seen[(st.st_dev, st.st_ino)] = name
                members.append(_tree_member(name, st))
            if stat.S_ISDIR(st.st_mode):
                stack.extend(os.path.join(name, child) for child in sorted(os.listdir(path), reverse=True))
    return members


def apply_tree(module, tar, staging, dest, overwrite, names):
    """Write the entries ``names`` (relative to ``/``) of the tree under ``staging`` into ``dest`` with tar:
    ``tar --create`` of exactly those entries piped into the ``tar --extract`` of :func:`extract`
    (permissions, owners, times, ``--keep-directory-symlink``, ``overwrite``). The entries must have been
    checked with :func:`plan` against ``dest`` just before. Raises :class:`ArchiveError`."""
    if not names:
        return
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o700)
    args = ["--extract", "--file=-", "--directory=%s" % dest, "--numeric-owner", "--preserve-permissions",
            "--keep-directory-symlink"]
    if overwrite == "never":
        args.append("--skip-old-files")
    elif overwrite == "older":
        args.append("--keep-newer-files")
    with tempfile.NamedTemporaryFile(prefix=".dr-tree-", suffix=".txt") as listing:
        listing.write(b"".join(os.fsencode(name) + b"\0" for name in names))
        listing.flush()
        stages = [("tar --create", [tar, "--create", "--file=-", "--directory=%s" % staging,
                                    "--format=%s" % TAR_FORMAT, "--pax-option=%s" % PAX_OPTION, "--numeric-owner",
                                    "--no-recursion", "--null", "--verbatim-files-from",
                                    "--files-from=%s" % listing.name]),
                  ("tar --extract", [tar] + args)]
        try:
            run_pipeline(stages, env_update=TAR_ENV)
        except PipelineError as exc:
            raise ArchiveError("copying the restored files from %s into %s failed (the destination may be partly "
                               "written): %s" % (staging, dest, exc))
