# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Atomic artifacts: written under a hidden temporary name, fsynced, then renamed.

A run killed at any point leaves at most a hidden ``.<name>.tmp-<pid>-<hex>`` file, never a file with a
final name that looks valid. :func:`cleanup_stale_temps` removes the leftovers of dead runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil

from ansible_collections.atlasia.dr.plugins.module_utils.naming import temp_name, temp_owner_pid


def parse_mode(value):
    """File mode from an int or an octal string (``'0600'``, ``'600'``); ``ValueError`` otherwise.

    The one parser of the ``mode`` option of the modules that write an artifact (declared ``type: raw``, so a
    YAML ``0600`` arrives as the int 384 and a quoted ``'0600'`` as a string).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = str(value).strip()
        if not re.match(r"^0?[0-7]{3,4}$", text):
            raise ValueError("mode %r is not an octal file mode such as '0600'" % (value,))
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise ValueError("mode %r is out of range" % (value,))
    return mode


def fsync_dir(path):
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsync every file and directory below ``path`` (a directory-format dump)."""
    for root, dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


def remove_path(path):
    """Remove a file or directory tree; a path that is already gone is not an error."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def temp_path_for(final_path):
    """Hidden temporary path in the same directory as ``final_path`` (same filesystem, so rename is atomic)."""
    return os.path.join(os.path.dirname(os.path.abspath(final_path)), temp_name(final_path))


def commit(temp_path, final_path, overwrite=False):
    """fsync ``temp_path`` (file or tree) and rename it to ``final_path``.

    Without ``overwrite`` an existing ``final_path`` is an error (``FileExistsError``): a backup is never
    replaced silently.
    """
    if os.path.isdir(temp_path):
        fsync_tree(temp_path)
    else:
        fd = os.open(temp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if not overwrite and os.path.lexists(final_path):
        raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", final_path)
    os.rename(temp_path, final_path)
    fsync_dir(os.path.dirname(os.path.abspath(final_path)))


@contextlib.contextmanager
def atomic_file(final_path, mode=0o600, overwrite=False, temp_dir=None):
    """Context manager yielding a binary file object; on success the file appears under ``final_path``.

    ``handle.name`` is the temporary path (for verification steps that read the file before the rename).
    ``temp_dir`` puts the temporary file in another folder of the same filesystem, for a folder whose every
    file is read by someone else (restic's ``keys/``); by default it is written beside ``final_path``.

    On any exception the temporary file is removed and the exception propagates.
    """
    temp_path = temp_path_for(final_path) if temp_dir is None else os.path.join(temp_dir, temp_name(final_path))
    try:
        with open(temp_path, "xb", opener=lambda path, flags: os.open(path, flags, mode)) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_path, mode)
        commit(temp_path, final_path, overwrite=overwrite)
    except BaseException:
        remove_path(temp_path)
        raise


def write_text(final_path, text, mode=0o600, overwrite=True):
    """Write ``text`` (UTF-8) atomically."""
    with atomic_file(final_path, mode=mode, overwrite=overwrite) as handle:
        handle.write(text.encode("utf-8"))


def write_json(final_path, data, mode=0o600, overwrite=True):
    """Write ``data`` as indented, key-sorted JSON atomically."""
    write_text(final_path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", mode, overwrite)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (a run that was killed and not reaped yet, which lasts under a PID 1 that does not reap orphans,
    # common in containers) is not alive: its temporary files are stale.
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def cleanup_stale_temps(directory):
    """Remove temporary artifacts left in ``directory`` by runs that are no longer alive.

    Returns the removed paths. Temporaries of live processes (a concurrent run) are left alone.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        pid = temp_owner_pid(name)
        if pid is None or (pid != os.getpid() and _pid_alive(pid)):
            continue
        if pid == os.getpid():
            continue
        path = os.path.join(directory, name)
        remove_path(path)
        removed.append(path)
    return removed
