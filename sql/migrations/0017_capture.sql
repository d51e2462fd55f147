-- Capture that never fails a shop's write, and enqueueing only by a tracked table's writers.
--
-- * An UPDATE's tracked values are compared whatever their types. A row comparison with
--   IS DISTINCT FROM needs every column's btree equality: a tracked json, xml, point, box,
--   ... column (or an array, a composite or a domain of one) turned every UPDATE into
--   "operator does not exist: json = json". Columns whose type's btree equality says equal
--   values are identical (int, text, timestamptz, ...) keep IS DISTINCT FROM; the others
--   (json, numeric, jsonb, citext, a case-insensitive collation, ...) are compared by
--   PostgreSQL's record image comparison (ROW(OLD.c, ...)::record *<> ROW(NEW.c, ...)::record:
--   a change of the stored bytes, which for these types is a change of the value as the
--   mapping reads it). A rule over every column compares OLD *<> NEW: columns added to the
--   table later may be of any type (a column named in UPDATE OF cannot change its type).
-- * A key is at most qbsync.max_key_bytes() (1,000) bytes and not empty. qbsync.changes takes
--   any key (the shop's write never fails); the claim's collect_changes turns a key it
--   cannot queue into ONE dead row that says why (code QB004): an over-long key under a
--   shortened name (its first 64 characters, its length and its md5), an empty key as it
--   is. Before, one key over btree's 2,704 bytes made every later claim fail.
-- * INSERT on qbsync_capture.changes_<entity> (how capture appends) is no longer granted to
--   PUBLIC: it is granted to the roles that may write a table tracked for the entity (its
--   owner, INSERT/UPDATE/DELETE grantees, column INSERT/UPDATE grantees, and the writers of
--   views over it), PUBLIC only where the table's writers include PUBLIC.
--   qbsync.sync_enqueue_grants() keeps the grants in step; track/untrack call it, and so
--   does an event trigger after every GRANT, REVOKE and ALTER TABLE in the database.
-- * Every tracked table's capture functions are generated again.

-- The bound on a key, in bytes.
CREATE FUNCTION qbsync.max_key_bytes() RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 1000 $$;
COMMENT ON FUNCTION qbsync.max_key_bytes() IS
    'The longest key qbsync queues, in bytes (octet_length). A captured key longer than this, or an empty one, becomes a dead outbox row with code QB004.';

-- Whether IS DISTINCT FROM tells exactly when a value of p_type (under p_collation) changed:
-- the type's default btree class must say that equal values are identical (its equalimage
-- support function, which B-tree deduplication relies on: int, text, timestamptz, enums,
-- ...), and a text-like type's collation must be deterministic. Not where equal values
-- differ (numeric 1.0 and 1.00, jsonb's numbers, float's -0 and 0, interval's 1 day and 24
-- hours, citext's or a case-insensitive collation's 'a' and 'A'), nor where "=" is no
-- btree equality (box's compares areas) or there is none (json, xml, point). A domain is
-- its base type, an array its element type; composites, ranges and everything else are
-- compared by image.
CREATE FUNCTION qbsync.has_btree_equality(p_type oid, p_collation oid DEFAULT 0)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type pg_type;
BEGIN
    LOOP
        SELECT * INTO v_type FROM pg_type WHERE oid = p_type;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        EXIT WHEN v_type.typtype <> 'd';
        p_type := v_type.typbasetype;
    END LOOP;
    IF v_type.typtype = 'e' THEN
        RETURN true;
    END IF;
    IF v_type.typtype <> 'b' THEN   -- composite, range, multirange, pseudo-type
        RETURN false;
    END IF;
    IF v_type.typcategory = 'A' AND v_type.typelem <> 0 THEN
        RETURN qbsync.has_btree_equality(v_type.typelem, p_collation);
    END IF;
    IF p_collation <> 0 AND NOT EXISTS (SELECT 1 FROM pg_collation
                                        WHERE oid = p_collation AND collisdeterministic) THEN
        RETURN false;
    END IF;
    -- The type's own default btree class; a type without one is compared with the class
    -- of the type it is binary-coercible to (varchar: text's). citext has its own (no
    -- equalimage), which its cast to text must not hide.
    RETURN coalesce(
        (SELECT p.amproc IS NOT NULL
         FROM pg_opclass oc
         JOIN pg_am am ON am.oid = oc.opcmethod
         LEFT JOIN pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 4
                              AND p.amproclefttype = oc.opcintype
                              AND p.amprocrighttype = oc.opcintype
         WHERE am.amname = 'btree' AND oc.opcdefault AND oc.opcintype = p_type),
        EXISTS (
            SELECT 1 FROM pg_opclass oc
            JOIN pg_am am ON am.oid = oc.opcmethod
            JOIN pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 4
                            AND p.amproclefttype = oc.opcintype
                            AND p.amprocrighttype = oc.opcintype
            JOIN pg_cast c ON c.castsource = p_type AND c.casttarget = oc.opcintype
                          AND c.castmethod = 'b' AND c.castcontext = 'i'
            WHERE am.amname = 'btree' AND oc.opcdefault));
END
$$;

-- The UPDATE test of one rule: did a tracked value change? p_columns NULL: any column.
CREATE FUNCTION qbsync.capture_change(p_rel regclass, p_columns text[]) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_eq text[];
    v_image text[];
    v_tests text[] := '{}';
BEGIN
    IF p_columns IS NULL THEN
        RETURN 'OLD OPERATOR(pg_catalog.*<>) NEW';
    END IF;
    SELECT array_agg(c.name ORDER BY c.ord) FILTER (WHERE qbsync.has_btree_equality(a.atttypid, a.attcollation)),
           array_agg(c.name ORDER BY c.ord) FILTER (WHERE NOT qbsync.has_btree_equality(a.atttypid, a.attcollation))
    INTO v_eq, v_image
    FROM unnest(p_columns) WITH ORDINALITY AS c(name, ord)
    JOIN pg_attribute a ON a.attrelid = p_rel AND a.attname = c.name
                       AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_eq IS NOT NULL THEN
        v_tests := v_tests || (SELECT format('(%s) IS DISTINCT FROM (%s)',
                                             string_agg(format('OLD.%I', c), ', '),
                                             string_agg(format('NEW.%I', c), ', '))
                               FROM unnest(v_eq) AS c);
    END IF;
    IF v_image IS NOT NULL THEN
        -- ::record: ROW() op ROW() would be compared column by column, with json's "*<>"
        v_tests := v_tests || (SELECT format('ROW(%s)::pg_catalog.record OPERATOR(pg_catalog.*<>) '
                                             'ROW(%s)::pg_catalog.record',
                                             string_agg(format('OLD.%I', c), ', '),
                                             string_agg(format('NEW.%I', c), ', '))
                               FROM unnest(v_image) AS c);
    END IF;
    RETURN array_to_string(v_tests, ' OR ');
END
$$;

-- Keeps INSERT on every qbsync_capture.changes_<entity> view granted to exactly the roles
-- that may write a table tracked for the entity, or a view over one whose owner may write
-- it (so PUBLIC only where PUBLIC may write); returns how many GRANTs and REVOKEs it ran. Runs as its caller: track
-- and untrack (through install_capture) as the DBA, the event trigger as the views' owner.
-- Views it may not change (another owner, before qbsync migrate hands them over) are left.
CREATE FUNCTION qbsync.sync_enqueue_grants() RETURNS int
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
    'Grants INSERT on qbsync_capture.changes_<entity> to exactly the roles that may write a table tracked for the entity (or a view over one); returns how many GRANTs/REVOKEs it ran. track/untrack and an event trigger after every GRANT, REVOKE and ALTER TABLE call it.';

-- After every GRANT, REVOKE and ALTER TABLE (an owner change) in the database: bring the
-- enqueue grants in step. SECURITY DEFINER: it runs as the views' owner, whoever ran the
-- command (the shop's role granting on its table); it reads qbsync's tables and the
-- catalogs and runs no code another role defines. Never fails the command that fired it.
CREATE FUNCTION qbsync.enqueue_grants_changed() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('qbsync.syncing_grants', true) = 'on'
       OR NOT EXISTS (SELECT 1 FROM qbsync.tracked) THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM qbsync.sync_enqueue_grants();
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'qbsync: could not bring the enqueue grants in step: %', SQLERRM
            USING HINT = 'Run SELECT qbsync.sync_enqueue_grants(); as a superuser.';
    END;
END
$$;

-- Where a capture function appends a key: granted by sync_enqueue_grants, not to PUBLIC;
-- owned by qbsync_owner from the start where the caller may give it.
CREATE OR REPLACE FUNCTION qbsync.create_change_view(p_entity text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_name text := 'changes_' || p_entity;
BEGIN
    EXECUTE format('CREATE OR REPLACE VIEW qbsync_capture.%I AS '
                   'SELECT entity, key FROM qbsync.changes', v_name);
    EXECUTE format('ALTER VIEW qbsync_capture.%I ALTER COLUMN entity SET DEFAULT %L',
                   v_name, p_entity);
    EXECUTE format('REVOKE ALL ON qbsync_capture.%I FROM PUBLIC', v_name);
    -- qbsync_owner's at once (as migrate would make it), so that the event trigger, which
    -- runs as qbsync_owner, keeps its grants from the first GRANT on a tracked table on
    IF to_regrole('qbsync_owner') IS NOT NULL AND pg_has_role('qbsync_owner', 'MEMBER') THEN
        EXECUTE format('ALTER VIEW qbsync_capture.%I OWNER TO qbsync_owner', v_name);
    END IF;
    RETURN v_name;
END
$fn$;

-- The dead row of a key qbsync cannot queue (p_bytes: its length; 0 = empty), named
-- p_name (qbsync.refused_key_name), with code QB004, the reason and a dead_row notice.
-- One row per key: a key refused again only has its row's time moved.
CREATE FUNCTION qbsync.refuse_key(p_entity text, p_name text, p_bytes bigint,
                                  p_at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_error text := CASE WHEN p_bytes = 0
        THEN format('%s key is empty (QB004): the key expression of its capture rule gave an '
                    'empty text; this change is not pushed', p_entity)
        ELSE format('%s key of %s bytes is longer than qbsync''s bound of %s bytes (QB004): '
                    'the key expression of its capture rule must give a shorter key; this '
                    'change is not pushed (the row is named by the key''s first 64 '
                    'characters, its length and its md5)', p_entity, p_bytes,
                    qbsync.max_key_bytes()) END;
    v_id bigint;
BEGIN
    INSERT INTO qbsync.outbox AS o (entity, key, state, enqueued_at, next_attempt_at,
                                    last_attempt_at, last_error, last_error_code)
    VALUES (p_entity, p_name, 'dead', p_at, p_at, now(), v_error, 'QB004')
    ON CONFLICT (entity, key, state) DO UPDATE SET last_attempt_at = excluded.last_attempt_at
    RETURNING o.id INTO v_id;
    PERFORM qbsync.raise_notice('critical', 'dead_row',
        format('%s %s will not be pushed: %s', p_entity, p_name, v_error),
        jsonb_build_object('outbox_id', v_id, 'attempts', 0, 'code', 'QB004', 'error', v_error),
        qbsync.active_realm(), p_entity, p_name);
END
$$;

-- What a refused key's row is called: an empty key as it is, a long one by its first 64
-- characters, its length and its md5 (two long keys with one beginning stay apart).
CREATE FUNCTION qbsync.refused_key_name(p_key text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_key = '' THEN ''
                ELSE format('%s…[%s bytes, md5 %s]', left(p_key, 64), octet_length(p_key),
                            md5(p_key)) END
$$;

-- Moves committed captured changes into the outbox, as 0002's did; a key qbsync cannot
-- queue (empty, or longer than max_key_bytes: btree refuses an index entry over 2,704
-- bytes, and one such key failed every later claim) becomes one dead row instead
-- (qbsync.refuse_key), and the others are queued. octet_length of a stored value reads its
-- header, not the value.
CREATE OR REPLACE FUNCTION qbsync.collect_changes(p_limit int DEFAULT 10000) RETURNS int
LANGUAGE plpgsql
SECURITY DEFINER  -- readers of the queue need no grant on qbsync.changes
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_taken int;
    v_refused jsonb;
    r record;
BEGIN
    WITH taken AS (
        DELETE FROM qbsync.changes c
        WHERE c.ctid = ANY (ARRAY(SELECT ctid FROM qbsync.changes LIMIT p_limit
                                  FOR UPDATE SKIP LOCKED))
        RETURNING c.entity, c.key, c.captured_at,
                  c.key = '' OR octet_length(c.key) > qbsync.max_key_bytes() AS refused
    ), queued AS (
        INSERT INTO qbsync.outbox (entity, key, enqueued_at, next_attempt_at)
        SELECT entity, key, min(captured_at), min(captured_at)
        FROM taken WHERE NOT refused GROUP BY entity, key ORDER BY entity, key
        ON CONFLICT (entity, key, state) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*)::int FROM taken),
           (SELECT jsonb_agg(jsonb_build_object('entity', b.entity, 'name', b.name,
                                                'bytes', b.bytes, 'at', b.at)
                             ORDER BY b.entity, b.name)
            FROM (SELECT entity, qbsync.refused_key_name(key) AS name,
                         octet_length(key) AS bytes, min(captured_at) AS at
                  FROM taken WHERE refused GROUP BY entity, key) AS b)
    INTO v_taken, v_refused;
    FOR r IN SELECT * FROM jsonb_to_recordset(coalesce(v_refused, '[]'))
                 AS x(entity text, name text, bytes bigint, at timestamptz) LOOP
        PERFORM qbsync.refuse_key(r.entity, r.name, r.bytes, r.at);
    END LOOP;
    RETURN v_taken;
END
$$;

-- Enqueue by hand (and from the shop's own triggers, as Dixis's refunds): as 0001's, but a
-- key qbsync cannot queue becomes its dead row (qbsync.refuse_key), not an error.
CREATE OR REPLACE FUNCTION qbsync.enqueue(p_entity text, p_key text, p_force boolean DEFAULT false,
                                          p_origin text DEFAULT 'manual')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_inserted int;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities WHERE entity = p_entity) THEN
        RAISE EXCEPTION 'qbsync: unknown entity "%"', p_entity
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known entities are in qbsync.entities; add one with qbsync.define_entity().';
    END IF;
    IF p_key = '' OR octet_length(p_key) > qbsync.max_key_bytes() THEN
        PERFORM qbsync.refuse_key(p_entity, qbsync.refused_key_name(p_key),
                                  octet_length(p_key), now());
        RETURN false;
    END IF;
    INSERT INTO qbsync.outbox (entity, key, force, origin)
    VALUES (p_entity, p_key, p_force, p_origin)
    ON CONFLICT (entity, key, state)
    DO UPDATE SET force = true WHERE excluded.force AND NOT qbsync.outbox.force;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
    IF qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN v_inserted > 0;
END
$$;

-- As 0001's, comparing a rule's tracked values with qbsync.capture_change and keeping the
-- enqueue grants in step with the tables tracked.
CREATE OR REPLACE FUNCTION qbsync.install_capture(p_rel regclass) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_fn text;
    v_old_fn text;
    v_n int := 0;
    v_decl text := '';
    v_insert text := '';
    v_update text := '';
    v_delete text := '';
    v_changed text[] := '{}';
    v_change text;
    v_memo text;
    v_first boolean;   -- the rule's predicate is tested before the memo
    v_key text;        -- the key as the INSERT code names it
    v_fresh text;      -- a key not captured yet, not the daemon's write, not NULL
    v_of text[] := '{}';
    v_all_columns boolean := false;
    v_origin CONSTANT text :=
        $$pg_catalog.current_setting('qbsync.origin', true) IS DISTINCT FROM 'daemon'$$;
    r record;
BEGIN
    SELECT format('capture_%s_%s', left(c.relname, 40), left(md5(p_rel::oid::text), 8))
    INTO v_fn FROM pg_class c WHERE c.oid = p_rel;
    FOR v_old_fn IN
        SELECT DISTINCT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgrelid = p_rel
          AND t.tgname IN ('qbsync_capture_insert', 'qbsync_capture_delete', 'qbsync_capture_update')
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS qbsync_capture_insert ON %s', p_rel);
        EXECUTE format('DROP TRIGGER IF EXISTS qbsync_capture_delete ON %s', p_rel);
        EXECUTE format('DROP TRIGGER IF EXISTS qbsync_capture_update ON %s', p_rel);
        EXECUTE format('DROP FUNCTION IF EXISTS qbsync.%I()', v_old_fn);
    END LOOP;

    FOR r IN SELECT * FROM qbsync.tracked t WHERE t.tbl = p_rel ORDER BY t.entity LOOP
        v_n := v_n + 1;
        PERFORM qbsync.create_change_view(r.entity);
        v_memo := format('pg_catalog.current_setting(%L, true)', 'qbsync.held_' || r.entity);
        v_change := qbsync.capture_change(p_rel, r.columns);
        IF r.columns IS NULL THEN
            v_all_columns := true;
        ELSE
            v_of := v_of || r.columns;
        END IF;
        v_changed := v_changed || format('(%s)', v_change);
        v_decl := v_decl || format(E'    _new%1$s text;\n    _old%1$s text;\n', v_n);
        -- INSERT: a key this transaction has not captured, not the daemon's write, not
        -- NULL; and the predicate. A predicate that is only column tests and operators is
        -- tested first: it stops the rules that do not apply (an unpaid order's payment
        -- rule) for less than the memo test, and the key is computed once into _newN (a
        -- cast costs PL/pgSQL a catalog lookup per transaction). One that calls a function
        -- or runs a query is tested after the memo, in an IF of its own: an order's lines
        -- stop at the memo without asking whether their order is complete.
        v_first := r.when_sql IS NOT NULL AND r.when_sql !~* '\mselect\M'
                   AND r.when_sql !~ '[[:alnum:]_"]\(';
        v_key := CASE WHEN v_first THEN format('_new%s', v_n) ELSE r.key_sql END;
        v_fresh := format('%1$s IS DISTINCT FROM %2$s AND %3$s AND %1$s IS NOT NULL',
                          v_key, v_memo, v_origin);
        -- predicate first: IF when THEN _newN := key; IF fresh THEN append
        -- else:            IF fresh THEN IF when THEN append
        v_insert := v_insert || format($i$
        IF %s THEN%s
            IF %s THEN
                %s
            END IF;
        END IF;
$i$, CASE WHEN v_first THEN r.when_sql ELSE v_fresh END,
            CASE WHEN v_first THEN format(E'\n            %s := %s;', v_key, r.key_sql) ELSE '' END,
            CASE WHEN v_first THEN v_fresh ELSE coalesce(r.when_sql, 'true') END,
            qbsync.capture_append(r.entity, v_key));
        -- UPDATE: the new and the old row's keys where the rule's columns changed and the
        -- predicate holds (an order leaving the predicate is a change too).
        v_update := v_update || format($u$
            IF %2$s THEN
                DECLARE r ALIAS FOR NEW; BEGIN _new%1$s := %3$s; END;
                DECLARE r ALIAS FOR OLD; BEGIN _old%1$s := %3$s; END;
                IF _old%1$s IS NOT NULL AND _old%1$s IS DISTINCT FROM _new%1$s
                   AND _old%1$s IS DISTINCT FROM %4$s THEN
                    %5$s
                END IF;
                IF _new%1$s IS NOT NULL AND _new%1$s IS DISTINCT FROM %4$s THEN
                    %6$s
                END IF;
            END IF;
$u$, v_n, v_change, qbsync.capture_key_when(r.key_sql, r.when_sql), v_memo,
            qbsync.capture_append(r.entity, format('_old%s', v_n)),
            qbsync.capture_append(r.entity, format('_new%s', v_n)));
        -- DELETE
        v_delete := v_delete || format($d$
                _old%1$s := %2$s;
                IF _old%1$s IS NOT NULL AND _old%1$s IS DISTINCT FROM %3$s THEN
                    %4$s
                END IF;
$d$, v_n, qbsync.capture_key_when(r.key_sql, r.when_sql), v_memo,
            qbsync.capture_append(r.entity, format('_old%s', v_n)));
    END LOOP;
    PERFORM qbsync.sync_enqueue_grants();   -- writers of the table may now enqueue
    IF v_n = 0 THEN
        RETURN NULL;
    END IF;

    -- One function per trigger: no TG_OP test to pay for.
    PERFORM qbsync.create_capture_function(v_fn || '_insert', v_decl, format(
        E'    DECLARE r ALIAS FOR NEW; BEGIN%s    END;', v_insert));
    PERFORM qbsync.create_capture_function(v_fn || '_update', v_decl, format(
        E'    IF %s\n       AND (%s) THEN%s    END IF;',
        v_origin, array_to_string(v_changed, E'\n            OR '), v_update));
    PERFORM qbsync.create_capture_function(v_fn || '_delete', v_decl, format(
        E'    IF %s THEN\n        DECLARE r ALIAS FOR OLD; BEGIN%s        END;\n    END IF;',
        v_origin, v_delete));
    EXECUTE format('CREATE TRIGGER qbsync_capture_insert AFTER INSERT ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION qbsync.%I()', p_rel, v_fn || '_insert');
    EXECUTE format('CREATE TRIGGER qbsync_capture_delete AFTER DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION qbsync.%I()', p_rel, v_fn || '_delete');
    -- UPDATE OF is checked against the statement's SET list before any row: free.
    EXECUTE format(
        'CREATE TRIGGER qbsync_capture_update AFTER UPDATE %s ON %s '
        'FOR EACH ROW EXECUTE FUNCTION qbsync.%I()',
        CASE WHEN v_all_columns THEN ''
             ELSE 'OF ' || (SELECT string_agg(DISTINCT format('%I', c), ', ') FROM unnest(v_of) c)
        END,
        p_rel, v_fn || '_update');
    UPDATE qbsync.tracked t SET function_name = v_fn WHERE t.tbl = p_rel;
    RETURN v_fn;
END
$fn$;
REVOKE ALL ON FUNCTION qbsync.max_key_bytes(), qbsync.has_btree_equality(oid, oid),
    qbsync.refuse_key(text, text, bigint, timestamptz), qbsync.refused_key_name(text),
    qbsync.capture_change(regclass, text[]), qbsync.sync_enqueue_grants(),
    qbsync.enqueue_grants_changed() FROM PUBLIC;

-- Every tracked table's functions and triggers again (the new comparison), then the grants
-- of every change view (those of entities no longer tracked lose PUBLIC too).
SELECT qbsync.install_capture(t.tbl) FROM (SELECT DISTINCT tbl FROM qbsync.tracked) AS t;
SELECT qbsync.sync_enqueue_grants();

CREATE EVENT TRIGGER qbsync_enqueue_grants ON ddl_command_end
    WHEN TAG IN ('GRANT', 'REVOKE', 'ALTER TABLE', 'ALTER VIEW', 'CREATE VIEW')
    EXECUTE FUNCTION qbsync.enqueue_grants_changed();
COMMENT ON EVENT TRIGGER qbsync_enqueue_grants IS
    'qbsync: after a GRANT, REVOKE, ALTER TABLE/VIEW or CREATE VIEW, grants INSERT on qbsync_capture.changes_<entity> to the writers of the tables tracked for the entity (qbsync.sync_enqueue_grants).';

-- retry_dead leaves a QB004 row dead: its key is the name qbsync gave a key it cannot queue
-- (empty, or shortened from an over-long one), which no mapping knows. The shop's key must
-- change; its next capture queues it.
CREATE OR REPLACE FUNCTION qbsync.retry_dead(entity text DEFAULT NULL, key text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_entity text := retry_dead.entity;
    p_key text := retry_dead.key;
    v_actor text := qbsync.caller();
    v_realm text := qbsync.active_realm();
    v_ids bigint[];
BEGIN
    IF p_entity IS NOT NULL THEN
        PERFORM qbsync.check_entity(p_entity, 'retry_dead');
    END IF;
    SELECT array_agg(d.id) INTO v_ids
    FROM (SELECT o.id FROM qbsync.outbox o
          WHERE o.state = 'dead' AND (p_entity IS NULL OR o.entity = p_entity)
            AND (p_key IS NULL OR o.key = p_key)
            AND o.last_error_code IS DISTINCT FROM 'QB004'
          FOR UPDATE) d;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    INSERT INTO qbsync.integration_logs (operation, model_type, model_id, status, error_message,
                                         realm_id, attempt, actor, details)
    SELECT 'retry_dead', o.entity, o.key, 'info',
           format('dead row queued again by %s (was: %s)', v_actor, left(o.last_error, 500)),
           v_realm, o.attempts, v_actor, jsonb_build_object('outbox_id', o.id)
    FROM qbsync.outbox o WHERE o.id = ANY (v_ids);
    UPDATE qbsync.notices n
    SET acknowledged_at = now(), acknowledged_by = v_actor || ': retry_dead'
    FROM (SELECT DISTINCT o.entity, o.key FROM qbsync.outbox o WHERE o.id = ANY (v_ids)) r
    WHERE n.acknowledged_at IS NULL AND n.kind = 'dead_row' AND n.entity = r.entity
      AND n.key = r.key;

    -- A key that is pending already keeps that row (forced if a dead one was); of several
    -- dead rows of one key only the newest goes back. The others are merged away.
    UPDATE qbsync.outbox p SET force = true
    WHERE p.state = 'pending' AND NOT p.force
      AND EXISTS (SELECT 1 FROM qbsync.outbox d
                  WHERE d.id = ANY (v_ids) AND d.force AND d.entity = p.entity AND d.key = p.key);
    DELETE FROM qbsync.outbox d
    WHERE d.id = ANY (v_ids)
      AND (EXISTS (SELECT 1 FROM qbsync.outbox p
                   WHERE p.state = 'pending' AND p.entity = d.entity AND p.key = d.key)
           OR EXISTS (SELECT 1 FROM qbsync.outbox d2
                      WHERE d2.id = ANY (v_ids) AND d2.entity = d.entity AND d2.key = d.key
                        AND d2.id > d.id));
    -- request_id is kept: QuickBooks remembers only successful writes, so replaying it is
    -- safe and keeps "exactly one object" across the retry.
    UPDATE qbsync.outbox o
    SET state = 'pending', attempts = 0, next_attempt_at = now(), origin = 'retry_dead',
        last_error = NULL, last_error_code = NULL
    WHERE o.id = ANY (v_ids) AND o.state = 'dead';
    IF qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION qbsync.retry_dead(text, text) IS
    'Puts dead rows (all, one entity''s, or one key''s) back to pending with attempts 0, logged with the caller as actor; a dead row whose key is pending already is merged into that row. Acknowledges their dead_row notices. Rows dead with QB004 (a key qbsync cannot queue) stay dead: the shop''s key must change. Returns how many dead rows were taken.';
