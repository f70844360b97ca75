-- Sample application schema for atlasia.dr tests and the demo.
--
-- Shaped like the platform's tables named in the DR plan (users, personas, workflow_runs), with the kinds of
-- data a dump/restore must carry byte for byte: timestamptz, jsonb, bytea, NULLs, unicode and awkward text
-- (quotes, backslashes, tabs, newlines), plus a standalone sequence, a view, functions and a trigger.
--
-- Deterministic: no random(), no now() in the rows, so two databases seeded from this file have equal
-- digests (tests/support/postgres.py: table_digests). Load with: psql -v ON_ERROR_STOP=1 -d DB -f THIS_FILE
SET client_min_messages = warning;
SET TIME ZONE 'UTC';

CREATE SEQUENCE run_number_seq START WITH 1000 INCREMENT BY 1;

CREATE TABLE users (
    id           bigserial PRIMARY KEY,
    email        text NOT NULL UNIQUE,
    display_name text,
    is_admin     boolean NOT NULL DEFAULT false,
    avatar       bytea,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz
);

CREATE TABLE personas (
    id          uuid PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL,
    prompt      text,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE workflow_runs (
    id          bigserial PRIMARY KEY,
    run_number  bigint NOT NULL DEFAULT nextval('run_number_seq'),
    persona_id  uuid REFERENCES personas (id) ON DELETE SET NULL,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    payload     jsonb,
    artifact    bytea,
    error       text,
    duration    interval,
    created_at  timestamptz NOT NULL,
    finished_at timestamptz
);

CREATE INDEX workflow_runs_created_at_idx ON workflow_runs (created_at);
CREATE INDEX workflow_runs_persona_status_idx ON workflow_runs (persona_id, status);
CREATE INDEX personas_settings_gin_idx ON personas USING gin (settings);

COMMENT ON TABLE workflow_runs IS 'One execution of a workflow by a persona — ünïcødé comment';

-- Trigger: keep users.updated_at current on every update.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_touch_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A plain SQL function used by checks after a restore.
CREATE FUNCTION persona_run_count(p_persona uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM workflow_runs WHERE persona_id = p_persona
$$;

CREATE VIEW recent_failed_runs AS
    SELECT r.id, r.run_number, p.name AS persona, u.email, r.error, r.created_at
    FROM workflow_runs r
    LEFT JOIN personas p ON p.id = r.persona_id
    LEFT JOIN users u ON u.id = p.user_id
    WHERE r.status = 'failed';

-- Rows --------------------------------------------------------------------------------------------------
INSERT INTO users (email, display_name, is_admin, avatar, created_at, updated_at)
SELECT
    format('user%s@example.test', i),
    CASE
        WHEN i % 10 = 0 THEN NULL
        WHEN i % 7 = 0 THEN format('Zoë Ñúñez 日本語 🚀 #%s', i)
        WHEN i % 5 = 0 THEN format(E'O''Brien "quoted" back\\slash\ttab\nnewline #%s', i)
        ELSE format('User %s', i)
    END,
    i % 13 = 0,
    CASE WHEN i % 4 = 0 THEN NULL ELSE decode(md5('avatar' || i) || md5('png' || i), 'hex') END,
    timestamptz '2024-01-01 00:00:00+00' + make_interval(hours => i),
    CASE WHEN i % 3 = 0 THEN timestamptz '2024-06-01 12:00:00.123456+00' + make_interval(mins => i) END
FROM generate_series(1, 60) AS i;

INSERT INTO personas (id, user_id, name, prompt, settings, created_at)
SELECT
    md5('persona' || i)::uuid,
    (i % 60) + 1,
    format('persona-%s', i),
    CASE WHEN i % 6 = 0 THEN NULL ELSE repeat(format('Prompt %s — réponse ✓. ', i), 1 + i % 5) END,
    jsonb_build_object(
        'temperature', round((i % 10) / 10.0, 1),
        'tools', jsonb_build_array('search', 'code', i),
        'nested', jsonb_build_object('unicode', 'ünï ✓', 'null', NULL, 'n', i)
    ),
    timestamptz '2024-02-01 08:30:00+00' + make_interval(hours => i * 3)
FROM generate_series(1, 120) AS i;

INSERT INTO workflow_runs (persona_id, status, payload, artifact, error, duration, created_at, finished_at)
SELECT
    CASE WHEN i % 11 = 0 THEN NULL ELSE md5('persona' || ((i % 120) + 1))::uuid END,
    (ARRAY['queued', 'running', 'succeeded', 'failed'])[1 + i % 4],
    CASE
        WHEN i % 9 = 0 THEN NULL
        ELSE jsonb_build_object('step', i, 'input', format('input %s with "quotes" and \ backslash', i),
                                'items', jsonb_build_array(i, i * 2, NULL), 'ok', i % 2 = 0)
    END,
    CASE WHEN i % 3 = 0 THEN NULL ELSE decode(repeat(md5('artifact' || i), 1 + i % 8), 'hex') END,
    CASE WHEN i % 4 = 3 THEN format(E'Error #%s: stack\n  at step %s\n  «ünïcødé»', i, i % 7) END,
    CASE WHEN i % 4 = 2 THEN make_interval(secs => i * 1.5) END,
    timestamptz '2024-03-01 00:00:00+00' + make_interval(mins => i * 17),
    CASE WHEN i % 4 IN (2, 3) THEN timestamptz '2024-03-01 00:00:00+00' + make_interval(mins => i * 17 + 5) END
FROM generate_series(1, 1500) AS i;

-- The standalone sequence moves on beyond its use as a default.
SELECT setval('run_number_seq', 5000, true);

ANALYZE;
