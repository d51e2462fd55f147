-- Operating a release: every command reads the schema version before anything else, and a
-- command interrupted while it waits for the daemon withdraws its request.
--
--   qbsync.schema_migrations           readable by every qbsync role: `qbsync status` (a
--                                      reader), the admin commands and the daemon compare it
--                                      with the migrations they ship (qbsync.schema)
--   qbsync.withdraw_request(id)        (admin) a pending admin request is withdrawn (failed,
--                                      "withdrawn by ..."), so no daemon runs it later; one a
--                                      daemon already took runs to its end

GRANT SELECT ON qbsync.schema_migrations TO qbsync_reader, qbsync_admin, qbsync_daemon;

CREATE FUNCTION qbsync.withdraw_request(p_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text;
BEGIN
    -- A daemon claiming it holds the row (FOR UPDATE SKIP LOCKED): this waits, then sees
    -- 'running' and leaves it alone.
    UPDATE qbsync.admin_requests
    SET state = 'failed', finished_at = now(),
        error = format('withdrawn by %s before a daemon took it', qbsync.caller())
    WHERE id = p_id AND state = 'pending';
    IF FOUND THEN
        RETURN 'withdrawn';
    END IF;
    SELECT state INTO v_state FROM qbsync.admin_requests WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qbsync.withdraw_request: no admin request %', p_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_state;
END
$$;
COMMENT ON FUNCTION qbsync.withdraw_request(bigint) IS
    'Withdraws a pending admin request (state failed, error "withdrawn by ..."), so that no daemon runs it; returns ''withdrawn'', or the state of a request it was too late for (running, done, failed).';

REVOKE ALL ON FUNCTION qbsync.withdraw_request(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION qbsync.withdraw_request(bigint) TO qbsync_admin;
