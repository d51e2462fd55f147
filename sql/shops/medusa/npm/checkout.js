// Real Medusa checkouts through Medusa's own workflows (the code paths of its storefront and
// admin API): a store with two currencies, VAT-inclusive euro prices and US prices before
// sales tax, two VAT rates in one order, promotions on items, on the order and on shipping,
// registered and guest customers, captures, a partial refund, cancellations before and after
// capture, a completed order. qbsync's tests load the rows Medusa wrote
// (tests/fixtures/medusa/checkout.sql) and compare the mapping with the totals Medusa
// computed (checkout-totals.json). Run by ../build-schema.sh: `medusa exec checkout.js`.
const {
  createRegionsWorkflow, createTaxRegionsWorkflow, createTaxRatesWorkflow,
  createShippingProfilesWorkflow, createShippingOptionsWorkflow, createStockLocationsWorkflow,
  linkSalesChannelsToStockLocationWorkflow, createProductsWorkflow, createProductTypesWorkflow,
  createPricePreferencesWorkflow, createPromotionsWorkflow, createCustomersWorkflow,
  createCartWorkflow, addShippingMethodToCartWorkflow, createPaymentCollectionForCartWorkflow,
  createPaymentSessionsWorkflow, completeCartWorkflow, capturePaymentWorkflow,
  refundPaymentWorkflow, cancelOrderWorkflow, completeOrderWorkflow, createRefundReasonsWorkflow,
  createSalesChannelsWorkflow, updateStoresWorkflow, updateCartPromotionsWorkflow,
} = require("@medusajs/medusa/core-flows")
const { ContainerRegistrationKeys, Modules } = require("@medusajs/framework/utils")

