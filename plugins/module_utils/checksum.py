# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Checksums and their sidecars, streamed: MD5 (the plan's, ``md5sum -c`` format) and SHA-256.

For a directory (a ``pg_dump --format=directory`` dump) the sidecar lists every file, relative to the
directory's parent, so ``md5sum -c backup_x.dir.md5`` works from the backup folder; the digest reported
for the directory is the digest of that listing.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.atlasia.dr.plugins.module_utils.atomic import write_text
from ansible_collections.atlasia.dr.plugins.module_utils.naming import sidecar_names

ALGORITHMS = ("md5", "sha256")
CHUNK_SIZE = 1024 * 1024


class ChecksumError(Exception):
    """A sidecar does not match its artifact, or cannot be read."""


class MultiHasher(object):
    """Feed bytes once, get every digest."""

    def __init__(self, algorithms=ALGORITHMS):
        self._hashes = dict((name, hashlib.new(name)) for name in algorithms)
        self.size = 0

    def update(self, data):
        self.size += len(data)
        for digest in self._hashes.values():
            digest.update(data)

    def hexdigests(self):
        return dict((name, digest.hexdigest()) for name, digest in self._hashes.items())


def file_digests(path, algorithms=ALGORITHMS, chunk_size=CHUNK_SIZE):
    """Digests of a file, read in chunks (constant memory). Returns ``(hexdigests, size)``."""
    hasher = MultiHasher(algorithms)
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk_size)
            if not block:
                break
            hasher.update(block)
    return hasher.hexdigests(), hasher.size


def _tree_files(path):
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(root, name)


def tree_listing(path, algorithms=ALGORITHMS, final_name=None):
    """Per-algorithm sidecar text for a directory: one ``<hex>  <dir>/<file>`` line per file.

    ``final_name`` is the name listed for the directory when ``path`` is still a temporary name.
    """
    top = final_name or os.path.basename(os.path.abspath(path))
    lines = dict((name, []) for name in algorithms)
    size = 0
    for file_path in _tree_files(path):
        digests, file_size = file_digests(file_path, algorithms)
        size += file_size
        rel = os.path.join(top, os.path.relpath(file_path, path))
        for name in algorithms:
            lines[name].append("%s  %s\n" % (digests[name], rel))
    return dict((name, "".join(lines[name])) for name in algorithms), size


def sidecar_text(hexdigest, name):
    """One line in ``md5sum``/``sha256sum`` format."""
    return "%s  %s\n" % (hexdigest, os.path.basename(name))


def artifact_digests(path, algorithms=ALGORITHMS, final_name=None):
    """``(hexdigests, size, sidecar_texts)`` of a file or a directory artifact.

    ``final_name``: the artifact's final base name when ``path`` is still a temporary name. A directory's
    digest is the digest of its listing, so the listing must already name the final directory.
    """
    name = final_name or os.path.basename(path.rstrip("/"))
    if os.path.isdir(path):
        texts, size = tree_listing(path, algorithms, final_name=name)
        digests = dict((algo, hashlib.new(algo, texts[algo].encode("utf-8")).hexdigest()) for algo in algorithms)
        return digests, size, texts
    digests, size = file_digests(path, algorithms)
    return digests, size, dict((algo, sidecar_text(digests[algo], name)) for algo in algorithms)


def write_sidecars(path, sidecar_texts, final_name=None):
    """Write ``<artifact>.md5`` / ``<artifact>.sha256`` next to the artifact (atomically).

    ``final_name`` is the artifact's final base name when ``path`` is still a temporary name; directory
    listings are rewritten to name the final directory.
    """
    directory = os.path.dirname(os.path.abspath(path))
    current = os.path.basename(path.rstrip("/"))
    final = final_name or current
    written = {}
    for algo, sidecar in sidecar_names(final).items():
        if algo not in sidecar_texts:
            continue
        text = sidecar_texts[algo]
        if final != current:
            text = "".join(
                line.replace("  %s/" % current, "  %s/" % final, 1).replace("  %s\n" % current, "  %s\n" % final, 1)
                for line in text.splitlines(True)
            )
        target = os.path.join(directory, sidecar)
        write_text(target, text, mode=0o644)
        written[algo] = target
    return written


