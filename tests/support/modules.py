"""Running a module's ``main()`` in unit tests: its arguments patched in, its JSON result read back."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args


def run_module(main, params, capsys, check_mode=False):
    """Call ``main`` with ``params`` as the module arguments (``check_mode`` sets ``_ansible_check_mode``)."""
    if check_mode:
        params = dict(params, _ansible_check_mode=True)
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            main()
    return json.loads(capsys.readouterr().out)
