-- A shop's own capture triggers without SECURITY DEFINER, and track/untrack that leave what
-- they create to qbsync_owner.
--
-- * A fan-out (one shop row standing for many keys: a category's VAT rate for every product
--   of the category) is a trigger of the shop's that appends keys itself. Such a trigger
--   must not be SECURITY DEFINER: it reads the shop's tables, and whoever owns one of them
--   can put a view in its place whose WHERE calls its own function, which then runs with the
--   trigger's owner's rights (the installing superuser's). It runs as the role that writes
--   the row, like qbsync's generated capture functions, and appends as they do: INSERT INTO
--   qbsync_capture.changes_<entity> (key). qbsync.allow_enqueue(table, entity) lets the
--   writers of that table do so: sync_enqueue_grants counts them among the entity's writers,
--   as it counts the writers of a table tracked for it.
-- * track and untrack hand every object they made (the generated capture functions, a new
--   change view) to qbsync_owner before they return (qbsync.reassert_ownership), so a bare
--   `SELECT qbsync.track(...)` leaves nothing owned by its caller until the next migrate.

-- Tables whose writers may enqueue an entity through a trigger of the shop's own.
CREATE TABLE qbsync.enqueue_sources (
    tbl        regclass NOT NULL,
    entity     text NOT NULL REFERENCES qbsync.entities ON UPDATE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, entity)
);
-- qbsync_owner's at once: the event trigger below reads it as qbsync_owner, and this
-- migration's own REVOKE fires it
ALTER TABLE qbsync.enqueue_sources OWNER TO qbsync_owner;
COMMENT ON TABLE qbsync.enqueue_sources IS
    'Tables whose writers may append keys of an entity to qbsync_capture.changes_<entity> from a trigger of the shop''s own (a fan-out track() cannot express): qbsync.allow_enqueue(table, entity).';

-- As 0017's, counting the tables of qbsync.enqueue_sources among those tracked for their
-- entity.
CREATE OR REPLACE FUNCTION qbsync.sync_enqueue_grants() RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_done int := 0;
    r record;
BEGIN
    IF current_setting('qbsync.syncing_grants', true) = 'on' THEN
        RETURN 0;   -- its own GRANTs fire the event trigger
    END IF;
    PERFORM set_config('qbsync.syncing_grants', 'on', true);
    FOR r IN
        WITH RECURSIVE views AS (
            SELECT e.entity, c.oid AS view, c.relowner
            FROM qbsync.entities e
            JOIN pg_class c ON c.relname = 'changes_' || e.entity AND c.relkind = 'v'
                           AND c.relnamespace = 'qbsync_capture'::regnamespace
            WHERE pg_has_role(c.relowner, 'USAGE')
        ), writable(entity, rel) AS (
            SELECT t.entity, t.tbl::oid FROM qbsync.tracked t
            UNION
            SELECT s.entity, s.tbl::oid FROM qbsync.enqueue_sources s
            UNION
            SELECT w.entity, rw.ev_class
            FROM writable w
            JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = w.rel
                            AND d.classid = 'pg_rewrite'::regclass
            JOIN pg_rewrite rw ON rw.oid = d.objid AND rw.ev_class <> w.rel
            JOIN pg_class v ON v.oid = rw.ev_class AND v.relkind = 'v'
            -- a view writes its table with its owner's rights: a reader's own view over
            -- the table writes nothing, and its writers are no writers of the table
            WHERE has_table_privilege(v.relowner, w.rel, 'INSERT, UPDATE, DELETE')
               OR has_any_column_privilege(v.relowner, w.rel, 'INSERT, UPDATE')
        ), writers AS (
            SELECT w.entity, a.grantee
            FROM writable w JOIN pg_class c ON c.oid = w.rel
            CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
            WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE')
            UNION
            SELECT w.entity, a.grantee
            FROM writable w
            JOIN pg_attribute att ON att.attrelid = w.rel AND att.attnum > 0
                                 AND NOT att.attisdropped AND att.attacl IS NOT NULL
            CROSS JOIN LATERAL aclexplode(att.attacl) a
            WHERE a.privilege_type IN ('INSERT', 'UPDATE')
        ), granted AS (
            SELECT v.entity, v.view, a.grantee
            FROM views v
            JOIN pg_attribute att ON att.attrelid = v.view AND att.attnum > 0
                                 AND att.attacl IS NOT NULL
            CROSS JOIN LATERAL aclexplode(att.attacl) a
            WHERE a.privilege_type = 'INSERT'
            UNION
            SELECT v.entity, v.view, a.grantee
            FROM views v JOIN pg_class c ON c.oid = v.view
            CROSS JOIN LATERAL aclexplode(c.relacl) a
            WHERE a.privilege_type = 'INSERT' AND a.grantee <> v.relowner
        )
        SELECT 'GRANT INSERT (key) ON %s TO %s' AS command, v.view, wr.grantee
        FROM views v JOIN writers wr USING (entity)
        WHERE wr.grantee <> v.relowner
          AND NOT EXISTS (SELECT 1 FROM granted g WHERE g.view = v.view AND g.grantee = wr.grantee)
        UNION
        SELECT 'REVOKE INSERT ON %s FROM %s', g.view, g.grantee
        FROM granted g
        WHERE NOT EXISTS (SELECT 1 FROM writers wr
                          WHERE wr.entity = g.entity AND wr.grantee = g.grantee)
    LOOP
        EXECUTE format(r.command, r.view::regclass,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC'
                            ELSE quote_ident((SELECT rolname FROM pg_roles WHERE oid = r.grantee))
                       END);
        v_done := v_done + 1;
    END LOOP;
    PERFORM set_config('qbsync.syncing_grants', '', true);
    RETURN v_done;
