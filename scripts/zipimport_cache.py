"""A byte-code cache for code imported from zip archives, installed into the project's venv by scripts/setup.sh.

Every Ansible task runs its module as an AnsiballZ payload: a zip of the module and the module_utils it uses,
imported with Python's zipimport. The zip holds sources only, so each task compiles ansible.module_utils.basic
and the rest again, and Python 3.11's zipimport compiles each module twice (once to find it, once to load it):
measured here, about two thirds of the CPU of a playbook of small tasks run with the venv's Python as the
module interpreter (localhost plays, the test suites, ``make demo``).

This file (imported at start-up by a ``.pth`` file in the venv) keeps the compiled code of such sources under
``<venv>/zipimport-cache/``, keyed by the SHA-256 of the source and the interpreter's magic number: the same
source gives the same code, so nothing that runs changes, only the compiling is skipped. The file name in the
cached code is set to the one of the current import, so tracebacks name the right file. Any error falls back to
compiling. Hosts reached over SSH use their own interpreter and never see this.
"""

import hashlib
import importlib.util
import marshal
import os
import sys
import types

try:
    import zipimport
except ImportError:  # pragma: no cover
    zipimport = None

CACHE_DIR = os.path.join(sys.prefix, "zipimport-cache")
_MAGIC = importlib.util.MAGIC_NUMBER
_MEMO = {}


def _with_filename(code, filename):
    if code.co_filename == filename:
        return code
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _install(original):
    def compile_source(pathname, source):
        try:
            key = hashlib.sha256(_MAGIC + bytes(source)).hexdigest()
        except TypeError:
            return original(pathname, source)
        code = _MEMO.get(key)
        if code is None:
            path = os.path.join(CACHE_DIR, key[:2], key[2:])
            try:
                with open(path, "rb") as handle:
                    code = marshal.loads(handle.read())
            except (OSError, ValueError, EOFError, TypeError):
                code = original(pathname, source)
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    tmp = "%s.%d.tmp" % (path, os.getpid())
                    with open(tmp, "wb") as handle:
                        handle.write(marshal.dumps(code))
                    os.replace(tmp, path)
                except (OSError, ValueError):
                    pass
        # kept under the latest file name: Python 3.11 compiles a module twice per import, with the same name
        code = _MEMO[key] = _with_filename(code, pathname)
        return code

    return compile_source


if zipimport is not None and callable(getattr(zipimport, "_compile_source", None)) and not os.environ.get(
        "ATLASIA_NO_ZIPIMPORT_CACHE"):
    zipimport._compile_source = _install(zipimport._compile_source)  # pylint: disable=protected-access
