-- medusa.generate(orders, seed): realistic Medusa 2 data at any volume, set-based, in the
-- shape Medusa's own workflows write it (compare tests/fixtures/medusa/checkout.sql, rows
-- written by Medusa 2.21.2 itself).
--
--   SELECT medusa.generate(1000);            -- ~333 account holders, ~2,300 lines
--   SELECT medusa.generate(100000, 0.7);
--
-- The store ("Kyma", a Greek homeware and pantry shop) is created on the first call: regions
-- Ελλάδα and Europe in euros (prices VAT-inclusive, Greek VAT 24 % with 13 % for food and 6 %
-- for books, tax lines per item and per shipping method) and United States in dollars
-- (prices before tax, exports zero-rated: no tax lines); 13 products, 28 variants, each
-- priced in EUR and USD; promotions WELCOME10 (10 % off the items), SPRING5 (5 € off the
-- order, spread over the items) and FREESHIP (free shipping from 60 €, automatic); payment
-- providers Stripe and the manual system provider; two refund reasons.
--
-- Each order: Medusa's order, its billing and shipping addresses, line items with their
-- order_item rows (version 1), tax lines, promotion adjustments stored net of VAT as Medusa's
-- promotion module computes them (10 % of 39.99 incl. 24 % -> 3.225 net), a shipping method
-- with its tax line and adjustment, the order summary with Medusa's unrounded totals, its
-- promotions, and a payment collection with a session, an authorized payment and (mostly) a
-- capture, each with its order transaction. About orders/3 account holders, 15 % guest
-- checkouts (a guest is a customer row with has_account = false and only an e-mail, reused
-- by the same e-mail), 4 % of orders in dollars.
-- Outcomes: 79.5 % placed and captured, 6 % authorized only, 8 % completed, 1.5 % canceled
-- before capture, 1.5 % canceled after capture (refunded in full), 3 % partly refunded,
-- 0.5 % draft orders. A refund or a cancellation is a new order version, as Medusa records
-- it: an order change, a credit line (the refunded amount; 0 for a cancellation before
-- capture), the order's items, shipping and adjustments again at version 2, a new summary.
--
-- Deterministic for a seed: setseed() + random() evaluated only in single-table scans over
-- generate_series / a fresh temp table; dates on a fixed calendar (2025-01-01 .. 2026-06-30,
-- Athens); ids are Medusa-shaped (prefix_ + 26 characters: the time in hex, then a hash of
-- what the row is), so two fresh databases given the same seed hold identical rows. Called
-- again it appends. Capture triggers fire or not as the caller decides.

