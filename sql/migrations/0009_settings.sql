-- Configuration gaps pause rows; they do not kill them.
--
-- A row whose mapping uses a {"$setting": name} the company has no value for (a tax code,
-- the income account, a payment method, a deposit account) is not at fault: it waits in
-- outbox state 'waiting' (no try burnt, never claimed) until the setting resolves (a DBA
-- override, a look-up at daemon start or on request), and is looked at again every
-- setting_recheck_seconds meanwhile. An open notice and connection_status name each
-- missing setting, the rows waiting on it and the SQL that sets it.
--
-- The daemon's look-up of a company's settings is stored through qbsync.store_lookup: the
-- values found (a DBA override is kept), what QuickBooks refused (only those settings stay
-- unresolved), and tax rates that more than one active tax code gives (a notice names them).

-- A value added by ALTER TYPE cannot be used before the transaction that added it commits:
-- the function bodies below (which compare state = 'waiting', so that the outbox's state
-- index serves them) are analysed at their first call, not now.
ALTER TYPE qbsync.outbox_state ADD VALUE IF NOT EXISTS 'waiting';
SET LOCAL check_function_bodies = off;

-- The settings a waiting row waits for; kept while a recheck maps the row again (so that a
-- wait that goes on is not logged again), NULL once they resolved. Meaningful in state
-- waiting only. No default, no index: adding it rewrites nothing and costs the capture path
-- nothing.
ALTER TABLE qbsync.outbox ADD COLUMN IF NOT EXISTS waiting_for text[];
COMMENT ON COLUMN qbsync.outbox.waiting_for IS
    'state waiting: the realm settings ({"$setting": name}) the row waits for (other states: what it waited for before a recheck, or NULL)';

INSERT INTO qbsync.settings (name, value, description) VALUES
    ('setting_recheck_seconds', '900',
     'a row waiting for a missing realm setting is mapped again after this long, even when nothing said the setting changed')
ON CONFLICT (name) DO NOTHING;

ALTER TABLE qbsync.admin_requests DROP CONSTRAINT admin_requests_kind_check;
ALTER TABLE qbsync.admin_requests ADD CONSTRAINT admin_requests_kind_check
    CHECK (kind IN ('report', 'connection_test', 'reconcile', 'refresh_settings'));

-- The last look-up of each company's settings: when, what QuickBooks refused, which rates
-- more than one tax code gives. Written by qbsync.store_lookup.
CREATE TABLE qbsync.realm_lookups (
    realm_id     text PRIMARY KEY REFERENCES qbsync.connections ON DELETE CASCADE,
    looked_up_at timestamptz NOT NULL DEFAULT now(),
    refused      jsonb NOT NULL DEFAULT '{}',
    ties         jsonb NOT NULL DEFAULT '{}',
    skipped      jsonb NOT NULL DEFAULT '[]'
);
COMMENT ON TABLE qbsync.realm_lookups IS
    'The daemon''s last look-up of a company''s settings (at every start and on qbsync.request_settings_refresh()): refused = look-ups QuickBooks refused (group -> its answer; their settings stay unresolved), ties = tax rates given by more than one active tax code, skipped = tax codes whose rate could not be read.';

