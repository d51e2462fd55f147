-- Drift: changes made in QuickBooks outside qbsync (an accountant edits, voids or deletes an
-- invoice, merges two customers, changes an amount). The daemon reads QuickBooks' change
-- data capture for the types it manages and records here whatever differs from what qbsync
-- last wrote; nothing is overwritten silently in either direction. A DBA resolves each
-- drift: push the shop's version again, or accept QuickBooks' and record it.

CREATE TABLE qbsync.cdc_cursors (
    realm_id      text PRIMARY KEY REFERENCES qbsync.connections ON DELETE CASCADE,
    changed_since timestamptz NOT NULL,
    polled_at     timestamptz,
    last_error    text
);
COMMENT ON TABLE qbsync.cdc_cursors IS
    'Per company: QuickBooks changes up to changed_since have been compared with qbsync''s own writes.';

CREATE TABLE qbsync.drift_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    realm_id       text NOT NULL,
    entity         text NOT NULL,
    key            text NOT NULL,
    qbo_type       text NOT NULL,
    qbo_id         text NOT NULL,
    change         text NOT NULL CHECK (change IN ('updated', 'voided', 'deleted')),
    fields         jsonb NOT NULL DEFAULT '{}',  -- field -> {"qbsync": …, "quickbooks": …}
    qbo_object     jsonb,                        -- QuickBooks' object as CDC reported it
    qbo_sync_token text,
    qbo_updated_at timestamptz,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolution     text CHECK (resolution IN ('pushed', 'accepted')),
    resolved_by    text
);
-- One open drift per QuickBooks object: a later change updates it.
CREATE UNIQUE INDEX drift_log_open ON qbsync.drift_log (realm_id, qbo_type, qbo_id)
    WHERE resolved_at IS NULL;
COMMENT ON TABLE qbsync.drift_log IS 'Every change made in QuickBooks outside qbsync, and how it was resolved.';

CREATE VIEW qbsync.drift AS
SELECT d.id, d.realm_id, d.entity, d.key, d.qbo_type, d.qbo_id, d.change,
       (SELECT string_agg(format('%s: %s → %s', f.key, f.value->'qbsync', f.value->'quickbooks'),
                          '; ' ORDER BY f.key)
        FROM jsonb_each(d.fields) AS f) AS what_changed,
       d.fields, d.qbo_updated_at, d.detected_at
FROM qbsync.drift_log d
WHERE d.resolved_at IS NULL
ORDER BY d.detected_at;
COMMENT ON VIEW qbsync.drift IS
    'Open drift: QuickBooks objects changed outside qbsync since qbsync last wrote them. Resolve with qbsync.resolve_drift(id, ''push'' | ''accept'').';

