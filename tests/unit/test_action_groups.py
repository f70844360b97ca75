"""meta/runtime.yml: one action group per connection family, whose members all take the family's options.

A ``module_defaults`` group passes every option it holds to every member, so an option one member lacks
would fail that member with "Unsupported parameters". Each module's argument spec is read by running its
``main()`` up to the construction of its DRModule.
"""

from __future__ import annotations

import importlib
import re

import pytest
import yaml

from tests.support import REPO_ROOT
from ansible_collections.atlasia.dr.plugins.module_utils import postgres, s3, vault
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule

GROUPS = yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())["action_groups"]


def _vault_connection():
    spec = vault.vault_argument_spec()
    del spec["token"], spec["token_file"]  # vault_init and vault_unseal take no token
    return spec


FAMILIES = {
    "postgres": postgres.postgres_argument_spec(),
    "s3": s3.s3_argument_spec(),
    "vault": _vault_connection(),
}


class _Spec(Exception):
    pass


def argument_spec_of(module_name, monkeypatch):
    def capture(self, argument_spec, **kwargs):
        raise _Spec(argument_spec)

    monkeypatch.setattr(DRModule, "__init__", capture)
    module = importlib.import_module("ansible_collections.atlasia.dr.plugins.modules." + module_name)
    with pytest.raises(_Spec) as caught:
        module.main()
    return caught.value.args[0]


def test_the_dr_group_keeps_every_module_and_each_family_has_its_group():
    assert set(GROUPS) == {"dr", "postgres", "s3", "vault"}
    for family in FAMILIES:
        assert set(GROUPS[family]) <= set(GROUPS["dr"])


@pytest.mark.parametrize("family, member", [(f, m) for f in FAMILIES for m in GROUPS[f]])
def test_every_member_takes_the_options_of_its_family(family, member, monkeypatch):
    spec = argument_spec_of(member, monkeypatch)
    for name, option in FAMILIES[family].items():
        assert name in spec, "%s lacks %s" % (member, name)
        assert spec[name].get("type") == option.get("type"), (member, name)
        assert set(option.get("aliases", [])) <= set(spec[name].get("aliases", [])), (member, name)


@pytest.mark.parametrize("family, modules", [
    ("postgres", ["pg_copy_rows", "pg_dump_backup", "pg_globals", "pg_restore_db", "pg_scratch_db", "pg_verify",
                  "pg_wal_archive"]),
    ("s3", ["backup_age", "backup_locate", "dr_crypt", "dr_file_repo", "s3_backup_transfer", "s3_rotate"]),
    ("vault", ["vault_init", "vault_snapshot", "vault_unseal"]),
])
def test_every_module_with_the_family_options_is_in_its_group(family, modules):
    """The modules documented with the family's doc fragment are exactly the group."""
    documented = []
    for path in sorted((REPO_ROOT / "plugins" / "modules").glob("*.py")):
        fragments = re.search(r"^extends_documentation_fragment:\n((?:  - .*\n)+)", path.read_text(), re.M)
        if fragments and "  - atlasia.dr.%s\n" % family in fragments.group(1):
            documented.append(path.stem)
    assert sorted(GROUPS[family]) == documented == modules


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_modules_doc_lists_each_group_with_its_members_and_options(family):
    doc = (REPO_ROOT / "docs" / "modules.md").read_text()
    row = re.search(r"^\| `group/atlasia\.dr\.%s` \| (.*) \| (.*) \|$" % family, doc, re.M)
    assert row, family
    members, options = (set(re.findall(r"`([a-z0-9_]+)`", cell)) for cell in row.groups())
    assert members == set(GROUPS[family])
    assert set(FAMILIES[family]) <= options
    assert options - set(FAMILIES[family]) <= {"token", "token_file", "vault_snapshot"}
