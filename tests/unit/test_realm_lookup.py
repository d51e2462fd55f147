"""The company look-up (qbsync.realm) against tax codes and rates as real companies return
them (tests/fixtures/qbo/taxcode_*.json, taxrate_*.json, each with its source): a code's
rate is the sum of its sales rates whatever TaxGroup says; inactive and hidden codes are
left out; a rate two codes give is a tie; a refused look-up leaves only its settings out.
Preferences as Intuit's sample returns them (preferences_read.json): custom transaction
numbers, the home currency, multicurrency."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qbsync.qbo.errors import Forbidden, TransientError, ValidationFault
from qbsync.realm import Realm, look_up_references, tax_code_rates
from tests.qbo_fixtures import HERE, load, rows, source

FIXTURES = ("taxcode_query_us_user_defined.json", "taxrate_query_us_user_defined.json",
            "taxcode_query_us_2013.json", "taxrate_query_us_2013.json",
            "taxcode_read_us_2014.json", "taxcode_intuit_sample_california.json",
            "taxrate_intuit_sample_tucson.json")
# quoted in an issue thread rather than committed in a repository
ISSUE_FIXTURES = ("taxcode_read_canada_zero_rated.json",)


class Company:
    """A CompanyReader answering from stored responses; `refuse` maps an entity to the
    error its query raises."""

    def __init__(self, codes: list[dict[str, Any]], rates: list[dict[str, Any]],
                 refuse: dict[str, Exception] | None = None,
                 prefs: dict[str, Any] | None = None) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {
            "TaxCode": codes, "TaxRate": rates,
            "Account": [
                {"Id": "79", "Name": "Sales of Product Income", "AccountType": "Income",
                 "AccountSubType": "SalesOfProductIncome", "Active": True},
                {"Id": "35", "Name": "Checking", "AccountType": "Bank",
                 "AccountSubType": "Checking", "Active": True}],
            "PaymentMethod": [{"Id": "1", "Name": "Cash", "Active": True}],
        }
        self.refuse = refuse or {}
        self.asked: list[str] = []
        self.prefs = prefs if prefs is not None else {
            "SalesFormsPrefs": {"CustomTxnNumbers": True}}

    async def query_all(self, select: str) -> list[dict[str, Any]]:
        entity = select.split(" FROM ")[1].split()[0]
        self.asked.append(entity)
        if entity in self.refuse:
            raise self.refuse[entity]
        return copy.deepcopy(self.tables[entity])

    async def preferences(self) -> dict[str, Any]:
        if "Preferences" in self.refuse:
            raise self.refuse["Preferences"]
        return copy.deepcopy(self.prefs)


def user_defined() -> Company:
    return Company(rows("taxcode_query_us_user_defined.json", "TaxCode"),
                   rows("taxrate_query_us_user_defined.json", "TaxRate"))


def test_every_fixture_names_its_source() -> None:
    for name in FIXTURES:
        where = source(name)
        for field in ("repository", "path", "commit", "changes", "what"):
            assert where[field], (name, field)
        assert where["url"].startswith("https://github.com/"), name
    for name in ISSUE_FIXTURES:
        where = source(name)
        for field in ("repository", "issue", "origin", "changes", "what"):
            assert where[field], (name, field)
        assert where["url"] == f"https://github.com/{where['repository']}/issues/{where['issue']}"


def test_the_sources_list_every_tax_fixture() -> None:
    listed = (HERE / "SOURCES.md").read_text(encoding="utf-8")
    section = listed[listed.index("## Tax codes and tax rates"):]
    section = section[:section.index("\n## ", 1)]
    for name in (*FIXTURES, *ISSUE_FIXTURES):
        assert f"| `{name}` |" in section, name
        assert source(name)["url"] in section, name


def test_the_fixtures_have_single_rate_codes_marked_tax_group() -> None:
    # the fact the look-up must not trip on, as the captures show it
    single = [c for name in ("taxcode_query_us_user_defined.json", "taxcode_query_us_2013.json",
                             "taxcode_read_us_2014.json", "taxcode_intuit_sample_california.json")
              for c in rows(name, "TaxCode")
              if len((c.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []) == 1]
    assert len(single) >= 9
    assert all(c["TaxGroup"] is True for c in single)


def test_a_non_us_single_rate_code_marked_tax_group_resolves() -> None:
    """A Canadian company's "Zero-rated" code (TaxGroup true, one rate: TaxRate 4 "GST/HST
    ZR") resolves by its rate like any code. The capture has no TaxRate: without it the code
    is left out with a note; with TaxRate 4 at its 0 % it is tax_code:0."""
    codes = rows("taxcode_read_canada_zero_rated.json", "TaxCode")
    assert codes[0]["TaxGroup"] is True
    by_rate, notes = tax_code_rates(codes, [])
    assert by_rate == {}
    assert notes == ['tax code "Zero-rated" (Id 3) uses TaxRate 4, which QuickBooks did not '
                     "return; set an override to use it"]
    by_rate, notes = tax_code_rates(codes, [{"Id": "4", "Name": "GST/HST ZR", "RateValue": 0,
                                             "Active": True}])
    assert notes == []
    assert [(c.id, c.name, c.rates) for c in by_rate["tax_code:0"]] == [("3", "Zero-rated", 1)]


async def test_a_user_defined_single_rate_code_marked_tax_group_resolves() -> None:
    found = (await look_up_references(user_defined())).found
    # "0%" (Id 10, TaxCodeConfigType USER_DEFINED, TaxGroup true) uses TaxRate 18, 0 %
    assert found["tax_code:0"] == {"value": "10", "name": "0%"}
    # the US pseudo-codes are not rates, but a US mapping may name them
    assert found["tax_code:TAX"] == {"value": "TAX", "name": "TAX"}
    assert found["tax_code:NON"] == {"value": "NON", "name": "NON"}
    assert sorted(n for n in found if n.startswith("tax_code:")) == [
        "tax_code:0", "tax_code:NON", "tax_code:TAX"]  # CustomSalesTax has no rate


async def test_us_codes_of_2013_resolve_by_the_rates_the_company_returned() -> None:
    company = Company(rows("taxcode_query_us_2013.json", "TaxCode"),
                      rows("taxrate_query_us_2013.json", "TaxRate"))
    lookup = await look_up_references(company)
    # Mountain View (Id 2, TaxGroup true) is the one code whose rate (Id 1, 10 %) is known
    assert lookup.found["tax_code:10"] == {"value": "2", "name": "Mountain View"}
    assert sorted(n for n in lookup.found if n.startswith("tax_code:")) == [
        "tax_code:10", "tax_code:NON", "tax_code:TAX"]
    # "County services" has rate 1 among three: it is left out, not taken for 10 %, and said so
    notes = " | ".join(lookup.skipped)
    assert 'tax code "County services" (Id 5) uses TaxRate 15, which QuickBooks did not ' \
           "return" in notes
    assert '"Alameda County Tax" (Id 7)' in notes
    assert not any(f"(Id {pseudo})" in notes for pseudo in ("TAX", "NON", "CustomSalesTax"))
    assert not lookup.ties


def test_a_group_code_charges_the_sum_of_its_rates() -> None:
    codes = rows("taxcode_query_us_2013.json", "TaxCode")
    rates = rows("taxrate_query_us_2013.json", "TaxRate")
    # the capture's TaxRates stop at Id 1: the rates its group codes use are given here
    rates += [{"Id": rid, "Name": name, "RateValue": value, "Active": True}
              for rid, name, value in (("15", "Palo Alto City Services", "0.25"),
                                       ("10", "Redwood City Services", "0.5"),
                                       ("16", "Newark City", "1"), ("7", "Fremont City", "0.75"))]
    by_rate, notes = tax_code_rates(codes, rates)
    assert [c.id for c in by_rate["tax_code:10.75"]] == ["5"]  # 0.25 + 10 + 0.5
    assert [c.id for c in by_rate["tax_code:1.75"]] == ["7"]  # 1 + 0.75
    assert [c.id for c in by_rate["tax_code:0.75"]] == ["4"]
    assert [c.id for c in by_rate["tax_code:1"]] == ["6"]
    assert len(notes) == 3  # Atherton, Menlo Park, San Jose: their rates are not returned


async def test_intuits_sample_code_is_left_out_with_a_note_when_its_rate_is_missing() -> None:
    company = Company(rows("taxcode_intuit_sample_california.json", "TaxCode"),
                      rows("taxrate_intuit_sample_tucson.json", "TaxRate"))
    lookup = await look_up_references(company)
    assert not [n for n in lookup.found if n.startswith("tax_code:")]
    assert lookup.skipped == ['tax code "California" (Id 2) uses TaxRate 3, which QuickBooks '
                              "did not return; set an override to use it"]
    # with its rate, the sample (TaxGroup true, one rate) resolves like any code
    tucson = rows("taxrate_intuit_sample_tucson.json", "TaxRate")[0]
    company.tables["TaxRate"] = [{**tucson, "Id": "3", "RateValue": 7.25}]
    assert (await look_up_references(company)).found["tax_code:7.25"]["value"] == "2"


@pytest.mark.parametrize("flag", [{"Active": False}, {"Hidden": True}])
async def test_inactive_and_hidden_codes_are_left_out(flag: dict[str, bool]) -> None:
    company = user_defined()
    for code in company.tables["TaxCode"]:
        if code["Id"] == "10":
            code.update(flag)
    lookup = await look_up_references(company)
    assert "tax_code:0" not in lookup.found
    assert not lookup.skipped  # nothing to say about a code nobody may use


async def test_two_active_codes_of_one_rate_tie_and_the_choice_is_stable() -> None:
    company = user_defined()
    zero = next(c for c in company.tables["TaxCode"] if c["Id"] == "10")
    # a second 0 % code, as the captured company could add with its TaxRate 21 "0% Sales"
    sales = copy.deepcopy(zero)
    sales.update(Id="11", Name="0% Sales")
    sales["SalesTaxRateList"]["TaxRateDetail"][0]["TaxRateRef"] = {"name": "0% Sales",
                                                                   "value": "21"}
    for order in ([zero, sales], [sales, zero]):
        company.tables["TaxCode"] = [c for c in company.tables["TaxCode"]
                                     if c["Id"] not in ("10", "11")] + order
        lookup = await look_up_references(company)
        assert lookup.found["tax_code:0"] == {"value": "10", "name": "0%"}
        assert [(c.id, c.name) for c in lookup.ties["tax_code:0"]] == [("10", "0%"),
                                                                      ("11", "0% Sales")]
    [warning] = [w for w in lookup.warnings("123") if "tax_code:0" in w]
    assert '"0%" (Id 10) and "0% Sales" (Id 11); using Id 10' in warning
    assert "SELECT qbsync.override_setting ('tax_code:0'" in warning


async def test_a_single_rate_code_is_preferred_to_a_group_of_the_same_rate() -> None:
    codes = rows("taxcode_query_us_2013.json", "TaxCode")
    rates = [*rows("taxrate_query_us_2013.json", "TaxRate"),
             {"Id": "15", "RateValue": 0, "Active": True},
             {"Id": "10", "RateValue": 0, "Active": True}]
    by_rate, _ = tax_code_rates(codes, rates)
    # County services: 0 + 10 + 0 = 10, like Mountain View; the single-rate code comes first
    assert [c.id for c in by_rate["tax_code:10"]] == ["2", "5"]


async def test_a_refused_look_up_leaves_only_its_own_settings_out() -> None:
    refusal = ValidationFault("Error parsing query", status=400, code="4000",
                              detail="QueryParserError: Encountered \" <IDENTIFIER> "
                                     "\"PaymentMethod\"")
    company = Company(rows("taxcode_query_us_user_defined.json", "TaxCode"),
                      rows("taxrate_query_us_user_defined.json", "TaxRate"),
                      refuse={"PaymentMethod": refusal})
    lookup = await look_up_references(company)
    assert list(lookup.refused) == ["payment_method"]
    assert "4000" in lookup.refused["payment_method"]
    assert lookup.done == ["tax_code", "income_account", "deposit_account", "preferences"]
    assert not [n for n in lookup.found if n.startswith("payment_method:")]
    assert lookup.found["tax_code:0"]["value"] == "10"
    assert lookup.found["income_account"]["value"] == "79"
    assert lookup.found["deposit_account:bank"]["value"] == "35"
    assert "refused the look-up of payment_method" in " ".join(lookup.warnings("123"))


@pytest.mark.parametrize("error", [
    TransientError("Service Unavailable", status=503),
    Forbidden("AuthorizationFailed", status=403, code="3100"),
])
async def test_errors_a_retry_cures_or_that_concern_the_whole_company_propagate(
        error: Exception) -> None:
    company = user_defined()
    company.refuse["PaymentMethod"] = error
    with pytest.raises(type(error)):
        await look_up_references(company)


# --- preferences: custom numbers, the home currency, multicurrency ---------------------------

def intuit_preferences() -> dict[str, Any]:
    return load("preferences_read.json")["Preferences"]


async def test_the_home_currency_and_multicurrency_from_intuits_sample() -> None:
    company = user_defined()
    company.prefs = intuit_preferences()   # CurrencyPrefs: HomeCurrency USD, not multicurrency
    lookup = await look_up_references(company)
    assert "preferences" in lookup.done
    assert lookup.found["custom_txn_numbers"] is False
    assert lookup.found["home_currency"] == {"value": "USD"}
    assert lookup.found["multicurrency"] is False
    realm = Realm("123", "https://quickbooks.api.intuit.com", settings=lookup.found)
    assert (realm.home_currency, realm.multicurrency) == ("USD", False)


async def test_a_multicurrency_company_in_another_currency() -> None:
    prefs = intuit_preferences()
    prefs["CurrencyPrefs"] = {"HomeCurrency": {"value": "GBP"}, "MultiCurrencyEnabled": True}
    company = user_defined()
    company.prefs = prefs
    found = (await look_up_references(company)).found
    assert (found["home_currency"], found["multicurrency"]) == ({"value": "GBP"}, True)


async def test_preferences_without_currency_leave_it_unknown() -> None:
    prefs = intuit_preferences()
    del prefs["CurrencyPrefs"]
    company = user_defined()
    company.prefs = prefs
    lookup = await look_up_references(company)
    assert "preferences" in lookup.done   # a completed look-up: stale values are removed
    assert "home_currency" not in lookup.found
    assert "multicurrency" not in lookup.found
    realm = Realm("123", "https://quickbooks.api.intuit.com", settings=lookup.found)
    assert (realm.home_currency, realm.multicurrency) == (None, None)


async def test_a_refused_preferences_look_up_leaves_the_currency_unknown() -> None:
    company = user_defined()
    company.refuse["Preferences"] = ValidationFault("Unsupported Operation", status=400,
                                                    code="500")
    lookup = await look_up_references(company)
    assert "preferences" in lookup.refused
    assert not {"custom_txn_numbers", "home_currency", "multicurrency"} & set(lookup.found)


@pytest.mark.parametrize(("settings", "home", "multi"), [
    ({"home_currency": {"value": "usd"}, "multicurrency": "false"}, "USD", False),
    ({"home_currency": "EUR", "multicurrency": True}, "EUR", True),   # a DBA's overrides
    ({"home_currency": {"value": ""}}, None, None),
])
def test_the_realm_reads_its_currency_settings(settings: dict[str, Any], home: str | None,
                                               multi: bool | None) -> None:
    realm = Realm("123", "https://quickbooks.api.intuit.com", settings=settings)
    assert (realm.home_currency, realm.multicurrency) == (home, multi)
