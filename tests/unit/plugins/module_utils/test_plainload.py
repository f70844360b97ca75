"""plainload: a plain dump cut into sessions, each session's input captured by ``cat`` (no server)."""

from __future__ import annotations

import io
import os
import sys

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import plainload

PREAMBLE = (b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nSET statement_timeout = 0;\n"
            b"SELECT pg_catalog.set_config('search_path', '', false);\n\n")


def entry(name, kind, body):
    label = b"Data for Name" if kind == b"TABLE DATA" else b"Name"
    return b"--\n-- %s: %s; Type: %s; Schema: public; Owner: app\n--\n\n%s\n" % (label, name, kind, body)


def dump(rows_a, rows_b):
    parts = [PREAMBLE,
             b"SET default_table_access_method = heap;\n\n",
             entry(b"a", b"TABLE", b"CREATE TABLE public.a (x int);"),
             entry(b"b", b"TABLE", b"CREATE TABLE public.b (y text);"),
             entry(b"a", b"TABLE DATA", b"COPY public.a (x) FROM stdin;\n" + b"".join(rows_a) + b"\\.\n"),
             entry(b"b", b"TABLE DATA", b"COPY public.b (y) FROM stdin;\n" + b"".join(rows_b) + b"\\.\n"),
             entry(b"a_x_seq", b"SEQUENCE SET", b"SELECT pg_catalog.setval('public.a_x_seq', 5, true);"),
             b"SET default_tablespace = '';\n\n",
             entry(b"a a_pkey", b"CONSTRAINT", b"ALTER TABLE ONLY public.a ADD CONSTRAINT a_pkey PRIMARY KEY (x);"),
             entry(b"b_y", b"INDEX", b"CREATE INDEX b_y ON public.b USING btree (y);"),
             entry(b"b b_fk", b"FK CONSTRAINT",
                   b"ALTER TABLE ONLY public.b ADD CONSTRAINT b_fk FOREIGN KEY (y) REFERENCES public.c(y);"),
             b"\\unrestrict abc\n\n--\n-- PostgreSQL database dump complete\n--\n\n"]
    return b"".join(parts)


@pytest.fixture
def capture(tmp_path):
    names = []

    def factory(name):
        path = tmp_path / ("%02d-%s.sql" % (len(names), name.replace(" ", "_")))
        names.append(path)
        return ["sh", "-c", 'exec cat > "$0"', str(path)], dict(os.environ)
    return factory, names


def copied(texts, table):
    """Rows of ``table`` gathered from every COPY of it, in the order the sessions got them."""
    rows = []
    for text in texts:
        lines = text.split(b"\n")
        inside = False
        for line in lines:
            if line.startswith(b"COPY public.%s " % table):
                inside = True
            elif inside and line == b"\\.":
                inside = False
            elif inside:
                rows.append(line + b"\n")
    return rows


@pytest.mark.parametrize("piece", [10, 64, 1000000])
@pytest.mark.parametrize("read", [1, 7, 1024 * 1024])
def test_every_row_reaches_exactly_one_session(capture, monkeypatch, piece, read):
    factory, names = capture
    monkeypatch.setattr(plainload, "READ", read)
    rows_a = [b"%d\n" % i for i in range(200)]
    rows_b = [b"row \\\\. %d\\nnot an end\n" % i for i in range(50)] + [b"\\\\.\n"]
    stats = plainload.load(io.BytesIO(dump(rows_a, rows_b)), factory, 3, piece=piece)
    texts = [path.read_bytes() for path in names]
    kinds = [path.name.split("-", 1)[1] for path in names]
    assert kinds == ["pre-data.sql", "data_1.sql", "data_2.sql", "data_3.sql", "post-data_1.sql", "post-data_2.sql",
                     "post-data.sql"]
    assert sorted(copied(texts, b"a")) == sorted(rows_a)
    assert sorted(copied(texts, b"b")) == sorted(rows_b)
    assert b"CREATE TABLE public.a" in texts[0] and b"COPY" not in texts[0]
    # every session starts with the preamble (search_path, \restrict)
    assert all(text.startswith(PREAMBLE) for text in texts)
    assert sum(text.count(b"setval") for text in texts) == 1
    post = b"".join(texts[4:6])
    assert b"a_pkey PRIMARY KEY" in post and b"CREATE INDEX b_y" in post and b"FOREIGN KEY" not in post
    assert b"SET default_tablespace = '';\n" in texts[5]  # the state where the index stood
    assert b"FOREIGN KEY" in texts[6] and texts[6].rstrip().endswith(b"-- PostgreSQL database dump complete\n--")
    assert stats["parallel_post"] == 2 and stats["serial_post"] == 1
    if piece == 10:
        assert stats["copy_pieces"] > 10


def test_empty_table_and_no_post_data(capture):
    factory, names = capture
    text = PREAMBLE + entry(b"a", b"TABLE", b"CREATE TABLE public.a (x int);") + entry(
        b"a", b"TABLE DATA", b"COPY public.a (x) FROM stdin;\n\\.\n")
    plainload.load(io.BytesIO(text), factory, 2)
    texts = [path.read_bytes() for path in names]
    assert sum(t.count(b"COPY public.a (x) FROM stdin;\n\\.\n") for t in texts) == 1


def test_truncated_copy_block_fails(capture):
    factory, names = capture
    text = PREAMBLE + entry(b"a", b"TABLE", b"CREATE TABLE public.a (x int);") + (
        b"--\n-- Data for Name: a; Type: TABLE DATA; Schema: public; Owner: app\n--\n\nCOPY public.a (x) FROM stdin;\n1\n2\n")
    with pytest.raises(plainload.LoadError, match="truncated"):
        plainload.load(io.BytesIO(text), factory, 2)


def test_connect_in_the_preamble_is_left_to_one_psql(capture):
    factory, names = capture
    with pytest.raises(plainload.Unsupported):
        plainload.load(io.BytesIO(b"\\connect other\n" + PREAMBLE), factory, 2)
    assert names == []


def test_a_failing_session_stops_the_load(tmp_path):
    def factory(name):
        if name.startswith("data"):
            return [sys.executable, "-c", "import sys; sys.stdin.read(1); sys.stderr.write('ERROR: boom'); sys.exit(3)"], \
                dict(os.environ)
        return ["sh", "-c", "cat > /dev/null"], dict(os.environ)
    rows = [b"%d\n" % i for i in range(20000)]
    with pytest.raises(plainload.LoadError, match="boom"):
        plainload.load(io.BytesIO(dump(rows, rows)), factory, 2, piece=100)


def test_a_dump_taken_with_create_is_left_to_one_psql(capture):
    factory, names = capture
    text = PREAMBLE + entry(b"app", b"DATABASE", b"CREATE DATABASE app;") + b"\\connect app\n\n" + PREAMBLE
    with pytest.raises(plainload.Unsupported):
        plainload.load(io.BytesIO(text), factory, 2)
    assert names == []


def test_backslash_lines_in_a_function_body_pass_through(capture):
    factory, names = capture
    body = b"CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$SELECT '\n\\d+'$$;"
    plainload.load(io.BytesIO(PREAMBLE + entry(b"f()", b"FUNCTION", body)), factory, 2)
    assert body in names[0].read_bytes()
