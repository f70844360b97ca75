"""Running a module's ``main()`` in unit tests: its arguments patched in, its JSON result read back."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args


def run_module(main, params, capsys, check_mode=False, output=False):
    """Call ``main`` with ``params`` as the module arguments; its result (``output``: ``(result, stdout)``).

    ``check_mode`` sets ``_ansible_check_mode``. The exit status must agree with the result: non-zero exactly
    when the result says ``failed``.
    """
    if check_mode:
        params = dict(params, _ansible_check_mode=True)
    with patch_module_args(params):
        with pytest.raises(SystemExit) as exc:
            main()
    out = capsys.readouterr().out
    result = json.loads(out)
    assert (exc.value.code != 0) == bool(result.get("failed")), result
    return (result, out) if output else result


def warning_texts(result):
    """Warning texts of a result (ansible-core 2.19 returns structured warning summaries)."""
    texts = []
    for warning in result.get("warnings", []):
        if isinstance(warning, dict):
            warning = (warning.get("event") or {}).get("msg") or warning.get("msg") or json.dumps(warning)
        texts.append(warning)
    return texts
