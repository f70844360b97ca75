# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Writing an artifact: the one place that knows the order of the steps.

Every module that writes a backup artifact (database dumps, cluster globals, Vault snapshots, file archives,
image bundles, encrypted and decrypted copies) goes through :class:`Writer`::

    with artifact.Writer(path, mode=0o600, manifest_path=manifest_path, verify=check, manifest=build) as out:
        producer(out.write)                     # hashed while it is written, under a hidden temporary name

On leaving the block without an exception the writer

1. flushes and fsyncs the temporary file;
2. calls the verification hook ``verify(out)`` (its return value is kept as ``out.verified``);
3. builds the manifest (``manifest(out)``, or the dict set as ``out.manifest`` in the block);
4. writes the ``.md5``/``.sha256`` sidecars and the JSON manifest (mode 0644, atomically);
5. applies ``mode``, fsyncs and renames the temporary file (or directory) to its final name, and fsyncs the
   directory (:func:`atomic.commit`).

So a file under its final name always has its sidecars and manifest. On any exception (``BaseException``,
a module's ``fail_json`` and ``KeyboardInterrupt`` included) the temporary file or directory is removed, and
so are the sidecars and the manifest unless a file holds the final name (they then describe it); the
exception propagates. Nothing with the final name is left by a failed write.

:func:`base_manifest` holds the fields every artifact manifest shares.
"""

from __future__ import annotations

import errno
import os
import platform
import time

from ansible_collections.atlasia.dr.plugins.module_utils import atomic, checksum, naming


def prepare(dest):
    """Make sure ``dest`` exists (created 0700) and remove the temporaries dead runs left in it."""
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o700, exist_ok=True)
    atomic.cleanup_stale_temps(dest)


def base_manifest(artifact, manifest_type, tool, size, digests, started, t0, finished=None, **fields):
    """The fields every artifact manifest holds, then ``fields`` (the kind's own).

    ``artifact``: the artifact's base name; ``manifest_type``: the manifest's ``type``; ``tool``: the module that wrote it
    (``atlasia.dr.<module>``); ``size`` and ``digests`` (``md5``, ``sha256``): of the file as written;
    ``started``: an aware datetime; ``t0``: the ``time.time()`` the run's duration counts from;
    ``finished``: an aware datetime (now when ``None``).
    """
    manifest = dict(
        artifact=artifact,
        type=manifest_type,
        size=size,
        md5=digests["md5"],
        sha256=digests["sha256"],
        started=started.isoformat(),
        finished=(finished or naming.utc_now()).isoformat(),
        duration=round(time.time() - t0, 3),
        host=platform.node(),
        tool=tool,
    )
    manifest.update(fields)
    return manifest


def remove(path, manifest_path=None, artifact=True):
    """Remove an artifact (file or directory), its sidecars and, when given, its manifest; gone is not an error.

    ``artifact=False`` leaves the artifact itself and removes only what names it.
    """
    if artifact:
        atomic.remove_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    for side in naming.sidecar_names(os.path.basename(path.rstrip("/"))).values():
        atomic.remove_path(os.path.join(directory, side))
    if manifest_path:
        atomic.remove_path(manifest_path)


class Writer(object):
    """Context manager writing one artifact; see the module's documentation for the steps.

    ``final_path``: where the artifact ends. ``mode``: its permissions (an int, or an octal string parsed by
    :func:`atomic.parse_mode`; 0600 for a file, 0700 for a directory when ``None``). ``manifest_path``: where its JSON manifest goes (``None``: no manifest).
    ``overwrite``: replace a file that holds the final name (otherwise ``FileExistsError`` at the rename).
    ``directory``: the artifact is a directory the producer creates at :attr:`temp_path` (a
    ``pg_dump --format=directory`` dump); its sidecars list every file. ``verify``: the verification hook.
    ``manifest``: a callable building the manifest (or set :attr:`manifest` in the block). ``sidecars``:
    write the ``.md5``/``.sha256`` sidecars. ``hasher``: the :class:`checksum.MultiHasher` of the bytes in the
    file; give one the caller feeds itself (in a worker thread, say) and write to :attr:`handle` directly, or
    call :meth:`record` with digests computed elsewhere. :meth:`write` writes and feeds it.

    Attributes while in the block: :attr:`name` (final base name), :attr:`path` (final path),
    :attr:`temp_path`, :attr:`handle` (the binary file object of a file artifact).
    """

    def __init__(self, final_path, mode=None, manifest_path=None, overwrite=False, directory=False, verify=None,
                 manifest=None, sidecars=True, hasher=None):
        self.path = final_path
        self.name = os.path.basename(final_path.rstrip("/"))
        self.mode = atomic.parse_mode((0o700 if directory else 0o600) if mode is None else mode)
        self.manifest_path = manifest_path
        self.overwrite = overwrite
        self.directory = directory
        self.sidecars = sidecars
        self.hasher = hasher if hasher is not None else checksum.MultiHasher()
        self.temp_path = atomic.temp_path_for(final_path)
        self.handle = None
        self.verified = None
        self.manifest = None
        self._verify = verify
        self._build_manifest = manifest
        self._recorded = None
        self._on_failure = []

    # -- in the block -----------------------------------------------------------------------------------------
    def __enter__(self):
        if not self.directory:
            self.handle = open(self.temp_path, "xb", opener=lambda path, flags: os.open(path, flags, self.mode))
        return self

    def write(self, block):
        """Write ``block`` to the file and hash it."""
        self.handle.write(block)
        self.hasher.update(block)

    def record(self, digests, size, sidecar_texts=None):
        """Digests and size of the artifact computed by the caller (they replace :attr:`hasher`'s).

        ``sidecar_texts``: ``{algo: text}`` of a directory artifact (:func:`checksum.artifact_digests`).
        """
        self._recorded = (dict(digests), size, sidecar_texts)

    def on_failure(self, callback):
        """Call ``callback()`` first when the write fails (stop the workers that still feed the artifact)."""
        self._on_failure.append(callback)

    @property
    def digests(self):
        """``{'md5': hex, 'sha256': hex}`` of the artifact."""
        return self._recorded[0] if self._recorded else self.hasher.hexdigests()

    @property
    def size(self):
        """Bytes in the artifact (the sum of its files for a directory)."""
        return self._recorded[1] if self._recorded else self.hasher.size

    def flush(self):
        """Push what was written to the temporary file to the disk (before reading it back)."""
        self.handle.flush()
        os.fsync(self.handle.fileno())

    # -- leaving the block ------------------------------------------------------------------------------------
    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._fail()
            return False
        try:
            self._finish()
        except BaseException:
            self._fail()
            raise
        return False

    def _finish(self):
        if self.handle is not None:
            self.flush()
        if self._verify is not None:
            self.verified = self._verify(self)
        if self.directory and self._recorded is None:
            self._recorded = checksum.artifact_digests(self.temp_path, final_name=self.name)
        if self._build_manifest is not None:
            self.manifest = self._build_manifest(self)
        if not self.overwrite and os.path.lexists(self.path):
            # appeared meanwhile: refused before its sidecars and manifest are touched (the rename refuses it too)
            raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", self.path)
        if self.sidecars:
            checksum.write_sidecars(self.path, self._sidecar_texts())
        if self.manifest_path:
            if self.manifest is None:
                raise ValueError("no manifest was built for %s" % self.path)
            atomic.write_json(self.manifest_path, self.manifest, mode=0o644)
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        os.chmod(self.temp_path, self.mode)
        atomic.commit(self.temp_path, self.path, overwrite=self.overwrite)

    def _sidecar_texts(self):
        if self._recorded and self._recorded[2] is not None:
            return self._recorded[2]
        digests = self.digests
        return dict((algo, checksum.sidecar_text(digests[algo], self.name)) for algo in digests)

    def _fail(self):
        for callback in self._on_failure:
            try:
                callback()
            except Exception:  # pylint: disable=broad-except
                pass  # the failure being handled is the one to report
        if self.handle is not None:
            try:
                self.handle.close()
            except OSError:
                pass
            self.handle = None
        atomic.remove_path(self.temp_path)
        # the artifact never took its final name: remove the sidecars and the manifest that would name it
        if not os.path.exists(self.path):
            remove(self.path, self.manifest_path, artifact=False)


def write_stream(final_path, producer, mode=0o600, overwrite=True, verify=None):
    """Run ``producer(sink)`` into ``final_path`` through a :class:`Writer` (sidecars, no manifest).

    ``sink(block)`` writes and hashes a block. Returns ``(digests, size, what producer returned)``.
    """
    with Writer(final_path, mode=mode, overwrite=overwrite, verify=verify) as out:
        result = producer(out.write)
    return out.digests, out.size, result
