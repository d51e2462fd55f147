#!/usr/bin/env bash
# Builds the Medusa sample shop's schema from Medusa's own migrations, and the checkout
# fixture from Medusa's own workflows, using the npm packages pinned in npm/package-lock.json.
#
#   sql/shops/medusa/build-schema.sh            # needs node >= 20, npm, pg_dump, psql
#
# Writes (all committed, so that nothing else needs node):
#   sql/shops/medusa/schema.sql               Medusa's tables, schema-only, in schema "medusa"
#   tests/fixtures/medusa/checkout.sql        the rows Medusa's checkout workflows wrote
#   tests/fixtures/medusa/checkout-totals.json  the totals Medusa computed for those orders
#
# How: `npm ci` in a work directory outside the tree (node_modules is never committed), a
# scratch database, `medusa db:migrate` (every module's migrations, the link tables and the
# migration scripts), then the tables qbsync does not need are dropped, schema public is
# renamed to medusa and pg_dump writes it out. A copy of the migrated database runs
# npm/checkout.js (`medusa exec`) before the same pruning, and its rows are dumped as data.
#
# Environment: PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres) of a server where the
# user may create databases; MEDUSA_WORK, the work directory (default ~/.cache/qbsync-medusa).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
WORK=${MEDUSA_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/qbsync-medusa}
SCHEMA_DB=qbsync_medusa_schema_$$
CHECKOUT_DB=qbsync_medusa_checkout_$$
URL="postgres://$PGUSER@$PGHOST:$PGPORT"

cleanup() {
    for db in "$SCHEMA_DB" "$CHECKOUT_DB"; do
        psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# -- the pinned packages -----------------------------------------------------------------
mkdir -p "$WORK"
cp "$HERE"/npm/package.json "$HERE"/npm/package-lock.json "$HERE"/npm/medusa-config.js \
   "$HERE"/npm/checkout.js "$WORK"/
if ! cmp -s "$HERE/npm/package-lock.json" "$WORK/node_modules/.package-lock.json.qbsync" 2>/dev/null; then
    (cd "$WORK" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$HERE/npm/package-lock.json" "$WORK/node_modules/.package-lock.json.qbsync"
fi
VERSION=$(cd "$WORK" && node -p 'require("@medusajs/medusa/package.json").version')
export MEDUSA_DISABLE_TELEMETRY=true  # no analytics calls from a build

# -- Medusa's own migrations ------------------------------------------------------------------
# Into schema public: Medusa 2 cannot migrate into another schema (its module migrations
# name "public" explicitly; projectConfig.databaseSchema only moves the link tables,
# medusajs/medusa#12676), so the rename happens after the migrations, below.
psql -qX -d postgres -c "CREATE DATABASE \"$SCHEMA_DB\""
(cd "$WORK" && DATABASE_URL="$URL/$SCHEMA_DB" npx medusa db:migrate >"$WORK/migrate.log" 2>&1) || {
    tail -40 "$WORK/migrate.log" >&2; exit 1; }
psql -qX -d postgres -c "CREATE DATABASE \"$CHECKOUT_DB\" TEMPLATE \"$SCHEMA_DB\""
(cd "$WORK" && DATABASE_URL="$URL/$CHECKOUT_DB" CHECKOUT_TOTALS="$WORK/checkout-totals.json" \
    npx medusa exec checkout.js >"$WORK/checkout.log" 2>&1) || {
    tail -40 "$WORK/checkout.log" >&2; exit 1; }

# -- keep the modules the mapping and the generator use -------------------------------------
# Medusa's modules never reference each other by foreign key (links are tables of their own),
# so whole modules can be left out cleanly: auth, user, API keys, cart, fulfillment, stock
# and inventory, notifications, files, search, workflow executions, settings, translations,
# returns, claims and exchanges. Dropping the search tables also drops the need for the
# pg_trgm and unaccent extensions (which an installer without superuser rights may lack).
KEEP="
order order_address order_item order_line_item order_line_item_adjustment
order_line_item_tax_line order_shipping order_shipping_method order_shipping_method_adjustment
order_shipping_method_tax_line order_summary order_transaction order_credit_line order_change
order_change_action
payment_collection payment_session payment capture refund refund_reason payment_provider
payment_collection_payment_providers
customer customer_address customer_group customer_group_customer
product product_variant product_type product_collection product_category
product_category_product product_tag product_tags product_option product_option_value
product_variant_option product_product_option product_product_option_value image
product_variant_product_image
price_set price price_list price_rule price_list_rule price_preference
promotion promotion_application_method promotion_campaign promotion_campaign_budget
promotion_campaign_budget_usage promotion_rule promotion_rule_value promotion_promotion_rule
application_method_target_rules application_method_buy_rules
region region_country currency store store_currency tax_region tax_rate tax_rate_rule
tax_provider sales_channel
order_payment_collection order_promotion product_variant_price_set product_sales_channel
region_payment_provider
"
prune() {
    psql -qX -v ON_ERROR_STOP=1 -d "$1" -v keep="$(echo $KEEP)" <<'SQL'
SET client_min_messages = warning;
SELECT set_config('build.keep', :'keep', false);
DO $$
DECLARE
    t text;
    keep text[] := string_to_array(current_setting('build.keep'), ' ');
BEGIN
    IF (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY (keep))
       <> cardinality(keep) THEN
        RAISE EXCEPTION 'tables to keep missing from the migrated schema: %',
            (SELECT array_agg(k) FROM unnest(keep) k
             WHERE NOT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = k));
    END IF;
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public'
                                               AND tablename <> ALL (keep) LOOP
        EXECUTE format('DROP TABLE public.%I CASCADE', t);
    END LOOP;
    -- enum types only the dropped tables used (returns, claims)
    FOR t IN SELECT ty.typname FROM pg_type ty
             WHERE ty.typnamespace = 'public'::regnamespace AND ty.typtype = 'e'
               AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                               WHERE a.atttypid = ty.oid AND a.attnum > 0) LOOP
        EXECUTE format('DROP TYPE public.%I', t);
    END LOOP;
    -- the search module's text search configurations (built on unaccent)
    FOR t IN SELECT cfgname FROM pg_ts_config WHERE cfgnamespace = 'public'::regnamespace LOOP
        EXECUTE format('DROP TEXT SEARCH CONFIGURATION public.%I', t);
    END LOOP;
END
$$;
DROP EXTENSION pg_trgm;      -- fails if a kept table still needed it
DROP EXTENSION unaccent;
ALTER SCHEMA public RENAME TO medusa;
CREATE SCHEMA public;
COMMENT ON SCHEMA medusa IS NULL;
SQL
}
prune "$SCHEMA_DB"
prune "$CHECKOUT_DB"

