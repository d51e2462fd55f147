-- Medusa: register the entities and install the capture rules (qbsync.track).
-- Safe to run again: define_entity upserts, track replaces its trigger.
--
-- Medusa writes an order, its items, tax lines, adjustments, shipping method and summary in
-- one transaction of its order module, and every later change of what was sold (an edit, a
-- refund's credit line, a cancellation) as a new order version in one transaction too; the
-- payment module writes captures and refunds in transactions of their own. The rules below
-- key every row to the document it belongs to; a row of an order's lines costs one test
-- once its order is captured in the transaction (capture's per-transaction memo).

-- Medusa's payment providers, in the terms the daemon looks up in every QuickBooks company
-- (payment_method:<name of a QuickBooks PaymentMethod>, deposit_account:undeposited_funds or
-- :bank). Card processors pay out later (Undeposited Funds); Medusa's manual "system"
-- provider is money the merchant collects himself (cash on delivery, a transfer). Another
-- provider (pp_paypal_paypal, …) needs its own pair: an alias here or a DBA override in
-- qbsync.realm_settings.
INSERT INTO qbsync.setting_aliases (name, target, description) VALUES
    ('payment_method:pp_stripe_stripe', 'payment_method:credit_card', 'Medusa Stripe payments'),
    ('deposit_account:pp_stripe_stripe', 'deposit_account:undeposited_funds', 'Stripe pays out later'),
    ('payment_method:pp_system_default', 'payment_method:cash', 'Medusa manual (system) payments'),
    ('deposit_account:pp_system_default', 'deposit_account:undeposited_funds', 'collected by the merchant, deposited later')
ON CONFLICT (name) DO UPDATE SET target = excluded.target, description = excluded.description;

-- Retry schedules: the Dixis ones (DESIGN.md).
SELECT qbsync.define_entity('order', 'Invoice', 3, '{60,300,900}', 120);
SELECT qbsync.define_entity('customer', 'Customer', 3, '{30,120,300}', 120);
SELECT qbsync.define_entity('product', 'Item', 3, '{30,120,300}', 120);
-- A payment whose invoice is not in QuickBooks yet waits for it without burning a try (the
-- daemon never pushes a transaction as a dependency).
SELECT qbsync.define_entity('payment', 'Payment', 3, '{60,300,900}', 120);
SELECT qbsync.define_entity('refund', 'RefundReceipt', 3, '{60,300,900}', 120);

-- Orders: placing, editing (a new version), canceling, deleting. Drafts are skipped until
-- they are converted (is_draft_order becomes false: the OLD row is a draft, the NEW one not).
SELECT qbsync.track('medusa.order', 'order', 'id',
    columns => ARRAY['status', 'version', 'is_draft_order', 'customer_id', 'email',
                     'currency_code', 'display_id', 'custom_display_id', 'billing_address_id',
                     'shipping_address_id', 'canceled_at', 'deleted_at', 'created_at'],
    "when" => $$NOT is_draft_order$$);

-- What was sold, keyed to its order (every row of a new version enqueues it once).
-- (the return quantities only lift the check against Medusa's summary, see has_returns)
SELECT qbsync.track('medusa.order_item', 'order', 'order_id',
    columns => ARRAY['order_id', 'version', 'item_id', 'quantity', 'unit_price', 'deleted_at',
                     'return_requested_quantity', 'return_received_quantity',
                     'return_dismissed_quantity', 'written_off_quantity']);
SELECT qbsync.track('medusa.order_shipping', 'order', 'order_id',
    columns => ARRAY['order_id', 'version', 'shipping_method_id', 'deleted_at', 'return_id',
                     'claim_id', 'exchange_id']);
-- Line items and shipping methods, their tax lines and adjustments belong to their order
-- through order_item (order_shipping): the key is that lookup, one probe of Medusa's index
-- on item_id (shipping_method_id), which covers the rows not deleted only. A line item or a
-- shipping method is written before the order_item (order_shipping) naming it, whose own
-- rule enqueues the order; an edit in place finds it.
SELECT qbsync.track('medusa.order_line_item', 'order',
    $$(SELECT oi.order_id FROM medusa.order_item oi
       WHERE oi.item_id = r.id AND oi.deleted_at IS NULL LIMIT 1)$$,
    columns => ARRAY['title', 'product_title', 'variant_title', 'variant_id', 'unit_price',
                     'is_tax_inclusive', 'created_at', 'deleted_at']);
SELECT qbsync.track('medusa.order_line_item_tax_line', 'order',
    $$(SELECT oi.order_id FROM medusa.order_item oi
       WHERE oi.item_id = r.item_id AND oi.deleted_at IS NULL LIMIT 1)$$,
    columns => ARRAY['rate', 'code', 'item_id', 'deleted_at']);
SELECT qbsync.track('medusa.order_line_item_adjustment', 'order',
    $$(SELECT oi.order_id FROM medusa.order_item oi
       WHERE oi.item_id = r.item_id AND oi.deleted_at IS NULL LIMIT 1)$$,
    columns => ARRAY['amount', 'code', 'is_tax_inclusive', 'version', 'item_id', 'deleted_at']);
SELECT qbsync.track('medusa.order_shipping_method', 'order',
    $$(SELECT os.order_id FROM medusa.order_shipping os
       WHERE os.shipping_method_id = r.id AND os.deleted_at IS NULL LIMIT 1)$$,
    columns => ARRAY['name', 'amount', 'is_tax_inclusive', 'created_at', 'deleted_at']);
SELECT qbsync.track('medusa.order_shipping_method_tax_line', 'order',
    $$(SELECT os.order_id FROM medusa.order_shipping os
       WHERE os.shipping_method_id = r.shipping_method_id AND os.deleted_at IS NULL LIMIT 1)$$,
    columns => ARRAY['rate', 'code', 'shipping_method_id', 'deleted_at']);
SELECT qbsync.track('medusa.order_shipping_method_adjustment', 'order',
    $$(SELECT os.order_id FROM medusa.order_shipping os
       WHERE os.shipping_method_id = r.shipping_method_id AND os.deleted_at IS NULL LIMIT 1)$$,
    columns => ARRAY['amount', 'code', 'version', 'shipping_method_id', 'deleted_at']);
-- An address edited in place (billing details on the invoice).
SELECT qbsync.track('medusa.order_address', 'order',
    $$coalesce((SELECT o.id FROM medusa."order" o WHERE o.billing_address_id = r.id LIMIT 1),
               (SELECT o.id FROM medusa."order" o WHERE o.shipping_address_id = r.id LIMIT 1))$$,
    columns => ARRAY['first_name', 'last_name', 'company', 'address_1', 'address_2', 'city',
                     'province', 'postal_code', 'country_code']);

-- Money: every capture and every refund, deletions included (a soft delete is an UPDATE of
-- deleted_at: a deleted capture's Payment is deleted, a deleted refund's receipt voided).
SELECT qbsync.track('medusa.capture', 'payment', 'id',
    columns => ARRAY['amount', 'payment_id', 'deleted_at', 'created_at']);
SELECT qbsync.track('medusa.refund', 'refund', 'id',
    columns => ARRAY['amount', 'payment_id', 'refund_reason_id', 'note', 'deleted_at', 'created_at']);

-- Customers and variants: only once they exist in QuickBooks. New ones are pushed on demand,
-- as dependencies of their first invoice (or by qbsync.sync_all_customers / sync_catalog), so
-- sign-ups and catalogue imports cost no QuickBooks calls.
SELECT qbsync.track('medusa.customer', 'customer', 'id',
    columns => ARRAY['first_name', 'last_name', 'email', 'phone', 'company_name', 'has_account'],
    "when" => $$EXISTS (SELECT 1 FROM medusa_qbsync.sync_state s
                        WHERE s.entity = 'customer' AND s.key = r.id AND s.qbo_id IS NOT NULL)$$);
SELECT qbsync.track('medusa.customer_address', 'customer', 'customer_id',
    columns => ARRAY['first_name', 'last_name', 'company', 'address_1', 'address_2', 'city',
                     'province', 'postal_code', 'country_code', 'phone', 'is_default_billing',
                     'customer_id', 'created_at', 'deleted_at'],
    "when" => $$EXISTS (SELECT 1 FROM medusa_qbsync.sync_state s
                        WHERE s.entity = 'customer' AND s.key = r.customer_id AND s.qbo_id IS NOT NULL)$$);
SELECT qbsync.track('medusa.product_variant', 'product', 'id',
    columns => ARRAY['title', 'sku', 'product_id'],
    "when" => $$EXISTS (SELECT 1 FROM medusa_qbsync.sync_state s
                        WHERE s.entity = 'product' AND s.key = r.id AND s.qbo_id IS NOT NULL)$$);
-- A variant's price in a currency (one price set per variant).
SELECT qbsync.track('medusa.price', 'product',
    $$(SELECT l.variant_id FROM medusa.product_variant_price_set l
       WHERE l.price_set_id = r.price_set_id AND l.deleted_at IS NULL LIMIT 1)$$,
    columns => ARRAY['amount', 'currency_code', 'price_list_id', 'rules_count', 'min_quantity',
                     'price_set_id', 'deleted_at'],
    "when" => $$EXISTS (SELECT 1 FROM medusa.product_variant_price_set l
                        JOIN medusa_qbsync.sync_state s
                          ON s.entity = 'product' AND s.key = l.variant_id AND s.qbo_id IS NOT NULL
                        WHERE l.price_set_id = r.price_set_id AND l.deleted_at IS NULL)$$);

-- A product's title or description names all its variants' items: one product row maps to
-- many variant keys, which a track() key cannot express, so a small trigger appends each
-- variant already in QuickBooks. Titles change rarely, products have a few variants. It
-- runs as the role that writes the product (no SECURITY DEFINER: Medusa's role owns
-- medusa.product_variant, and could make the read run code of its own with the function
-- owner's rights); allow_enqueue lets the writers of medusa.product append product keys.
CREATE OR REPLACE FUNCTION medusa_qbsync.product_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO qbsync_capture.changes_product (key)
    SELECT v.id FROM medusa.product_variant v
    JOIN medusa_qbsync.sync_state s ON s.entity = 'product' AND s.key = v.id AND s.qbo_id IS NOT NULL
    WHERE v.product_id = NEW.id;
    IF FOUND AND qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN NULL;
END
$$;
SELECT qbsync.allow_enqueue('medusa.product', 'product');
DROP TRIGGER IF EXISTS qbsync_product_changed ON medusa.product;
CREATE TRIGGER qbsync_product_changed
    AFTER UPDATE OF title, description ON medusa.product
    FOR EACH ROW
    WHEN ((OLD.title, OLD.description) IS DISTINCT FROM (NEW.title, NEW.description)
          AND current_setting('qbsync.origin', true) IS DISTINCT FROM 'daemon')
    EXECUTE FUNCTION medusa_qbsync.product_changed();
