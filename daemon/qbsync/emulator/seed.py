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


def global_tax(ts: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TaxCodes and TaxRates of the Greek-VAT ("global" model) company."""
    codes, rates = [], []
    for id_, name, desc, rate in GREEK_VAT:
        rates.append(
            {
                "Name": f"VAT {rate:g}% (sales)",
                "Description": desc,
                "Active": True,
                "RateValue": rate,
                "AgencyRef": {"value": "1"},
                "SpecialTaxType": "NONE" if rate else "ZERO_RATE",
                "DisplayType": "ReadOnly",
                "EffectiveTaxRate": [{"RateValue": rate, "EffectiveDate": "2016-06-01"}],
                "domain": "QBO",
                "sparse": False,
                "Id": id_,
                "SyncToken": "0",
                "MetaData": _meta(ts),
            }
        )
        codes.append(
            {
                "Name": name,
                "Description": desc,
                "Active": True,
                "Hidden": False,
                "Taxable": rate > 0,
                "TaxGroup": False,
                "SalesTaxRateList": {
                    "TaxRateDetail": [
                        {
                            "TaxRateRef": {"value": id_, "name": f"VAT {rate:g}% (sales)"},
                            "TaxTypeApplicable": "TaxOnAmount",
                            "TaxOrder": 0,
                        }
                    ]
                },
                "PurchaseTaxRateList": {"TaxRateDetail": []},
                "TaxCodeConfigType": "SYSTEM_GENERATED",
                "domain": "QBO",
                "sparse": False,
                "Id": id_,
                "SyncToken": "0",
                "MetaData": _meta(ts),
            }
        )
    # an inactive code, to exercise 610 on tax references
    codes.append(
        {
            "Name": "ΦΠΑ 23% (old)",
            "Description": "Superseded standard rate 23%",
            "Active": False,
            "Hidden": False,
            "Taxable": True,
            "TaxGroup": False,
            "SalesTaxRateList": {"TaxRateDetail": [{"TaxRateRef": {"value": "5"}}]},
            "PurchaseTaxRateList": {"TaxRateDetail": []},
            "domain": "QBO",
            "sparse": False,
            "Id": "5",
            "SyncToken": "0",
            "MetaData": _meta(ts),
        }
    )
    rates.append(
        {
            "Name": "VAT 23% (old)",
            "Active": False,
            "RateValue": 23.0,
            "domain": "QBO",
            "Id": "5",
            "SyncToken": "0",
            "MetaData": _meta(ts),
        }
    )
    return codes, rates


def us_tax(ts: str, rate: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """US pseudo tax codes TAX / NON plus one combined sales-tax rate."""
    codes = [
        {
            "Name": "TAX",
            "Description": "TAX",
            "Taxable": True,
            "TaxGroup": False,
            "Active": True,
            "domain": "QBO",
            "sparse": False,
            "Id": "TAX",
            "SyncToken": "0",
            "MetaData": _meta(ts),
        },
        {
            "Name": "NON",
            "Description": "NON",
            "Taxable": False,
            "TaxGroup": False,
            "Active": True,
            "domain": "QBO",
            "sparse": False,
            "Id": "NON",
            "SyncToken": "0",
            "MetaData": _meta(ts),
        },
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


def preferences(custom_txn_numbers: bool, currency: str, us: bool, ts: str) -> dict[str, Any]:
    return {
        "AccountingInfoPrefs": {"TrackDepartments": False, "BookCloseDate": None},
        "ProductAndServicesPrefs": {"ForSales": True, "QuantityOnHand": True},
        "SalesFormsPrefs": {
            "CustomTxnNumbers": custom_txn_numbers,
            "AllowDiscount": True,
            "AllowShipping": False,
            "DefaultTerms": {"value": "3"},
        },
        "CurrencyPrefs": {"MultiCurrencyEnabled": False, "HomeCurrency": {"value": currency}},
        "TaxPrefs": {"UsingSalesTax": True, "PartnerTaxEnabled": us},
        "domain": "QBO",
        "sparse": False,
        "Id": "1",
        "SyncToken": "0",
        "MetaData": _meta(ts),
    }
