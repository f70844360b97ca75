"""Render the role variable tables of docs/variables.md from roles/*/meta/argument_specs.yml.

    python scripts/readme_vars.py          rewrite docs/variables.md between the markers
    python scripts/readme_vars.py --check  exit 1 when docs/variables.md is out of date (run by the unit tests)

The tables live between ``<!-- role-vars:begin -->`` and ``<!-- role-vars:end -->``; README.md links to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "variables.md"
BEGIN = "<!-- role-vars:begin -->"
END = "<!-- role-vars:end -->"


def _cell(value):
    text = " ".join(value) if isinstance(value, list) else ("" if value is None else str(value))
    return text.replace("|", "\\|").replace("\n", " ").strip()


def render():
    parts = []
    for spec_path in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = spec_path.parents[1].name
        spec = yaml.safe_load(spec_path.read_text())["argument_specs"]["main"]
        options = spec.get("options") or {}
        parts.append("#### Role `atlasia.dr.%s`: %s\n" % (role, _cell(spec.get("short_description"))))
        if not options:
            parts.append("No variables.\n")
            continue
        parts.append("| Variable | Type | Default | Description |\n|---|---|---|---|")
        for name, option in options.items():
            default = option.get("default")
            if default not in (None, ""):
                shown = "`%s`" % _cell(default)
            elif option.get("required"):
                shown = "required"
            else:
                shown = "`\"\"`" if default == "" else ""
            kind = option.get("type", "str")
            if option.get("elements"):
                kind = "%s of %s" % (kind, option["elements"])
            if option.get("choices"):
                kind += " (%s)" % ", ".join(str(c) for c in option["choices"])
            parts.append("| `%s` | %s | %s | %s |" % (name, kind, shown, _cell(option.get("description"))))
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def updated(text):
    head, rest = text.split(BEGIN, 1)
    dummy, tail = rest.split(END, 1)
    return "%s%s\n%s%s%s" % (head, BEGIN, render(), END, tail)


def main(argv, doc=DOC):
    text = doc.read_text()
    new = updated(text)
    if "--check" in argv:
        if new != text:
            print("%s: the role variable tables are out of date: run python scripts/readme_vars.py" % doc)
            return 1
        return 0
    doc.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
