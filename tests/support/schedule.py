"""The order the suites run in: longest unit of work first, measured, so pytest-xdist workers finish together.

``make integration`` and ``make faults`` run pytest-xdist with ``--dist loadfile``: one test file per worker at a
time, handed out in collection order. A long file handed out last runs alone at the end while the other worker
idles (the fault suite's simulated year, ten minutes, used to start last and add them to the wall time).

- :data:`DURATIONS` (``tests/durations.json``) holds the seconds each file took in a full run (setup, call and
  teardown of its tests); :func:`longest_first` orders the collected tests by it, a file it does not know yet
  counting :data:`UNKNOWN_SECONDS`.
- Every run writes what it measured to :data:`MEASURED` (``.tmp/test-durations.json``, merged with earlier runs);
  ``python -m tests.support.schedule`` copies those figures into :data:`DURATIONS` after a suite changed.
- :func:`scheduler` is xdist's ``loadfile`` with two changes: xdist's own reordering (by number of tests per
  file, which put the one-test simulated year last) is off, and the files of one unit (:data:`UNITS`) go to
  one worker one after the other.
"""

from __future__ import annotations

import json
import os
import sys

from tests.support import REPO_ROOT, TMP_ROOT

DURATIONS = REPO_ROOT / "tests" / "durations.json"
MEASURED = TMP_ROOT / "test-durations.json"
UNKNOWN_SECONDS = 60.0
#: The suites run in pytest-xdist workers, whose files the table orders.
SCHEDULED = ("tests/integration/", "tests/faults/")

#: Files run by one worker one after the other, as one unit of work. The prod world (tests/support/prodprofile.py)
#: is one per machine, behind a machine-wide lock: its files never wait on that lock (a wait would count against
#: the test timeout) and the other worker keeps running the rest.
UNITS = {
    "tests/integration/test_prod_profile.py": "prod-world",
    "tests/integration/test_prod_rpo.py": "prod-world",
    "tests/integration/test_quickstart.py": "prod-world",
}


def file_of(nodeid: str) -> str:
    """The test file of a pytest node id, relative to the repository (``tests/.../test_x.py``)."""
    return nodeid.split("::", 1)[0]


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the unit of :data:`UNITS` its file is part of."""
    path = file_of(nodeid)
    return UNITS.get(path, path)


def _read(path) -> dict:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return dict((str(k), float(v)) for k, v in data.items()) if isinstance(data, dict) else {}


def _write(path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(dict(sorted((k, round(v, 1)) for k, v in data.items())), handle, indent=1)
        handle.write("\n")
    os.replace(tmp, str(path))


def longest_first(items, durations: dict | None = None, workers: int = 0) -> None:
    """Sort collected ``items`` by the measured seconds of their unit of work, longest first; the tests of a file
    keep their order, and units of equal weight keep the order they were collected in.

    ``workers`` (pytest-xdist's worker count): xdist hands each worker two units at the start (a worker runs a
    test only once it holds the next one), so the units ``workers + 1`` to ``2 * workers`` go with the longest
    ones; they are the shortest, lest a one-test unit such as the simulated year be followed by a long file on
    the same worker while the other runs out of work."""
    durations = _read(DURATIONS) if durations is None else durations
    measured = {}
    for path, seconds in durations.items():
        measured[unit_of(path)] = measured.get(unit_of(path), 0.0) + seconds
    first_seen = {}
    for index, item in enumerate(items):
        first_seen.setdefault(unit_of(item.nodeid), index)

    order = sorted(first_seen, key=lambda unit: (-measured.get(unit, UNKNOWN_SECONDS), first_seen[unit]))
    if workers and len(order) > 2 * workers:
        shortest = order[-workers:][::-1]
        order = order[:workers] + shortest + order[workers:-workers]
    rank_of = dict((unit, index) for index, unit in enumerate(order))
    items.sort(key=lambda item: rank_of[unit_of(item.nodeid)])  # stable: a file's tests keep their order


class Recorder(object):
    """Sums each file's test durations as the reports arrive and merges them into :data:`MEASURED` at the end of
    the session; registered on the xdist controller (or in a plain run), which receives every worker's reports."""

    def __init__(self):
        self.seconds = {}

    def pytest_runtest_logreport(self, report):
        path = file_of(report.nodeid)
        self.seconds[path] = self.seconds.get(path, 0.0) + float(getattr(report, "duration", 0.0) or 0.0)

    def pytest_sessionfinish(self, session):
        if not self.seconds:
            return
        merged = _read(MEASURED)
        merged.update(self.seconds)
        try:
            _write(MEASURED, merged)
        except OSError:
            pass


def scheduler(config, log):
    """xdist's ``loadfile`` scheduling in the collection order (see :func:`longest_first`), :data:`UNITS` kept
    together; ``None`` (xdist's own) for any other ``--dist`` mode."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # pylint: disable=import-outside-toplevel

    config.option.loadscopereorder = False

    class Units(LoadFileScheduling):
        def _split_scope(self, nodeid):
            return unit_of(nodeid)

    return Units(config, log)


def main(argv=None) -> int:
    """Copy the measured seconds into tests/durations.json (``--check``: only say which files it lacks)."""
    argv = sys.argv[1:] if argv is None else argv
    measured = _read(MEASURED)
    if not measured:
        print("nothing measured yet: run a suite first (%s is empty or missing)" % MEASURED)
        return 1
    known = _read(DURATIONS)
    if "--check" in argv:
        missing = sorted(path for path in measured if path.startswith(SCHEDULED) and path not in known)
        print("\n".join(missing) if missing else "every measured file is in %s" % DURATIONS.name)
        return 0
    known.update((path, seconds) for path, seconds in measured.items() if path.startswith(SCHEDULED))
    known = dict((path, seconds) for path, seconds in known.items() if (REPO_ROOT / path).exists())
    _write(DURATIONS, known)
    print("%s: %d files, %.0f s in all" % (DURATIONS, len(known), sum(known.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
