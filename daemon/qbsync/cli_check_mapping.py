"""`qbsync check-mapping`: a mapping run over the shop's keys, every body checked against
what QuickBooks enforces and qbsync knows, without contacting QuickBooks (the checks are
`qbsync.check_mapping`'s)."""

from __future__ import annotations

import sys
from typing import Any

import click

from .check_mapping import UnknownEntity, check_mapping
from .check_rules import ERROR, INFO, WARNING
from .cli_common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    connect_checked,
    database_option,
    json_option,
    operator_errors,
    print_json,
    table,
)


@click.command("check-mapping")
@click.option("--entity", "entities", multiple=True, metavar="ENTITY",
              help="Check this entity (repeatable; default: every registered entity). The "
                   "customers and items its bodies reference are mapped and checked too.")
@click.option("--sample", type=click.IntRange(1), metavar="N",
              help="N keys per entity, picked at random from its _keys() (default: all).")
@click.option("--keys", "key_lists", multiple=True, metavar="KEY[,KEY...]",
              help="Check these keys of the one --entity (comma-separated, repeatable).")
@click.option("--seed", type=click.FloatRange(-1, 1), default=0.0, show_default=True,
              help="Seed of the --sample (the same seed picks the same keys).")
@click.option("--tax-model", type=click.Choice(["vat", "us"]),
              help="The company's tax model when no company is connected: vat (a tax code "
                   "on every sales line) or us (TAX or NON). A connected company's wins.")
@click.option("--no-capture", is_flag=True,
              help="Skip the check of the capture rules against the columns the mapping "
                   "reads.")
@click.option("--ledger/--no-ledger", default=None,
              help="Check the bodies against the shop's own <invoice entity>_ledger: each "
                   "total, and each DocNumber against every document of the period. It maps "
                   "every document of the period: default on when all keys are checked, off "
                   "with --sample or --keys.")
@json_option
@database_option
@operator_errors
def check_mapping_command(entities: tuple[str, ...], sample: int | None,
                          key_lists: tuple[str, ...], seed: float, tax_model: str | None,
                          no_capture: bool, ledger: bool | None, as_json: bool,
                          database_url: str | None) -> None:
    """Run the mapping functions over the shop's keys (a --sample, all of them, or the
    --keys given) and check every body against what QuickBooks enforces and qbsync knows,
    without contacting QuickBooks: required fields, lengths and characters, e-mails, line
    amounts (6070) and totals, tax codes, unique DocNumbers, money in cents, the daemon's
    own output checks, references, settings, the contract's functions, and capture rules
    that cover the columns the mapping reads.

    The mapping runs with the rights of the role connecting, in one read-only snapshot:
    run it as the daemon's login role to map with exactly the daemon's rights (a grant it
    lacks shows as a map_error). Exit 1 when anything is an error (warnings and notes do not
    fail).
    """
    keys = [k for chunk in key_lists for k in chunk.split(",") if k] if key_lists else None
    if keys is not None and len(entities) != 1:
        raise click.UsageError("--keys goes with exactly one --entity")
    if keys is not None and sample is not None:
        raise click.UsageError("--keys and --sample exclude each other")
    with connect_checked(database_url, autocommit=True) as conn:
        try:
            report = check_mapping(conn, entities=list(entities) or None, sample=sample,
                                   keys=keys, seed=seed, tax_model=tax_model,
                                   capture=not no_capture, ledger=ledger)
        except UnknownEntity as exc:
            click.secho(f"qbsync: {exc}", fg="red", err=True)
            sys.exit(EXIT_USAGE)
    if as_json:
        print_json(report.as_json())
    else:
        _print(report.as_json())
    if not report.ok:
        sys.exit(EXIT_FAILURE)


_MARK = {ERROR: "ERROR", WARNING: "warning", INFO: "note"}


def _print(report: dict[str, Any]) -> None:
    company = report["company"]
    if company["realm_id"]:
        click.echo(f"QuickBooks company {company['realm_id']}"
                   + (f" ({company['company_name']})" if company["company_name"] else "")
                   + (": settings checked against its values (qbsync.realm_settings)"
                      if company["settings_looked_up"] else
                      ": its settings have not been looked up yet (the daemon does at its "
                      "start; then qbsync settings --refresh): setting names checked, not "
                      "values"))
    else:
        click.echo("no QuickBooks company connected: setting names checked, not values")
    click.echo(f"tax model: {report['tax_model'] or 'unknown'}, from {report['tax_model_source']}")
    if company["home_currency"]:
        multi = {True: "on", False: "off", None: "unknown"}[company["multicurrency"]]
        click.echo(f"currency: {company['home_currency']}, multicurrency {multi} (CurrencyRef "
                   "checked against it)")
    click.echo()
    click.echo(table(("entity", "QuickBooks", "keys", "checked", "as dependency", "errors",
                      "warnings"), [
        (e["entity"], e["qbo_type"], e["keys_total"], e["keys_checked"],
         e["dependencies_checked"],
         _count(report, e["entity"], ERROR), _count(report, e["entity"], WARNING))
        for e in report["entities"]]))
    lines = []
    for e in report["entities"]:
        for f in e["findings"]:
            lines.append((_MARK[f["level"]], e["entity"], f["rule"], f["path"], f["message"]))
    if lines:
        click.echo()
        click.echo(table(("", "entity", "rule", "where", "finding"), lines, max_width=200))
    keyed = [(k, f) for k in report["keys"] for f in k["findings"]]
    if keyed:
        click.echo()
        click.echo(table(("", "entity", "key", "rule", "at", "finding"), [
            (_MARK[f["level"]], k["entity"], k["key"]
             + (f" (for {k['dependency_of']})" if k["dependency_of"] else ""),
             f["rule"], f["path"], f["message"]) for k, f in keyed], max_width=200))
    s = report["summary"]
    click.echo()
    verdict = "ok" if report["ok"] else "FAILED"
    click.echo(f"check-mapping {verdict}: {s['errors']} error(s), {s['warnings']} warning(s), "
               f"{s['info']} note(s); {s['keys']} key(s) mapped, {s['keys_with_errors']} with "
               f"errors; {s['seconds']:.2f} s")


def _count(report: dict[str, Any], entity: str, level: str) -> int:
    n = sum(1 for e in report["entities"] if e["entity"] == entity
            for f in e["findings"] if f["level"] == level)
    return n + sum(1 for k in report["keys"] if k["entity"] == entity
                   for f in k["findings"] if f["level"] == level)


COMMANDS: tuple[click.Command, ...] = (check_mapping_command,)
