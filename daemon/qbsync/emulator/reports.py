"""Reports: ProfitAndLoss computed from the company's sales transactions.

Rules (the fact sheet gives the shape, not the arithmetic):

* ``accounting_method=Accrual`` (default): a transaction counts when
  ``start_date <= TxnDate <= end_date``; invoices count positive, credit memos and refund
  receipts negative; payments do not change P&L (they only move A/R to cash);
* ``accounting_method=Cash``: income is recognised when money moves: a payment dated in the
  period recognises each linked invoice's income in proportion ``applied / TotalAmt`` (and
  removes a linked credit memo's in the same proportion); refund receipts count negative at
  their TxnDate; unapplied payment amounts and unpaid invoices count nothing (voided
  transactions hold zero amounts and no payment lines, so they count nothing either);
* default period: 1 January of the current (emulated) year to today;
* income is reported net of tax, per the Item's ``IncomeAccountRef``; for TaxInclusive
  invoices the net of each tax code is ``gross - round(gross x rate / (100 + rate), 2)``,
  spread over that code's lines in proportion to their amounts;
* discounts appear as negative income on the discount line's ``DiscountAccountRef`` (default:
  the seeded "Discounts given" account), sized so that the income rows of a transaction add
  up to ``TotalAmt - TotalTax``; credit memos count negative; voided invoices count 0;
* there is no cost data, so there is no Cost of Goods Sold and the Expenses section has no
  rows and an empty total, as QuickBooks shows a section without data.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from . import faults, tax
from .clock import Clock
from .seed import DISCOUNT_ACCOUNT_ID
from .store import Company
from .validation import money

SUPPORTED = ("ProfitAndLoss",)


def _d(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def txn_income(company: Company, txn: dict[str, Any]) -> dict[str, Decimal]:
    calc = txn.get("GlobalTaxCalculation") or "TaxExcluded"
    items = company.entities["Item"]
    codes = company.entities["TaxCode"]
    groups: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    discount_account = DISCOUNT_ACCOUNT_ID
    for line in txn.get("Line", []):
        dtype = line.get("DetailType")
        if dtype == "DiscountLineDetail":
            ref = (line.get("DiscountLineDetail") or {}).get("DiscountAccountRef")
            if ref:
                discount_account = ref["value"]
            continue
        if dtype != "SalesItemLineDetail":
            continue
        detail = line.get("SalesItemLineDetail") or {}
        item_ref = detail.get("ItemRef")
        if not item_ref:
            continue
        item = items.get(item_ref["value"], {})
        account = (item.get("IncomeAccountRef") or {}).get("value", "1")
        code = (detail.get("TaxCodeRef") or {}).get("value", "")
        groups[code].append((account, _d(line.get("Amount"))))
    out: dict[str, Decimal] = defaultdict(Decimal)
    for code, lines in groups.items():
        gross = sum((a for _, a in lines), Decimal(0))
        if calc == "TaxInclusive" and code in codes:
            rate = sum((r for _, r in tax.rates_of_code(codes[code],
                                                         company.entities["TaxRate"])),
                       Decimal(0))
            net = gross - money(gross * rate / (100 + rate))
        else:
            net = gross
        left = net
        for i, (account, amount) in enumerate(lines):
            share = (
                left
                if i == len(lines) - 1
                else (money(net * amount / gross) if gross else Decimal(0))
            )
            left -= share
            out[account] += share
    undiscounted = sum(out.values(), Decimal(0))
    net_total = _d(txn.get("TotalAmt")) - _d((txn.get("TxnTaxDetail") or {}).get("TotalTax"))
    if undiscounted != net_total:
        out[discount_account] += net_total - undiscounted
    return dict(out)


def _cash_receipts(company: Company, start: str, end: str, totals: dict[str, Decimal]) -> None:
    for payment in company.entities["Payment"].values():
        if not start <= str(payment.get("TxnDate", ""))[:10] <= end:
            continue
        for line in payment.get("Line") or ():
            amount = _d(line.get("Amount"))
            for link in line.get("LinkedTxn") or ():
                txn = company.entities[link["TxnType"]].get(link["TxnId"])
                total = _d((txn or {}).get("TotalAmt"))
                if txn is None or not total:
                    continue
                sign = 1 if link["TxnType"] == "Invoice" else -1
                for account, income in txn_income(company, txn).items():
                    totals[account] += sign * money(income * amount / total)


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def profit_and_loss(company: Company, params: dict[str, str], clock: Clock) -> dict[str, Any]:
    today = clock.today()
    start = params.get("start_date") or f"{today[:4]}-01-01"
    end = params.get("end_date") or today
    for name, value in (("start_date", start), ("end_date", end)):
        if len(value) != 10 or value[4] != "-" or value[7] != "-":
            raise faults.invalid_property(
                f"Property Name:{name} specified is unsupported or invalid. Supplied value:{value}",
                name,
            )
    method = params.get("accounting_method") or "Accrual"
    if method.lower() not in ("accrual", "cash"):
        raise faults.invalid_property(
            "Property Name:accounting_method specified is unsupported or invalid. "
            f"Supplied value:{method}",
            "accounting_method",
        )
    method = method.capitalize()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    sources = (
        (("Invoice", 1), ("CreditMemo", -1), ("RefundReceipt", -1))
        if method == "Accrual"
        else (("RefundReceipt", -1),)
    )
    for entity, sign in sources:
        for txn in company.entities[entity].values():
            if start <= str(txn.get("TxnDate", ""))[:10] <= end:
                for account, amount in txn_income(company, txn).items():
                    totals[account] += sign * amount
    if method == "Cash":
        _cash_receipts(company, start, end, totals)
    accounts = company.entities["Account"]
    rows = []
    for account_id in sorted(totals, key=lambda a: accounts.get(a, {}).get("Name", a)):
        if totals[account_id] == 0:
            continue
        rows.append(
            {
                "ColData": [
                    {
                        "value": accounts.get(account_id, {}).get("Name", account_id),
                        "id": account_id,
                    },
                    {"value": _money(totals[account_id])},
                ],
                "type": "Data",
            }
        )
    income = sum(totals.values(), Decimal(0))
    no_data = "false" if rows else "true"

    def summary(label: str, value: Decimal, group: str) -> dict[str, Any]:
        return {
            "Summary": {"ColData": [{"value": label}, {"value": _money(value)}]},
            "type": "Section",
            "group": group,
        }

    income_section: dict[str, Any] = {
        "Header": {"ColData": [{"value": "Income"}, {"value": ""}]},
        "Rows": {"Row": rows},
        "Summary": {"ColData": [{"value": "Total Income"}, {"value": _money(income)}]},
        "type": "Section",
        "group": "Income",
    }
    # no expense data: as in Intuit's sample, a section without rows totals "" (not 0.00)
    expenses: dict[str, Any] = {
        "Header": {"ColData": [{"value": "Expenses"}, {"value": ""}]},
        "Summary": {"ColData": [{"value": "Total Expenses"}, {"value": ""}]},
        "type": "Section",
        "group": "Expenses",
    }
    header: dict[str, Any] = {"Time": clock.iso(), "ReportName": "ProfitAndLoss"}
    if params.get("date_macro"):  # echoed only when asked for, like the other parameters
        header["DateMacro"] = params["date_macro"]
    return {
        "Header": {
            **header,
            "ReportBasis": method,
            "StartPeriod": start,
            "EndPeriod": end,
            "SummarizeColumnsBy": "Total",
            "Currency": company.settings.currency,
            "Option": [
                {"Name": "AccountingStandard", "Value": "GAAP"},
                {"Name": "NoReportData", "Value": no_data},
            ],
        },
        "Columns": {
            "Column": [
                {
                    "ColTitle": "",
                    "ColType": "Account",
                    "MetaData": [{"Name": "ColKey", "Value": "account"}],
                },
                {
                    "ColTitle": "Total",
                    "ColType": "Money",
                    "MetaData": [{"Name": "ColKey", "Value": "total"}],
                },
            ]
        },
        "Rows": {
            "Row": [
                income_section,
                summary("Gross Profit", income, "GrossProfit"),
                expenses,
                summary("Net Operating Income", income, "NetOperatingIncome"),
                summary("Net Income", income, "NetIncome"),
            ]
        },
    }


def run(company: Company, name: str, params: dict[str, str], clock: Clock) -> dict[str, Any]:
    if name.lower() == "profitandloss":
        return profit_and_loss(company, params, clock)
    raise faults.unsupported(
        f"Report {name} is not supported by the emulator (supported: {', '.join(SUPPORTED)})"
    )
