-- dixis.generate(orders, seed): realistic Dixis data at any volume, set-based and fast.
--
--   SELECT dixis.generate(1000);            -- ~333 customers, ~2,400 lines, catalogue once
--   SELECT dixis.generate(1000000, 0.7);    -- about a minute on 2 cores (capture off)
--
-- * Deterministic for a seed: setseed() + random() evaluated only in single-table scans
--   over generate_series / a fresh temp table (fixed order, never parallel, never above a
--   join); dates are anchored to a fixed calendar (2024-07-01 .. 2026-06-30, Athens), not
--   to now(). Two fresh databases given the same seed hold identical rows.
-- * Appends: called again it adds more customers and orders; the catalogue (categories,
--   producers, ~300 products) is created on the first call only.
-- * About orders/3 customers (some repeat buyers), 10 % guest orders (a pool of guest
--   e-mails so that some guests come back), 1–5 lines per order, fractional kg quantities,
--   zero-priced samples and gifts, 5 % line discounts, 8 % coupons, shipping 4.90 (6.90 to
--   the islands, free from 60 €), 2.00 € cash-on-delivery fee, statuses mostly completed.
-- * Payments and refunds: card paid at checkout, bank transfer a day later (~15 % still owed
--   after delivery), cash on delivery at delivery; ~3 % of completed orders with a partial
--   refund, ~1 % refunded in full, 3 % cancelled (before payment, after delivery unpaid,
--   after payment, after delivery and payment: the last two refunded in full).
-- * A plain function: whether capture triggers fire while it inserts is the caller's
--   business (the loader may set qbsync.origin = 'daemon' or untrack first).

CREATE OR REPLACE FUNCTION dixis.generate(orders integer, seed double precision DEFAULT 0.42)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET work_mem = '256MB'
SET client_min_messages = warning   -- no 'temp table does not exist, skipping' chatter
AS $fn$
DECLARE
    n_orders    int := orders;
    n_cust      int;
    n_guests    int;
    -- Greek names; parallel arrays hold the Latin transliteration used in e-mail addresses
    m_first  text[] := '{Γιώργος,Δημήτρης,Κωνσταντίνος,Γιάννης,Νίκος,Παναγιώτης,Βασίλης,Χρήστος,Αθανάσιος,Μιχάλης,Ευάγγελος,Σπύρος,Αντώνης,Ηλίας,Θεόδωρος,Στέλιος,Άγγελος,Αλέξανδρος,Πέτρος,Σταύρος,Μανώλης,Λευτέρης,Άρης,Στράτος}';
    m_first_l text[] := '{giorgos,dimitris,konstantinos,giannis,nikos,panagiotis,vasilis,christos,athanasios,michalis,evangelos,spyros,antonis,ilias,theodoros,stelios,angelos,alexandros,petros,stavros,manolis,lefteris,aris,stratos}';
    f_first  text[] := '{Μαρία,Ελένη,Αικατερίνη,Βασιλική,Σοφία,Αγγελική,Γεωργία,Δήμητρα,Κωνσταντίνα,Ευαγγελία,Ιωάννα,Χριστίνα,Παναγιώτα,Αναστασία,Ειρήνη,Δέσποινα,Φωτεινή,Νίκη,Αλεξάνδρα,Κατερίνα,Θεοδώρα,Ζωή,Χαρά,Μαρίνα}';
    f_first_l text[] := '{maria,eleni,aikaterini,vasiliki,sofia,angeliki,georgia,dimitra,konstantina,evangelia,ioanna,christina,panagiota,anastasia,eirini,despoina,foteini,niki,alexandra,katerina,theodora,zoi,chara,marina}';
    -- surnames in their masculine and feminine forms
    m_last   text[] := '{Παπαδόπουλος,Παπαδάκης,Νικολάου,Γεωργίου,Ιωάννου,Παπανικολάου,Οικονόμου,Βασιλείου,Μακρής,Αντωνίου,Κωνσταντίνου,Δημητρίου,Παπαγεωργίου,Καραγιάννης,Αθανασίου,Χριστοδούλου,Μαυρίδης,Αλεξίου,Πετρόπουλος,Ευαγγέλου,Σταματόπουλος,Κωστόπουλος,Λαμπράκης,Τσακίρης,Ζαχαρίου,Μιχαηλίδης,Αναγνώστου,Κυριακίδης,Σαββίδης,Χατζηδάκης,Δασκαλάκης,Θεοδωρίδης,Τζαννετάκης,Μπακογιάννης,Φραγκιαδάκης,Ραφαηλίδης}';
    f_last   text[] := '{Παπαδοπούλου,Παπαδάκη,Νικολάου,Γεωργίου,Ιωάννου,Παπανικολάου,Οικονόμου,Βασιλείου,Μακρή,Αντωνίου,Κωνσταντίνου,Δημητρίου,Παπαγεωργίου,Καραγιάννη,Αθανασίου,Χριστοδούλου,Μαυρίδου,Αλεξίου,Πετροπούλου,Ευαγγέλου,Σταματοπούλου,Κωστοπούλου,Λαμπράκη,Τσακίρη,Ζαχαρίου,Μιχαηλίδου,Αναγνώστου,Κυριακίδου,Σαββίδου,Χατζηδάκη,Δασκαλάκη,Θεοδωρίδου,Τζαννετάκη,Μπακογιάννη,Φραγκιαδάκη,Ραφαηλίδου}';
    last_l   text[] := '{papadopoulos,papadakis,nikolaou,georgiou,ioannou,papanikolaou,oikonomou,vasileiou,makris,antoniou,konstantinou,dimitriou,papageorgiou,karagiannis,athanasiou,christodoulou,mavridis,alexiou,petropoulos,evangelou,stamatopoulos,kostopoulos,lamprakis,tsakiris,zachariou,michailidis,anagnostou,kyriakidis,savvidis,chatzidakis,daskalakis,theodoridis,tzannetakis,bakogiannis,fragkiadakis,rafailidis}';
    streets  text[] := '{Ερμού,Σταδίου,Πανεπιστημίου,Ακαδημίας,Πατησίων,Αλεξάνδρας,Λεωφόρος Κηφισίας,Βασιλίσσης Σοφίας,Εγνατίας,Τσιμισκή,Μητροπόλεως,Αγίου Δημητρίου,Κολοκοτρώνη,Καποδιστρίου,Ελευθερίου Βενιζέλου,25ης Μαρτίου,Αριστοτέλους,Πλάτωνος,Σωκράτους,Ομήρου,Αθηνάς,Ηρώων Πολυτεχνείου,Μεγάλου Αλεξάνδρου,Παπαναστασίου,Ιπποκράτους,Μαιζώνος,Κορίνθου,Γούναρη,Δαιδάλου,Λεωφόρος Συγγρού,Αγίας Σοφίας,Ολυμπίου Διός}';
    cities   text[] := '{Αθήνα,Αθήνα,Αθήνα,Αθήνα,Πειραιάς,Μαρούσι,Κηφισιά,Γλυφάδα,Χαλάνδρι,Νέα Σμύρνη,Θεσσαλονίκη,Θεσσαλονίκη,Θεσσαλονίκη,Πάτρα,Πάτρα,Ηράκλειο,Ηράκλειο,Λάρισα,Βόλος,Ιωάννινα,Χανιά,Ρέθυμνο,Καλαμάτα,Ρόδος,Κέρκυρα,Καβάλα,Σέρρες,Κομοτηνή,Τρίκαλα,Χαλκίδα,Ναύπλιο,Σύρος}';
    postcodes text[] := '{10563,10678,11521,11257,18531,15124,14562,16675,15231,17121,54622,54624,54640,26221,26223,71201,71305,41222,38221,45221,73100,74100,24100,85100,49100,65302,62124,69100,42100,34100,21100,84100}';
    domains  text[] := '{example.gr,example.com,example.org,mail.example.gr}';
    coupons  text[] := '{ΚΑΛΩΣΗΡΘΕΣ5,DIXIS10,ΚΑΛΟΚΑΙΡΙ10,FARM5}';
    -- the catalogue, loaded into arrays so that picking a product needs no join
    p_id    bigint[];
    p_name  text[];
    p_price numeric[];
    p_kg    boolean[];
    p_vat   numeric[];
    n_prod  int;
    c_customers bigint;
    c_items     bigint;
    c_refunds   bigint;
    reasons  text[] := '{Σπασμένο βάζο κατά τη μεταφορά,Προϊόν εκτός αποθέματος,Καθυστέρηση παράδοσης,Λάθος προϊόν στη συσκευασία}';
