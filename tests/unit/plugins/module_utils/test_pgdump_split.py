"""pgdump._split_listing: the parallel read-through of a directory dump shares its entries among processes."""

from __future__ import annotations

from ansible_collections.atlasia.dr.plugins.module_utils import pgdump

LISTING = """;
; Archive created at 2026-11-26 02:00:05 UTC
;
215; 1259 16390 TABLE public big postgres
216; 1259 16391 TABLE public mid postgres
217; 1259 16392 TABLE public small postgres
3001; 0 16390 TABLE DATA public big postgres
3002; 0 16391 TABLE DATA public mid postgres
3003; 0 16392 TABLE DATA public small postgres
3004; 0 16393 TABLE DATA public empty postgres
3100; 2606 16400 CONSTRAINT public big big_pkey postgres
"""


def _dump(tmp_path, sizes):
    path = tmp_path / "backup_20261126_020005.dir"
    path.mkdir()
    for dump_id, size in sizes.items():
        (path / ("%d.dat.gz" % dump_id)).write_bytes(b"x" * size)
    return path


def _entries(text):
    return [line for line in text.splitlines() if line.strip()]


def test_every_entry_lands_in_exactly_one_list(tmp_path):
    path = _dump(tmp_path, {3001: 9000, 3002: 5000, 3003: 4000, 3004: 0})
    lists = pgdump._split_listing(str(path), LISTING, 2)
    assert len(lists) == 2
    everything = [line for text in lists for line in _entries(text)]
    expected = [line for line in LISTING.splitlines() if line.strip() and not line.startswith(";")]
    assert sorted(everything) == sorted(expected)
    assert len(everything) == len(set(everything))


def test_data_is_shared_by_size_and_other_entries_go_first(tmp_path):
    path = _dump(tmp_path, {3001: 9000, 3002: 5000, 3003: 4000, 3004: 0})
    first, second = pgdump._split_listing(str(path), LISTING, 2)
    assert "3001; 0 16390 TABLE DATA" in first          # largest onto the lightest list
    assert "3002; 0 16391 TABLE DATA" in second and "3003; 0 16392 TABLE DATA" in second  # 5000 + 4000 vs 9000
    assert "215; 1259 16390 TABLE public big" in first and "3100; 2606" in first
    assert "TABLE public big" not in second


def test_nothing_to_share_with_fewer_than_two_data_entries(tmp_path):
    path = _dump(tmp_path, {3001: 10})
    one = "\n".join(line for line in LISTING.splitlines() if "TABLE DATA" not in line or line.startswith("3001"))
    assert pgdump._split_listing(str(path), one, 2) is None


def test_never_more_lists_than_data_entries(tmp_path):
    path = _dump(tmp_path, {3001: 9000, 3002: 5000, 3003: 4000, 3004: 0})
    assert len(pgdump._split_listing(str(path), LISTING, 8)) == 4
