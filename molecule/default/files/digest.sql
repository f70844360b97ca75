-- Content fingerprint of the current database, printed as one JSON object (psql -XqAt -f this file):
--   {"tables": {"public.users": {"rows": 61, "md5": "..."}, ...}, "sequences": {"public.run_number_seq": 5000, ...}}
-- A table's md5 covers the text form of every row, sorted, so two databases with the same content give the
-- same digest whatever the physical row order. Session settings pin the text forms (time zone, dates, bytea,
-- floats) so a digest taken before a disaster compares with one taken after the restore.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
SET bytea_output = 'hex';
SET extra_float_digits = 3;

SELECT jsonb_build_object(
    'tables', coalesce((
        SELECT jsonb_object_agg(
            format('%s.%s', n.nspname, c.relname),
            jsonb_build_object(
                'rows', (xpath('/row/n/text()', x.doc))[1]::text::bigint,
                'md5', (xpath('/row/d/text()', x.doc))[1]::text))
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL query_to_xml(
            format('SELECT count(*) AS n, md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), '''')) AS d '
                   'FROM %I.%I AS t', n.nspname, c.relname),
            false, true, '') AS x (doc)
        WHERE c.relkind IN ('r', 'p')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_%'), '{}'::jsonb),
    'sequences', coalesce((
        SELECT jsonb_object_agg(format('%s.%s', schemaname, sequencename), last_value)
        FROM pg_catalog.pg_sequences), '{}'::jsonb));
