"""README.md and the documents it links stay true to the code: the generated role variable tables of
docs/variables.md, the playbooks README.md names, the modules docs/modules.md names, the links between them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

from tests.support import REPO_ROOT

README = REPO_ROOT / "README.md"
VARIABLES = REPO_ROOT / "docs" / "variables.md"
MODULES = REPO_ROOT / "docs" / "modules.md"


def readme_vars():
    spec = importlib.util.spec_from_file_location("readme_vars", str(REPO_ROOT / "scripts" / "readme_vars.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_role_variable_tables_are_current():
    result = subprocess.run([sys.executable, "scripts/readme_vars.py", "--check"], cwd=str(REPO_ROOT),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_fails_when_the_tables_are_stale(tmp_path):
    """A role option added, changed or removed without rerunning the script fails the check above."""
    script = readme_vars()
    assert script.DOC == VARIABLES
    text = VARIABLES.read_text()
    assert text.count(script.BEGIN) == 1 and text.count(script.END) == 1
    rows = [line for line in text.splitlines() if line.startswith("| `dr_")]
    assert len(rows) > 50  # every role's options, not an empty section
    stale = tmp_path / "variables.md"
    stale.write_text(text.replace(rows[0] + "\n", ""))  # a variable missing
    assert script.main(["--check"], doc=stale) == 1
    stale.write_text(text.replace(rows[-1], rows[-1].replace("|", "| changed |", 2)))  # a description changed
    assert script.main(["--check"], doc=stale) == 1
    current = tmp_path / "current.md"
    current.write_text(text)
    assert script.main(["--check"], doc=current) == 0
    assert script.main([], doc=stale) == 0 and stale.read_text() == text  # and rewriting brings it back


def test_every_role_has_its_table():
    text = VARIABLES.read_text()
    for spec in sorted(REPO_ROOT.glob("roles/*/meta/argument_specs.yml")):
        assert "#### Role `atlasia.dr.%s`" % spec.parents[1].name in text, spec


def test_every_playbook_is_documented_and_every_documented_playbook_exists():
    readme = README.read_text()
    named = set(re.findall(r"playbooks/([a-z_]+\.yml)", readme))
    present = set(p.name for p in (REPO_ROOT / "playbooks").glob("*.yml"))
    assert present - named == set(), "playbooks missing from README.md"
    assert named - present == set(), "README.md names playbooks that do not exist"


def test_every_module_is_documented_and_in_the_action_group():
    import yaml

    doc = MODULES.read_text()
    modules = set(p.stem for p in (REPO_ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    runtime = yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())
    assert set(runtime["action_groups"]["dr"]) == modules
    for module in modules:
        assert "`atlasia.dr.%s`" % module in doc, module


def test_readme_shows_the_two_commands():
    readme = README.read_text()
    assert "make demo" in readme and "make test" in readme


def test_links_between_the_documents_resolve():
    """Every relative link of README.md and docs/*.md names a file of the repository, and an anchor a heading."""
    def anchors(path):
        return set(re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                   for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M))

    for source in [README] + sorted((REPO_ROOT / "docs").glob("*.md")):
        text = re.sub(r"```.*?```", "", source.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, dummy, anchor = target.partition("#")
            resolved = (source.parent / path).resolve() if path else source
            assert resolved.exists(), "%s links %s" % (source.relative_to(REPO_ROOT), target)
            assert REPO_ROOT in resolved.parents or resolved == REPO_ROOT, \
                "%s links outside the repository: %s" % (source.relative_to(REPO_ROOT), target)
            if anchor and resolved.suffix == ".md":
                assert anchor in anchors(resolved), "%s links %s" % (source.relative_to(REPO_ROOT), target)


def test_readme_links_the_generated_and_moved_documents():
    readme = README.read_text()
    for doc in ("docs/variables.md", "docs/modules.md", "docs/backups.md", "docs/restore.md",
                "docs/guarantees.md", "docs/scenarios.md", "docs/operations.md", "docs/physical.md",
                "docs/performance.md", "docs/architecture.md", "docs/alerts.md"):
        assert "](%s" % doc in readme, doc
