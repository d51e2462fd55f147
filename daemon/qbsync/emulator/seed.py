"""Default chart of accounts, tax codes and company records for a new emulated company."""

from __future__ import annotations

from typing import Any

#: Greek VAT rates (standard 24 %, reduced 13 %, super-reduced 6 %, zero-rated 0 %).
GREEK_VAT: list[tuple[str, str, str, float]] = [
    # (TaxCode Id, Name, Description, rate)
    ("1", "ΦΠΑ 24%", "VAT standard rate 24% (Greece)", 24.0),
    ("2", "ΦΠΑ 13%", "VAT reduced rate 13% (Greece)", 13.0),
    ("3", "ΦΠΑ 6%", "VAT super-reduced rate 6% (Greece)", 6.0),
    ("4", "ΦΠΑ 0%", "VAT zero rate / exempt 0% (Greece)", 0.0),
]

ACCOUNTS: list[tuple[str, str, str, str, str]] = [
    # (Id, Name, AccountType, AccountSubType, Classification)
    ("1", "Sales of Product Income", "Income", "SalesOfProductIncome", "Revenue"),
    ("2", "Services", "Income", "ServiceFeeIncome", "Revenue"),
    ("3", "Discounts given", "Income", "DiscountsRefundsGiven", "Revenue"),
    ("4", "Cost of Goods Sold", "Cost of Goods Sold", "SuppliesMaterialsCogs", "Expense"),
    ("5", "Inventory Asset", "Other Current Asset", "Inventory", "Asset"),
    ("6", "Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable", "Asset"),
    ("7", "VAT Control", "Other Current Liability", "GlobalTaxPayable", "Liability"),
    ("8", "Undeposited Funds", "Other Current Asset", "UndepositedFunds", "Asset"),
    ("9", "Inactive Old Sales", "Income", "SalesOfProductIncome", "Revenue"),
    # the bank account; named "Checking" in US companies (see :func:`accounts`)
    ("10", "Τράπεζα", "Bank", "Checking", "Asset"),
]

INACTIVE_ACCOUNT_IDS = {"9"}
DISCOUNT_ACCOUNT_ID = "3"
AR_ACCOUNT_ID = "6"
UNDEPOSITED_FUNDS_ID = "8"
BANK_ACCOUNT_ID = "10"

#: default PaymentMethods: (Id, Name, Type)
PAYMENT_METHODS: list[tuple[str, str, str]] = [
    ("1", "Cash", "NON_CREDIT_CARD"),
    ("2", "Check", "NON_CREDIT_CARD"),
    ("3", "Credit Card", "CREDIT_CARD"),
    ("4", "Bank Transfer", "NON_CREDIT_CARD"),
]


def _meta(ts: str) -> dict[str, str]:
    return {"CreateTime": ts, "LastUpdatedTime": ts}


def accounts(ts: str, currency: str, us: bool = False) -> list[dict[str, Any]]:
    out = []
    for id_, name, atype, subtype, cls in ACCOUNTS:
        if us and id_ == BANK_ACCOUNT_ID:
            name = "Checking"
        out.append(
            {
                "Name": name,
                "SubAccount": False,
                "FullyQualifiedName": name,
                "Active": id_ not in INACTIVE_ACCOUNT_IDS,
                "Classification": cls,
                "AccountType": atype,
                "AccountSubType": subtype,
                "CurrentBalance": 0,
                "CurrentBalanceWithSubAccounts": 0,
                "CurrencyRef": {"value": currency},
                "domain": "QBO",
                "sparse": False,
                "Id": id_,
                "SyncToken": "0",
                "MetaData": _meta(ts),
            }
        )
    return out


def payment_methods(ts: str) -> list[dict[str, Any]]:
    return [
        {
            "Name": name,
            "Active": True,
            "Type": type_,
            "domain": "QBO",
            "sparse": False,
            "Id": id_,
            "SyncToken": "0",
            "MetaData": _meta(ts),
        }
        for id_, name, type_ in PAYMENT_METHODS
    ]


def _rate(id_: str, name: str, desc: str, rate: float, ts: str, *, active: bool = True,
          special: str | None = None) -> dict[str, Any]:
    return {
        "Name": name,
        "Description": desc,
        "Active": active,
        "RateValue": rate,
        "AgencyRef": {"value": "1"},
        "SpecialTaxType": special or ("NONE" if rate else "ZERO_RATE"),
        "DisplayType": "ReadOnly",
        "EffectiveTaxRate": [{"RateValue": rate, "EffectiveDate": "2016-06-01"}],
        "domain": "QBO",
        "sparse": False,
        "Id": id_,
        "SyncToken": "0",
        "MetaData": _meta(ts),
    }


def _code(id_: str, name: str, desc: str, rate_ids: list[tuple[str, str]], ts: str, *,
          active: bool = True, hidden: bool = False) -> dict[str, Any]:
    """A user-defined sales tax code as real companies return it: ``TaxGroup`` is true
    whether it has one rate or several (see tests/fixtures/qbo/taxcode_*.json)."""
    return {
        "Name": name,
        "Description": desc,
        "Active": active,
        "Hidden": hidden,
        "Taxable": True,
        "TaxGroup": True,
        "SalesTaxRateList": {
            "TaxRateDetail": [
                {
                    "TaxRateRef": {"value": rid, "name": rname},
                    "TaxTypeApplicable": "TaxOnAmount",
                    "TaxOrder": 0,
                }
                for rid, rname in rate_ids
            ]
        },
        "PurchaseTaxRateList": {"TaxRateDetail": []},
        "TaxCodeConfigType": "USER_DEFINED",
        "domain": "QBO",
        "sparse": False,
        "Id": id_,
        "SyncToken": "0",
        "MetaData": _meta(ts),
    }


