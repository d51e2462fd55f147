-- The company's currency, as settings a mapping can read.
--
-- The daemon's look-up of a company's preferences stores two more settings beside
-- custom_txn_numbers: home_currency ({"value": "USD"}, Preferences.CurrencyPrefs.HomeCurrency:
-- a mapping may send it as a CurrencyRef, {"$setting": "home_currency"}) and multicurrency
-- (Preferences.CurrencyPrefs.MultiCurrencyEnabled). Like custom_txn_numbers they belong to
-- the "preferences" look-up: a refused one leaves them as they were, a completed one without
-- them removes them. A DBA may override either (qbsync.override_setting).
--
-- Mappings read a setting of the connected company in SQL with qbsync.company_setting(name)
-- (a body function decides what to send by it, e.g. whether an order's currency is one the
-- company books): the value the daemon resolves {"$setting": name} to, through
-- qbsync.setting_aliases, or NULL. SECURITY DEFINER so that whichever qbsync role maps (the
-- daemon, check-mapping as an admin) reads a setting by name without a grant on the
-- settings table; it reads qbsync.connections, qbsync.realm_settings and
-- qbsync.setting_aliases, and runs no shop code.

CREATE OR REPLACE FUNCTION qbsync.setting_group(p_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_name LIKE 'tax\_code:%' THEN 'tax_code'
        WHEN p_name = 'income_account' THEN 'income_account'
        WHEN p_name LIKE 'payment\_method:%' THEN 'payment_method'
        WHEN p_name LIKE 'deposit\_account:%' THEN 'deposit_account'
        WHEN p_name IN ('custom_txn_numbers', 'home_currency', 'multicurrency')
            THEN 'preferences'
    END;
$$;

-- What a DBA runs to give a setting a value of their own (kept across look-ups).
CREATE OR REPLACE FUNCTION qbsync.override_sql(p_realm text, p_name text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT qbsync.override_setting(%L, %L);', p_name,
                  CASE WHEN p_name IN ('custom_txn_numbers', 'multicurrency') THEN 'true'
                       WHEN p_name = 'home_currency' THEN '{"value": "<ISO 4217 code, e.g. USD>"}'
                       ELSE '{"value": "<QuickBooks Id>"}' END)
        || CASE WHEN p_realm IS NULL THEN '' ELSE format(' -- company %s', p_realm) END;
$$;

CREATE FUNCTION qbsync.company_setting(p_name text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT s.value FROM qbsync.realm_settings s
         WHERE s.realm_id = c.realm_id AND s.name = p_name),
        (SELECT s.value FROM qbsync.setting_aliases a
         JOIN qbsync.realm_settings s ON s.realm_id = c.realm_id AND s.name = a.target
         WHERE a.name = p_name))
    FROM qbsync.connections c
    WHERE c.active;
$$;
COMMENT ON FUNCTION qbsync.company_setting(text) IS
    'For mappings: the connected company''s value of a setting (what {"$setting": name} becomes, through qbsync.setting_aliases), e.g. home_currency -> {"value": "USD"}, multicurrency -> false; NULL when there is none (not looked up yet, refused, no company connected).';

REVOKE ALL ON FUNCTION qbsync.company_setting(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION qbsync.company_setting(text)
    TO qbsync_daemon, qbsync_admin, qbsync_reader;

COMMENT ON FUNCTION qbsync.request_settings_refresh() IS
    'Asks the daemon to look the company''s settings up in QuickBooks again (tax codes, income account, payment methods, deposit accounts, preferences: custom transaction numbers, home currency, multicurrency); rows waiting for a setting found go on. Returns the admin_requests id; the result lists what is still missing. The daemon also looks them up at every start.';
