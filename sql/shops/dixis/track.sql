-- Dixis: register the entities and install the capture rules (qbsync.track).
-- Safe to run again: define_entity upserts, track replaces its trigger.

-- Dixis' payment methods, in the terms the daemon looks up in every QuickBooks company
-- (payment_method:<name of a QuickBooks PaymentMethod>, deposit_account:undeposited_funds
-- or :bank). Card and cash-on-delivery money reaches the bank later (Undeposited Funds);
-- bank transfers land in the bank. A per-company override in qbsync.realm_settings wins.
INSERT INTO qbsync.setting_aliases (name, target, description) VALUES
    ('payment_method:card', 'payment_method:credit_card', 'Dixis card payments'),
    ('payment_method:cod', 'payment_method:cash', 'Dixis cash on delivery'),
    ('payment_method:cash', 'payment_method:cash', 'Dixis cash refunds'),
    ('deposit_account:card', 'deposit_account:undeposited_funds', 'card settlements arrive later'),
    ('deposit_account:cod', 'deposit_account:undeposited_funds', 'the courier remits later'),
    ('deposit_account:cash', 'deposit_account:undeposited_funds', 'cash refunds'),
    ('deposit_account:bank_transfer', 'deposit_account:bank', 'transfers land in the bank')
ON CONFLICT (name) DO UPDATE SET target = excluded.target, description = excluded.description;

-- Retry schedules from the original Laravel jobs (DESIGN.md).
SELECT qbsync.define_entity('order', 'Invoice', 3, '{60,300,900}', 120);
SELECT qbsync.define_entity('customer', 'Customer', 3, '{30,120,300}', 120);
SELECT qbsync.define_entity('product', 'Item', 3, '{30,120,300}', 120);
-- Payments and refunds: the invoice's schedule. A payment whose invoice is not in
-- QuickBooks yet waits for it without burning a try (the daemon never pushes a transaction
-- as a dependency).
SELECT qbsync.define_entity('payment', 'Payment', 3, '{60,300,900}', 120);
SELECT qbsync.define_entity('refund', 'RefundReceipt', 3, '{60,300,900}', 120);

-- Orders: captured once delivered (completed_at set: completed, and later refunded or
-- cancelled after delivery, which keep their invoice), when a delivered order's billed
-- fields change, and when delivery is undone (cancelled before payment -> void), since the
-- predicate holding for the OLD row is enough. Orders never delivered (pending ->
-- cancelled) never enqueue anything. The quickbooks_* write-back columns are not listed.
SELECT qbsync.track('dixis.orders', 'order', 'id',
    columns => ARRAY['status', 'customer_id', 'completed_at', 'created_at',
                     'billing_first_name', 'billing_last_name', 'billing_email', 'billing_phone',
                     'billing_address', 'billing_city', 'billing_postcode', 'billing_country',
                     'subtotal', 'shipping_fee', 'payment_fee', 'discount', 'total',
                     'coupon_code', 'payment_method'],
    "when" => $$completed_at IS NOT NULL$$);

-- Order lines: a change re-pushes the parent order, only while that order is completed
-- (lines written while the order is pending ride along when it completes).
SELECT qbsync.track('dixis.order_items', 'order', 'order_id',
    columns => ARRAY['order_id', 'product_id', 'product_name', 'quantity', 'unit_price',
                     'vat_rate', 'discount', 'line_total'],
    "when" => $$EXISTS (SELECT 1 FROM dixis.orders o
                        WHERE o.id = order_id AND o.completed_at IS NOT NULL)$$);

-- Payments (key = the order id): the payment facts, and delivery (completed_at, status),
-- since a payment reaches QuickBooks only once its order is invoiced: a card captured at
-- checkout enqueues nothing until the order is delivered, then the invoice and its payment
-- go together. Clearing a pushed payment (paid_at back to NULL) matches through the OLD row
-- and deletes it. The order rule above lists none of these payment columns, and this rule
-- none of the billed ones (payment_method is on both documents), so paying an order
-- enqueues only its payment and a billing edit only its invoice.
SELECT qbsync.track('dixis.orders', 'payment', 'id',
    columns => ARRAY['paid_at', 'amount_paid', 'payment_reference', 'payment_method',
                     'status', 'completed_at'],
    "when" => $$paid_at IS NOT NULL AND completed_at IS NOT NULL$$);

