"""Transaction tax arithmetic (global/VAT model and US model).

Rule (chosen for the emulator, the fact sheet leaves the exact arithmetic open):

* amounts are grouped per line TaxCode;
* a discount (DiscountLineDetail) is applied before tax and spread over the tax codes in
  proportion to their line sums (cent rounding; the last code takes the remainder);
* ``TaxExcluded`` (default): line Amounts are net; tax per code =
  ``round(net_sum x rate / 100, 2)``; ``TotalAmt = net + tax``;
* ``TaxInclusive``: line UnitPrice/Amount are gross (VAT included); tax per code =
  ``round(gross_sum x rate / (100 + rate), 2)``; ``TotalAmt = sum of line Amounts`` (less
  discount); the net of a code is ``gross - tax``;
* ``NotApplicable``: no tax;
* a group code (several sales rates) charges each of its rates on the same base; with
  ``TaxInclusive`` the code's whole rate comes out of the gross amount and its rates share
  that tax (the last one takes the rounding cent);
* US mode: lines coded ``TAX`` are taxed at the company's single combined rate (TaxRate Id "1"),
  ``NON`` lines are not; ``GlobalTaxCalculation`` is ignored.

Rounding is half-up to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .validation import as_json_number, money

ZERO = Decimal("0")
HUNDRED = Decimal("100")


@dataclass
class TaxGroup:
    """The lines of one tax code: its sales rates (TaxRate Id, percent; a group code has
    several) and the amount they sum to."""

    code_id: str
    rates: list[tuple[str, Decimal]]
    amount: Decimal = ZERO

    @property
    def rate(self) -> Decimal:
        return sum((r for _, r in self.rates), ZERO)


@dataclass
class TaxResult:
    total_amt: Decimal
    total_tax: Decimal
    tax_lines: list[dict[str, Any]]
    #: net (tax-exclusive) income per tax code, after discount
    net_by_code: dict[str, Decimal] = field(default_factory=dict)
    discount: Decimal = ZERO


def _spread_discount(groups: list[TaxGroup], discount: Decimal) -> list[Decimal]:
    total = sum((g.amount for g in groups), ZERO)
    if not discount or not total:
        return [g.amount for g in groups]
    bases: list[Decimal] = []
    left = discount
    for i, g in enumerate(groups):
        share = left if i == len(groups) - 1 else money(discount * g.amount / total)
        left -= share
        bases.append(g.amount - share)
    return bases


def compute(groups: list[TaxGroup], discount: Decimal, calculation: str) -> TaxResult:
    bases = _spread_discount(groups, discount)
    tax_lines: list[dict[str, Any]] = []
    total_tax = ZERO
    net_by_code: dict[str, Decimal] = {}
    gross_total = ZERO
    for g, base in zip(groups, bases, strict=True):
        if calculation == "NotApplicable":
            taxes, net = [ZERO for _ in g.rates], base
        elif calculation == "TaxInclusive":
            # the code's whole rate comes out of the gross amount; its rates share it (the
            # last takes the cent the rounding leaves)
            tax = money(base * g.rate / (HUNDRED + g.rate))
            net = base - tax
            taxes = [money(net * r / HUNDRED) for _, r in g.rates[:-1]]
            taxes += [tax - sum(taxes, ZERO)] if g.rates else []
        else:
            taxes = [money(base * r / HUNDRED) for _, r in g.rates]
            net = base
        total_tax += sum(taxes, ZERO)
        gross_total += net + sum(taxes, ZERO)
        net_by_code[g.code_id] = net_by_code.get(g.code_id, ZERO) + net
        if calculation != "NotApplicable":
            for (rate_id, rate), tax in zip(g.rates, taxes, strict=True):
                tax_lines.append(
                    {
                        "Amount": as_json_number(tax),
                        "DetailType": "TaxLineDetail",
                        "TaxLineDetail": {
                            "TaxRateRef": {"value": rate_id},
                            "PercentBased": True,
                            "TaxPercent": as_json_number(rate),
                            "NetAmountTaxable": as_json_number(net),
                        },
                    }
                )
    return TaxResult(
        total_amt=gross_total,
        total_tax=total_tax,
        tax_lines=tax_lines,
        net_by_code=net_by_code,
        discount=discount,
    )


def rates_of_code(code: dict[str, Any], rates: dict[str, dict[str, Any]]
                  ) -> list[tuple[str, Decimal]]:
    """(TaxRate Id, percent) of each sales rate of a global-model TaxCode."""
    details = (code.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []
    out = []
    for detail in details:
        rate_id = str(detail["TaxRateRef"]["value"])
        out.append((rate_id, Decimal(str(rates.get(rate_id, {}).get("RateValue", 0)))))
    return out
