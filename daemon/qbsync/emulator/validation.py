"""Field-level validation helpers shared by the entity handlers.

Choices where the fact sheet is silent ([U]):

* forbidden characters (``:``, TAB, newline) in names -> code 6000 with a Detail naming the
  field and the characters;
* a malformed e-mail address -> code 6000, Detail "Email Address does not conform to the
  syntax rules of RFC 822...";
* a number that is not a number (e.g. ``"Qty": "abc"``) -> code 2010 (invalid property), the
  same code QBO gives for unparsable JSON;
* empty strings count as "not sent" for required-field checks (python-quickbooks sends ``""``
  for unset strings).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from . import faults
from .store import Company

FORBIDDEN = (":", "\t", "\n", "\r")
CENT = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def as_json_number(value: Decimal) -> float | int:
    f = float(value)
    return int(f) if f.is_integer() and abs(f) < 1e15 and value == value.to_integral() else f


def dec(value: Any, element: str) -> Decimal | None:
    """Parse a JSON number (or numeric string, as python-quickbooks sends Decimals)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise faults.invalid_property(
            f"Property Name:{element} specified is unsupported or invalid", element
        )
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise faults.invalid_property(
            f"Property Name:{element} specified is unsupported or invalid", element
        ) from None
    if not d.is_finite():
        raise faults.invalid_property(
            f"Property Name:{element} specified is unsupported or invalid", element
        )
    return d


def present(value: Any) -> bool:
    return value is not None and value != "" and value != {} and value != []


def get_path(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def check_len(obj: dict[str, Any], path: str, max_len: int) -> None:
    value = get_path(obj, path)
    if isinstance(value, str) and len(value) > max_len:
        raise faults.too_long(path, max_len, len(value))


def check_chars(obj: dict[str, Any], field: str) -> None:
    value = obj.get(field)
    if isinstance(value, str) and any(ch in value for ch in FORBIDDEN):
        raise faults.business(
            f"Invalid character in {field}: {field} cannot contain ':' (colon), tab or newline "
            f"characters. Supplied value:{value!r}",
            field,
        )


def check_email(obj: dict[str, Any], path: str) -> None:
    value = get_path(obj, path)
    if value in (None, ""):
        return
    if not isinstance(value, str):
        raise faults.invalid_property(
            f"Property Name:{path} specified is unsupported or invalid", path
        )
    check_len(obj, path, 100)
    if "@" not in value or "." not in value:
        raise faults.business(
            f"Email Address does not conform to the syntax rules of RFC 822. "
            f"Supplied value:{value}",
            path,
        )


def ref_value(ref: Any, element: str) -> str | None:
    if ref is None or ref == "":
        return None
    if isinstance(ref, dict):
        v = ref.get("value")
        if v is None or v == "":
            return None
        return str(v)
    if isinstance(ref, str | int):
        return str(ref)
    raise faults.invalid_property(
        f"Property Name:{element} specified is unsupported or invalid", element
    )


def resolve_ref(
    company: Company, entity: str, ref: Any, element: str, name_field: str | None = None
) -> dict[str, Any] | None:
    """Check a reference: unknown -> 2500 (``element`` names it), inactive -> 610.

    Returns a normalised ``{"value", "name"?}`` dict, or None when no reference was sent.
    """
    value = ref_value(ref, element)
    if value is None:
        return None
    target = company.get(entity, value)
    if target is None:
        raise faults.invalid_reference(element, value)
    if target.get("Active") is False:
        raise faults.inactive_reference(element)
    out: dict[str, Any] = {"value": value}
    if name_field and target.get(name_field):
        out["name"] = target[name_field]
    return out


def normalise_sync_token(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(int(str(value)))
    except ValueError:
        raise faults.invalid_property(
            "Property Name:SyncToken specified is unsupported or invalid", "SyncToken"
        ) from None


def check_date(obj: dict[str, Any], field: str) -> None:
    value = obj.get(field)
    if value in (None, ""):
        return
    from datetime import date

    try:
        date.fromisoformat(str(value)[:10])
    except ValueError:
        raise faults.invalid_property(
            f"Property Name:{field} specified is unsupported or invalid. Supplied value:{value}",
            field,
        ) from None
