-- qbsync check-mapping as the daemon's login role: the mapping then runs with exactly the
-- daemon's rights, so a grant on the shop that the daemon lacks shows up there as the error
-- the daemon would meet. Beside what the daemon reads and calls already, the check reads the
-- capture rules (to compare them with the columns the mapping reads) and lists and checks
-- keys through the functions the admin commands use.
--
--   qbsync.tracked                      readable by the daemon and the admins (capture rules:
--                                       tables, entities, key and predicate, no shop data)
--   qbsync.keys_of, qbsync.unknown_keys callable by the daemon (they run the mapping's _keys()
--                                       and _key_exists() as the caller, like map_many)

GRANT SELECT ON qbsync.tracked TO qbsync_daemon, qbsync_admin;
GRANT EXECUTE ON FUNCTION qbsync.keys_of(text), qbsync.unknown_keys(text, text[])
    TO qbsync_daemon;