BEGIN
    IF n_orders IS NULL OR n_orders < 0 OR n_orders > 100000000 THEN
        RAISE EXCEPTION 'dixis.generate: orders must be between 0 and 100000000 (got %)', n_orders;
    END IF;
    IF seed IS NULL OR seed < -1 OR seed > 1 THEN
        RAISE EXCEPTION 'dixis.generate: seed must be between -1 and 1 (got %)', seed;
    END IF;
    PERFORM setseed(seed);

    ---------------------------------------------------------------------------------------
    -- Catalogue: once per database.
    IF NOT EXISTS (SELECT 1 FROM dixis.categories) THEN
        INSERT INTO dixis.categories (slug, name, vat_rate) VALUES
            ('olive-oil', 'Ελαιόλαδο & Ελιές', 13),
            ('honey',     'Μέλι & Προϊόντα Κυψέλης', 13),
            ('cheese',    'Τυριά & Γαλακτοκομικά', 13),
            ('herbs',     'Βότανα & Τσάι του Βουνού', 13),
            ('pulses',    'Όσπρια, Ζυμαρικά & Τραχανάς', 13),
            ('sweets',    'Γλυκά του Κουταλιού & Μαρμελάδες', 13),
            ('wine',      'Κρασί, Τσίπουρο & Ποτά', 24),
            ('cosmetics', 'Φυσικά Καλλυντικά & Σαπούνια', 24),
            ('books',     'Βιβλία Μαγειρικής', 6),
            ('samples',   'Δείγματα & Δώρα', 24);

        INSERT INTO dixis.producers (name, region, email, vat_number)
        SELECT p.name, p.region, p.email, p.afm
        FROM (VALUES
            ('Ελαιώνες Μεσσηνίας', 'Μεσσηνία', 'info@elaiones.example.gr', '094512367'),
            ('Συνεταιρισμός Σητείας', 'Κρήτη', 'sales@sitia.example.gr', '099876123'),
            ('Κτήμα Λακωνίας', 'Λακωνία', NULL, '801234567'),
            ('Μελισσοκομία Ψηλορείτη', 'Κρήτη', 'meli@psiloritis.example.gr', '112233445'),
            ('Μέλι Ταΰγετου', 'Λακωνία', NULL, NULL),
            ('Μελισσοκόμοι Χαλκιδικής', 'Χαλκιδική', 'info@halkidiki-honey.example.gr', '998877665'),
            ('Τυροκομείο Ηπείρου', 'Ήπειρος', 'tyri@ipeiros.example.gr', '123456789'),
            ('Φάρμα Ελασσόνας', 'Θεσσαλία', NULL, '987654321'),
            ('Γαλακτοκομικά Νάξου', 'Νάξος', 'naxos@example.gr', '555666777'),
            ('Βότανα του Ολύμπου', 'Πιερία', NULL, NULL),
            ('Αγρόκτημα Ζαγορίου', 'Ήπειρος', 'zagori@example.gr', '444333222'),
            ('Όσπρια Πρεσπών', 'Φλώρινα', 'prespes@example.gr', '321654987'),
            ('Ζυμαρικά της Γιαγιάς', 'Αρκαδία', NULL, '741852963'),
            ('Γλυκά Χίου', 'Χίος', 'glyka@chios.example.gr', '852963741'),
            ('Μαρμελάδες Πηλίου', 'Πήλιο', NULL, NULL),
            ('Οινοποιείο Σαντορίνης', 'Σαντορίνη', 'wine@santorini.example.gr', '963741852'),
            ('Κτήμα Νεμέας', 'Κορινθία', 'nemea@example.gr', '159753486'),
            ('Αποστακτήριο Τυρνάβου', 'Θεσσαλία', NULL, '357159486'),
            ('Σαπωνοποιία Λέσβου', 'Λέσβος', 'sapoun@lesvos.example.gr', '246813579'),
            ('Εκδόσεις Κουζίνα', 'Αθήνα', 'books@kouzina.example.gr', '135792468')
        ) AS p(name, region, email, afm);

        -- base products x sizes x the producers of the category (two producers of one
        -- region make the same names: QBO Item names must add the SKU)
        INSERT INTO dixis.products (producer_id, category_id, name, sku, description, unit,
                                    price, vat_rate, stock_quantity)
        SELECT pr.id, c.id,
               b.base || CASE WHEN sz.size <> '' THEN ' ' || sz.size ELSE '' END
                      || ' · ' || pr.region,
               b.code || '-' || lpad(row_number() OVER (PARTITION BY b.code
                                                         ORDER BY b.ord, sz.i, pr.id)::text, 4, '0'),
               'Παραγωγός: ' || pr.name || ' (' || pr.region || '). ' || b.descr,
               CASE WHEN b.kg THEN 'kg' ELSE 'τεμ.' END,
               -- producer-specific price, ending in 0 or 9 cents, never negative
               CASE WHEN sz.price = 0 THEN 0
                    ELSE greatest(0.50, round(sz.price * (0.9 + ((pr.id * 7 + b.ord) % 5) * 0.06), 1) - 0.01)
               END,
               b.vat_override,
               50 + ((pr.id * 37 + b.ord * 11 + sz.i * 5) % 450)
        FROM (VALUES
            -- ord, category, sku code, base name, kg?, sizes, prices, VAT override, description
            (1,  'olive-oil', 'OIL', 'Εξαιρετικό Παρθένο Ελαιόλαδο Κορωνέικη', false, '{500ml,1L,5L}'::text[], '{7.90,13.50,58.00}'::numeric[], NULL::numeric, 'Ψυχρής έκθλιψης, οξύτητα < 0,3%.'),
            (2,  'olive-oil', 'OIL', 'Βιολογικό Ελαιόλαδο Αγουρέλαιο', false, '{250ml,750ml}', '{6.50,15.90}', NULL, 'Πρώιμης συγκομιδής, πικάντικο.'),
            (3,  'olive-oil', 'OIL', 'Ελιές Καλαμών', true, '{""}', '{9.80}', NULL, 'Χύμα, με το κιλό.'),
            (4,  'olive-oil', 'OIL', 'Πράσινες Ελιές Χαλκιδικής Τσακιστές', false, '{350g,1kg}', '{4.20,9.50}', NULL, 'Σε άλμη με λεμόνι.'),
            (6,  'olive-oil', 'OIL', 'Ελιές Θρούμπες Θάσου', false, '{250g,500g}', '{4.50,8.20}', NULL, 'Ξηρές, αλατισμένες.'),
            (7,  'olive-oil', 'OIL', 'Πάστα Ελιάς Καλαμών', false, '{180g}', '{3.90}', NULL, 'Για ορεκτικά.'),
            (15, 'honey',  'HON', 'Μέλι Ανθέων', false, '{450g,1kg}', '{7.50,14.50}', NULL, 'Πολυανθικό.'),
            (16, 'honey',  'HON', 'Μέλι Καστανιάς', false, '{450g}', '{10.90}', NULL, 'Σκούρο, έντονη γεύση.'),
            (25, 'cheese', 'CHE', 'Κασέρι ΠΟΠ', true, '{""}', '{13.90}', NULL, 'Ημίσκληρο.'),
            (26, 'cheese', 'CHE', 'Ανθότυρο Ξηρό', true, '{""}', '{11.50}', NULL, 'Για τρίψιμο.'),
            (35, 'herbs',  'HRB', 'Φασκόμηλο', false, '{40g}', '{2.90}', NULL, 'Φύλλα.'),
            (36, 'herbs',  'HRB', 'Θυμάρι', false, '{50g}', '{2.70}', NULL, 'Άγριο.'),
            (45, 'pulses', 'PUL', 'Φάβα Σαντορίνης ΠΟΠ', false, '{500g}', '{6.90}', NULL, 'Κίτρινη.'),
            (46, 'pulses', 'PUL', 'Κριθαράκι Χειροποίητο', false, '{500g}', '{3.40}', NULL, 'Με φρέσκο γάλα.'),
            (54, 'sweets', 'SWT', 'Γλυκό Κουταλιού Περγαμόντο', false, '{450g}', '{7.20}', NULL, 'Παραδοσιακή συνταγή.'),
            (55, 'sweets', 'SWT', 'Πετιμέζι', false, '{250ml}', '{4.80}', NULL, 'Από μούστο.'),
            (64, 'wine',   'WIN', 'Ρετσίνα', false, '{500ml}', '{4.50}', NULL, 'Από Σαββατιανό.'),
            (65, 'wine',   'WIN', 'Λικέρ Μαστίχας', false, '{500ml}', '{16.00}', NULL, 'Χιώτικο.'),
            (73, 'cosmetics', 'COS', 'Λάδι Σώματος με Χαμομήλι', false, '{100ml}', '{11.90}', NULL, 'Με ελαιόλαδο.'),
            (5,  'olive-oil', 'OIL', 'Σετ Δώρου Ελαιόλαδο & Ξύλινη Κουτάλα', false, '{""}', '{29.00}', 24, 'Σετ δώρου: το ξύλινο σκεύος φορολογείται με 24%.'),
            (10, 'honey',  'HON', 'Μέλι Θυμαρίσιο', false, '{250g,450g,1kg}', '{6.90,11.50,22.00}', NULL, 'Αρωματικό, ανεπεξέργαστο.'),
            (11, 'honey',  'HON', 'Μέλι Πεύκου', false, '{450g,1kg}', '{8.90,17.50}', NULL, 'Χαμηλό γλυκαιμικό δείκτη.'),
            (12, 'honey',  'HON', 'Μέλι Ελάτης Βανίλια', false, '{450g}', '{13.90}', NULL, 'ΠΟΠ Μαινάλου.'),
            (13, 'honey',  'HON', 'Βασιλικός Πολτός', false, '{20g}', '{24.00}', NULL, 'Φρέσκος, διατηρείται στην κατάψυξη.'),
            (14, 'honey',  'HON', 'Γύρη Μελισσών', false, '{250g}', '{12.50}', NULL, 'Αποξηραμένη.'),
            (20, 'cheese', 'CHE', 'Φέτα ΠΟΠ σε Άλμη', true, '{""}', '{12.90}', NULL, 'Από πρόβειο και γίδινο γάλα.'),
            (21, 'cheese', 'CHE', 'Γραβιέρα Νάξου ΠΟΠ', true, '{""}', '{16.80}', NULL, 'Ωρίμανση 5 μηνών.'),
            (22, 'cheese', 'CHE', 'Κεφαλοτύρι', true, '{""}', '{15.50}', NULL, 'Σκληρό, αλμυρό.'),
            (23, 'cheese', 'CHE', 'Μανούρι', false, '{250g,500g}', '{5.20,9.80}', NULL, 'Φρέσκο.'),
            (24, 'cheese', 'CHE', 'Γιαούρτι Πρόβειο σε Πήλινο', false, '{500g}', '{3.90}', NULL, 'Παραδοσιακό.'),
            (30, 'herbs',  'HRB', 'Τσάι του Βουνού', false, '{30g,100g}', '{3.50,8.90}', NULL, 'Σιδερίτης, συλλογή Ιουλίου.'),
            (31, 'herbs',  'HRB', 'Ρίγανη Ολόκληρη', false, '{50g,200g}', '{2.80,7.50}', NULL, 'Σε ματσάκι.'),
            (32, 'herbs',  'HRB', 'Κρόκος Κοζάνης ΠΟΠ', false, '{1g,4g}', '{9.90,32.00}', NULL, 'Στίγματα.'),
            (33, 'herbs',  'HRB', 'Χαμομήλι', false, '{40g}', '{3.20}', NULL, 'Άνθη.'),
            (34, 'herbs',  'HRB', 'Δίκταμο Κρήτης', false, '{20g}', '{4.90}', NULL, 'Έρωντας.'),
            (40, 'pulses', 'PUL', 'Φασόλια Γίγαντες Πρεσπών ΠΓΕ', false, '{500g,1kg}', '{5.90,10.90}', NULL, 'Νέας σοδειάς.'),
            (41, 'pulses', 'PUL', 'Φακές Εγκλουβής', false, '{500g}', '{4.50}', NULL, 'Μικρόσπερμες.'),
            (42, 'pulses', 'PUL', 'Χυλοπίτες με Αυγό', false, '{500g}', '{3.80}', NULL, 'Χειροποίητες.'),
            (43, 'pulses', 'PUL', 'Τραχανάς Ξινός', false, '{500g}', '{4.20}', NULL, 'Με πρόβειο γάλα.'),
            (44, 'pulses', 'PUL', 'Ρεβίθια Φενεού', false, '{500g}', '{3.90}', NULL, 'Βράζουν εύκολα.'),
            (50, 'sweets', 'SWT', 'Γλυκό Κουταλιού Βύσσινο', false, '{450g}', '{6.50}', NULL, 'Με λίγη ζάχαρη.'),
            (51, 'sweets', 'SWT', 'Μαστίχα Χίου Δάκρυ', false, '{10g,50g}', '{5.50,22.00}', NULL, 'ΠΟΠ.'),
            (52, 'sweets', 'SWT', 'Μαρμελάδα Σύκο', false, '{370g}', '{5.20}', NULL, 'Χωρίς συντηρητικά.'),
            (53, 'sweets', 'SWT', 'Παστέλι με Μέλι', false, '{70g}', '{1.90}', NULL, 'Σουσάμι και θυμαρίσιο μέλι.'),
            (60, 'wine',   'WIN', 'Ασύρτικο Σαντορίνης ΠΟΠ', false, '{750ml}', '{18.50}', NULL, 'Λευκός ξηρός.'),
            (61, 'wine',   'WIN', 'Αγιωργίτικο Νεμέας ΠΟΠ', false, '{750ml}', '{14.90}', NULL, 'Ερυθρός ξηρός.'),
            (62, 'wine',   'WIN', 'Τσίπουρο Τυρνάβου Χωρίς Γλυκάνισο', false, '{200ml,700ml}', '{5.90,16.50}', NULL, 'Διπλής απόσταξης.'),
            (63, 'wine',   'WIN', 'Βινσάντο', false, '{500ml}', '{24.00}', NULL, 'Γλυκός από λιαστά σταφύλια.'),
            (70, 'cosmetics', 'COS', 'Σαπούνι Ελαιολάδου με Λεβάντα', false, '{100g}', '{3.50}', NULL, 'Χειροποίητο.'),
            (71, 'cosmetics', 'COS', 'Κρέμα Χεριών Κηραλοιφή', false, '{50ml}', '{8.90}', NULL, 'Με κερί μέλισσας.'),
            (72, 'cosmetics', 'COS', 'Σαπούνι Μαστίχας', false, '{100g}', '{4.20}', 13, 'Σε συσκευασία τροφίμου: μειωμένος ΦΠΑ (παράδειγμα παράκαμψης κατηγορίας).'),
            (80, 'books',  'BOK', 'Η Κουζίνα της Γιαγιάς: 100 Συνταγές', false, '{""}', '{19.90}', NULL, 'Βιβλίο μαγειρικής, 240 σελ.'),
            (81, 'books',  'BOK', 'Νηστίσιμα της Ελληνικής Υπαίθρου', false, '{""}', '{15.00}', NULL, 'Βιβλίο μαγειρικής, 180 σελ.'),
            (90, 'samples', 'SMP', 'Δείγμα Ελαιολάδου', false, '{20ml}', '{0}', NULL, 'Δωρεάν δείγμα.'),
            (91, 'samples', 'SMP', 'Δείγμα Μελιού', false, '{30g}', '{0}', NULL, 'Δωρεάν δείγμα.'),
            (92, 'samples', 'SMP', 'Δώρο: Πάνινη Τσάντα Dixis', false, '{""}', '{0}', NULL, 'Δώρο για παραγγελίες άνω των 50 €.')
        ) AS b(ord, cat, code, base, kg, sizes, prices, vat_override, descr)
        JOIN dixis.categories c ON c.slug = b.cat
        CROSS JOIN LATERAL unnest(b.sizes, b.prices) WITH ORDINALITY AS sz(size, price, i)
        -- producers of the category, by their position in the list above
        JOIN LATERAL (
            SELECT p.id, p.name, p.region
            FROM dixis.producers p
            WHERE p.name = ANY (CASE b.cat
                WHEN 'olive-oil' THEN ARRAY['Ελαιώνες Μεσσηνίας', 'Συνεταιρισμός Σητείας', 'Κτήμα Λακωνίας']
                WHEN 'honey'     THEN ARRAY['Μελισσοκομία Ψηλορείτη', 'Μέλι Ταΰγετου', 'Μελισσοκόμοι Χαλκιδικής']
                WHEN 'cheese'    THEN ARRAY['Τυροκομείο Ηπείρου', 'Φάρμα Ελασσόνας', 'Γαλακτοκομικά Νάξου']
                WHEN 'herbs'     THEN ARRAY['Βότανα του Ολύμπου', 'Αγρόκτημα Ζαγορίου', 'Συνεταιρισμός Σητείας']
                WHEN 'pulses'    THEN ARRAY['Όσπρια Πρεσπών', 'Ζυμαρικά της Γιαγιάς', 'Αγρόκτημα Ζαγορίου']
                WHEN 'sweets'    THEN ARRAY['Γλυκά Χίου', 'Μαρμελάδες Πηλίου']
                WHEN 'wine'      THEN ARRAY['Οινοποιείο Σαντορίνης', 'Κτήμα Νεμέας', 'Αποστακτήριο Τυρνάβου']
                WHEN 'cosmetics' THEN ARRAY['Σαπωνοποιία Λέσβου', 'Μελισσοκομία Ψηλορείτη']
                WHEN 'books'     THEN ARRAY['Εκδόσεις Κουζίνα']
                ELSE ARRAY['Ελαιώνες Μεσσηνίας'] END)
        ) pr ON true
        ORDER BY b.ord, sz.i, pr.id;
    END IF;

    SELECT array_agg(p.id ORDER BY p.id), array_agg(p.name ORDER BY p.id),
           array_agg(p.price ORDER BY p.id), array_agg(p.unit = 'kg' ORDER BY p.id),
           array_agg(coalesce(p.vat_rate, c.vat_rate) ORDER BY p.id)
    INTO p_id, p_name, p_price, p_kg, p_vat
    FROM dixis.products p JOIN dixis.categories c ON c.id = p.category_id
    WHERE p.active;
    n_prod := coalesce(cardinality(p_id), 0);
    IF n_orders = 0 THEN
        RETURN jsonb_build_object('customers', 0, 'orders', 0, 'order_items', 0, 'products', n_prod,
                                  'refunds', 0);
    END IF;
    IF n_prod = 0 THEN
        RAISE EXCEPTION 'dixis.generate: no active product to sell';
    END IF;

    n_cust := greatest(1, ceil(n_orders / 3.0)::int);
    n_guests := greatest(1, n_orders / 15);     -- guest e-mail pool: ~1.5 orders per guest

    ---------------------------------------------------------------------------------------
    -- Customers. Every random draw happens in this one scan over generate_series.
    DROP TABLE IF EXISTS gen_customers;
    CREATE TEMP TABLE gen_customers AS
    SELECT g,
           nextval(pg_get_serial_sequence('dixis.customers', 'id')) AS id,
           random() < 0.5 AS male,
           1 + floor(random() * 24)::int AS fn,
           1 + floor(random() * 36)::int AS ln,
           1 + floor(random() * 32)::int AS st,
           1 + floor(random() * 180)::int AS no,
           1 + floor(random() * 32)::int AS city,
           1 + floor(random() * 4)::int AS dom,
           6900000000 + floor(random() * 99999999)::bigint AS phone,
           random() < 0.10 AS business,
           100000000 + floor(random() * 899999999)::int AS afm,
           timestamptz '2024-01-01 00:00+02' + random() * interval '540 days' AS created_at
    FROM generate_series(1, n_cust) AS g;

    INSERT INTO dixis.customers (id, first_name, last_name, email, phone, company_name, vat_number,
                                 billing_address, billing_city, billing_postcode, created_at,
                                 updated_at)
    SELECT t.id,
           CASE WHEN t.male THEN m_first[t.fn] ELSE f_first[t.fn] END,
           CASE WHEN t.male THEN m_last[t.ln] ELSE f_last[t.ln] END,
           CASE WHEN t.male THEN m_first_l[t.fn] ELSE f_first_l[t.fn] END
               || '.' || last_l[t.ln] || '.' || t.id || '@' || domains[t.dom],
           '+30 ' || t.phone,
           CASE WHEN t.business THEN 'Ταβέρνα ' || CASE WHEN t.male THEN m_last[t.ln] ELSE f_last[t.ln] END END,
           CASE WHEN t.business THEN t.afm::text END,
           streets[t.st] || ' ' || t.no,
           cities[t.city], postcodes[t.city], t.created_at, t.created_at
    FROM gen_customers t
    ORDER BY t.g;
    GET DIAGNOSTICS c_customers = ROW_COUNT;

    ---------------------------------------------------------------------------------------
    -- Orders: draws in one scan; amounts are filled after the lines exist.
    DROP TABLE IF EXISTS gen_orders;
    CREATE TEMP TABLE gen_orders AS
    SELECT t.*,
           -- delivered = has an invoice; cancellations come in four kinds (README)
           t.status IN ('completed', 'refunded')
               OR (t.status = 'cancelled' AND (t.cancel_roll >= 0.80
                                               OR t.cancel_roll BETWEEN 0.35 AND 0.55))
               AS delivered,
           CASE WHEN t.status = 'completed'
                    -- a few bank transfers are still owed after delivery
                    THEN NOT (t.payment_method = 'bank_transfer' AND t.pay_roll < 0.15)
                WHEN t.status = 'refunded' THEN true
                WHEN t.status IN ('paid', 'shipped')
                    THEN t.payment_method <> 'cod'          -- COD is paid at the door
                WHEN t.status = 'cancelled'
                    THEN t.cancel_roll >= 0.80
                         OR (t.cancel_roll >= 0.55 AND t.payment_method <> 'cod')
                ELSE false                                   -- pending: awaiting payment
           END AS paid
    FROM (
    SELECT s.*,
           CASE WHEN s.status_roll < 0.88 THEN 'completed'
                WHEN s.status_roll < 0.92 THEN 'pending'
                WHEN s.status_roll < 0.94 THEN 'paid'
                WHEN s.status_roll < 0.96 THEN 'shipped'
                WHEN s.status_roll < 0.99 THEN 'cancelled'
                ELSE 'refunded' END AS status,
           -- 1-5 lines: 30/30/20/12/8 %
           CASE WHEN s.lines_roll < 0.30 THEN 1 WHEN s.lines_roll < 0.60 THEN 2
                WHEN s.lines_roll < 0.80 THEN 3 WHEN s.lines_roll < 0.92 THEN 4 ELSE 5 END AS n_lines
    FROM (
        SELECT g,
               nextval(pg_get_serial_sequence('dixis.orders', 'id')) AS id,
               random() < 0.10 AS guest,
               -- repeat buyers: low customer numbers order more often
               1 + floor(power(random(), 1.3) * n_cust)::int AS cust_g,
               floor(random() * n_guests)::int AS guest_no,
               random() AS status_roll,
               CASE WHEN random() < 0.25 THEN 'cod'
                    WHEN random() < 0.80 THEN 'card' ELSE 'bank_transfer' END AS payment_method,
               timestamptz '2024-07-01 00:00+03' + random() * interval '730 days' AS created_at,
               interval '1 hour' * (18 + floor(random() * 120)) AS delivery_time,
               random() AS lines_roll,
               random() AS coupon_roll,
               random() AS cancel_roll,
               random() AS pay_roll,         -- a late bank transfer; a COD refund in cash
               random() AS refund_roll,      -- ~3 % of completed orders: a partial refund
               random() AS refund_frac,      -- how much of the order a partial refund is
               interval '1 hour' * (2 + floor(random() * 300)) AS refund_delay
        FROM generate_series(1, n_orders) AS g
    ) s
    ) t;

    -- Lines: draws in one nested-loop scan over the (fresh, ordered) temp table.
    DROP TABLE IF EXISTS gen_items;
    CREATE TEMP TABLE gen_items AS
    SELECT q.order_id, q.line_no, q.pi, q.quantity,
           round(q.quantity * p_price[q.pi], 2) AS gross,
           CASE WHEN q.disc_roll < 0.05 THEN round(round(q.quantity * p_price[q.pi], 2) * 0.10, 2)
                ELSE 0 END AS discount
    FROM (
        SELECT l.*,
               CASE WHEN p_kg[l.pi] THEN (1 + floor(l.qty_roll * 8)) * 0.250     -- 0.25 .. 2 kg
                    ELSE 1 + floor(power(l.qty_roll, 3) * 4)                     -- mostly 1
               END::numeric(10,3) AS quantity
        FROM (
            SELECT o.id AS order_id, n AS line_no,
                   -- popular products first: a skewed pick over the catalogue
                   1 + floor(power(random(), 1.6) * n_prod)::int AS pi,
                   random() AS qty_roll,
                   random() AS disc_roll
            FROM gen_orders o
            CROSS JOIN LATERAL generate_series(1, o.n_lines) AS n
        ) l
    ) q;

    ---------------------------------------------------------------------------------------
    -- Amounts per order (no random() from here on: joins may reorder rows freely).
    INSERT INTO dixis.orders (id, customer_id, status, payment_method,
                              billing_first_name, billing_last_name, billing_email, billing_phone,
                              billing_address, billing_city, billing_postcode,
                              subtotal, shipping_fee, payment_fee, discount, total, coupon_code,
                              created_at, completed_at, updated_at,
                              paid_at, amount_paid, payment_reference)
    SELECT o.id, c.id, o.status, o.payment_method,
           coalesce(c.first_name, gn.first_name), coalesce(c.last_name, gn.last_name),
           coalesce(c.email, gn.email), coalesce(c.phone, gn.phone),
           coalesce(c.billing_address, gn.address), coalesce(c.billing_city, gn.city),
           coalesce(c.billing_postcode, gn.postcode),
           a.subtotal, f.shipping_fee, f.payment_fee, d.discount,
           a.subtotal + f.shipping_fee + f.payment_fee - d.discount,
           CASE WHEN d.discount > 0 THEN coupons[1 + (o.g % 4)] END,
           o.created_at,
           CASE WHEN o.delivered THEN o.created_at + o.delivery_time END,
           o.created_at + o.delivery_time,
           pay.paid_at,
           CASE WHEN pay.paid_at IS NOT NULL
                THEN a.subtotal + f.shipping_fee + f.payment_fee - d.discount END,
           -- card transaction id (27 characters: longer than QBO's PaymentRefNum), Greek RF
           -- bank transfer reference, courier's COD receipt number
           CASE WHEN pay.paid_at IS NULL THEN NULL
                WHEN o.payment_method = 'card' THEN 'ch_' || left(md5('card' || o.id), 24)
                WHEN o.payment_method = 'bank_transfer' THEN 'RF' || lpad((o.id * 7919 % 1000000000)::text, 9, '0')
                ELSE 'ACS-' || lpad((o.id * 104729 % 10000000000)::text, 10, '0') END
    FROM gen_orders o
    LEFT JOIN gen_customers gc ON NOT o.guest AND gc.g = o.cust_g
    LEFT JOIN dixis.customers c ON c.id = gc.id
    -- a guest's details derive from the guest number, so a returning guest looks the same
    CROSS JOIN LATERAL (
        SELECT CASE WHEN o.guest_no % 2 = 0 THEN m_first[1 + o.guest_no % 24] ELSE f_first[1 + o.guest_no % 24] END AS first_name,
               CASE WHEN o.guest_no % 2 = 0 THEN m_last[1 + (o.guest_no / 24) % 36] ELSE f_last[1 + (o.guest_no / 24) % 36] END AS last_name,
               CASE WHEN o.guest_no % 2 = 0 THEN m_first_l[1 + o.guest_no % 24] ELSE f_first_l[1 + o.guest_no % 24] END
                   || '.' || last_l[1 + (o.guest_no / 24) % 36] || '+guest' || o.guest_no || '@' || domains[1 + o.guest_no % 4] AS email,
               '+30 69' || lpad(((o.guest_no::bigint * 7919) % 100000000)::text, 8, '0') AS phone,
               streets[1 + o.guest_no % 32] || ' ' || (1 + o.guest_no % 150) AS address,
               cities[1 + (o.guest_no / 7) % 32] AS city,
               postcodes[1 + (o.guest_no / 7) % 32] AS postcode
    ) gn
    JOIN (SELECT i.order_id, sum(i.gross - i.discount) AS subtotal
          FROM gen_items i GROUP BY i.order_id) a ON a.order_id = o.id
    CROSS JOIN LATERAL (
        -- coupons: 5 € off from 20 €, or 10 % (products only; never more than the subtotal)
        SELECT CASE WHEN o.coupon_roll < 0.04 AND a.subtotal >= 20 THEN 5.00
                    WHEN o.coupon_roll < 0.08 AND a.subtotal >= 20 THEN round(a.subtotal * 0.10, 2)
                    ELSE 0 END::numeric(12,2) AS discount
    ) d
    CROSS JOIN LATERAL (
        SELECT CASE WHEN a.subtotal - d.discount >= 60 THEN 0
                    -- islands (Crete, Dodecanese, Cyclades, Ionian) cost more to reach
                    WHEN left(coalesce(c.billing_postcode, gn.postcode), 1) IN ('7', '8')
                      OR left(coalesce(c.billing_postcode, gn.postcode), 2) = '49' THEN 6.90
                    ELSE 4.90 END::numeric(12,2) AS shipping_fee,
               CASE WHEN o.payment_method = 'cod' THEN 2.00 ELSE 0 END::numeric(12,2) AS payment_fee
    ) f
    -- when the money came: card at checkout, bank transfer a day later (a few still owed
    -- after delivery), cash on delivery at delivery; never for the cancelled-unpaid kinds
    CROSS JOIN LATERAL (
        SELECT CASE WHEN NOT o.paid OR a.subtotal + f.shipping_fee + f.payment_fee - d.discount <= 0
                         THEN NULL
                    WHEN o.payment_method = 'card' THEN o.created_at
                    WHEN o.payment_method = 'bank_transfer' THEN o.created_at + interval '1 day'
                    ELSE o.created_at + o.delivery_time END AS paid_at
    ) pay
    ORDER BY o.id;

    INSERT INTO dixis.order_items (order_id, product_id, product_name, quantity, unit_price,
                                   vat_rate, discount, line_total)
    SELECT i.order_id, p_id[i.pi], p_name[i.pi], i.quantity, p_price[i.pi], p_vat[i.pi],
           i.discount, i.gross - i.discount
    FROM gen_items i
    ORDER BY i.order_id, i.line_no;
    GET DIAGNOSTICS c_items = ROW_COUNT;

    -- Refunds, only of paid orders: a full one for refunded orders and for cancellations
    -- after payment, a partial one (5-50 %, never the whole) for ~3 % of completed orders.
    -- A COD order's money goes back in cash or by bank transfer.
    INSERT INTO dixis.refunds (order_id, number, amount, reason, refunded_at, method, reference)
    SELECT d.id, 1, r.amount,
           CASE WHEN g.status = 'refunded' THEN 'Επιστροφή όλης της παραγγελίας'
                WHEN g.status = 'cancelled' THEN 'Ακύρωση παραγγελίας μετά την πληρωμή'
                ELSE reasons[1 + floor(g.refund_frac * 4)::int] END,
           coalesce(d.completed_at, d.paid_at) + g.refund_delay,
           m.method,
           CASE m.method WHEN 'card' THEN 're_' || left(md5('refund' || d.id), 24)
                         WHEN 'bank_transfer' THEN 'ΕΜΒ-' || lpad((d.id * 31337 % 100000000)::text, 8, '0')
                         ELSE 'ΑΠ-' || lpad(d.id::text, 8, '0') END
    FROM gen_orders g
    JOIN dixis.orders d ON d.id = g.id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN g.status IN ('refunded', 'cancelled') THEN d.amount_paid
                    ELSE least(d.amount_paid - 0.01,
                               greatest(0.01, round(d.amount_paid * (0.05 + g.refund_frac * 0.45)::numeric, 2)))
               END AS amount
    ) r
    CROSS JOIN LATERAL (
        SELECT CASE WHEN d.payment_method = 'card' THEN 'card'
                    WHEN d.payment_method = 'cod' AND g.pay_roll < 0.5 THEN 'cash'
                    ELSE 'bank_transfer' END AS method
    ) m
    WHERE d.amount_paid IS NOT NULL
      AND (g.status IN ('refunded', 'cancelled')
           OR (g.status = 'completed' AND g.refund_roll < 0.034 AND d.amount_paid >= 0.02))
    ORDER BY d.id;
    GET DIAGNOSTICS c_refunds = ROW_COUNT;

    DROP TABLE pg_temp.gen_customers;
    DROP TABLE pg_temp.gen_orders;
    DROP TABLE pg_temp.gen_items;

    RETURN jsonb_build_object('customers', c_customers, 'orders', n_orders,
                              'order_items', c_items, 'products', n_prod,
                              'refunds', c_refunds);
END
$fn$;

COMMENT ON FUNCTION dixis.generate(integer, double precision) IS
    'Append realistic Dixis data: orders orders, ~orders/3 customers, catalogue on first call; deterministic for a seed in [-1, 1]';
