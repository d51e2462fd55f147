-- QuickBooks refusing the connection itself pauses the company; it does not kill rows.
--
-- An HTTP 403 with fault 3100 (ApplicationAuthorizationFailed) or 130 (wrong cluster) says
-- that the token is not valid for this company, scope or environment: the app's access
-- was withdrawn, or a sandbox token meets the production host. Every request of the
-- company gets the same answer, so no row is at fault and no retry of a row can cure it;
-- only connecting the company again can. The daemon records such an answer with
-- qbsync.mark_forbidden: the connection becomes needs_reconnect (as when Intuit refuses
-- the refresh token), the row that met it waits without losing a try, and the company stays
-- paused until `qbsync connect` sets the status back to connected.

CREATE FUNCTION qbsync.mark_forbidden(p_realm text, p_message text, p_code text)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- only a connected company: a 403 met by a request sent before a reconnect must not
    -- undo that reconnect's status, and the first of many concurrent 403s is logged once
    WITH upd AS (
        UPDATE qbsync.connections
        SET status = 'needs_reconnect', last_error = p_message, updated_at = now()
        WHERE realm_id = p_realm AND status = 'connected'
        RETURNING realm_id),
    logged AS (
        INSERT INTO qbsync.integration_logs
            (operation, model_type, model_id, status, realm_id, error_message, error_code, actor)
        SELECT 'connection.forbidden', 'connection', p_realm, 'failed', p_realm, p_message,
               coalesce(p_code, '403'), 'daemon'
        FROM upd
        RETURNING 1)
    SELECT EXISTS (SELECT FROM logged);
$$;
COMMENT ON FUNCTION qbsync.mark_forbidden(text, text, text) IS
    'The daemon met HTTP 403 (3100 ApplicationAuthorizationFailed, 130 wrong cluster): the connection becomes needs_reconnect (true when this call changed it), its rows wait for `qbsync connect`.';

REVOKE ALL ON FUNCTION qbsync.mark_forbidden(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION qbsync.mark_forbidden(text, text, text) TO qbsync_daemon;