# pg_dump's output, cleaned where it would not load through a driver or would leak into the
# installer's session: its psql meta-commands (\restrict / \unrestrict, with a random key),
# the session SETs and set_config('search_path', '', false) (install_shop runs the file in
# the caller's connection), and the "Dumped from/by" lines (the header below says it).
clean() {
    grep -v -E '^(\\(un)?restrict |SET [a-z_]+ = |SELECT pg_catalog\.set_config\(|-- Dumped (from|by) )'
}

{
    cat <<EOF
-- Medusa $VERSION (npm @medusajs/medusa, pinned with every dependency in
-- sql/shops/medusa/npm/package-lock.json): the tables of the modules qbsync maps, as
-- Medusa's own migrations create them. Generated by sql/shops/medusa/build-schema.sh
-- (\`medusa db:migrate\` into a scratch database, modules qbsync does not read dropped,
-- schema public renamed to medusa, \`pg_dump --schema-only\`); do not edit by hand.
-- Loaded by qbsync.shop.install_shop() only when schema medusa does not exist yet.
EOF
    pg_dump --schema-only --no-owner --no-privileges --schema=medusa -d "$SCHEMA_DB" | clean
} >"$HERE/schema.sql"

mkdir -p "$ROOT/tests/fixtures/medusa"
{
    cat <<EOF
-- Rows written by Medusa $VERSION's own workflows (sql/shops/medusa/npm/checkout.js, run by
-- sql/shops/medusa/build-schema.sh): load into a database with sql/shops/medusa/schema.sql.
-- checkout-totals.json holds the totals Medusa computed for these orders. Generated; do not
-- edit by hand.
EOF
    pg_dump --data-only --no-owner --no-privileges --schema=medusa --inserts --rows-per-insert=100 \
        -d "$CHECKOUT_DB" | clean
} >"$ROOT/tests/fixtures/medusa/checkout.sql"
cp "$WORK/checkout-totals.json" "$ROOT/tests/fixtures/medusa/checkout-totals.json"

echo "Medusa $VERSION: $(grep -c '^CREATE TABLE' "$HERE/schema.sql") tables in schema.sql," \
     "$(grep -c '"display_id"' "$ROOT/tests/fixtures/medusa/checkout-totals.json") orders in the checkout fixture"