#: Tax codes besides the four VAT rates, modelled on what real companies hold: a
#: superseded code made inactive, a two-rate group code, and a hidden code (QuickBooks hides
#: some codes from its lists; a hidden code is not offered for new transactions).
INACTIVE_TAX_CODE_ID = "5"
GROUP_TAX_CODE_ID = "6"
HIDDEN_TAX_CODE_ID = "7"


def global_tax(ts: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TaxCodes and TaxRates of the Greek-VAT ("global" model) company."""
    codes, rates = [], []
    for id_, name, desc, rate in GREEK_VAT:
        rate_name = f"VAT {rate:g}% (sales)"
        rates.append(_rate(id_, rate_name, desc, rate, ts))
        codes.append(_code(id_, name, desc, [(id_, rate_name)], ts))
    # an inactive code, to exercise 610 on tax references
    rates.append(_rate("5", "VAT 23% (old)", "Superseded standard rate 23%", 23.0, ts,
                       active=False))
    codes.append(_code(INACTIVE_TAX_CODE_ID, "ΦΠΑ 23% (old)", "Superseded standard rate 23%",
                       [("5", "VAT 23% (old)")], ts, active=False))
    # a group of two rates: 13 % VAT and a 1.5 % levy, 14.5 % in all
    rates.append(_rate("6", "Τέλος 1.5%", "Levy 1.5% (sales)", 1.5, ts))
    codes.append(_code(GROUP_TAX_CODE_ID, "ΦΠΑ 13% + Τέλος 1.5%", "VAT 13% and levy 1.5%",
                       [("2", "VAT 13% (sales)"), ("6", "Τέλος 1.5%")], ts))
    # hidden: same rate as code 1, which must not make 24 % ambiguous
    codes.append(_code(HIDDEN_TAX_CODE_ID, "ΦΠΑ 24% (κρυφός)", "Hidden copy of 24%",
                       [("1", "VAT 24% (sales)")], ts, hidden=True))
    return codes, rates


def _pseudo_code(id_: str, taxable: bool, group: bool, ts: str) -> dict[str, Any]:
    # As in captured US responses: no rates, TaxGroup false for TAX/NON and true for
    # CustomSalesTax, and a numeric SyncToken (tests/fixtures/qbo/taxcode_query_us_*.json).
    return {
        "Name": id_,
        "Description": id_,
        "Taxable": taxable,
        "TaxGroup": group,
        "Active": True,
        "domain": "QBO",
        "sparse": False,
        "Id": id_,
        "SyncToken": 0,
        "MetaData": _meta(ts),
    }


def us_tax(ts: str, rate: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """US pseudo tax codes TAX / NON / CustomSalesTax plus one combined sales-tax rate."""
    codes = [
        _pseudo_code("TAX", True, False, ts),
        _pseudo_code("NON", False, False, ts),
        _pseudo_code("CustomSalesTax", True, True, ts),
    ]
    rates = [
        {
            "Name": "Combined sales tax",
            "Active": True,
            "RateValue": rate,
            "domain": "QBO",
            "sparse": False,
            "Id": "1",
            "SyncToken": "0",
            "MetaData": _meta(ts),
        }
    ]
    return codes, rates


def company_info(realm_id: str, name: str, country: str, ts: str) -> dict[str, Any]:
    addr = {
        "Id": "1",
        "Line1": "Ermou 1",
        "City": "Athens",
        "Country": country,
        "PostalCode": "10563",
    }
    return {
        "CompanyName": name,
        "LegalName": name,
        "CompanyAddr": addr,
        "CustomerCommunicationAddr": addr,
        "LegalAddr": addr,
        "PrimaryPhone": {},
        "CompanyStartDate": ts[:10],
        "FiscalYearStartMonth": "January",
        "Country": country,
        "Email": {"Address": "owner@example.com"},
        "WebAddr": {},
        "SupportedLanguages": "en",
        "NameValue": [{"Name": "OfferingSku", "Value": "QuickBooks Online Plus"}],
        "domain": "QBO",
        "sparse": False,
        "Id": realm_id,
        "SyncToken": "0",
        "MetaData": _meta(ts),
    }


def preferences(custom_txn_numbers: bool, currency: str, us: bool, ts: str,
                multicurrency: bool = False) -> dict[str, Any]:
    return {
        "AccountingInfoPrefs": {"TrackDepartments": False, "BookCloseDate": None},
        "ProductAndServicesPrefs": {"ForSales": True, "QuantityOnHand": True},
        "SalesFormsPrefs": {
            "CustomTxnNumbers": custom_txn_numbers,
            "AllowDiscount": True,
            "AllowShipping": False,
            "DefaultTerms": {"value": "3"},
        },
        # in the order of Intuit's sample (preferences_read.json)
        "CurrencyPrefs": {"HomeCurrency": {"value": currency},
                          "MultiCurrencyEnabled": multicurrency},
        "TaxPrefs": {"UsingSalesTax": True, "PartnerTaxEnabled": us},
        "domain": "QBO",
        "sparse": False,
        "Id": "1",
        "SyncToken": "0",
        "MetaData": _meta(ts),
    }