-- Refunds: every billed change, deletion included (a deleted refund voids its receipt).
SELECT qbsync.track('dixis.refunds', 'refund', 'id',
    columns => ARRAY['order_id', 'number', 'amount', 'reason', 'refunded_at', 'method',
                     'reference']);

-- A refund recorded before its order was delivered maps to nothing (no invoice yet); when
-- the order is delivered, or leaves delivery, its refunds are looked at again. An order
-- has at most a few refunds and most have none, so the fan-out is a cheap index probe.
-- The trigger runs as the role that writes the order (no SECURITY DEFINER: it reads
-- dixis.refunds, and whoever owns that table could make the read run code of its own with
-- the function owner's rights) and appends the keys as capture does; allow_enqueue lets
-- the writers of dixis.orders append refund keys.
CREATE OR REPLACE FUNCTION dixis.order_refunds_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO qbsync_capture.changes_refund (key)
    SELECT r.id::text FROM dixis.refunds r WHERE r.order_id = NEW.id;
    IF FOUND AND qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN NULL;
END
$$;
SELECT qbsync.allow_enqueue('dixis.orders', 'refund');
DROP TRIGGER IF EXISTS order_refunds_changed ON dixis.orders;
CREATE TRIGGER order_refunds_changed
    AFTER UPDATE OF completed_at ON dixis.orders
    FOR EACH ROW
    WHEN ((OLD.completed_at IS NULL) IS DISTINCT FROM (NEW.completed_at IS NULL)
          AND current_setting('qbsync.origin', true) IS DISTINCT FROM 'daemon')
    EXECUTE FUNCTION dixis.order_refunds_changed();

-- Customers and products: only once they exist in QuickBooks. New ones are pushed on
-- demand, as dependencies of their first invoice (or by qbsync.sync_all_customers /
-- sync_catalog), so sign-ups and catalogue imports cost no QuickBooks calls, and stock
-- movements (stock_quantity) never do.
SELECT qbsync.track('dixis.customers', 'customer', 'id',
    columns => ARRAY['first_name', 'last_name', 'email', 'phone', 'company_name', 'vat_number',
                     'billing_address', 'billing_city', 'billing_postcode', 'billing_country'],
    "when" => 'quickbooks_customer_id IS NOT NULL');

SELECT qbsync.track('dixis.products', 'product', 'id',
    columns => ARRAY['name', 'sku', 'description', 'price', 'vat_rate', 'category_id', 'active'],
    "when" => 'quickbooks_item_id IS NOT NULL');

-- A category's VAT rate change should re-push its products (their SalesTaxCodeRef). One
-- category row maps to many product keys, which a single track() key cannot express, so a
-- small trigger fans out by appending each synced product of the category, as the role
-- that writes the category (as order_refunds_changed above). VAT changes are rare (a
-- change of law).
CREATE OR REPLACE FUNCTION dixis.category_vat_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO qbsync_capture.changes_product (key)
    SELECT p.id::text FROM dixis.products p
    WHERE p.category_id = NEW.id AND p.vat_rate IS NULL AND p.quickbooks_item_id IS NOT NULL;
    IF FOUND AND qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN NULL;
END
$$;
SELECT qbsync.allow_enqueue('dixis.categories', 'product');
DROP TRIGGER IF EXISTS category_vat_changed ON dixis.categories;
CREATE TRIGGER category_vat_changed
    AFTER UPDATE OF vat_rate ON dixis.categories
    FOR EACH ROW
    WHEN (OLD.vat_rate IS DISTINCT FROM NEW.vat_rate
          AND current_setting('qbsync.origin', true) IS DISTINCT FROM 'daemon')
    EXECUTE FUNCTION dixis.category_vat_changed();
