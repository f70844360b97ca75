"""docs/guarantees.md ("What we guarantee") stays backed by the tests: every guarantee names a test that exists
(of this suite, or of the integration or unit suite), and every fault-injection test backs at least one
guarantee."""

from __future__ import annotations

import ast
import re

from tests.support import REPO_ROOT

DOC = REPO_ROOT / "docs" / "guarantees.md"
FAULTS = REPO_ROOT / "tests" / "faults"
# `tests/<suite>/.../test_x.py::test_y[param]`, or a whole file `tests/<suite>/.../test_x.py`
REFERENCE = re.compile(r"`(tests/(?:faults|integration|unit)(?:/[a-z0-9_]+)*/test_[a-z0-9_]+\.py)"
                       r"(?:::(test_[a-z0-9_]+)(?:\[[^\]`]*\])?)?`")


def defined_tests(path):
    tree = ast.parse(path.read_text())
    return set(node.name for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"))


def fault_tests():
    found = set()
    for path in sorted(FAULTS.glob("test_*.py")):
        if path.name == "test_guarantees_doc.py":
            continue
        found.update(("tests/faults/%s" % path.name, name) for name in defined_tests(path))
    return found


def guarantees():
    """One bullet each, with its continuation lines."""
    found = []
    for line in DOC.read_text().splitlines():
        if line.startswith("- "):
            found.append(line)
        elif line.startswith("  ") and found and line.strip():
            found[-1] += " " + line.strip()
        elif not line.strip() and found:
            found.append("")
    return [g for g in found if g]


def test_every_guarantee_is_backed_by_an_existing_test():
    lines = guarantees()
    assert len(lines) >= 7
    for line in lines:
        references = REFERENCE.findall(line)
        assert references, "this guarantee names no test: %s" % line
        for path, name in references:
            assert (REPO_ROOT / path).is_file(), "%s does not exist" % path
            if name:
                assert name in defined_tests(REPO_ROOT / path), "%s::%s does not exist" % (path, name)


def test_every_fault_test_backs_a_guarantee():
    named = set(ref for line in guarantees() for ref in REFERENCE.findall(line))
    existing = fault_tests()
    assert existing, "no fault-injection test found"
    assert existing - named == set(), "fault tests that back no guarantee: %s" % sorted(existing - named)
