"""`qbsync shop new NAME`: a starting mapping for a shop qbsync has never seen, written from
the templates in sql/templates/shop/ into a directory the DBA then edits.

Per entity a template holds three sections (`-- @@ mapping`, `-- @@ track`, `-- @@ test`):
the mapping functions go to `<entity>.sql`, the define_entity/track calls to `track.sql`,
the psql checks to `test.sql`. `{{shop}}` becomes the shop's name (its helpers live in
schema `<name>_qbo`); a line ending in `--@vat` or `--@us` is kept only for that tax model.
What the DBA must write is between `-- FILL(<name>)` and `-- END FILL`, against placeholder
tables in schema `fill_me` so that nothing installs before it is filled.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import QbsyncError
from .resources import sql_path

ENTITIES = ("customer", "product", "order", "payment", "refund")
DEFAULT_ENTITIES = ("customer", "product", "order")
# What an entity's mapping references: an invoice names customers and items, a payment
# its invoice and customer, a refund its customer and items.
NEEDS = {"order": ("customer", "product"), "payment": ("order", "customer"),
         "refund": ("customer", "product")}
MODELS = ("vat", "us")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
SECTION = re.compile(r"^-- @@ (mapping|track|test)\n", re.M)
FILL = re.compile(r"^\s*-- FILL\(([a-z_]+)\)", re.M)


class KitUsage(QbsyncError):
    """A name, entity list or directory `shop new` cannot use."""


def parse_entities(text: str) -> list[str]:
    chosen = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in ENTITIES]
    if unknown or not chosen:
        raise KitUsage(f"--entities: {', '.join(unknown) or 'none given'}; choose from "
                       f"{', '.join(ENTITIES)}")
    for entity in chosen:
        missing = [n for n in NEEDS.get(entity, ()) if n not in chosen]
        if missing:
            raise KitUsage(f"--entities: {entity} references {' and '.join(missing)}: "
                           f"add {', '.join(missing)}")
    return [e for e in ENTITIES if e in chosen]


def render(text: str, name: str, model: str) -> str:
    """A template for shop `name` and tax model `model`."""
    lines = []
    for line in text.replace("{{shop}}", name).splitlines(keepends=True):
        marker = re.search(r"\s*--@(vat|us)\s*$", line)
        if marker:
            if marker[1] != model:
                continue
            line = line[:marker.start()] + "\n"
        lines.append(line)
    return "".join(lines)


def sections(text: str) -> dict[str, str]:
    parts = SECTION.split(text)
    return {parts[i]: parts[i + 1].strip("\n") + "\n" for i in range(1, len(parts), 2)}


def fill_names(text: str) -> list[str]:
    """The places to fill in a rendered file, in order."""
    return FILL.findall(text)


def files(name: str, entities: list[str], model: str) -> dict[str, str]:
    """File name -> content of a new shop's mapping directory."""
    if not NAME.match(name) or name.startswith(("qbsync", "pg_")):
        raise KitUsage(f"shop name {name!r}: use lower-case letters, digits and _ (it names "
                       f"the schema {name}_qbo), not starting with qbsync or pg_")
    if model not in MODELS:
        raise KitUsage(f"tax model {model!r}: vat or us")
    root = sql_path("templates", "shop")
    out: dict[str, str] = {}
    out["helpers.sql"] = render((root / "helpers.sql").read_text(encoding="utf-8"), name, model)
    parts = {e: sections(render((root / f"{e}.sql").read_text(encoding="utf-8"), name, model))
             for e in entities}
    for entity in entities:
        out[f"{entity}.sql"] = parts[entity]["mapping"]
    out["track.sql"] = (
        f"-- {name}: the entities qbsync pushes and the capture rules that enqueue them,\n"
        "-- written by `qbsync shop new`. Safe to run again: define_entity upserts, track\n"
        "-- replaces its rule. Needs `qbsync migrate` first.\n"
        "--   qbsync.define_entity(entity, QuickBooks type, tries, backoff seconds after each\n"
        "--                        failed try, seconds a try may take)\n"
        "--   qbsync.track(table, entity, key expression over the row, columns whose change\n"
        "--                matters, \"when\": a row predicate, NEW or OLD row)\n\n"
        + "\n".join(parts[e]["track"] for e in entities)
        + "\n-- qbsync's capture functions belong to its owner role (as after qbsync migrate)\n"
          "SELECT count(*) FROM qbsync.reassert_ownership();\n")
    out["test.sql"] = (
        f"-- {name}: plain checks of the mapping, run with\n"
        "--   psql -v ON_ERROR_STOP=1 -f test.sql\n"
        "-- Each entity: its functions exist, it is registered, and up to 5 of its keys map to\n"
        "-- bodies with what QuickBooks requires (a NOTICE shows each). Nothing is written.\n"
        "-- `qbsync check-mapping` checks much more, over many keys.\n"
        "\\set ON_ERROR_STOP on\nBEGIN READ ONLY;\n\n"
        + "\n".join(parts[e]["test"] for e in entities) + "\nROLLBACK;\n")
    out["install.sql"] = (
        f"-- {name}: installs the mapping in one transaction:\n"
        "--   psql -v ON_ERROR_STOP=1 -f install.sql\n"
        "-- (after `qbsync migrate`, as a role that may create functions in qbsync_map).\n"
        "\\set ON_ERROR_STOP on\nBEGIN;\n\\ir helpers.sql\n"
        + "".join(f"\\ir {e}.sql\n" for e in entities) + "\\ir track.sql\nCOMMIT;\n")
    to_fill = [(f, n) for f, text in out.items() for n in fill_names(text)]
    out["README.md"] = _readme(name, entities, model, to_fill)
    return out


