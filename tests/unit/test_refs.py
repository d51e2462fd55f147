"""The references in a mapping's output: collect() notes them and refuses, naming the JSON
path, every shape substitute() could not replace faithfully."""

from __future__ import annotations

from typing import Any

import pytest

from qbsync.errors import QbsyncError
from qbsync.refs import collect, substitute

REF = ["customer", "42"]


def line(detail: dict[str, Any]) -> dict[str, Any]:
    return {"Amount": 12.9, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail}


MALFORMED: list[tuple[str, Any, str, str]] = [
    ("one part", {"CustomerRef": {"$ref": ["customer"]}}, "CustomerRef",
     '"$ref" must be ["entity", "key"]'),
    ("a number", {"Line": [line({}), line({"ItemRef": {"$ref": 42}})]},
     "Line[1].SalesItemLineDetail.ItemRef", "not 42"),
    ("a string", {"CustomerRef": {"$ref": "customer:42"}}, "CustomerRef", "not \"customer:42\""),
    ("$ref and $id", {"Line": [line({"ItemRef": {"$ref": ["product", "1"], "$id": 7}})]},
     "Line[0].SalesItemLineDetail.ItemRef", 'both "$ref" and "$id"'),
    ("$ref and $setting", {"X": {"$ref": REF, "$setting": "s"}}, "X",
     'both "$ref" and "$setting"'),
    ("three parts", {"LinkedTxn": [{"TxnId": {"$id": ["order", "1", "2"]}}]},
     "LinkedTxn[0].TxnId", '"$id" must be'),
    ("empty entity", {"CustomerRef": {"$ref": ["", "1"]}}, "CustomerRef", '"$ref" must be'),
    ("empty key", {"CustomerRef": {"$ref": ["customer", ""]}}, "CustomerRef", '"$ref" must be'),
    ("key a boolean", {"CustomerRef": {"$ref": ["customer", True]}}, "CustomerRef",
     "not [\"customer\",true]"),
    ("key a float", {"CustomerRef": {"$ref": ["customer", 42.0]}}, "CustomerRef",
     '"$ref" must be'),
    ("key null", {"CustomerRef": {"$ref": ["customer", None]}}, "CustomerRef",
     '"$ref" must be'),
    ("entity a reference", {"CustomerRef": {"$ref": [{"$ref": REF}, "1"]}}, "CustomerRef",
     '"$ref" must be'),
    ("value beside $ref", {"CustomerRef": {"$ref": REF, "value": "9"}}, "CustomerRef",
     '"value" beside "$ref"'),
    ("another key beside $ref", {"CustomerRef": {"$ref": REF, "label": "x"}}, "CustomerRef",
     '"label" beside "$ref"'),
    ("name an object", {"CustomerRef": {"$ref": REF, "name": {"$setting": "x"}}},
     "CustomerRef", '"name" of a reference must be a string'),
    ("key beside $id", {"LinkedTxn": [{"TxnId": {"$id": ["order", "1"], "x": 1}}]},
     "LinkedTxn[0].TxnId", '"x" beside "$id"'),
    ("$setting a list", {"TaxCodeRef": {"$setting": ["tax_code", 24]}}, "TaxCodeRef",
     '"$setting" must name a setting'),
    ("$setting a number", {"TaxCodeRef": {"$setting": 24}}, "TaxCodeRef", "not 24"),
    ("$setting empty", {"TaxCodeRef": {"$setting": ""}}, "TaxCodeRef", "not \"\""),
    ("value beside $setting", {"TaxCodeRef": {"$setting": "tax_code:24", "value": "3"}},
     "TaxCodeRef", '"value" beside "$setting"'),
    ("$Ref mistyped", {"CustomerRef": {"$Ref": REF}}, "CustomerRef.$Ref", 'unknown key "$Ref"'),
    ("$op below the top", {"Line": [{"$op": "void"}]}, "Line[0].$op", 'unknown key "$op"'),
    ("in an array of arrays", {"X": [[{}, {"Y": {"$ref": 1}}]]}, "X[0][1].Y", '"$ref" must be'),
    ("odd key names", {"a b": {"c.d": {"$id": 1}}}, '["a b"]["c.d"]', '"$id" must be'),
    ("NaN in a number field", {"Line": [{"Amount": "NaN"}]}, "Line[0].Amount",
     '"NaN" is not a number'),
    ("Infinity in a quantity", {"Line": [line({"Qty": "Infinity"})]},
     "Line[0].SalesItemLineDetail.Qty", '"Infinity" is not a number'),
    ("-Infinity in a unit price", {"Line": [line({"UnitPrice": "-Infinity"})]},
     "Line[0].SalesItemLineDetail.UnitPrice", '"-Infinity" is not a number'),
]


@pytest.mark.parametrize(("body", "path", "says"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_output_is_refused_naming_its_path(body: Any, path: str, says: str) -> None:
    with pytest.raises(QbsyncError) as info:
        collect(body)
    assert getattr(info.value, "path", None) == path
    assert says in str(info.value)
    assert str(info.value).startswith(f"at {path}: ")


def test_a_reference_cannot_be_the_whole_body() -> None:
    with pytest.raises(QbsyncError, match="the body itself is a reference") as info:
        collect({"$ref": REF})
    assert getattr(info.value, "path", None) == ""


def test_well_formed_output_is_collected() -> None:
    body = {
        "$op": "upsert",
        "CustomerRef": {"$ref": ["customer", 42]},
        "Line": [line({"ItemRef": {"$ref": ["product", "7"], "name": "Φέτα", "type": None},
                       "TaxCodeRef": {"$setting": "tax_code:13"}, "Qty": 1}),
                 [{"TxnId": {"$id": ["order", "5"]}}]],
        "DisplayName": "NaN",  # a name, not a number field
        "Description": "Infinity",
        "": {"!": [], "#": 1},  # keys sorting before "$"
    }
    refs, settings = collect(body)
    assert refs == {("customer", "42"), ("product", "7"), ("order", "5")}
    assert settings == {"tax_code:13"}


def test_substitute_replaces_what_collect_accepted() -> None:
    body = {"CustomerRef": {"$ref": ["customer", 42], "name": "Άννα"},
            "LinkedTxn": [{"TxnId": {"$id": ["order", "5"]}, "TxnType": "Invoice"}],
            "TaxCodeRef": {"$setting": "tax_code:13"}, "$op": "upsert"}
    collect(body)
    ids = {("customer", "42"): "58", ("order", "5"): "130"}
    assert substitute(body, ids, {"tax_code:13": {"value": "3"}}) == {
        "CustomerRef": {"value": "58", "name": "Άννα"},
        "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}],
        "TaxCodeRef": {"value": "3"},
    }


def test_output_nested_far_deeper_than_quickbooks_objects_is_refused() -> None:
    deep: Any = {"Amount": 1}
    for _ in range(70):
        deep = {"Line": [deep]}
    with pytest.raises(QbsyncError, match="nested more than 64 levels deep"):
        collect(deep)