-- Which look-up a setting name belongs to (a refused or repeated look-up touches only its
-- own names); NULL for names qbsync does not look up (a DBA's own overrides).
CREATE FUNCTION qbsync.setting_group(p_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_name LIKE 'tax\_code:%' THEN 'tax_code'
        WHEN p_name = 'income_account' THEN 'income_account'
        WHEN p_name LIKE 'payment\_method:%' THEN 'payment_method'
        WHEN p_name LIKE 'deposit\_account:%' THEN 'deposit_account'
        WHEN p_name = 'custom_txn_numbers' THEN 'preferences'
    END;
$$;

-- Does the company have a value for this setting name, directly or through an alias?
-- (The daemon reads the same thing with the realm_settings query of queries.sql.)
CREATE FUNCTION qbsync.setting_resolves(p_realm text, p_name text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM qbsync.realm_settings WHERE realm_id = p_realm AND name = p_name)
        OR EXISTS (SELECT 1 FROM qbsync.setting_aliases a
                   JOIN qbsync.realm_settings s ON s.realm_id = p_realm AND s.name = a.target
                   WHERE a.name = p_name);
$$;

-- What a DBA runs to give a setting a value of their own (kept across look-ups).
CREATE FUNCTION qbsync.override_sql(p_realm text, p_name text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT qbsync.override_setting(%L, %L);', p_name,
                  CASE WHEN p_name = 'custom_txn_numbers' THEN 'true'
                       ELSE '{"value": "<QuickBooks Id>"}' END)
        || CASE WHEN p_realm IS NULL THEN '' ELSE format(' -- company %s', p_realm) END;
$$;

-- The missing settings rows wait for: per setting of the active company, how many rows,
-- some of their keys, since when, and how to set it. A view (not a function) so that readers
-- need no grant on the outbox or the settings; its reads are the view owner's. The state is
-- compared through text because 'waiting' is new in this transaction (the planner folds the
-- cast away, so the outbox's state index serves it).
CREATE VIEW qbsync.missing_settings AS
WITH realm AS (
    SELECT c.realm_id FROM qbsync.connections c WHERE c.active
), waits AS (
    SELECT s.name, o.entity, o.key, o.enqueued_at, o.next_attempt_at, o.id
    FROM qbsync.outbox o, unnest(o.waiting_for) AS s(name)
    WHERE o.state = 'waiting'::text::qbsync.outbox_state
)
SELECT r.realm_id,
       w.name AS setting,
       count(*) AS rows_waiting,
       (array_agg(w.entity || ' ' || w.key ORDER BY w.id))[1:5] AS some_keys,
       min(w.enqueued_at) AS waiting_since,
       min(w.next_attempt_at) AS next_check_at,
       qbsync.override_sql(r.realm_id, w.name)
           || ' -- or look it up again in QuickBooks: qbsync settings --refresh' AS set_it
FROM waits w
LEFT JOIN realm r ON true
WHERE r.realm_id IS NULL
   OR NOT (EXISTS (SELECT 1 FROM qbsync.realm_settings v
                   WHERE v.realm_id = r.realm_id AND v.name = w.name)
           OR EXISTS (SELECT 1 FROM qbsync.setting_aliases a
                      JOIN qbsync.realm_settings v ON v.realm_id = r.realm_id
                                                  AND v.name = a.target
                      WHERE a.name = w.name))
GROUP BY r.realm_id, w.name
ORDER BY w.name;
COMMENT ON VIEW qbsync.missing_settings IS
    'Settings ({"$setting": name} in mappings) the active company has no value for, with the rows waiting on them (they burn no try and flow once the setting resolves) and the SQL that sets one.';
COMMENT ON COLUMN qbsync.missing_settings.some_keys IS 'up to five of the waiting rows, oldest first';
COMMENT ON COLUMN qbsync.missing_settings.next_check_at IS 'when the first of them is mapped again anyway (setting_recheck_seconds)';
COMMENT ON COLUMN qbsync.missing_settings.set_it IS 'an override a DBA can run, or the command that looks the settings up again';

-- One open notice per missing setting that rows wait for (kind setting_missing, key = the
-- setting name); a setting nobody waits for any more (or that resolves) has its notice
-- closed. p_names: only these settings (NULL: all). p_again: a row has just started to wait
-- (counted in occurrences); without it the notice's counts and keys are only brought up to
-- date (rows that waited in concurrent transactions were not counted by one another).
-- SECURITY DEFINER: it writes notices, which the daemon role may not update directly.
CREATE FUNCTION qbsync.notice_setting_waits(p_realm text, p_names text[] DEFAULT NULL,
                                            p_again boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
    v_message text;
    v_details jsonb;
BEGIN
    FOR w IN SELECT * FROM qbsync.missing_settings m
             WHERE m.realm_id = p_realm AND (p_names IS NULL OR m.setting = ANY (p_names))
    LOOP
        v_message := format('QuickBooks company %s has no value for setting "%s": %s row(s) wait '
                            'for it (%s%s). They burn no try and go on once it is set: %s',
                            w.realm_id, w.setting, w.rows_waiting,
                            array_to_string(w.some_keys, ', '),
                            CASE WHEN w.rows_waiting > cardinality(w.some_keys) THEN ', …'
                                 ELSE '' END,
                            w.set_it);
        v_details := jsonb_build_object('setting', w.setting, 'rows_waiting', w.rows_waiting,
                                        'some_keys', to_jsonb(w.some_keys),
                                        'waiting_since', w.waiting_since,
                                        'override', qbsync.override_sql(w.realm_id, w.setting),
                                        'refresh', 'qbsync settings --refresh');
        IF p_again THEN
            PERFORM qbsync.raise_notice('critical', 'setting_missing', v_message, v_details,
                                        w.realm_id, NULL, w.setting);
        ELSE
            UPDATE qbsync.notices SET message = v_message, details = v_details
            WHERE acknowledged_at IS NULL AND kind = 'setting_missing'
              AND realm_id = w.realm_id AND key = w.setting
              AND message IS DISTINCT FROM v_message;
        END IF;
    END LOOP;
    -- settings nobody waits for any more
    FOR w IN SELECT n.realm_id, n.key FROM qbsync.notices n
             WHERE n.acknowledged_at IS NULL AND n.kind = 'setting_missing'
               AND (p_realm IS NULL OR n.realm_id = p_realm)
               AND NOT EXISTS (SELECT 1 FROM qbsync.missing_settings m
                               WHERE m.realm_id = n.realm_id AND m.setting = n.key)
    LOOP
        PERFORM qbsync.close_notices('setting_missing', w.realm_id, NULL, w.key,
                                     'qbsync: resolved');
    END LOOP;
END
$$;

-- A row the daemon holds waits for settings the company has no value for: it goes to
-- state 'waiting' (not claimed again until released), burning no try, with the settings in
-- waiting_for. Every setting_recheck_seconds it is released anyway and mapped again (the
-- mapping may no longer need the setting), so a row never waits unseen: the open notice
-- (setting_missing) and qbsync.missing_settings name it meanwhile. The shop row is written
-- back 'pending' with the message; integration_logs gets an 'info' row when the row starts
-- waiting or waits for other settings than before.
--
-- One waiting row per key: a row that waits while an older one of its key already waits
-- merges into that one, which keeps its request id (its earlier tries may have reached
-- QuickBooks) and takes the newer one's force flag.
--
-- Returns 'waiting', 'pending' when every setting resolves by now (a DBA set one while the
-- row was mapped: it is ready again at once, and the daemon reloads its settings), or
-- 'lost' when the lease was lost.
CREATE FUNCTION qbsync.wait_for_settings(p_id bigint, p_worker text, p_realm text,
                                         p_settings text[], p_message text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row qbsync.outbox;
    v_old qbsync.outbox;
    v_now timestamptz := clock_timestamp();
    v_names text[];
    v_next timestamptz;
    v_keep bigint;
    v_force boolean;
BEGIN
    v_row := qbsync.held(p_id, p_worker);
    IF v_row.id IS NULL THEN
        RETURN 'lost';
    END IF;
    SELECT array_agg(DISTINCT s ORDER BY s) INTO v_names
    FROM unnest(p_settings) s WHERE NOT qbsync.setting_resolves(p_realm, s);
    IF v_names IS NULL THEN
        -- Resolved meanwhile: ready again at once; a change queued behind it merges into it
        -- (see qbsync.requeue). The claim counted this try (0002's claim); it is given back,
        -- as fail() does for the kinds that are not the row's fault.
        DELETE FROM qbsync.outbox
        WHERE entity = v_row.entity AND key = v_row.key AND state = 'pending'
        RETURNING force INTO v_force;
        UPDATE qbsync.outbox
        SET state = 'pending', attempts = greatest(attempts - 1, 0), next_attempt_at = v_now,
            lease_owner = NULL, lease_expires_at = NULL, waiting_for = NULL,
            force = force OR coalesce(v_force, false)
        WHERE id = p_id;
        RETURN 'pending';
    END IF;
    v_next := v_now + make_interval(secs => coalesce(
        (qbsync.setting('setting_recheck_seconds'))::float8, 900));
    SELECT * INTO v_old FROM qbsync.outbox
    WHERE entity = v_row.entity AND key = v_row.key AND state = 'waiting'
    FOR UPDATE;
    IF v_old.id IS NOT NULL THEN
        DELETE FROM qbsync.outbox WHERE id = p_id;
        UPDATE qbsync.outbox
        SET waiting_for = v_names, next_attempt_at = v_next, force = force OR v_row.force,
            attempts = greatest(attempts, v_row.attempts - 1), last_attempt_at = v_now,
            last_error = p_message, last_error_code = NULL
        WHERE id = v_old.id;
        v_keep := v_old.id;
    ELSE
        -- The claim counted this try (0002's claim); a wait gives it back.
        UPDATE qbsync.outbox
        SET state = 'waiting', attempts = greatest(attempts - 1, 0), waiting_for = v_names,
            next_attempt_at = v_next, lease_owner = NULL, lease_expires_at = NULL,
            last_error = p_message, last_error_code = NULL
        WHERE id = p_id;
        v_keep := p_id;
    END IF;
    IF coalesce(v_old.waiting_for, v_row.waiting_for) IS DISTINCT FROM v_names THEN
        PERFORM qbsync.log('wait.setting', v_row.entity, v_row.key, 'info', p_realm,
            jsonb_build_object('message', p_message, 'settings', to_jsonb(v_names),
                               'attempt', v_row.attempts, 'request_id', v_row.request_id,
                               'next_check_at', v_next, 'outbox_id', v_keep),
            p_worker);
        PERFORM qbsync.write_back(v_row.entity, v_row.key, jsonb_build_object(
            'realm_id', p_realm, 'status', 'pending', 'error', p_message,
            'attempted_at', v_now));
    END IF;
    PERFORM qbsync.notice_setting_waits(p_realm, v_names);
    RETURN 'waiting';
END
$$;
COMMENT ON FUNCTION qbsync.wait_for_settings(bigint, text, text, text[], text) IS
    'The daemon: this held row waits for these settings (no try burnt). Returns waiting, pending (they resolve by now) or lost.';

-- Waiting rows go back to pending (ready at once) when every setting they wait for resolves,
-- or when their recheck time has come; a change of the key queued meanwhile merges into
-- them (see qbsync.requeue). Notices of settings nobody waits for any more are closed, and
-- a waiting daemon is woken. Called by the triggers on realm_settings and setting_aliases
-- (an override, a look-up), and by the daemon every few seconds (rechecks). Returns how
-- many rows went back.
CREATE FUNCTION qbsync.release_setting_waits(p_realm text DEFAULT NULL) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_realm text := coalesce(p_realm, (SELECT realm_id FROM qbsync.connections WHERE active));
    v_row qbsync.outbox;
    v_resolved boolean;
    v_force boolean;
    v_count int := 0;
BEGIN
    FOR v_row IN
        SELECT * FROM qbsync.outbox
        WHERE state = 'waiting'
        ORDER BY next_attempt_at, id
        FOR UPDATE SKIP LOCKED
    LOOP
        v_resolved := v_realm IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM unnest(v_row.waiting_for) s
            WHERE NOT qbsync.setting_resolves(v_realm, s));
        CONTINUE WHEN NOT v_resolved AND v_row.next_attempt_at > now();
        DELETE FROM qbsync.outbox
        WHERE entity = v_row.entity AND key = v_row.key AND state = 'pending'
        RETURNING force INTO v_force;
        UPDATE qbsync.outbox
        SET state = 'pending', next_attempt_at = now(),
            waiting_for = CASE WHEN v_resolved THEN NULL ELSE waiting_for END,
            force = force OR coalesce(v_force, false)
        WHERE id = v_row.id;
        IF v_resolved THEN
            PERFORM qbsync.log('wait.released', v_row.entity, v_row.key, 'info', v_realm,
                jsonb_build_object('message', format('%s %s: setting(s) %s resolve now; pushed again',
                                                     v_row.entity, v_row.key,
                                                     array_to_string(v_row.waiting_for, ', ')),
                                   'settings', to_jsonb(v_row.waiting_for)),
                qbsync.caller());
        END IF;
        v_count := v_count + 1;
    END LOOP;
    IF v_realm IS NOT NULL AND EXISTS (SELECT 1 FROM qbsync.notices
                                       WHERE acknowledged_at IS NULL AND kind = 'setting_missing') THEN
        PERFORM qbsync.notice_setting_waits(v_realm, NULL, false);  -- counts, closes
    END IF;
    IF v_count > 0 AND qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION qbsync.release_setting_waits(text) IS
    'Puts waiting rows back to pending once their settings resolve (or their recheck time came); returns how many.';

-- A DBA set, changed or removed a setting or an alias: rows waiting for it go on at once.
-- SECURITY DEFINER: a role allowed to write a setting need not be allowed to change the
-- outbox; the function touches qbsync's own tables only and calls no shop code.
CREATE FUNCTION qbsync.settings_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbsync.release_setting_waits(NULL);
    RETURN NULL;
END
$$;
CREATE TRIGGER realm_settings_changed
    AFTER INSERT OR UPDATE OR DELETE ON qbsync.realm_settings
    FOR EACH STATEMENT EXECUTE FUNCTION qbsync.settings_changed();
CREATE TRIGGER setting_aliases_changed
    AFTER INSERT OR UPDATE OR DELETE ON qbsync.setting_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION qbsync.settings_changed();

-- A DBA's own value for a setting (source 'override'), kept across look-ups. p_value is what
-- the mapping gets in place of {"$setting": name}: '{"value": "<QuickBooks Id>"}' for a
-- reference (TaxCodeRef, ItemRef's IncomeAccountRef, ...).
CREATE FUNCTION qbsync.override_setting(p_setting text, p_value jsonb, p_realm text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_realm text := coalesce(p_realm, qbsync.active_realm());
BEGIN
    IF v_realm IS NULL THEN
        RAISE EXCEPTION 'qbsync.override_setting: no active QuickBooks company (qbsync connect first), and no realm given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_setting IS NULL OR p_value IS NULL THEN
        RAISE EXCEPTION 'qbsync.override_setting: the setting name and its value are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. SELECT qbsync.override_setting(''tax_code:13'', ''{"value": "7"}'');';
    END IF;
    INSERT INTO qbsync.realm_settings AS s (realm_id, name, value, source)
    VALUES (v_realm, p_setting, p_value, 'override')
    ON CONFLICT (realm_id, name) DO UPDATE
        SET value = excluded.value, source = 'override', updated_at = now();
    PERFORM qbsync.log('setting.override', 'setting', p_setting, 'info', v_realm,
        jsonb_build_object('message', format('setting %s set by hand to %s', p_setting, p_value),
                           'value', p_value), qbsync.caller());
END
$$;
COMMENT ON FUNCTION qbsync.override_setting(text, jsonb, text) IS
    'Gives a realm setting a value of the DBA''s own (source override, kept when the daemon looks settings up again); rows waiting for it go on at once. Remove with DELETE FROM qbsync.realm_settings.';

-- The daemon's look-up of a company's settings. p_found: name -> value of every setting
-- found; p_done: the groups looked up completely (their settings not found any more are
-- removed, unless overridden); p_problems: {"refused": {group: message}, "ties": {name:
-- [codes, chosen first]}, "skipped": [notes]}. A DBA override is never replaced. Tie and
-- refusal notices are raised (or closed once gone); rows waiting for settings that now
-- resolve go on (the trigger). Returns {saved, removed, missing}.
CREATE FUNCTION qbsync.store_lookup(p_realm text, p_found jsonb, p_done text[],
                                    p_problems jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_saved int;
    v_removed int;
    v_refused jsonb := coalesce(p_problems->'refused', '{}');
    v_ties jsonb := coalesce(p_problems->'ties', '{}');
    t record;
    v_codes text;
BEGIN
    INSERT INTO qbsync.realm_settings AS s (realm_id, name, value, source)
    SELECT p_realm, f.key, f.value, 'lookup' FROM jsonb_each(p_found) f
    ON CONFLICT (realm_id, name) DO UPDATE
        SET value = excluded.value, updated_at = now()
        WHERE s.source = 'lookup' AND s.value IS DISTINCT FROM excluded.value;
    GET DIAGNOSTICS v_saved = ROW_COUNT;
    DELETE FROM qbsync.realm_settings s
    WHERE s.realm_id = p_realm AND s.source = 'lookup'
      AND qbsync.setting_group(s.name) = ANY (p_done) AND NOT p_found ? s.name;
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    INSERT INTO qbsync.realm_lookups AS l (realm_id, looked_up_at, refused, ties, skipped)
    VALUES (p_realm, now(), v_refused, v_ties, coalesce(p_problems->'skipped', '[]'))
    ON CONFLICT (realm_id) DO UPDATE
        SET looked_up_at = excluded.looked_up_at, refused = excluded.refused,
            ties = excluded.ties, skipped = excluded.skipped;

    -- What QuickBooks refused: its settings stay unresolved (or keep their earlier value).
    FOR t IN SELECT key, value #>> '{}' AS message FROM jsonb_each(v_refused) LOOP
        PERFORM qbsync.raise_notice('warning', 'lookup_refused',
            format('QuickBooks company %s refused the look-up of %s settings: %s. Those '
                   'settings stay as they were (unresolved if never found); rows that need '
                   'one wait for it. Look up again with qbsync settings --refresh, or set '
                   'one by hand: %s', p_realm, t.key, t.message,
                   qbsync.override_sql(NULL, CASE t.key WHEN 'tax_code' THEN 'tax_code:<rate>'
                       WHEN 'payment_method' THEN 'payment_method:<name>'
                       WHEN 'deposit_account' THEN 'deposit_account:bank'
                       WHEN 'preferences' THEN 'custom_txn_numbers' ELSE t.key END)),
            jsonb_build_object('group', t.key, 'answer', t.message),
            p_realm, NULL, t.key);
    END LOOP;
    FOR t IN SELECT n.key FROM qbsync.notices n
             WHERE n.acknowledged_at IS NULL AND n.kind = 'lookup_refused'
               AND n.realm_id = p_realm AND n.key = ANY (p_done)
    LOOP
        PERFORM qbsync.close_notices('lookup_refused', p_realm, NULL, t.key, 'qbsync: looked up');
    END LOOP;

    -- Tax rates given by several active codes: the first was chosen; a DBA override ends it.
    FOR t IN SELECT key, value FROM jsonb_each(v_ties) LOOP
        IF EXISTS (SELECT 1 FROM qbsync.realm_settings
                   WHERE realm_id = p_realm AND name = t.key AND source = 'override') THEN
            CONTINUE;
        END IF;
        SELECT string_agg(format('"%s" (Id %s%s)', c->>'name', c->>'id',
                                 CASE WHEN n = 1 THEN ', used' ELSE '' END), ' and '
                          ORDER BY n)
        INTO v_codes FROM jsonb_array_elements(t.value) WITH ORDINALITY AS e(c, n);
        PERFORM qbsync.raise_notice('warning', 'tax_code_tie',
            format('%s: QuickBooks company %s has %s active tax codes with this rate: %s. '
                   'qbsync uses Id %s; to use another one, set an override: %s',
                   t.key, p_realm, jsonb_array_length(t.value), v_codes,
                   t.value->0->>'id',
                   format('SELECT qbsync.override_setting(%L, %L);', t.key,
                          jsonb_build_object('value', t.value->1->>'id')::text)),
            jsonb_build_object('setting', t.key, 'codes', t.value,
                               'override', qbsync.override_sql(NULL, t.key)),
            p_realm, NULL, t.key);
    END LOOP;
    -- a tie gone (tax codes looked up without it), or settled by an override
    FOR t IN SELECT n.key FROM qbsync.notices n
             WHERE n.acknowledged_at IS NULL AND n.kind = 'tax_code_tie' AND n.realm_id = p_realm
               AND (('tax_code' = ANY (p_done) AND NOT v_ties ? n.key)
                    OR EXISTS (SELECT 1 FROM qbsync.realm_settings s WHERE s.realm_id = p_realm
                               AND s.name = n.key AND s.source = 'override'))
    LOOP
        PERFORM qbsync.close_notices('tax_code_tie', p_realm, NULL, t.key, 'qbsync: looked up');
    END LOOP;

    RETURN jsonb_build_object(
        'saved', v_saved, 'removed', v_removed,
        'missing', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                 'setting', w.setting, 'rows_waiting', w.rows_waiting))
                             FROM qbsync.missing_settings w
                             WHERE w.realm_id = p_realm), '[]'));
END
$$;
COMMENT ON FUNCTION qbsync.store_lookup(text, jsonb, text[], jsonb) IS
    'The daemon stores its look-up of a company''s settings (overrides kept; settings of a refused look-up left as they were); raises notices for refused look-ups and tax-rate ties.';

-- Ask the daemon to look the company's settings up again (admin request refresh_settings).
CREATE FUNCTION qbsync.request_settings_refresh() RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbsync.request('refresh_settings', '{}') $$;
COMMENT ON FUNCTION qbsync.request_settings_refresh() IS
    'Asks the daemon to look the company''s settings up in QuickBooks again (tax codes, income account, payment methods, deposit accounts, preferences); rows waiting for a setting found go on. Returns the admin_requests id; the result lists what is still missing. The daemon also looks them up at every start.';

-- connection_status, plus what the company's settings lack (new columns at the end).
CREATE OR REPLACE VIEW qbsync.connection_status AS
SELECT c.realm_id,
       c.company_name,
       c.environment,
       c.status,
       c.active,
       c.access_expires_at,
       c.refresh_expires_at,
       c.refresh_expires_at - now() AS refresh_expires_in,
       c.refreshed_at AS last_refresh,
       c.last_error,
       c.connected_at,
       c.api_base_url,
       c.updated_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'setting', w.setting, 'rows_waiting', w.rows_waiting,
                            'some_keys', to_jsonb(w.some_keys),
                            'waiting_since', w.waiting_since, 'set_it', w.set_it)
                            ORDER BY w.setting)
                 FROM qbsync.missing_settings w
                 WHERE w.realm_id = c.realm_id), '[]') AS missing_settings,
       l.looked_up_at AS settings_looked_up_at,
       l.refused AS settings_lookup_refused,
       l.ties AS tax_code_ties
FROM qbsync.connections c
LEFT JOIN qbsync.realm_lookups l ON l.realm_id = c.realm_id
ORDER BY c.active DESC, c.realm_id;
COMMENT ON COLUMN qbsync.connection_status.missing_settings IS
    'settings rows wait for because the company has no value for them: [{setting, rows_waiting, some_keys, waiting_since, set_it}]; empty when nothing waits';
COMMENT ON COLUMN qbsync.connection_status.settings_looked_up_at IS
    'the daemon''s last look-up of the company''s settings (every start, qbsync settings --refresh)';
COMMENT ON COLUMN qbsync.connection_status.settings_lookup_refused IS
    'look-ups QuickBooks refused at that time (group -> its answer): their settings stay unresolved';
COMMENT ON COLUMN qbsync.connection_status.tax_code_ties IS
    'tax rates more than one active tax code gives (setting -> codes, the one used first)';

COMMENT ON TABLE qbsync.outbox IS
    'Changes still to push. pending = waiting for its time (next_attempt_at), running = leased by a daemon, waiting = waits for a realm setting the company has no value for (waiting_for; see qbsync.missing_settings), dead = out of tries or unfixable (see last_error).';

REVOKE ALL ON FUNCTION qbsync.setting_group(text), qbsync.setting_resolves(text, text),
    qbsync.override_sql(text, text),
    qbsync.notice_setting_waits(text, text[], boolean),
    qbsync.wait_for_settings(bigint, text, text, text[], text),
    qbsync.release_setting_waits(text), qbsync.settings_changed(),
    qbsync.override_setting(text, jsonb, text),
    qbsync.store_lookup(text, jsonb, text[], jsonb), qbsync.request_settings_refresh()
    FROM PUBLIC;
REVOKE ALL ON qbsync.realm_lookups, qbsync.missing_settings FROM PUBLIC;

GRANT SELECT ON qbsync.missing_settings TO qbsync_reader, qbsync_admin;
GRANT SELECT ON qbsync.missing_settings TO qbsync_daemon;
GRANT EXECUTE ON FUNCTION qbsync.override_sql(text, text)
    TO qbsync_reader, qbsync_admin, qbsync_daemon;
GRANT EXECUTE ON FUNCTION qbsync.setting_resolves(text, text) TO qbsync_daemon;
GRANT SELECT ON qbsync.realm_lookups TO qbsync_reader, qbsync_admin;
GRANT EXECUTE ON FUNCTION qbsync.override_setting(text, jsonb, text),
    qbsync.request_settings_refresh()
    TO qbsync_admin;
GRANT EXECUTE ON FUNCTION qbsync.setting_group(text), qbsync.notice_setting_waits(text, text[], boolean),
    qbsync.wait_for_settings(bigint, text, text, text[], text),
    qbsync.release_setting_waits(text), qbsync.settings_changed(),
    qbsync.store_lookup(text, jsonb, text[], jsonb)
    TO qbsync_daemon;
-- the look-up removes settings QuickBooks no longer has, and records itself
GRANT DELETE ON qbsync.realm_settings TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE ON qbsync.realm_lookups TO qbsync_daemon;
GRANT SELECT ON qbsync.setting_aliases TO qbsync_daemon;
GRANT EXECUTE ON FUNCTION qbsync.close_notices(text, text, text, text, text) TO qbsync_daemon;