def write(name: str, directory: Path, entities: list[str], model: str, *,
          force: bool = False) -> list[Path]:
    content = files(name, entities, model)
    taken = [directory / f for f in content if (directory / f).exists()]
    if taken and not force:
        raise KitUsage(f"{', '.join(map(str, taken))} exist: choose another --dir, or --force "
                       "to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file, text in content.items():
        path = directory / file
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _readme(name: str, entities: list[str], model: str,
            to_fill: list[tuple[str, str]]) -> str:
    places = "\n".join(f"- `{file}`: `{place}`" for file, place in to_fill)
    tax = ("VAT: every invoice line carries the tax code of its rate (`{\"$setting\": "
           "\"tax_code:24\"}`), found in each QuickBooks company by its effective rate; "
           "prices may include VAT (TaxInclusive)" if model == "vat" else
           "US sales tax: every line is TAX or NON (`{\"$setting\": \"tax_code:TAX\"}`); "
           "QuickBooks computes the tax")
    return f"""# {name}: the qbsync mapping

Written by `qbsync shop new {name}` for the entities {', '.join(entities)} ({tax}).
qbsync's README, "Mapping your shop", walks through it.

1. Fill the marked places (`grep -n FILL *.sql`): each is an example against placeholder
   tables in schema `fill_me`; write the same thing against your tables. Keep the result
   columns of the `{name}_qbo.*_source` / `*_lines` functions: the body functions in
   `qbsync_map` turn them into what QuickBooks takes (names cleaned and clipped, amounts
   rounded, tax codes, references). The places:
{places}
2. Install: `psql -v ON_ERROR_STOP=1 -f install.sql` (after `qbsync migrate`).
3. Test: `psql -v ON_ERROR_STOP=1 -f test.sql`, then `qbsync check-mapping --sample 200`
   (and in CI). It exits 1 on any error and says which key, where in the body, and why.
4. Connect a company (`qbsync connect`), run `qbsync check-mapping` again (now the
   company's settings are checked too), and `qbsync run`.

Files: `helpers.sql` (schema `{name}_qbo`: name cleaning, e-mails, tax codes, invoice
lines, `refuse()`), one file per entity (the body function `qbsync_map.<entity>(key)`,
`_keys()`, `_key_exists()`, `_outcome()`), `track.sql` (`define_entity`, `track()`),
`install.sql`, `test.sql`.
"""