exports.default = async function checkout({ container }) {
  const log = container.resolve(ContainerRegistrationKeys.LOGGER)
  const link = container.resolve(ContainerRegistrationKeys.LINK)
  const query = container.resolve(ContainerRegistrationKeys.QUERY)
  const fulfillment = container.resolve(Modules.FULFILLMENT)
  const storeModule = container.resolve(Modules.STORE)
  const orderModule = container.resolve(Modules.ORDER)
  const run = async (wf, input) => (await wf(container).run({ input })).result

  const [salesChannel] = await run(createSalesChannelsWorkflow, {
    salesChannelsData: [{ name: "Webshop" }] })
  const [store] = await storeModule.listStores()
  await run(updateStoresWorkflow, { selector: { id: store.id }, update: {
    name: "Agora Store", default_sales_channel_id: salesChannel.id,
    supported_currencies: [{ currency_code: "eur", is_default: true, is_tax_inclusive: true },
                         { currency_code: "usd", is_tax_inclusive: false }] } })

  const [europe, us] = await run(createRegionsWorkflow, { regions: [
    { name: "Europe", currency_code: "eur", countries: ["de", "fr", "gr"],
      payment_providers: ["pp_system_default"] },
    { name: "United States", currency_code: "usd", countries: ["us"],
      payment_providers: ["pp_system_default"] }] })

  const types = await run(createProductTypesWorkflow, { product_types: [
    { value: "apparel" }, { value: "books" }] })
  const books = types.find((t) => t.value === "books")
  const taxRegions = await run(createTaxRegionsWorkflow, [
    { country_code: "de", provider_id: "tp_system", default_tax_rate: { rate: 19, code: "DE19", name: "MwSt" } },
    { country_code: "fr", provider_id: "tp_system", default_tax_rate: { rate: 20, code: "FR20", name: "TVA" } },
    { country_code: "gr", provider_id: "tp_system", default_tax_rate: { rate: 24, code: "GR24", name: "ΦΠΑ" } },
    { country_code: "us", provider_id: "tp_system", default_tax_rate: { rate: 8.875, code: "NYC", name: "Sales tax" } }])
  const byCountry = Object.fromEntries(taxRegions.map((r) => [r.country_code, r]))
  // reduced rates for books: a second rate in the same order
  await run(createTaxRatesWorkflow, [
    { tax_region_id: byCountry.de.id, rate: 7, code: "DE7", name: "MwSt ermäßigt",
      rules: [{ reference: "product_type", reference_id: books.id }] },
    { tax_region_id: byCountry.fr.id, rate: 5.5, code: "FR5.5", name: "TVA réduite",
      rules: [{ reference: "product_type", reference_id: books.id }] },
    { tax_region_id: byCountry.gr.id, rate: 6, code: "GR6", name: "ΦΠΑ μειωμένος",
      rules: [{ reference: "product_type", reference_id: books.id }] }])

  const [profile] = await run(createShippingProfilesWorkflow, { data: [{ name: "Default", type: "default" }] })
  const fset = await fulfillment.createFulfillmentSets({ name: "Warehouse delivery", type: "shipping",
    service_zones: [{ name: "All", geo_zones: ["de", "fr", "gr", "us"].map((c) => ({ country_code: c, type: "country" })) }] })
  const [location] = await run(createStockLocationsWorkflow, { locations: [{ name: "Warehouse",
    address: { city: "Berlin", country_code: "DE", address_1: "Lagerstraße 1" } }] })
  await run(linkSalesChannelsToStockLocationWorkflow, { id: location.id, add: [salesChannel.id] })
  await link.create([
    { [Modules.STOCK_LOCATION]: { stock_location_id: location.id },
      [Modules.FULFILLMENT]: { fulfillment_set_id: fset.id } },
    { [Modules.STOCK_LOCATION]: { stock_location_id: location.id },
      [Modules.FULFILLMENT]: { fulfillment_provider_id: "manual_manual" } }])
  const [standard] = await run(createShippingOptionsWorkflow, [{
    name: "Standard Shipping", price_type: "flat", provider_id: "manual_manual",
    service_zone_id: fset.service_zones[0].id, shipping_profile_id: profile.id,
    type: { label: "Standard", description: "2-3 days", code: "standard" },
    prices: [{ currency_code: "eur", amount: 4.9 }, { currency_code: "usd", amount: 7.5 }],
    rules: [{ attribute: "enabled_in_store", value: "true", operator: "eq" },
            { attribute: "is_return", value: "false", operator: "eq" }] }])

  const apparel = types.find((t) => t.value === "apparel")
  const products = await run(createProductsWorkflow, { products: [
    { title: "Linen Shirt", handle: "linen-shirt", type_id: apparel.id, status: "published",
      shipping_profile_id: profile.id, sales_channels: [{ id: salesChannel.id }],
      options: [{ title: "Size", values: ["S", "M"] }],
      variants: [
        { title: "S", sku: "SHIRT-S", options: { Size: "S" }, manage_inventory: false,
          prices: [{ amount: 39.99, currency_code: "eur" }, { amount: 44.5, currency_code: "usd" }] },
        { title: "M", sku: "SHIRT-M", options: { Size: "M" }, manage_inventory: false,
          prices: [{ amount: 39.99, currency_code: "eur" }, { amount: 44.5, currency_code: "usd" }] }] },
    { title: "Cookbook: Aegean Kitchen", handle: "aegean-kitchen", type_id: books.id, status: "published",
      shipping_profile_id: profile.id, sales_channels: [{ id: salesChannel.id }],
      options: [{ title: "Edition", values: ["Hardcover"] }],
      variants: [{ title: "Hardcover", sku: "BOOK-AEGEAN", options: { Edition: "Hardcover" },
        manage_inventory: false,
        prices: [{ amount: 24.9, currency_code: "eur" }, { amount: 27.99, currency_code: "usd" }] }] },
    { title: "Olive Wood Spoon", handle: "olive-spoon", type_id: apparel.id, status: "published",
      shipping_profile_id: profile.id, sales_channels: [{ id: salesChannel.id }],
      options: [{ title: "Default", values: ["Default"] }],
      variants: [{ title: "Default", sku: "SPOON", options: { Default: "Default" }, manage_inventory: false,
        prices: [{ amount: 3.33, currency_code: "eur" }, { amount: 3.99, currency_code: "usd" }] }] }] })
  const sku = Object.fromEntries(products.flatMap((p) => p.variants).map((v) => [v.sku, v.id]))

  await run(createPromotionsWorkflow, { promotionsData: [
    { code: "SUMMER10", type: "standard", status: "active", is_automatic: false,
      application_method: { type: "percentage", target_type: "items", allocation: "across", value: 10 } },
    { code: "FIVEOFF", type: "standard", status: "active", is_automatic: false,
      application_method: { type: "fixed", target_type: "order", allocation: "across", value: 5,
                            currency_code: "eur" } },
    { code: "FREESHIP", type: "standard", status: "active", is_automatic: false,
      application_method: { type: "percentage", target_type: "shipping_methods", allocation: "across",
                            value: 100 } }] })
  const [reason] = await run(createRefundReasonsWorkflow, { data: [
    { label: "Damaged in transit", code: "damaged" }] })

  const [registered] = await run(createCustomersWorkflow, { customersData: [
    { first_name: "Anna", last_name: "Schmidt", email: "anna.schmidt@example.de", phone: "+49 30 1234567",
      has_account: true, company_name: "Schmidt GmbH" }] })

  const address = (country, first, last) => ({ first_name: first, last_name: last,
    address_1: country === "us" ? "350 5th Ave" : "Hauptstraße 5", city: country === "us" ? "New York" : "Berlin",
    postal_code: country === "us" ? "10118" : "10115", country_code: country, phone: "+1 555 0100" })

  async function checkoutCart({ region, email, customer, country, items, promo, first, last, shippingPromo }) {
    const cart = await run(createCartWorkflow, { region_id: region.id, email, customer_id: customer?.id,
      sales_channel_id: salesChannel.id, currency_code: region.currency_code,
      shipping_address: address(country, first, last), billing_address: address(country, first, last),
      items: items.map(([s, q]) => ({ variant_id: sku[s], quantity: q })), promo_codes: promo ?? [] })
    await run(addShippingMethodToCartWorkflow, { cart_id: cart.id, options: [{ id: standard.id }] })
    if (shippingPromo) await run(updateCartPromotionsWorkflow, { cart_id: cart.id, promo_codes: [shippingPromo], action: "add" })
    const pc = await run(createPaymentCollectionForCartWorkflow, { cart_id: cart.id })
    const { data: [withPc] } = await query.graph({ entity: "cart", fields: ["payment_collection.id"],
      filters: { id: cart.id } })
    await run(createPaymentSessionsWorkflow, { payment_collection_id: withPc.payment_collection.id,
      provider_id: "pp_system_default" })
    const { id } = await run(completeCartWorkflow, { id: cart.id })
    return id
  }
  async function payments(orderId) {
    const { data: [o] } = await query.graph({ entity: "order", fields: ["payment_collections.payments.id"],
      filters: { id: orderId } })
    return o.payment_collections.flatMap((pc) => pc.payments)
  }
  const capture = async (orderId) => { for (const p of await payments(orderId)) await run(capturePaymentWorkflow, { payment_id: p.id }) }

  const orders = {}
  // a registered customer, two VAT rates, a percentage promotion on the items
  orders.registered_two_rates = await checkoutCart({ region: europe, customer: registered, email: registered.email,
    country: "de", items: [["SHIRT-M", 2], ["BOOK-AEGEAN", 1]], promo: ["SUMMER10"], first: "Anna", last: "Schmidt" })
  await capture(orders.registered_two_rates)
  // a refund of an order with promotions (the new order version keeps its adjustments)
  await run(refundPaymentWorkflow, { payment_id: (await payments(orders.registered_two_rates))[0].id, amount: 12.5,
                                     note: "Late delivery" })
  // a guest, a fixed discount on the order, odd cents, free shipping
  orders.guest_fixed_discount = await checkoutCart({ region: europe, email: "jean.dupont@example.fr",
    country: "fr", items: [["SPOON", 3], ["SHIRT-S", 1], ["BOOK-AEGEAN", 2]], promo: ["FIVEOFF"], shippingPromo: "FREESHIP",
    first: "Jean", last: "Dupont" })
  await capture(orders.guest_fixed_discount)
  // the same guest again (Medusa reuses the guest customer row)
  orders.guest_again = await checkoutCart({ region: europe, email: "jean.dupont@example.fr", country: "gr",
    items: [["SPOON", 7]], first: "Jean", last: "Dupont" })
  // US dollars, tax-exclusive prices at 8.875 %
  orders.usd_tax_exclusive = await checkoutCart({ region: us, email: "sam.lee@example.com", country: "us",
    items: [["SHIRT-S", 3], ["SPOON", 1]], promo: ["SUMMER10"], first: "Sam", last: "Lee" })
  await capture(orders.usd_tax_exclusive)
  // paid, then partly refunded (Medusa adds a credit line to the order)
  orders.partly_refunded = await checkoutCart({ region: europe, customer: registered, email: registered.email,
    country: "de", items: [["SHIRT-S", 1], ["SPOON", 2]], first: "Anna", last: "Schmidt" })
  await capture(orders.partly_refunded)
  const [paid] = await payments(orders.partly_refunded)
  await run(refundPaymentWorkflow, { payment_id: paid.id, amount: 10, refund_reason_id: reason.id, note: "Broken spoon" })
  // canceled before capture (the authorization is canceled)
  orders.canceled_unpaid = await checkoutCart({ region: europe, email: "maria.p@example.gr", country: "gr",
    items: [["BOOK-AEGEAN", 1]], first: "Μαρία", last: "Παπαδοπούλου" })
  await run(cancelOrderWorkflow, { order_id: orders.canceled_unpaid })
  // canceled after capture (Medusa refunds the captured payment)
  orders.canceled_paid = await checkoutCart({ region: europe, email: "maria.p@example.gr", country: "gr",
    items: [["SHIRT-M", 1]], first: "Μαρία", last: "Παπαδοπούλου" })
  await capture(orders.canceled_paid)
  await run(cancelOrderWorkflow, { order_id: orders.canceled_paid })
  // marked completed by the merchant
  orders.completed = await checkoutCart({ region: europe, customer: registered, email: registered.email,
    country: "de", items: [["BOOK-AEGEAN", 1]], first: "Anna", last: "Schmidt" })
  await capture(orders.completed)
  await run(completeOrderWorkflow, { orderIds: [orders.completed] })

  // Medusa's own totals of every order, as its admin and storefront compute them
  const totals = {}
  const money = (v) => (v === undefined || v === null ? null : String(v))
  for (const [name, id] of Object.entries(orders)) {
    const o = await orderModule.retrieveOrder(id, {
      relations: ["summary", "items", "items.tax_lines", "items.adjustments", "shipping_methods",
                  "shipping_methods.tax_lines", "shipping_methods.adjustments", "credit_lines"] })
    totals[name] = {
      id: o.id, display_id: o.display_id, status: o.status, version: o.version,
      currency_code: o.currency_code, total: money(o.total), item_total: money(o.item_total),
      shipping_total: money(o.shipping_total), tax_total: money(o.tax_total),
      discount_total: money(o.discount_total), credit_line_total: money(o.credit_line_total),
      original_total: money(o.original_total),
      items: o.items.map((i) => ({ id: i.id, sku: i.variant_sku, quantity: money(i.quantity),
                                   total: money(i.total), tax_total: money(i.tax_total),
                                   discount_total: money(i.discount_total) })),
      shipping_methods: o.shipping_methods.map((s) => ({ id: s.id, total: money(s.total),
                                                         tax_total: money(s.tax_total) })),
    }
  }
  require("fs").writeFileSync(process.env.CHECKOUT_TOTALS || "checkout-totals.json",
                              JSON.stringify(totals, null, 1) + "\n")
  log.info(`checkout: ${Object.keys(orders).length} orders written`)
}
