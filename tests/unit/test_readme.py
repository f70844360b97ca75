"""README.md stays true to the code: role variable tables, playbooks and modules it names exist."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import REPO_ROOT


def test_role_variable_tables_are_current():
    result = subprocess.run([sys.executable, "scripts/readme_vars.py", "--check"], cwd=str(REPO_ROOT),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_playbook_is_documented_and_every_documented_playbook_exists():
    readme = (REPO_ROOT / "README.md").read_text()
    named = set(re.findall(r"playbooks/([a-z_]+\.yml)", readme))
    present = set(p.name for p in (REPO_ROOT / "playbooks").glob("*.yml"))
    assert present - named == set(), "playbooks missing from README.md"
    assert named - present == set(), "README.md names playbooks that do not exist"


def test_every_module_is_documented_and_in_the_action_group():
    import yaml

    readme = (REPO_ROOT / "README.md").read_text()
    modules = set(p.stem for p in (REPO_ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    runtime = yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())
    assert set(runtime["action_groups"]["dr"]) == modules
    for module in modules:
        assert "atlasia.dr.%s" % module in readme, module


def test_readme_shows_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
