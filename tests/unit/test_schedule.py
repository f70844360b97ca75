"""The suites' order: longest unit of work first, by the measured seconds in tests/durations.json."""

from __future__ import annotations

import json

from tests.support import REPO_ROOT, schedule


class Item(object):
    def __init__(self, nodeid):
        self.nodeid = nodeid


def ids(items):
    return [item.nodeid for item in items]


def test_longest_file_first_tests_of_a_file_keep_their_order():
    items = [Item(n) for n in ("tests/faults/test_a.py::one", "tests/faults/test_a.py::two",
                               "tests/faults/test_year.py::year", "tests/faults/test_b.py::only")]
    schedule.longest_first(items, {"tests/faults/test_a.py": 100.0, "tests/faults/test_year.py": 600.0,
                                   "tests/faults/test_b.py": 5.0})
    assert ids(items) == ["tests/faults/test_year.py::year", "tests/faults/test_a.py::one",
                          "tests/faults/test_a.py::two", "tests/faults/test_b.py::only"]


def test_an_unmeasured_file_counts_a_minute_and_ties_keep_the_collection_order():
    items = [Item(n) for n in ("tests/integration/test_short.py::t", "tests/integration/test_new.py::t",
                               "tests/integration/test_other_new.py::t", "tests/integration/test_long.py::t")]
    schedule.longest_first(items, {"tests/integration/test_short.py": 10.0, "tests/integration/test_long.py": 61.0})
    assert ids(items) == ["tests/integration/test_long.py::t", "tests/integration/test_new.py::t",
                          "tests/integration/test_other_new.py::t", "tests/integration/test_short.py::t"]


def test_the_prod_world_files_are_one_unit_weighed_together():
    world = sorted(schedule.UNITS)
    items = [Item("tests/integration/test_big.py::t")] + [Item(path + "::t") for path in world]
    durations = dict((path, 200.0) for path in world)
    durations["tests/integration/test_big.py"] = 500.0
    schedule.longest_first(items, durations)
    assert ids(items) == [path + "::t" for path in world] + ["tests/integration/test_big.py::t"]
    assert len(set(schedule.unit_of(path) for path in world)) == 1


def test_the_table_names_only_files_that_exist():
    table = json.loads((REPO_ROOT / "tests" / "durations.json").read_text())
    assert table and all((REPO_ROOT / path).is_file() for path in table)
    assert all(isinstance(seconds, (int, float)) and seconds >= 0 for seconds in table.values())


def test_the_longest_units_start_with_the_shortest_beside_them():
    durations = dict(("tests/faults/test_%s.py" % name, seconds)
                     for name, seconds in (("year", 600.0), ("a", 150.0), ("b", 120.0), ("c", 80.0), ("d", 40.0),
                                           ("e", 0.0)))
    items = [Item(path + "::t") for path in sorted(durations)]
    schedule.longest_first(items, durations, workers=2)
    # worker 1 gets year then e, worker 2 gets a then d; the rest follow longest first
    assert [item.nodeid.split("_")[-1][:-6] for item in items] == ["year", "a", "e", "d", "b", "c"]
