-- Dixis: register the entities and install the capture rules (qbsync.track).
-- Safe to run again: define_entity upserts, track replaces its trigger.

-- Retry schedules from the original Laravel jobs (DESIGN.md).
SELECT qbsync.define_entity('order', 'Invoice', 3, '{60,300,900}', 120);
SELECT qbsync.define_entity('customer', 'Customer', 3, '{30,120,300}', 120);
SELECT qbsync.define_entity('product', 'Item', 3, '{30,120,300}', 120);

-- Orders: captured when they become completed, when a completed order's billed fields
-- change, and when one leaves completed (cancelled/refunded -> void), since the predicate
-- holding for the OLD row is enough. Orders that never reach completed (pending ->
-- cancelled) never enqueue anything. The quickbooks_* write-back columns are not listed.
SELECT qbsync.track('dixis.orders', 'order', 'id',
    columns => ARRAY['status', 'customer_id', 'completed_at', 'created_at',
                     'billing_first_name', 'billing_last_name', 'billing_email', 'billing_phone',
                     'billing_address', 'billing_city', 'billing_postcode', 'billing_country',
                     'subtotal', 'shipping_fee', 'payment_fee', 'discount', 'total',
                     'coupon_code', 'payment_method'],
    "when" => $$status = 'completed'$$);

-- Order lines: a change re-pushes the parent order, only while that order is completed
-- (lines written while the order is pending ride along when it completes).
SELECT qbsync.track('dixis.order_items', 'order', 'order_id',
    columns => ARRAY['order_id', 'product_id', 'product_name', 'quantity', 'unit_price',
                     'vat_rate', 'discount', 'line_total'],
    "when" => $$EXISTS (SELECT 1 FROM dixis.orders o
                        WHERE o.id = order_id AND o.status = 'completed')$$);

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
-- small trigger fans out by enqueueing each synced product of the category. VAT changes
-- are rare (a change of law), so the loop is fine.
CREATE OR REPLACE FUNCTION dixis.category_vat_changed() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER          -- the shop's role has no grant on qbsync; the installer does
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbsync.enqueue('product', p.id::text, false, 'dixis.categories')
    FROM dixis.products p
    WHERE p.category_id = NEW.id AND p.vat_rate IS NULL AND p.quickbooks_item_id IS NOT NULL;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS category_vat_changed ON dixis.categories;
CREATE TRIGGER category_vat_changed
    AFTER UPDATE OF vat_rate ON dixis.categories
    FOR EACH ROW
    WHEN (OLD.vat_rate IS DISTINCT FROM NEW.vat_rate
          AND current_setting('qbsync.origin', true) IS DISTINCT FROM 'daemon')
    EXECUTE FUNCTION dixis.category_vat_changed();
