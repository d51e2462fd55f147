-- Token key rotation that cannot stop the fleet.
--
-- Every daemon records the ids of the token keys it holds (never the keys), so that
-- `qbsync rotate-key` can refuse while a live daemon lacks the new key. A daemon that meets
-- tokens it cannot decrypt pauses the company (no row loses a try) and says so with an
-- admin notice of kind 'tokens_unreadable', one per daemon (notices.key holds the daemon's
-- worker name); the notice closes when that daemon reads the tokens again, or when another
-- daemon reads them and the first one is gone.
--
--   columns    qbsync.workers.key_ids
--   functions  register_worker_keys, tokens_unreadable, tokens_readable (daemon side)

ALTER TABLE qbsync.workers ADD COLUMN IF NOT EXISTS key_ids text[];
COMMENT ON COLUMN qbsync.workers.key_ids IS
    'ids of the token keys this daemon holds, its primary (encrypting) key first; NULL for a daemon that did not say (older than this column): qbsync rotate-key treats it as lacking the new key';

-- The daemon, right after register_worker: the ids of its key ring, primary first.
CREATE FUNCTION qbsync.register_worker_keys(p_worker text, p_key_ids text[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE qbsync.workers SET key_ids = p_key_ids WHERE worker_id = p_worker;
$$;

-- A daemon cannot decrypt a company's tokens with its key ring (p_key_id is the key they
-- are under, p_ring the ids it holds): a critical notice naming the daemon, and a log row.
CREATE FUNCTION qbsync.tokens_unreadable(p_realm text, p_worker text, p_key_id text,
                                         p_ring text[], p_message text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    v_id := qbsync.raise_notice('critical', 'tokens_unreadable', p_message,
        jsonb_build_object('worker', p_worker, 'key_id', p_key_id, 'daemon_keys', to_jsonb(p_ring),
                           'fix', format('restart daemon %s with a token_keys ring that holds key %s',
                                         p_worker, p_key_id)),
        p_realm, NULL, p_worker);
    PERFORM qbsync.log('token.decrypt', 'connection', p_realm, 'failed', p_realm,
                       jsonb_build_object('message', p_message, 'code', 'tokens_unreadable',
                                          'key_id', p_key_id),
                       p_worker);
    RETURN v_id;
END
$$;

-- A daemon read a company's tokens: its own tokens_unreadable notice closes, and so do
-- those of daemons no longer alive (restarted under another name, or stopped). Returns the
-- notices closed.
CREATE FUNCTION qbsync.tokens_readable(p_realm text, p_worker text) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_closed int := 0;
    v_key text;
BEGIN
    FOR v_key IN
        SELECT n.key FROM qbsync.notices n
        WHERE n.kind = 'tokens_unreadable' AND n.realm_id = p_realm
          AND n.acknowledged_at IS NULL
          AND (n.key = p_worker
               OR NOT EXISTS (SELECT 1 FROM qbsync.workers w
                              WHERE w.worker_id = n.key
                                AND w.heartbeat_at > now() - interval '2 minutes'))
    LOOP
        v_closed := v_closed + qbsync.close_notices('tokens_unreadable', p_realm, NULL, v_key,
                                                    format('qbsync: tokens read by %s', p_worker));
    END LOOP;
    RETURN v_closed;
END
$$;

REVOKE ALL ON FUNCTION qbsync.register_worker_keys(text, text[]),
                       qbsync.tokens_unreadable(text, text, text, text[], text),
                       qbsync.tokens_readable(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION qbsync.register_worker_keys(text, text[]),
                          qbsync.tokens_unreadable(text, text, text, text[], text),
                          qbsync.tokens_readable(text, text),
                          qbsync.close_notices(text, text, text, text, text)
    TO qbsync_daemon;
-- tokens_readable reads the notices it closes (the daemon sees no other notice column)
GRANT SELECT (kind, realm_id, key, acknowledged_at) ON qbsync.notices TO qbsync_daemon;