CREATE OR REPLACE FUNCTION medusa.generate_id(prefix text, at timestamptz, salt text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN prefix || '_' || upper(lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')
                              || substr(md5(salt), 1, 14));

-- Medusa's BigNumber as it stores it next to a numeric column.
CREATE OR REPLACE FUNCTION medusa.generate_raw(n numeric)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN jsonb_build_object('value', trim_scale(n)::text, 'precision', 20);

-- A number as Medusa's JavaScript code leaves it: 15 decimals at most.
CREATE OR REPLACE FUNCTION medusa.generate_js(n numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN trim_scale(round(n, 15));

CREATE OR REPLACE FUNCTION medusa.generate_summary(total numeric, paid numeric, refunded numeric,
                                                   credit numeric)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT jsonb_object_agg(k, medusa.generate_js(v)) || jsonb_object_agg('raw_' || k, medusa.generate_raw(v))
        FROM (VALUES ('paid_total', paid),
                     ('refunded_total', refunded),
                     ('transaction_total', paid - refunded),
                     ('credit_line_total', credit),
                     ('current_order_total', total - credit),
                     ('original_order_total', total),
                     ('accounting_total', total - credit),
                     ('pending_difference', total - credit - (paid - refunded))) AS t(k, v));

CREATE OR REPLACE FUNCTION medusa.generate(orders integer, seed double precision DEFAULT 0.42)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET work_mem = '256MB'
SET client_min_messages = warning
AS $fn$
DECLARE
    n_orders int := orders;
    n_cust int;
    n_guests int;
    t0 CONSTANT timestamptz := '2024-12-01 00:00+02';
    -- names as customers type them; the parallel arrays are their Latin spelling for e-mails
    first_names text[] := '{Eleni,Giorgos,Maria,Nikos,Katerina,Dimitris,Sofia,Yannis,Anna,Kostas,Ioanna,Petros,Lena,Thomas,Julia,Lukas,Emma,Marco,Chiara,Sophie,Jan,Lotte,Claire,Pierre,Μαρία,Γιώργος,Ελένη,Νίκος}';
    first_l text[] := '{eleni,giorgos,maria,nikos,katerina,dimitris,sofia,yannis,anna,kostas,ioanna,petros,lena,thomas,julia,lukas,emma,marco,chiara,sophie,jan,lotte,claire,pierre,maria,giorgos,eleni,nikos}';
    last_names text[] := '{Papadopoulou,Georgiou,Nikolaidis,Antoniou,Vlachou,Karalis,Dimitriou,Oikonomou,Schneider,Fischer,Weber,Rossi,Bianchi,Dubois,Moreau,Jansen,de Vries,Novak,Murphy,Smith,Παπαδάκη,Οικονόμου,Αντωνίου,Γεωργίου}';
    last_l text[] := '{papadopoulou,georgiou,nikolaidis,antoniou,vlachou,karalis,dimitriou,oikonomou,schneider,fischer,weber,rossi,bianchi,dubois,moreau,jansen,devries,novak,murphy,smith,papadaki,oikonomou,antoniou,georgiou}';
    cities text[] := '{Αθήνα,Θεσσαλονίκη,Πάτρα,Ηράκλειο,Βόλος,Χανιά,Ρόδος,Κέρκυρα}';
    postcodes text[] := '{10563,54622,26221,71201,38221,73100,85100,49100}';
    eu_countries text[] := '{cy,de,fr,it,nl,at}';
    eu_cities text[] := '{Λευκωσία,Berlin,Lyon,Milano,Utrecht,Wien}';
    eu_postcodes text[] := '{1065,10115,69001,20121,3511,1010}';
    domains text[] := '{example.com,example.gr,example.de,example.org}';
    -- the catalogue, as arrays so that picking a variant needs no join
    v_id text[];
    v_title text[];
    v_ptitle text[];
    v_pid text[];
    v_handle text[];
    v_sku text[];
    v_eur numeric[];
    v_usd numeric[];
    v_type text[];
    v_typeid text[];
    n_var int;
    r_gr text; r_eu text; r_us text;
    promo_welcome text; promo_spring text; promo_freeship text;
    reason_damaged text; reason_goodwill text;
    c_customers bigint;
    c_items bigint;
    c_captures bigint;
    c_refunds bigint;
    c_offset bigint;
    c_guests bigint;
BEGIN
    IF n_orders IS NULL OR n_orders < 0 OR n_orders > 10000000 THEN
        RAISE EXCEPTION 'medusa.generate: orders must be between 0 and 10000000 (got %)', n_orders;
    END IF;
    IF seed IS NULL OR seed < -1 OR seed > 1 THEN
        RAISE EXCEPTION 'medusa.generate: seed must be between -1 and 1 (got %)', seed;
    END IF;
    PERFORM setseed(seed);

    ---------------------------------------------------------------------------------------
    -- The store: once per database (Medusa's loaders seed currencies, countries and the
    -- tax provider at start-up; a schema-only database has none).
    IF NOT EXISTS (SELECT 1 FROM medusa.store) THEN
        INSERT INTO medusa.currency (code, symbol, symbol_native, decimal_digits, rounding, raw_rounding, name)
        VALUES ('eur', '€', '€', 2, 0, medusa.generate_raw(0), 'Euro'),
               ('usd', '$', '$', 2, 0, medusa.generate_raw(0), 'US Dollar')
        ON CONFLICT DO NOTHING;
        INSERT INTO medusa.sales_channel (id, name, description)
        VALUES (medusa.generate_id('sc', t0, 'webshop'), 'Webshop', 'kyma.example.gr');
        INSERT INTO medusa.store (id, name, default_sales_channel_id, created_at, updated_at)
        VALUES (medusa.generate_id('store', t0, 'kyma'), 'Kyma', medusa.generate_id('sc', t0, 'webshop'), t0, t0);
        INSERT INTO medusa.store_currency (id, currency_code, is_default, store_id, created_at, updated_at)
        VALUES (medusa.generate_id('stocur', t0, 'eur'), 'eur', true, medusa.generate_id('store', t0, 'kyma'), t0, t0),
               (medusa.generate_id('stocur', t0, 'usd'), 'usd', false, medusa.generate_id('store', t0, 'kyma'), t0, t0);
        INSERT INTO medusa.price_preference (id, attribute, value, is_tax_inclusive, created_at, updated_at)
        VALUES (medusa.generate_id('prpref', t0, 'eur'), 'currency_code', 'eur', true, t0, t0),
               (medusa.generate_id('prpref', t0, 'usd'), 'currency_code', 'usd', false, t0, t0);
        INSERT INTO medusa.payment_provider (id, is_enabled)
        VALUES ('pp_system_default', true), ('pp_stripe_stripe', true) ON CONFLICT DO NOTHING;
        INSERT INTO medusa.tax_provider (id, is_enabled) VALUES ('tp_system', true) ON CONFLICT DO NOTHING;

        INSERT INTO medusa.region (id, name, currency_code, automatic_taxes, created_at, updated_at)
        VALUES (medusa.generate_id('reg', t0, 'gr'), 'Ελλάδα', 'eur', true, t0, t0),
               (medusa.generate_id('reg', t0, 'eu'), 'Europe', 'eur', true, t0, t0),
               (medusa.generate_id('reg', t0, 'us'), 'United States', 'usd', true, t0, t0);
        INSERT INTO medusa.region_country (iso_2, iso_3, num_code, name, display_name, region_id)
        SELECT c.iso_2, c.iso_3, c.num, upper(c.name), c.name, medusa.generate_id('reg', t0, c.region)
        FROM (VALUES ('gr', 'grc', '300', 'Greece', 'gr'), ('cy', 'cyp', '196', 'Cyprus', 'eu'),
                     ('de', 'deu', '276', 'Germany', 'eu'), ('fr', 'fra', '250', 'France', 'eu'),
                     ('it', 'ita', '380', 'Italy', 'eu'), ('nl', 'nld', '528', 'Netherlands', 'eu'),
                     ('at', 'aut', '040', 'Austria', 'eu'), ('us', 'usa', '840', 'United States', 'us'))
             AS c(iso_2, iso_3, num, name, region)
        ON CONFLICT (iso_2) DO UPDATE SET region_id = excluded.region_id;
        INSERT INTO medusa.region_payment_provider (region_id, payment_provider_id, id)
        SELECT medusa.generate_id('reg', t0, r), p, medusa.generate_id('regpp', t0, r || p)
        FROM unnest('{gr,eu,us}'::text[]) r CROSS JOIN unnest('{pp_system_default,pp_stripe_stripe}'::text[]) p;

        INSERT INTO medusa.product_type (id, value, created_at, updated_at)
        SELECT medusa.generate_id('ptyp', t0, v), v, t0, t0
        FROM unnest('{ceramics,textiles,food,books}'::text[]) v;
        -- Greek VAT: the shop sells below the EU distance-selling threshold, so its EU
        -- customers pay Greek VAT too (one tax region per country, as Medusa configures it)
        INSERT INTO medusa.tax_region (id, provider_id, country_code, created_at, updated_at)
        SELECT medusa.generate_id('txreg', t0, c), 'tp_system', c, t0, t0
        FROM unnest('{gr,cy,de,fr,it,nl,at}'::text[]) c;
        INSERT INTO medusa.tax_rate (id, rate, code, name, is_default, tax_region_id, created_at, updated_at)
        SELECT medusa.generate_id('txr', t0, c || r.code), r.rate, r.code, r.name, r.is_default,
               medusa.generate_id('txreg', t0, c), t0, t0
        FROM unnest('{gr,cy,de,fr,it,nl,at}'::text[]) c
        CROSS JOIN (VALUES (24, 'GR24', 'ΦΠΑ 24%', true), (13, 'GR13', 'ΦΠΑ 13%', false),
                           (6, 'GR6', 'ΦΠΑ 6%', false)) AS r(rate, code, name, is_default);
        INSERT INTO medusa.tax_rate_rule (id, tax_rate_id, reference_id, reference, created_at, updated_at)
        SELECT medusa.generate_id('txrule', t0, c || x.code), medusa.generate_id('txr', t0, c || x.code),
               medusa.generate_id('ptyp', t0, x.type), 'product_type', t0, t0
        FROM unnest('{gr,cy,de,fr,it,nl,at}'::text[]) c
        CROSS JOIN (VALUES ('GR13', 'food'), ('GR6', 'books')) AS x(code, type);

        DROP TABLE IF EXISTS gen_catalog;
        CREATE TEMP TABLE gen_catalog AS
        SELECT p.ord, p.handle, p.title, p.type, p.descr, v.vord, v.title AS vtitle, v.sku,
               v.eur, v.usd
        FROM (VALUES
            (1, 'kyma-mug', 'Kyma Stoneware Mug', 'ceramics', 'Hand-thrown stoneware, 350 ml.'),
            (2, 'ammos-bowl', 'Ammos Serving Bowl', 'ceramics', 'Glazed in sand and sea tones.'),
            (3, 'meltemi-plate', 'Meltemi Dinner Plate', 'ceramics', 'Dishwasher safe.'),
            (4, 'linen-tea-towel', 'Linen Tea Towel', 'textiles', 'Stonewashed Greek linen.'),
            (5, 'peshtemal', 'Cotton Beach Towel (Peshtemal)', 'textiles', 'Woven cotton, 90 x 180 cm.'),
            (6, 'linen-tablecloth', 'Linen Tablecloth', 'textiles', 'Hemmed by hand.'),
            (7, 'olive-oil-koroneiki', 'Extra Virgin Olive Oil Koroneiki', 'food', 'Cold extracted, Messinia.'),
            (8, 'thyme-honey', 'Thyme Honey', 'food', 'Raw honey from Crete.'),
            (9, 'mountain-tea', 'Mountain Tea (Sideritis)', 'food', 'Hand-picked on Taygetos.'),
            (10, 'kalamata-olives', 'Kalamata Olives', 'food', 'In brine with oregano.'),
            (11, 'kozani-saffron', 'Saffron of Kozani', 'food', 'PDO threads.'),
            (12, 'aegean-kitchen', 'Aegean Kitchen', 'books', 'Recipes from the islands.'),
            (13, 'potters-year', 'The Potter''s Year', 'books', 'A year in a Sifnos workshop.'))
            AS p(ord, handle, title, type, descr)
        JOIN (VALUES
            (1, 1, 'Sea Blue', 'KYM-MUG-BLU', 18.90, 16.00), (1, 2, 'Sand', 'KYM-MUG-SND', 18.90, 16.00),
            (2, 1, 'Small', 'AMM-BWL-S', 29.00, 26.00), (2, 2, 'Large', 'AMM-BWL-L', 46.00, 41.00),
            (3, 1, 'Set of 2', 'MLT-PLT-2', 38.50, 34.00), (3, 2, 'Set of 4', 'MLT-PLT-4', 72.00, 64.00),
            (4, 1, 'Natural', 'LIN-TT-NAT', 12.40, 11.00), (4, 2, 'Indigo', 'LIN-TT-IND', 12.40, 11.00),
            (4, 3, 'Olive', 'LIN-TT-OLV', 12.40, 11.00),
            (5, 1, 'Striped', 'PSH-STR', 34.90, 31.00), (5, 2, 'Plain', 'PSH-PLN', 32.00, 28.50),
            (6, 1, '140x180', 'LIN-TC-180', 69.00, 62.00), (6, 2, '140x240', 'LIN-TC-240', 84.00, 75.00),
            (7, 1, '500 ml', 'EVOO-500', 11.90, 12.50), (7, 2, '1 l', 'EVOO-1000', 19.80, 21.00),
            (7, 3, '3 l tin', 'EVOO-3000', 49.00, 52.00),
            (8, 1, '250 g', 'HON-THY-250', 8.40, 9.00), (8, 2, '450 g', 'HON-THY-450', 13.90, 14.50),
            (9, 1, '40 g', 'TEA-SID-40', 4.30, 4.80),
            (10, 1, '350 g', 'OLV-KAL-350', 6.20, 6.90),
            (11, 1, '1 g', 'SAF-KOZ-1', 9.90, 10.90), (11, 2, '4 g', 'SAF-KOZ-4', 32.00, 34.00),
            (12, 1, 'Hardcover', 'BK-AEG-HC', 34.90, 38.00), (12, 2, 'Paperback', 'BK-AEG-PB', 22.50, 24.00),
            (13, 1, 'Paperback', 'BK-POT-PB', 19.90, 21.00),
            (1, 3, 'Charcoal', 'KYM-MUG-CHR', 18.90, 16.00), (2, 3, 'Oval Platter', 'AMM-PLT-OV', 54.00, 48.00),
            (8, 3, '1 kg', 'HON-THY-1000', 27.50, 29.00))
            AS v(pord, vord, title, sku, eur, usd) ON v.pord = p.ord;
        -- (dropped below, once the catalogue is in)

        INSERT INTO medusa.product (id, title, handle, description, status, type_id, discountable,
                                    created_at, updated_at)
        SELECT DISTINCT ON (c.ord) medusa.generate_id('prod', t0, c.handle), c.title, c.handle, c.descr,
               'published', medusa.generate_id('ptyp', t0, c.type), true, t0, t0
        FROM gen_catalog c ORDER BY c.ord;
        INSERT INTO medusa.product_sales_channel (product_id, sales_channel_id, id)
        SELECT DISTINCT medusa.generate_id('prod', t0, c.handle), medusa.generate_id('sc', t0, 'webshop'),
               medusa.generate_id('prodsc', t0, c.handle)
        FROM gen_catalog c;
        -- a product's own option (is_exclusive), as Medusa 2.21 creates it with the product
        INSERT INTO medusa.product_option (id, title, is_exclusive, created_at, updated_at)
        SELECT DISTINCT medusa.generate_id('opt', t0, c.handle), 'Variant', true, t0, t0 FROM gen_catalog c;
        INSERT INTO medusa.product_product_option (id, product_id, product_option_id)
        SELECT DISTINCT medusa.generate_id('prodopt', t0, c.handle), medusa.generate_id('prod', t0, c.handle),
               medusa.generate_id('opt', t0, c.handle)
        FROM gen_catalog c;
        INSERT INTO medusa.product_option_value (id, value, option_id, rank, created_at, updated_at)
        SELECT medusa.generate_id('optval', t0, c.sku), c.vtitle, medusa.generate_id('opt', t0, c.handle),
               c.vord - 1, t0, t0
        FROM gen_catalog c;
        INSERT INTO medusa.product_product_option_value (id, product_product_option_id, product_option_value_id)
        SELECT medusa.generate_id('prodoptval', t0, c.sku), medusa.generate_id('prodopt', t0, c.handle),
               medusa.generate_id('optval', t0, c.sku)
        FROM gen_catalog c;
        INSERT INTO medusa.product_variant (id, title, sku, manage_inventory, variant_rank, product_id,
                                            created_at, updated_at)
        SELECT medusa.generate_id('variant', t0, c.sku), c.vtitle, c.sku, false, c.vord - 1,
               medusa.generate_id('prod', t0, c.handle), t0, t0
        FROM gen_catalog c ORDER BY c.ord, c.vord;
        INSERT INTO medusa.product_variant_option (variant_id, option_value_id)
        SELECT medusa.generate_id('variant', t0, c.sku), medusa.generate_id('optval', t0, c.sku)
        FROM gen_catalog c;
        INSERT INTO medusa.price_set (id, created_at, updated_at)
        SELECT medusa.generate_id('pset', t0, c.sku), t0, t0 FROM gen_catalog c;
        INSERT INTO medusa.product_variant_price_set (variant_id, price_set_id, id)
        SELECT medusa.generate_id('variant', t0, c.sku), medusa.generate_id('pset', t0, c.sku),
               medusa.generate_id('pvps', t0, c.sku)
        FROM gen_catalog c;
        INSERT INTO medusa.price (id, price_set_id, currency_code, amount, raw_amount, rules_count,
                                  created_at, updated_at)
        SELECT medusa.generate_id('price', t0, c.sku || x.cur), medusa.generate_id('pset', t0, c.sku),
               x.cur, x.amount, medusa.generate_raw(x.amount), 0, t0, t0
        FROM gen_catalog c
        CROSS JOIN LATERAL (VALUES ('eur', c.eur), ('usd', c.usd)) AS x(cur, amount);
        DROP TABLE pg_temp.gen_catalog;

        INSERT INTO medusa.promotion (id, code, is_automatic, type, status, created_at, updated_at)
        VALUES (medusa.generate_id('promo', t0, 'WELCOME10'), 'WELCOME10', false, 'standard', 'active', t0, t0),
               (medusa.generate_id('promo', t0, 'SPRING5'), 'SPRING5', false, 'standard', 'active', t0, t0),
               (medusa.generate_id('promo', t0, 'FREESHIP'), 'FREESHIP', true, 'standard', 'active', t0, t0);
        INSERT INTO medusa.promotion_application_method (id, value, raw_value, type, target_type,
                                                         allocation, promotion_id, currency_code,
                                                         created_at, updated_at)
        VALUES (medusa.generate_id('proappmet', t0, 'WELCOME10'), 10, medusa.generate_raw(10), 'percentage',
                'items', 'across', medusa.generate_id('promo', t0, 'WELCOME10'), NULL, t0, t0),
               (medusa.generate_id('proappmet', t0, 'SPRING5'), 5, medusa.generate_raw(5), 'fixed',
                'order', 'across', medusa.generate_id('promo', t0, 'SPRING5'), 'eur', t0, t0),
               (medusa.generate_id('proappmet', t0, 'FREESHIP'), 100, medusa.generate_raw(100), 'percentage',
                'shipping_methods', 'across', medusa.generate_id('promo', t0, 'FREESHIP'), NULL, t0, t0);
        INSERT INTO medusa.refund_reason (id, label, code, description, created_at, updated_at)
        VALUES (medusa.generate_id('refr', t0, 'damaged'), 'Damaged in transit', 'damaged',
                'The parcel arrived with broken or spoiled goods', t0, t0),
               (medusa.generate_id('refr', t0, 'goodwill'), 'Goodwill', 'goodwill',
                'A gesture for a late delivery or a complaint', t0, t0);
    END IF;

    SELECT array_agg(pv.id ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(pv.title ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(p.title ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(p.id ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(p.handle ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(pv.sku ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(e.amount ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(u.amount ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(t.value ORDER BY pv.created_at, p.handle, pv.variant_rank),
           array_agg(t.id ORDER BY pv.created_at, p.handle, pv.variant_rank)
    INTO v_id, v_title, v_ptitle, v_pid, v_handle, v_sku, v_eur, v_usd, v_type, v_typeid
    FROM medusa.product_variant pv
    JOIN medusa.product p ON p.id = pv.product_id AND p.deleted_at IS NULL AND p.status = 'published'
    JOIN medusa.product_type t ON t.id = p.type_id
    JOIN medusa.product_variant_price_set l ON l.variant_id = pv.id
    JOIN medusa.price e ON e.price_set_id = l.price_set_id AND e.currency_code = 'eur' AND e.price_list_id IS NULL
    JOIN medusa.price u ON u.price_set_id = l.price_set_id AND u.currency_code = 'usd' AND u.price_list_id IS NULL
    WHERE pv.deleted_at IS NULL;
    n_var := coalesce(cardinality(v_id), 0);
    IF n_orders = 0 THEN
        RETURN jsonb_build_object('customers', 0, 'orders', 0, 'order_items', 0, 'variants', n_var,
                                  'captures', 0, 'refunds', 0);
    END IF;
    IF n_var < 4 THEN
        RAISE EXCEPTION 'medusa.generate: the store needs at least 4 published variants priced in eur and usd (has %)', n_var;
    END IF;
    SELECT id INTO r_gr FROM medusa.region WHERE name = 'Ελλάδα';
    SELECT id INTO r_eu FROM medusa.region WHERE name = 'Europe';
    SELECT id INTO r_us FROM medusa.region WHERE name = 'United States';
    SELECT id INTO promo_welcome FROM medusa.promotion WHERE code = 'WELCOME10';
    SELECT id INTO promo_spring FROM medusa.promotion WHERE code = 'SPRING5';
    SELECT id INTO promo_freeship FROM medusa.promotion WHERE code = 'FREESHIP';
    SELECT id INTO reason_damaged FROM medusa.refund_reason WHERE code = 'damaged';
    SELECT id INTO reason_goodwill FROM medusa.refund_reason WHERE code = 'goodwill';

    n_cust := greatest(1, ceil(n_orders / 3.0)::int);
    n_guests := greatest(1, n_orders / 10);
    SELECT count(*) INTO c_offset FROM medusa.customer;

    ---------------------------------------------------------------------------------------
    -- Account holders. Every random draw happens in this one scan over generate_series.
    DROP TABLE IF EXISTS gen_customers;
    CREATE TEMP TABLE gen_customers AS
    SELECT g, c_offset + g AS n,
           1 + floor(random() * cardinality(first_names))::int AS fn,
           1 + floor(random() * cardinality(last_names))::int AS ln,
           1 + floor(random() * cardinality(cities))::int AS city,
           1 + floor(random() * 4)::int AS dom,
           random() < 0.08 AS business,
           6900000000 + floor(random() * 99999999)::bigint AS phone,
           t0 + random() * interval '365 days' AS created_at
    FROM generate_series(1, n_cust) AS g;
    ANALYZE gen_customers;

    INSERT INTO medusa.customer (id, first_name, last_name, email, phone, company_name, has_account,
                                 created_at, updated_at)
    SELECT medusa.generate_id('cus', t.created_at, 'customer' || t.n),
           first_names[t.fn], last_names[t.ln],
           first_l[t.fn] || '.' || last_l[t.ln] || '.' || t.n || '@' || domains[t.dom],
           '+30 ' || t.phone,
           CASE WHEN t.business THEN 'Kafeneio ' || last_names[t.ln] END,
           true, t.created_at, t.created_at
    FROM gen_customers t ORDER BY t.g;
    GET DIAGNOSTICS c_customers = ROW_COUNT;
    INSERT INTO medusa.customer_address (id, customer_id, address_name, is_default_shipping,
                                         is_default_billing, company, first_name, last_name,
                                         address_1, city, country_code, postal_code, phone,
                                         created_at, updated_at)
    SELECT medusa.generate_id('cuaddr', t.created_at, 'address' || t.n),
           medusa.generate_id('cus', t.created_at, 'customer' || t.n), 'Home', true, true,
           CASE WHEN t.business THEN 'Kafeneio ' || last_names[t.ln] END,
           first_names[t.fn], last_names[t.ln], 'Odos ' || (1 + t.n % 120) || ', ' || (1 + t.n % 40),
           cities[t.city], 'gr', postcodes[t.city], '+30 ' || t.phone, t.created_at, t.created_at
    FROM gen_customers t ORDER BY t.g;

    ---------------------------------------------------------------------------------------
    -- Orders: every draw in one scan.
    DROP TABLE IF EXISTS gen_orders;
    CREATE TEMP TABLE gen_orders AS
    SELECT s.*,
           nextval(pg_get_serial_sequence('medusa.order', 'display_id')) AS display_id,
           CASE WHEN s.region_roll < 0.74 THEN 'gr' WHEN s.region_roll < 0.96 THEN 'eu' ELSE 'us' END AS region,
           CASE WHEN s.status_roll < 0.005 THEN 'draft'
                WHEN s.status_roll < 0.065 THEN 'authorized'
                WHEN s.status_roll < 0.145 THEN 'completed'
                WHEN s.status_roll < 0.160 THEN 'canceled_unpaid'
                WHEN s.status_roll < 0.175 THEN 'canceled_paid'
                WHEN s.status_roll < 0.205 THEN 'refunded'
                ELSE 'captured' END AS outcome,
           CASE WHEN s.lines_roll < 0.45 THEN 1 WHEN s.lines_roll < 0.75 THEN 2
                WHEN s.lines_roll < 0.92 THEN 3 ELSE 4 END AS n_lines
    FROM (
        SELECT g,
               random() < 0.15 AS guest,
               1 + floor(power(random(), 1.3) * n_cust)::int AS cust_g,
               floor(random() * n_guests)::int AS guest_no,
               random() AS region_roll,
               random() AS status_roll,
               random() AS lines_roll,
               random() AS promo_roll,
               random() < 0.8 AS stripe,
               t0 + interval '31 days' + random() * interval '546 days' AS created_at,
               interval '1 minute' * (1 + floor(random() * 2880)) AS capture_delay,
               interval '1 hour' * (24 + floor(random() * 400)) AS refund_delay,
               random() AS refund_frac,
               1 + floor(random() * 6)::int AS eu_country,
               random() AS reason_roll
        FROM generate_series(1, n_orders) AS g
    ) s;
    ANALYZE gen_orders;

    -- Lines: draws in one nested-loop scan over the fresh temp table; distinct variants.
    DROP TABLE IF EXISTS gen_items;
    CREATE TEMP TABLE gen_items AS
    SELECT o.g, o.display_id, n AS line_no,
           -- offsets 0, 7, 14, 21 of the catalogue: distinct variants (Medusa merges a
           -- variant added twice into one line)
           1 + (floor(o.pick * n_var)::int + (n - 1) * 7) % n_var AS vi
    FROM (SELECT go.g, go.display_id, go.n_lines, random() AS pick FROM gen_orders go) o
    CROSS JOIN LATERAL generate_series(1, o.n_lines) AS n;
    ANALYZE gen_items;
    -- quantities: one draw per line, in a scan of its own
    DROP TABLE IF EXISTS gen_qty;
    CREATE TEMP TABLE gen_qty AS
    SELECT i.g, i.line_no,
           CASE WHEN r < 0.75 THEN 1 WHEN r < 0.93 THEN 2 ELSE 3 END AS qty
    FROM (SELECT gi.g, gi.line_no, random() AS r FROM gen_items gi) i;
    ANALYZE gen_qty;

    ---------------------------------------------------------------------------------------
    -- Amounts (no random() from here on: joins may reorder rows freely).
    DROP TABLE IF EXISTS gen_lines;
    CREATE TEMP TABLE gen_lines AS
    SELECT i.g, i.display_id, i.line_no, i.vi, q.qty,
           o.created_at, o.region,
           v_id[i.vi] AS variant_id, v_title[i.vi] AS variant_title, v_ptitle[i.vi] AS product_title,
           v_pid[i.vi] AS product_id, v_handle[i.vi] AS handle, v_sku[i.vi] AS sku, v_type[i.vi] AS type, v_typeid[i.vi] AS type_id,
           CASE WHEN o.region = 'us' THEN v_usd[i.vi] ELSE v_eur[i.vi] END AS unit_price,
           o.region <> 'us' AS incl,
           CASE WHEN o.region = 'us' THEN 0
                WHEN v_type[i.vi] = 'food' THEN 13 WHEN v_type[i.vi] = 'books' THEN 6
                ELSE 24 END::numeric AS rate,
           CASE WHEN o.region = 'us' THEN NULL
                WHEN v_type[i.vi] = 'food' THEN 'GR13' WHEN v_type[i.vi] = 'books' THEN 'GR6'
                ELSE 'GR24' END AS tax_code,
           medusa.generate_id('ordli', o.created_at, 'line' || i.display_id || '/' || i.line_no) AS line_id
    FROM gen_items i
    JOIN gen_qty q ON q.g = i.g AND q.line_no = i.line_no
    JOIN gen_orders o ON o.g = i.g;
    ANALYZE gen_lines;

    DROP TABLE IF EXISTS gen_amounts;
    CREATE TEMP TABLE gen_amounts AS
    SELECT o.g, o.display_id, o.region, o.outcome, o.created_at,
           sum(l.unit_price * l.qty) AS items_gross,
           sum(CASE WHEN l.incl THEN l.unit_price * l.qty / (1 + l.rate / 100) ELSE l.unit_price * l.qty END) AS items_net,
           -- promotions: WELCOME10 on any order, SPRING5 on euro orders of 30 € or more,
           -- FREESHIP (automatic) on Greek orders of 60 € or more
           o.promo_roll < 0.10 AS welcome,
           o.promo_roll >= 0.10 AND o.promo_roll < 0.15 AND o.region <> 'us'
               AND sum(l.unit_price * l.qty) >= 30 AS spring,
           o.region = 'gr' AND sum(l.unit_price * l.qty) >= 60 AS freeship,
           CASE o.region WHEN 'gr' THEN 4.90 WHEN 'eu' THEN 12.00 ELSE 24.00 END::numeric AS ship_amount,
           CASE o.region WHEN 'gr' THEN 'Standard (ELTA Courier)' WHEN 'eu' THEN 'Europe Standard'
                         ELSE 'International (DHL Express)' END AS ship_name,
           CASE WHEN o.region = 'us' THEN 0 ELSE 24 END::numeric AS ship_rate
    FROM gen_orders o JOIN gen_lines l ON l.g = o.g
    GROUP BY o.g, o.display_id, o.region, o.outcome, o.created_at, o.promo_roll;
    ANALYZE gen_amounts;

    -- Adjustments, net of VAT as Medusa's promotion module stores them.
    DROP TABLE IF EXISTS gen_adj;
    CREATE TEMP TABLE gen_adj AS
    SELECT l.g, l.line_no, 'WELCOME10' AS code, promo_welcome AS promotion_id,
           medusa.generate_js(0.10 * l.unit_price * l.qty / CASE WHEN l.incl THEN 1 + l.rate / 100 ELSE 1 END) AS amount
    FROM gen_lines l JOIN gen_amounts a ON a.g = l.g WHERE a.welcome
    UNION ALL
    SELECT l.g, l.line_no, 'SPRING5', promo_spring,
           medusa.generate_js(5 * (l.unit_price * l.qty / (1 + l.rate / 100)) / a.items_net)
    FROM gen_lines l JOIN gen_amounts a ON a.g = l.g WHERE a.spring;
    ANALYZE gen_adj;

    -- Medusa's totals, with its own arithmetic (net subtotal by division, discounts off the
    -- net, tax added back), unrounded: what its order summary and payment collection hold.
    DROP TABLE IF EXISTS gen_totals;
    CREATE TEMP TABLE gen_totals AS
    SELECT a.*,
           it.total + (a.ship_amount / (1 + a.ship_rate / 100)
                       - CASE WHEN a.freeship THEN medusa.generate_js(a.ship_amount / (1 + a.ship_rate / 100)) ELSE 0 END)
                      * (1 + a.ship_rate / 100) AS total
    FROM gen_amounts a
    JOIN (SELECT l.g,
                 sum((CASE WHEN l.incl THEN l.unit_price * l.qty / (1 + l.rate / 100) ELSE l.unit_price * l.qty END
                      - coalesce(j.amount, 0))
                     * (1 + l.rate / 100)) AS total
          FROM gen_lines l
          LEFT JOIN (SELECT g, line_no, sum(amount) AS amount FROM gen_adj GROUP BY g, line_no) j
            ON j.g = l.g AND j.line_no = l.line_no
          GROUP BY l.g) it ON it.g = a.g;
    ANALYZE gen_totals;

    DROP TABLE IF EXISTS gen_pay;
    CREATE TEMP TABLE gen_pay AS
    SELECT o.g, o.display_id, o.outcome, o.created_at, t.total, o.region,
           CASE WHEN o.region = 'us' THEN 'usd' ELSE 'eur' END AS currency,
           CASE WHEN o.stripe THEN 'pp_stripe_stripe' ELSE 'pp_system_default' END AS provider,
           o.outcome IN ('completed', 'canceled_paid', 'refunded', 'captured') AS captured,
           o.created_at + o.capture_delay AS captured_at,
           o.created_at + o.capture_delay + o.refund_delay AS refunded_at,
           CASE WHEN o.outcome = 'canceled_paid' THEN medusa.generate_js(t.total)
                WHEN o.outcome = 'refunded'
                    THEN least(round(t.total, 2) - 0.01,
                               greatest(0.01, round(t.total * (0.05 + o.refund_frac::numeric * 0.45), 2)))
           END AS refund_amount,
           CASE WHEN o.outcome = 'refunded' THEN
               CASE WHEN o.reason_roll < 0.6 THEN reason_damaged ELSE reason_goodwill END END AS reason_id,
           o.outcome IN ('canceled_paid', 'refunded', 'canceled_unpaid') AS new_version,
           medusa.generate_id('order', o.created_at, 'order' || o.display_id) AS order_id,
           medusa.generate_id('pay_col', o.created_at, 'paycol' || o.display_id) AS collection_id,
           medusa.generate_id('pay', o.created_at, 'payment' || o.display_id) AS payment_id
    FROM gen_orders o JOIN gen_totals t ON t.g = o.g;
    ANALYZE gen_pay;

    ---------------------------------------------------------------------------------------
    -- Guests: a customer row per e-mail, created by its first checkout.
    INSERT INTO medusa.customer (id, email, has_account, created_at, updated_at)
    SELECT DISTINCT ON (o.guest_no) medusa.generate_id('cus', o.created_at, 'guest' || o.guest_no),
           'guest' || o.guest_no || '@' || domains[1 + o.guest_no % 4], false, o.created_at, o.created_at
    FROM gen_orders o
    WHERE o.guest
      AND NOT EXISTS (SELECT 1 FROM medusa.customer c
                      WHERE c.email = 'guest' || o.guest_no || '@' || domains[1 + o.guest_no % 4]
                        AND NOT c.has_account AND c.deleted_at IS NULL)
    ORDER BY o.guest_no, o.created_at, o.g;
    GET DIAGNOSTICS c_guests = ROW_COUNT;
    c_customers := c_customers + c_guests;

    DROP TABLE IF EXISTS gen_who;
    CREATE TEMP TABLE gen_who AS
    WITH buyer AS (
        SELECT o.g, c.id, c.email, c.first_name, c.last_name, c.phone, c.company_name
        FROM gen_orders o
        JOIN gen_customers gc ON gc.g = o.cust_g
        JOIN medusa.customer c ON c.id = medusa.generate_id('cus', gc.created_at, 'customer' || gc.n)
        WHERE NOT o.guest
        UNION ALL
        SELECT o.g, c.id, c.email, c.first_name, c.last_name, c.phone, c.company_name
        FROM gen_orders o
        JOIN medusa.customer c ON c.email = 'guest' || o.guest_no || '@' || domains[1 + o.guest_no % 4]
                              AND NOT c.has_account AND c.deleted_at IS NULL
        WHERE o.guest
    )
    SELECT o.g, b.id AS customer_id, b.email,
           -- a guest's name exists only on its orders' addresses
           coalesce(b.first_name, first_names[1 + o.guest_no % cardinality(first_names)]) AS first_name,
           coalesce(b.last_name, last_names[1 + (o.guest_no / 7) % cardinality(last_names)]) AS last_name,
           b.phone, b.company_name,
           CASE o.region WHEN 'gr' THEN 'gr' WHEN 'us' THEN 'us' ELSE eu_countries[o.eu_country] END AS country,
           CASE o.region WHEN 'gr' THEN cities[1 + o.g % cardinality(cities)] WHEN 'us' THEN 'New York'
                ELSE eu_cities[o.eu_country] END AS city,
           CASE o.region WHEN 'gr' THEN postcodes[1 + o.g % cardinality(postcodes)] WHEN 'us' THEN '10118'
                ELSE eu_postcodes[o.eu_country] END AS postcode
    FROM gen_orders o JOIN buyer b ON b.g = o.g;
    ANALYZE gen_who;

    INSERT INTO medusa.order_address (id, customer_id, company, first_name, last_name, address_1,
                                      city, country_code, postal_code, phone, created_at, updated_at)
    SELECT medusa.generate_id('ordaddr', o.created_at, x.kind || o.display_id), NULL, w.company_name,
           w.first_name, w.last_name, 'Odos ' || (1 + o.g % 150) || ' ' || (1 + o.g % 60), w.city,
           w.country, w.postcode, coalesce(w.phone, '+30 69' || lpad(((o.g * 7919) % 100000000)::text, 8, '0')),
           o.created_at, o.created_at
    FROM gen_orders o JOIN gen_who w ON w.g = o.g
    CROSS JOIN (VALUES ('ship'), ('bill')) AS x(kind)
    ORDER BY o.g, x.kind DESC;

    INSERT INTO medusa."order" (id, region_id, display_id, customer_id, version, sales_channel_id,
                                status, is_draft_order, email, currency_code, shipping_address_id,
                                billing_address_id, no_notification, metadata, created_at,
                                updated_at, canceled_at)
    SELECT p.order_id,
           CASE o.region WHEN 'gr' THEN r_gr WHEN 'eu' THEN r_eu ELSE r_us END,
           o.display_id, w.customer_id, CASE WHEN p.new_version THEN 2 ELSE 1 END,
           (SELECT s.default_sales_channel_id FROM medusa.store s ORDER BY s.created_at LIMIT 1),
           (CASE o.outcome WHEN 'draft' THEN 'draft' WHEN 'completed' THEN 'completed'
                           WHEN 'canceled_unpaid' THEN 'canceled' WHEN 'canceled_paid' THEN 'canceled'
                           ELSE 'pending' END)::medusa.order_status_enum,
           o.outcome = 'draft', w.email, p.currency,
           medusa.generate_id('ordaddr', o.created_at, 'ship' || o.display_id),
           medusa.generate_id('ordaddr', o.created_at, 'bill' || o.display_id),
           false, NULL, o.created_at,
           coalesce(p.refunded_at, o.created_at),
           CASE WHEN o.outcome = 'canceled_unpaid' THEN o.created_at + o.capture_delay
                WHEN o.outcome = 'canceled_paid' THEN p.refunded_at END
    FROM gen_orders o JOIN gen_who w ON w.g = o.g JOIN gen_pay p ON p.g = o.g
    ORDER BY o.display_id;

    INSERT INTO medusa.order_line_item (id, title, subtitle, variant_id, product_id, product_title,
                                        product_description, product_type, product_type_id,
                                        product_handle, variant_sku, variant_title,
                                        requires_shipping, is_discountable, is_tax_inclusive,
                                        unit_price, raw_unit_price, metadata, created_at, updated_at)
    SELECT l.line_id, l.product_title, l.variant_title, l.variant_id, l.product_id, l.product_title,
           NULL, l.type, l.type_id, l.handle, l.sku, l.variant_title, true, true, l.incl,
           l.unit_price, medusa.generate_raw(l.unit_price), '{}', l.created_at, l.created_at
    FROM gen_lines l ORDER BY l.display_id, l.line_no;
    GET DIAGNOSTICS c_items = ROW_COUNT;

    -- the order's items at version 1, and at version 2 for refunded and canceled orders
    -- (Medusa copies them with the unit price set when it confirms an order change)
    INSERT INTO medusa.order_item (id, order_id, version, item_id, quantity, raw_quantity,
                                   fulfilled_quantity, shipped_quantity, return_requested_quantity,
                                   return_received_quantity, return_dismissed_quantity,
                                   written_off_quantity, delivered_quantity, metadata, unit_price,
                                   raw_unit_price, created_at, updated_at)
    SELECT medusa.generate_id('orditem', l.created_at, 'item' || l.display_id || '/' || l.line_no || '/' || v.version),
           p.order_id, v.version, l.line_id, l.qty, medusa.generate_raw(l.qty),
           CASE WHEN o.outcome = 'completed' THEN l.qty ELSE 0 END,
           CASE WHEN o.outcome = 'completed' THEN l.qty ELSE 0 END, 0, 0, 0, 0,
           CASE WHEN o.outcome = 'completed' THEN l.qty ELSE 0 END, '{}',
           CASE WHEN v.version = 2 THEN l.unit_price END,
           CASE WHEN v.version = 2 THEN medusa.generate_raw(l.unit_price) END,
           l.created_at, l.created_at
    FROM gen_lines l JOIN gen_pay p ON p.g = l.g JOIN gen_orders o ON o.g = l.g
    JOIN LATERAL (SELECT 1 AS version UNION ALL SELECT 2 WHERE p.new_version) v ON true
    ORDER BY l.display_id, l.line_no, v.version;

    INSERT INTO medusa.order_line_item_tax_line (id, description, tax_rate_id, code, rate, raw_rate,
                                                 provider_id, item_id, created_at, updated_at)
    SELECT medusa.generate_id('ordlitxl', l.created_at, 'tax' || l.display_id || '/' || l.line_no),
           'ΦΠΑ ' || trim_scale(l.rate) || '%',
           medusa.generate_id('txr', t0, w.country || l.tax_code), l.tax_code, l.rate,
           medusa.generate_raw(l.rate), 'system', l.line_id, l.created_at, l.created_at
    FROM gen_lines l JOIN gen_who w ON w.g = l.g
    WHERE l.tax_code IS NOT NULL
    ORDER BY l.display_id, l.line_no;

    INSERT INTO medusa.order_line_item_adjustment (id, description, promotion_id, code, amount,
                                                   raw_amount, provider_id, item_id,
                                                   is_tax_inclusive, version, created_at, updated_at)
    SELECT medusa.generate_id('ordliadj', l.created_at, 'adj' || l.display_id || '/' || l.line_no || a.code || '/' || v.version),
           NULL, a.promotion_id, a.code, a.amount, medusa.generate_raw(a.amount), NULL, l.line_id,
           false, v.version, l.created_at, l.created_at
    FROM gen_adj a
    JOIN gen_lines l ON l.g = a.g AND l.line_no = a.line_no
    JOIN gen_pay p ON p.g = a.g
    JOIN LATERAL (SELECT 1 AS version UNION ALL SELECT 2 WHERE p.new_version) v ON true
    ORDER BY l.display_id, l.line_no, a.code, v.version;

    INSERT INTO medusa.order_shipping_method (id, name, amount, raw_amount, is_tax_inclusive,
                                              shipping_option_id, data, created_at, updated_at)
    SELECT medusa.generate_id('ordsm', a.created_at, 'ship' || a.display_id), a.ship_name, a.ship_amount,
           medusa.generate_raw(a.ship_amount), a.region <> 'us',
           medusa.generate_id('so', t0, a.region), '{}', a.created_at, a.created_at
    FROM gen_amounts a ORDER BY a.display_id;
    INSERT INTO medusa.order_shipping (id, order_id, version, shipping_method_id, created_at, updated_at)
    SELECT medusa.generate_id('ordspmv', a.created_at, 'shipping' || a.display_id || '/' || v.version),
           p.order_id, v.version, medusa.generate_id('ordsm', a.created_at, 'ship' || a.display_id),
           a.created_at, a.created_at
    FROM gen_amounts a JOIN gen_pay p ON p.g = a.g
    JOIN LATERAL (SELECT 1 AS version UNION ALL SELECT 2 WHERE p.new_version) v ON true
    ORDER BY a.display_id, v.version;
    INSERT INTO medusa.order_shipping_method_tax_line (id, description, tax_rate_id, code, rate,
                                                       raw_rate, provider_id, shipping_method_id,
                                                       created_at, updated_at)
    SELECT medusa.generate_id('ordsmtxl', a.created_at, 'shiptax' || a.display_id), 'ΦΠΑ 24%',
           medusa.generate_id('txr', t0, w.country || 'GR24'), 'GR24', 24, medusa.generate_raw(24),
           'system', medusa.generate_id('ordsm', a.created_at, 'ship' || a.display_id),
           a.created_at, a.created_at
    FROM gen_amounts a JOIN gen_who w ON w.g = a.g
    WHERE a.region <> 'us'
    ORDER BY a.display_id;
    INSERT INTO medusa.order_shipping_method_adjustment (id, promotion_id, code, amount, raw_amount,
                                                         shipping_method_id, version, created_at,
                                                         updated_at)
    SELECT medusa.generate_id('ordsmadj', a.created_at, 'shipadj' || a.display_id || '/' || v.version),
           promo_freeship, 'FREESHIP', medusa.generate_js(a.ship_amount / (1 + a.ship_rate / 100)),
           medusa.generate_raw(medusa.generate_js(a.ship_amount / (1 + a.ship_rate / 100))),
           medusa.generate_id('ordsm', a.created_at, 'ship' || a.display_id), v.version,
           a.created_at, a.created_at
    FROM gen_amounts a JOIN gen_pay p ON p.g = a.g
    JOIN LATERAL (SELECT 1 AS version UNION ALL SELECT 2 WHERE p.new_version) v ON true
    WHERE a.freeship
    ORDER BY a.display_id, v.version;

    INSERT INTO medusa.order_promotion (order_id, promotion_id, id)
    SELECT p.order_id, x.promotion_id, medusa.generate_id('orderpromo', p.created_at, 'promo' || p.display_id || x.code)
    FROM gen_pay p JOIN gen_amounts a ON a.g = p.g
    CROSS JOIN LATERAL (VALUES (promo_welcome, 'WELCOME10', a.welcome), (promo_spring, 'SPRING5', a.spring),
                               (promo_freeship, 'FREESHIP', a.freeship)) AS x(promotion_id, code, used)
    WHERE x.used
    ORDER BY p.display_id, x.code;

    ---------------------------------------------------------------------------------------
    -- Payments (none for a draft): a collection, a session, an authorized payment, and the
    -- capture and refund with the order transactions Medusa records for them.
    INSERT INTO medusa.payment_collection (id, currency_code, amount, raw_amount, authorized_amount,
                                           raw_authorized_amount, captured_amount, raw_captured_amount,
                                           refunded_amount, raw_refunded_amount, status, completed_at,
                                           created_at, updated_at)
    SELECT p.collection_id, p.currency, medusa.generate_js(p.total), medusa.generate_raw(medusa.generate_js(p.total)),
           medusa.generate_js(p.total), medusa.generate_raw(medusa.generate_js(p.total)),
           CASE WHEN p.captured THEN medusa.generate_js(p.total) ELSE 0 END,
           medusa.generate_raw(CASE WHEN p.captured THEN medusa.generate_js(p.total) ELSE 0 END),
           coalesce(p.refund_amount, 0), medusa.generate_raw(coalesce(p.refund_amount, 0)),
           CASE WHEN p.outcome IN ('canceled_unpaid', 'canceled_paid') THEN 'canceled'
                WHEN p.captured THEN 'completed' ELSE 'authorized' END,
           CASE WHEN p.captured THEN p.captured_at END, p.created_at, coalesce(p.refunded_at, p.created_at)
    FROM gen_pay p WHERE p.outcome <> 'draft' ORDER BY p.display_id;
    INSERT INTO medusa.order_payment_collection (order_id, payment_collection_id, id, created_at, updated_at)
    SELECT p.order_id, p.collection_id, medusa.generate_id('ordpay', p.created_at, 'ordpay' || p.display_id),
           p.created_at, p.created_at
    FROM gen_pay p WHERE p.outcome <> 'draft' ORDER BY p.display_id;
    INSERT INTO medusa.payment_session (id, currency_code, amount, raw_amount, provider_id, data,
                                        context, status, authorized_at, payment_collection_id,
                                        metadata, created_at, updated_at)
    SELECT medusa.generate_id('payses', p.created_at, 'session' || p.display_id), p.currency,
           medusa.generate_js(p.total), medusa.generate_raw(medusa.generate_js(p.total)), p.provider,
           '{}', '{}', 'authorized', p.created_at, p.collection_id, '{}', p.created_at, p.created_at
    FROM gen_pay p WHERE p.outcome <> 'draft' ORDER BY p.display_id;
    INSERT INTO medusa.payment (id, amount, raw_amount, currency_code, provider_id, data, captured_at,
                                canceled_at, payment_collection_id, payment_session_id, created_at,
                                updated_at)
    SELECT p.payment_id, medusa.generate_js(p.total), medusa.generate_raw(medusa.generate_js(p.total)),
           p.currency, p.provider,
           CASE WHEN p.provider = 'pp_stripe_stripe'
                THEN jsonb_build_object('id', 'pi_' || substr(md5('pi' || p.order_id), 1, 24),
                                        'status', CASE WHEN p.captured THEN 'succeeded' ELSE 'requires_capture' END)
                ELSE '{}' END,
           CASE WHEN p.captured THEN p.captured_at END,
           CASE WHEN p.outcome = 'canceled_unpaid' THEN p.captured_at END,
           p.collection_id, medusa.generate_id('payses', p.created_at, 'session' || p.display_id),
           p.created_at, coalesce(p.refunded_at, p.created_at)
    FROM gen_pay p WHERE p.outcome <> 'draft' ORDER BY p.display_id;
    INSERT INTO medusa.capture (id, amount, raw_amount, payment_id, created_at, updated_at)
    SELECT medusa.generate_id('capt', p.captured_at, 'capture' || p.display_id), medusa.generate_js(p.total),
           medusa.generate_raw(medusa.generate_js(p.total)), p.payment_id, p.captured_at, p.captured_at
    FROM gen_pay p WHERE p.captured ORDER BY p.display_id;
    GET DIAGNOSTICS c_captures = ROW_COUNT;
    INSERT INTO medusa.refund (id, amount, raw_amount, payment_id, refund_reason_id, note, created_at,
                               updated_at)
    SELECT medusa.generate_id('ref', p.refunded_at, 'refund' || p.display_id), p.refund_amount,
           medusa.generate_raw(p.refund_amount), p.payment_id, p.reason_id,
           CASE WHEN p.outcome = 'refunded' THEN
               CASE WHEN p.reason_id = reason_damaged THEN 'Broken in the parcel' ELSE 'Late delivery' END END,
           p.refunded_at, p.refunded_at
    FROM gen_pay p WHERE p.refund_amount IS NOT NULL ORDER BY p.display_id;
    GET DIAGNOSTICS c_refunds = ROW_COUNT;
    INSERT INTO medusa.order_transaction (id, order_id, version, amount, raw_amount, currency_code,
                                          reference, reference_id, created_at, updated_at)
    SELECT medusa.generate_id('ordtrx', x.at, x.reference || p.display_id), p.order_id, 1, x.amount,
           medusa.generate_raw(x.amount), p.currency, x.reference, x.reference_id, x.at, x.at
    FROM gen_pay p
    CROSS JOIN LATERAL (
        SELECT 'capture' AS reference, medusa.generate_id('capt', p.captured_at, 'capture' || p.display_id) AS reference_id,
               medusa.generate_js(p.total) AS amount, p.captured_at AS at
        WHERE p.captured
        UNION ALL
        SELECT 'refund', medusa.generate_id('ref', p.refunded_at, 'refund' || p.display_id), -p.refund_amount,
               p.refunded_at
        WHERE p.refund_amount IS NOT NULL
    ) x
    ORDER BY p.display_id, x.at;

    -- The order change a refund or a cancellation makes: a credit line (the refunded amount,
    -- 0 for a cancellation before capture) and version 2.
    INSERT INTO medusa.order_change (id, order_id, version, status, confirmed_at, change_type,
                                     created_at, updated_at)
    SELECT medusa.generate_id('ordch', coalesce(p.refunded_at, p.captured_at), 'change' || p.display_id),
           p.order_id, 2, 'confirmed', coalesce(p.refunded_at, p.captured_at), 'credit_line',
           coalesce(p.refunded_at, p.captured_at), coalesce(p.refunded_at, p.captured_at)
    FROM gen_pay p WHERE p.new_version ORDER BY p.display_id;
    INSERT INTO medusa.order_change_action (id, order_id, version, ordering, order_change_id, reference,
                                            reference_id, action, details, amount, raw_amount, applied,
                                            created_at, updated_at)
    SELECT medusa.generate_id('ordchact', coalesce(p.refunded_at, p.captured_at), 'action' || p.display_id),
           p.order_id, 2, nextval(pg_get_serial_sequence('medusa.order_change_action', 'ordering')),
           medusa.generate_id('ordch', coalesce(p.refunded_at, p.captured_at), 'change' || p.display_id),
           coalesce(rr.label, 'payment_collection'), coalesce(rr.code, p.collection_id), 'CREDIT_LINE_ADD', '{}',
           coalesce(p.refund_amount, 0), medusa.generate_raw(coalesce(p.refund_amount, 0)), true,
           coalesce(p.refunded_at, p.captured_at), coalesce(p.refunded_at, p.captured_at)
    FROM gen_pay p LEFT JOIN medusa.refund_reason rr ON rr.id = p.reason_id
    WHERE p.new_version ORDER BY p.display_id;
    INSERT INTO medusa.order_credit_line (id, order_id, reference, reference_id, amount, raw_amount,
                                          version, metadata, created_at, updated_at)
    SELECT medusa.generate_id('ordcl', coalesce(p.refunded_at, p.captured_at), 'credit' || p.display_id),
           p.order_id, coalesce(rr.label, 'payment_collection'), coalesce(rr.code, p.collection_id),
           coalesce(p.refund_amount, 0), medusa.generate_raw(coalesce(p.refund_amount, 0)), 2,
           '{"created_in_version": 2}', coalesce(p.refunded_at, p.captured_at),
           coalesce(p.refunded_at, p.captured_at)
    FROM gen_pay p LEFT JOIN medusa.refund_reason rr ON rr.id = p.reason_id
    WHERE p.new_version ORDER BY p.display_id;

    INSERT INTO medusa.order_summary (id, order_id, version, totals, created_at, updated_at)
    SELECT medusa.generate_id('ordsum', p.created_at, 'summary' || p.display_id || '/' || v.version),
           p.order_id, v.version,
           medusa.generate_summary(p.total,
                                   CASE WHEN p.captured THEN medusa.generate_js(p.total) ELSE 0 END,
                                   coalesce(p.refund_amount, 0),
                                   CASE WHEN v.version = 2 THEN coalesce(p.refund_amount, 0) ELSE 0 END),
           p.created_at, p.created_at
    FROM gen_pay p
    JOIN LATERAL (SELECT 1 AS version UNION ALL SELECT 2 WHERE p.new_version) v ON true
    ORDER BY p.display_id, v.version;

    DROP TABLE pg_temp.gen_customers;
    DROP TABLE pg_temp.gen_orders;
    DROP TABLE pg_temp.gen_items;
    DROP TABLE pg_temp.gen_qty;
    DROP TABLE pg_temp.gen_lines;
    DROP TABLE pg_temp.gen_amounts;
    DROP TABLE pg_temp.gen_adj;
    DROP TABLE pg_temp.gen_totals;
    DROP TABLE pg_temp.gen_pay;
    DROP TABLE pg_temp.gen_who;

    RETURN jsonb_build_object('customers', c_customers, 'orders', n_orders,
                              'order_items', c_items,
                              'variants', n_var, 'captures', c_captures, 'refunds', c_refunds);
END
$fn$;

COMMENT ON FUNCTION medusa.generate(integer, double precision) IS
    'Append realistic Medusa 2 data: orders orders, ~orders/3 account holders and guests, the store and catalogue on first call; deterministic for a seed in [-1, 1]';