END
$$;
COMMENT ON FUNCTION qbsync.sync_enqueue_grants() IS
    'Grants INSERT on qbsync_capture.changes_<entity> to exactly the roles that may write a table tracked for the entity or listed for it in qbsync.enqueue_sources (or a view over one); returns how many GRANTs/REVOKEs it ran. track/untrack, allow_enqueue/disallow_enqueue and an event trigger after every GRANT, REVOKE and ALTER TABLE call it.';

-- As 0017's, with nothing to do only when no table is tracked and none is a source; the
-- test of that is inside the handler too, so that nothing here fails the command.
CREATE OR REPLACE FUNCTION qbsync.enqueue_grants_changed() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('qbsync.syncing_grants', true) = 'on' THEN
        RETURN;
    END IF;
    BEGIN
        IF EXISTS (SELECT 1 FROM qbsync.tracked)
           OR EXISTS (SELECT 1 FROM qbsync.enqueue_sources) THEN
            PERFORM qbsync.sync_enqueue_grants();
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'qbsync: could not bring the enqueue grants in step: %', SQLERRM
            USING HINT = 'Run SELECT qbsync.sync_enqueue_grants(); as a superuser.';
    END;
END
$$;

-- The writers of tbl may append keys of entity (INSERT INTO qbsync_capture.changes_<entity>
-- (key)) from a trigger of the shop's own on tbl: a fan-out, one row standing for many keys.
-- Returns false when they already could through this call. Runs as its caller (a DBA), as
-- track does.
CREATE FUNCTION qbsync.allow_enqueue(tbl text, entity text) RETURNS boolean
LANGUAGE plpgsql
-- no SET search_path: the table name resolves as the caller sees it, as in track()
AS $$
DECLARE
    v_rel regclass := to_regclass(tbl);
    v_new boolean;
BEGIN
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'qbsync.allow_enqueue: table "%" does not exist', tbl
            USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities e WHERE e.entity = allow_enqueue.entity) THEN
        RAISE EXCEPTION 'qbsync.allow_enqueue: unknown entity "%"', entity
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Register it first: SELECT qbsync.define_entity(entity, qbo_type, ...).';
    END IF;
    INSERT INTO qbsync.enqueue_sources (tbl, entity)
    VALUES (v_rel, allow_enqueue.entity)
    ON CONFLICT DO NOTHING;
    v_new := FOUND;
    PERFORM qbsync.create_change_view(allow_enqueue.entity);
    PERFORM qbsync.sync_enqueue_grants();
    PERFORM count(*) FROM qbsync.reassert_ownership();
    RETURN v_new;
END
$$;
COMMENT ON FUNCTION qbsync.allow_enqueue(text, text) IS
    'Lets the roles that may write tbl append keys of entity (INSERT INTO qbsync_capture.changes_<entity> (key)) from a trigger of their own on tbl: a fan-out that track() cannot express. Write that trigger without SECURITY DEFINER: it runs as the writer. Returns false when it was allowed already.';