-- Compares the objects CDC reported for one QuickBooks type with entity_map; records drift
-- and quietly takes in harmless changes (a payment moving an invoice's SyncToken). Returns
-- the number of drifts recorded or updated. p_objects: the CDC list for p_type.
CREATE FUNCTION qbsync.record_drift(p_realm text, p_type text, p_objects jsonb)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_obj jsonb;
    v_map qbsync.entity_map;
    v_digest jsonb;
    v_change text;
    v_fields jsonb;
    v_count int := 0;
BEGIN
    FOR v_obj IN SELECT value FROM jsonb_array_elements(p_objects) LOOP
        SELECT * INTO v_map FROM qbsync.entity_map
        WHERE realm_id = p_realm AND qbo_type = p_type AND qbo_id = v_obj->>'Id';
        CONTINUE WHEN v_map.qbo_id IS NULL;                     -- not an object qbsync manages
        CONTINUE WHEN v_obj->>'SyncToken' IS NOT DISTINCT FROM v_map.sync_token;  -- ours
        -- Changed outside qbsync (harmless or not): QuickBooks may no longer hold the body
        -- qbsync last sent, so the next push of this key must not be skipped as unchanged.
        IF v_map.body_hash IS NOT NULL THEN
            UPDATE qbsync.entity_map SET body_hash = NULL
            WHERE realm_id = p_realm AND entity = v_map.entity AND key = v_map.key;
        END IF;
        IF v_obj->>'status' = 'Deleted' THEN
            CONTINUE WHEN v_map.qbo_status = 'deleted';
            v_change := 'deleted';
            v_fields := '{}';
        ELSE
            v_digest := qbsync.qbo_digest(p_type, v_obj);
            SELECT coalesce(jsonb_object_agg(k, jsonb_build_object(
                       'qbsync', v_map.digest->k, 'quickbooks', v_digest->k)), '{}')
            INTO v_fields
            FROM (SELECT jsonb_object_keys(coalesce(v_map.digest, '{}')) AS k
                  UNION SELECT jsonb_object_keys(v_digest)) AS keys
            WHERE v_map.digest->k IS DISTINCT FROM v_digest->k;
            IF v_fields = '{}' OR v_map.digest IS NULL THEN
                -- Nothing that matters changed (or nothing to compare with): take the new
                -- SyncToken so that qbsync's next sparse update needs no 5010 round trip.
                UPDATE qbsync.entity_map
                SET sync_token = v_obj->>'SyncToken', digest = coalesce(digest, v_digest)
                WHERE realm_id = p_realm AND entity = v_map.entity AND key = v_map.key;
                CONTINUE;
            END IF;
            v_change := CASE WHEN (v_obj->>'Voided')::boolean AND v_map.qbo_status <> 'voided'
                             THEN 'voided' ELSE 'updated' END;
        END IF;
        INSERT INTO qbsync.drift_log AS d
            (realm_id, entity, key, qbo_type, qbo_id, change, fields, qbo_object,
             qbo_sync_token, qbo_updated_at)
        VALUES (p_realm, v_map.entity, v_map.key, p_type, v_map.qbo_id, v_change, v_fields,
                v_obj, v_obj->>'SyncToken', (v_obj->'MetaData'->>'LastUpdatedTime')::timestamptz)
        ON CONFLICT (realm_id, qbo_type, qbo_id) WHERE resolved_at IS NULL DO UPDATE
            SET change = excluded.change, fields = excluded.fields,
                qbo_object = excluded.qbo_object, qbo_sync_token = excluded.qbo_sync_token,
                qbo_updated_at = excluded.qbo_updated_at, detected_at = now()
            WHERE d.qbo_sync_token IS DISTINCT FROM excluded.qbo_sync_token
               OR d.change <> excluded.change;
        IF FOUND THEN
            v_count := v_count + 1;
            PERFORM qbsync.log('drift', v_map.entity, v_map.key, 'info', p_realm,
                jsonb_build_object(
                    'message', format('%s %s %s in QuickBooks outside qbsync%s', p_type,
                                      v_map.qbo_id, v_change,
                                      CASE WHEN v_fields <> '{}' THEN ': '
                                           || (SELECT string_agg(k, ', ') FROM
                                               jsonb_object_keys(v_fields) k) END),
                    'qbo_id', v_map.qbo_id));
        END IF;
    END LOOP;
    RETURN v_count;
END
$$;

-- Resolves an open drift. 'push': the shop's version goes to QuickBooks again (forced,
-- on top of QuickBooks' current SyncToken; a deleted object is created anew). 'accept':
-- QuickBooks' version stands: entity_map takes it, the shop row is told, the log says who.
CREATE FUNCTION qbsync.resolve_drift(p_id bigint, p_action text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_drift qbsync.drift_log;
BEGIN
    SELECT * INTO v_drift FROM qbsync.drift_log WHERE id = p_id FOR UPDATE;
    IF v_drift.id IS NULL THEN
        RAISE EXCEPTION 'qbsync.resolve_drift: no drift %', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_drift.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION 'qbsync.resolve_drift: drift % was already resolved (%, by % at %)',
            p_id, v_drift.resolution, v_drift.resolved_by, v_drift.resolved_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_action = 'push' THEN
        IF v_drift.change = 'voided' THEN
            RAISE EXCEPTION 'qbsync.resolve_drift: % % was voided in QuickBooks, which cannot be undone; accept it (and cancel or re-create the order in the shop)',
                v_drift.qbo_type, v_drift.qbo_id USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_drift.change = 'deleted' THEN
            -- Kept, marked deleted: the push creates the object anew, and a dependency
            -- create derives its requestid from the deleted Id, so QuickBooks cannot answer
            -- it with the deleted object's original create.
            UPDATE qbsync.entity_map SET qbo_status = 'deleted', body_hash = NULL
            WHERE realm_id = v_drift.realm_id AND entity = v_drift.entity AND key = v_drift.key;
        ELSE
            UPDATE qbsync.entity_map SET sync_token = v_drift.qbo_sync_token, body_hash = NULL
            WHERE realm_id = v_drift.realm_id AND entity = v_drift.entity AND key = v_drift.key;
        END IF;
        PERFORM qbsync.enqueue(v_drift.entity, v_drift.key, true, 'drift');
    ELSIF p_action = 'accept' THEN
        -- QuickBooks' version is not the shop's body: body_hash cleared (no skip as unchanged)
        UPDATE qbsync.entity_map
        SET sync_token = v_drift.qbo_sync_token, body_hash = NULL,
            digest = CASE WHEN v_drift.change = 'deleted' THEN digest
                          ELSE qbsync.qbo_digest(v_drift.qbo_type, v_drift.qbo_object) END,
            qbo_status = CASE v_drift.change WHEN 'deleted' THEN 'deleted'
                                             WHEN 'voided' THEN 'voided' ELSE qbo_status END
        WHERE realm_id = v_drift.realm_id AND entity = v_drift.entity AND key = v_drift.key;
        IF v_drift.change IN ('deleted', 'voided') THEN
            PERFORM qbsync.write_back(v_drift.entity, v_drift.key, jsonb_build_object(
                'realm_id', v_drift.realm_id, 'status', v_drift.change,
                'qbo_id', v_drift.qbo_id, 'attempted_at', now(),
                'error', format('%s %s %s in QuickBooks (accepted by %s)', v_drift.qbo_type,
                                v_drift.qbo_id, v_drift.change, qbsync.caller())));
        ELSE
            -- the shop row learns QuickBooks' version: its number, and when it was taken in
            PERFORM qbsync.write_back(v_drift.entity, v_drift.key, jsonb_build_object(
                'realm_id', v_drift.realm_id, 'status', 'synced', 'qbo_id', v_drift.qbo_id,
                'doc_number', v_drift.qbo_object->>'DocNumber', 'synced_at', now(),
                'attempted_at', now(), 'error', NULL));
        END IF;
    ELSE
        RAISE EXCEPTION 'qbsync.resolve_drift: action must be ''push'' or ''accept'', not %',
            quote_literal(p_action) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE qbsync.drift_log
    SET resolved_at = now(), resolution = CASE p_action WHEN 'push' THEN 'pushed' ELSE 'accepted' END,
        resolved_by = qbsync.caller()
    WHERE id = p_id;
    PERFORM qbsync.log('drift.' || p_action, v_drift.entity, v_drift.key, 'info',
        v_drift.realm_id, jsonb_build_object(
            'message', format('drift %s (%s %s %s) resolved: %s', p_id, v_drift.qbo_type,
                              v_drift.qbo_id, v_drift.change, p_action),
            'qbo_id', v_drift.qbo_id), qbsync.caller());
    RETURN CASE p_action WHEN 'push' THEN 'pushed' ELSE 'accepted' END;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbsync FROM PUBLIC;
GRANT EXECUTE ON FUNCTION qbsync.record_drift(text, text, jsonb) TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE ON qbsync.cdc_cursors TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE ON qbsync.drift_log TO qbsync_daemon;
GRANT EXECUTE ON FUNCTION qbsync.resolve_drift(bigint, text) TO qbsync_admin;
GRANT SELECT ON qbsync.drift TO qbsync_reader, qbsync_admin;
GRANT SELECT ON qbsync.drift_log, qbsync.cdc_cursors TO qbsync_admin;
