"""docs/guarantees.md ("What we guarantee") stays backed by this suite: every guarantee names a test of
tests/faults that exists, and every fault-injection test backs at least one guarantee."""

from __future__ import annotations

import ast
import re

from tests.support import REPO_ROOT

DOC = REPO_ROOT / "docs" / "guarantees.md"
FAULTS = REPO_ROOT / "tests" / "faults"
REFERENCE = re.compile(r"`(tests/faults/test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)(?:\[[^\]`]*\])?`")


def fault_tests():
    found = set()
    for path in sorted(FAULTS.glob("test_*.py")):
        if path.name == "test_guarantees_doc.py":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(("tests/faults/%s" % path.name, node.name))
    return found


def test_every_guarantee_is_backed_by_an_existing_fault_test():
    guarantees = []  # one bullet each, with its continuation lines
    for line in DOC.read_text().splitlines():
        if line.startswith("- "):
            guarantees.append(line)
        elif line.startswith("  ") and guarantees and line.strip():
            guarantees[-1] += " " + line.strip()
        elif not line.strip() and guarantees:
            guarantees.append("")
    guarantees = [g for g in guarantees if g]
    assert len(guarantees) >= 7
    existing = fault_tests()
    for line in guarantees:
        references = REFERENCE.findall(line)
        assert references, "this guarantee names no test: %s" % line
        for reference in references:
            assert reference in existing, "%s::%s does not exist" % reference
    named = set(ref for line in guarantees for ref in REFERENCE.findall(line))
    assert existing - named == set(), "fault tests that back no guarantee: %s" % sorted(existing - named)