CREATE FUNCTION qbsync.disallow_enqueue(tbl text, entity text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    v_rel regclass := to_regclass(tbl);
BEGIN
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'qbsync.disallow_enqueue: table "%" does not exist', tbl
            USING ERRCODE = 'undefined_table';
    END IF;
    DELETE FROM qbsync.enqueue_sources s
    WHERE s.tbl = v_rel AND s.entity = disallow_enqueue.entity;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM qbsync.sync_enqueue_grants();
    RETURN true;
END
$$;
COMMENT ON FUNCTION qbsync.disallow_enqueue(text, text) IS
    'Undoes qbsync.allow_enqueue(tbl, entity): the writers of tbl keep the right to enqueue entity only where they write a table tracked for it. Returns false when tbl was not allowed.';

-- As 0001's, then every object it made belongs to qbsync_owner.
CREATE OR REPLACE FUNCTION qbsync.track(
    tbl text, entity text, key text, columns text[] DEFAULT NULL, "when" text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
-- no SET search_path: table names and expressions resolve as the caller (a DBA) sees them
AS $fn$
DECLARE
    v_rel regclass := to_regclass(tbl);
    v_missing text;
    v_key_sql text;
    v_when_sql text;
    v_fn text;
BEGIN
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'qbsync.track: table "%" does not exist', tbl
            USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities e WHERE e.entity = track.entity) THEN
        RAISE EXCEPTION 'qbsync.track: unknown entity "%"', entity
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Register it first: SELECT qbsync.define_entity(entity, qbo_type, ...).';
    END IF;
    IF coalesce(btrim(key), '') = '' THEN
        RAISE EXCEPTION 'qbsync.track: key expression for "%" is empty', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(format('%I', col), ', ') INTO v_missing
    FROM unnest(columns) AS col
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = v_rel AND a.attname = col
                        AND a.attnum > 0 AND NOT a.attisdropped);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'qbsync.track: table % has no column(s) %', v_rel, v_missing
            USING ERRCODE = 'undefined_column';
    END IF;
    IF columns IS NOT NULL AND cardinality(columns) = 0 THEN
        RAISE EXCEPTION 'qbsync.track: columns is empty; pass NULL to track every column'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Compile the expressions once against the table so that a typo fails here, with the
    -- table named, rather than in a shop transaction.
    BEGIN
        v_key_sql := qbsync.compile_row_expr(v_rel, format('(%s)::text', key));
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'qbsync.track: key expression % is not valid for table %: %',
            quote_literal(key), v_rel, SQLERRM USING ERRCODE = SQLSTATE;
    END;
    IF "when" IS NOT NULL THEN
        BEGIN
            v_when_sql := qbsync.compile_row_expr(v_rel, format('(%s)::boolean', "when"));
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'qbsync.track: "when" predicate % is not valid for table %: %',
                quote_literal("when"), v_rel, SQLERRM USING ERRCODE = SQLSTATE;
        END;
    END IF;

    INSERT INTO qbsync.tracked AS t
        (tbl, entity, key_expr, columns, when_expr, key_sql, when_sql, function_name)
    VALUES (v_rel, track.entity, key, columns, "when", v_key_sql, v_when_sql, '')
    ON CONFLICT ON CONSTRAINT tracked_pkey DO UPDATE
        SET key_expr = excluded.key_expr, columns = excluded.columns,
            when_expr = excluded.when_expr, key_sql = excluded.key_sql,
            when_sql = excluded.when_sql, created_at = now();
    v_fn := qbsync.install_capture(v_rel);
    -- the functions just generated are the caller's until handed over: a SECURITY DEFINER
    -- audit, and the next migrate, expect qbsync_owner's
    PERFORM count(*) FROM qbsync.reassert_ownership();
    RETURN v_fn;
END
$fn$;

CREATE OR REPLACE FUNCTION qbsync.untrack(tbl text, entity text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    v_rel regclass := to_regclass(tbl);
BEGIN
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'qbsync.untrack: table "%" does not exist', tbl
            USING ERRCODE = 'undefined_table';
    END IF;
    DELETE FROM qbsync.tracked t WHERE t.tbl = v_rel AND t.entity = untrack.entity;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM qbsync.install_capture(v_rel);
    PERFORM count(*) FROM qbsync.reassert_ownership();   -- the table's remaining rules' functions
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION qbsync.allow_enqueue(text, text), qbsync.disallow_enqueue(text, text)
    FROM PUBLIC;
