-- The floor of any trigger-based capture: the same triggers as track.sql installed, each
-- calling a PL/pgSQL function that does nothing (declared like the real ones). What
-- capture costs above this is the functions' own work.
--
--     python bench/capture.py --variant bench/capture_floor.sql
--     python bench/capture_cost.py            (uses it as its "floor" configuration)
DO $floor$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT DISTINCT t.tgfoid::regprocedure FROM pg_trigger t
             WHERE t.tgname LIKE 'qbsync\_capture\_%' LOOP
        EXECUTE format('CREATE OR REPLACE FUNCTION %s RETURNS trigger LANGUAGE plpgsql '
                       'AS $f$BEGIN RETURN NULL; END$f$', f);
    END LOOP;
END
$floor$;
