"""docs/architecture.md stays true to the code: the files and functions it names exist, every module_util is in it."""

from __future__ import annotations

import importlib
import re

from tests.support import REPO_ROOT

DOC = REPO_ROOT / "docs" / "architecture.md"


def test_every_module_util_is_placed_and_every_named_one_exists():
    text = DOC.read_text()
    present = set(p.stem for p in (REPO_ROOT / "plugins" / "module_utils").glob("*.py") if p.stem != "__init__")
    named = set(re.findall(r"module_utils/([a-z0-9_]+)\.py", text))
    assert named - present == set(), "docs/architecture.md names module_utils that do not exist"
    assert present - named == set(), "module_utils missing from docs/architecture.md"


def test_named_paths_exist():
    text = DOC.read_text()
    paths = set(re.findall(r"`((?:plugins|roles|tests|meta|playbooks)/[A-Za-z0-9_./-]+\.(?:py|yml|md))`", text))
    assert paths
    missing = sorted(path for path in paths if not (REPO_ROOT / path).exists())
    assert missing == []


def test_named_functions_exist():
    text = DOC.read_text()
    utils = set(p.stem for p in (REPO_ROOT / "plugins" / "module_utils").glob("*.py"))
    named = set((mod, name) for mod, name in re.findall(r"`(?:[a-z_]+\.)*([a-z0-9_]+)\.([A-Za-z_]+)", text)
                if mod in utils and name not in ("py", "yml", "md"))
    assert ("atomic", "parse_mode") in named
    for mod, name in sorted(named):
        module = importlib.import_module("ansible_collections.atlasia.dr.plugins.module_utils." + mod)
        assert hasattr(module, name), "%s.%s" % (mod, name)


def test_named_calls_exist():
    """Every ``name()`` the text mentions is defined in plugins/."""
    text = DOC.read_text()
    defined = set()
    for path in (REPO_ROOT / "plugins").glob("*/*.py"):
        defined.update(re.findall(r"^\s*(?:def|class) ([A-Za-z_0-9]+)", path.read_text(), re.M))
    called = set(re.findall(r"`(?:[a-z0-9_]+\.)?([A-Za-z_0-9]+)\(", text))
    assert "transfer_argument_spec" in called
    assert sorted(called - defined) == []


def test_every_module_is_built_on_drmodule():
    """As the document says: plain AnsibleModule would replace results' size/mode by the stat of path/dest."""
    for path in sorted((REPO_ROOT / "plugins" / "modules").glob("*.py")):
        source = path.read_text()
        assert "AnsibleModule(" not in source and "DRModule(" in source, path.name