def write_with_sidecars(final_path, producer, mode=0o600, overwrite=True):
    """Run ``producer(sink)`` into ``final_path`` atomically, hashing while writing (``artifact.write_stream``).

    ``sink(block)`` writes and hashes a block. The sidecars are written before the rename, so a file under its
    final name always has them. Returns ``(digests, size, what producer returned)``.
    """
    from ansible_collections.atlasia.dr.plugins.module_utils.artifact import write_stream  # artifact imports us

    return write_stream(final_path, producer, mode=mode, overwrite=overwrite)


def parse_sidecar_text(text, hex_only=False):
    """``[(hexdigest, name)]`` of a ``md5sum``/``sha256sum`` file; :class:`ChecksumError` when malformed.

    ``hex_only`` also refuses a digest that is not hexadecimal (text read from a bucket, not written by us).
    """
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or (hex_only and not all(c in "0123456789abcdefABCDEF" for c in parts[0])):
            raise ChecksumError("malformed checksum line %r" % line)
        entries.append((parts[0].lower(), parts[1].lstrip("*")))
    if not entries:
        raise ChecksumError("empty checksum file")
    return entries


def _parse_sidecar(text):
    return parse_sidecar_text(text)


def verify_sidecars(path, algorithms=ALGORITHMS, required=False):
    """Check an artifact against its sidecars.

    Returns ``{algo: 'ok' | 'missing'}`` and the digests computed (``None`` when nothing was checked).
    Raises :class:`ChecksumError` naming the file and both digests on a mismatch, and when ``required``
    and no sidecar exists.
    """
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path.rstrip("/"))
    status = {}
    present = {}
    for algo, sidecar in sidecar_names(name).items():
        if algo not in algorithms:
            continue
        sidecar_path = os.path.join(directory, sidecar)
        if not os.path.exists(sidecar_path):
            status[algo] = "missing"
            continue
        with open(sidecar_path, "r") as handle:
            try:
                present[algo] = _parse_sidecar(handle.read())
            except ChecksumError as exc:
                raise ChecksumError("%s: %s" % (sidecar_path, exc))
    if not present:
        if required:
            raise ChecksumError("no checksum sidecar (.md5/.sha256) next to %s" % path)
        return status, None
    computed = {}
    if os.path.isdir(path):
        cache = {}  # each file read once for every algorithm its sidecars name

        def digest_of(file_path, algo):
            if file_path not in cache:
                cache[file_path] = file_digests(file_path, tuple(present))[0]
            return cache[file_path][algo]

        for algo, entries in present.items():
            for expected, rel in entries:
                file_path = os.path.join(directory, rel)
                if not os.path.isfile(file_path):
                    raise ChecksumError("%s lists %s, which is missing" % (sidecar_names(name)[algo], rel))
                actual = digest_of(file_path, algo)
                if actual != expected:
                    raise ChecksumError(
                        "%s checksum mismatch for %s: expected %s, found %s" % (algo.upper(), file_path, expected, actual))
            listed = set(rel for expected, rel in entries)
            actual_files = set(os.path.relpath(f, directory) for f in _tree_files(path))
            if actual_files - listed:
                raise ChecksumError("%s holds files its %s sidecar does not list: %s" % (
                    path, algo, ", ".join(sorted(actual_files - listed))))
            status[algo] = "ok"
        return status, None
    digests, size = file_digests(path, tuple(present))
    for algo, entries in present.items():
        expected = entries[0][0]
        if digests[algo] != expected:
            raise ChecksumError("%s checksum mismatch for %s: expected %s, found %s (the file is damaged or "
                                "incomplete)" % (algo.upper(), path, expected, digests[algo]))
        status[algo] = "ok"
        computed[algo] = digests[algo]
    return status, computed
