"""`qbsync settings`: the active company's settings ({"$setting": name} in mappings), what
rows wait for, and `--refresh` to have the daemon look them up in QuickBooks again.

The daemon looks them up at every start; `--refresh` asks a running daemon to do it now
(admin request refresh_settings) and waits for its answer. Rows waiting for a setting that
the look-up finds go on at once. A value of one's own: qbsync.override_setting(name, value).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .cli_common import (
    EXIT_FAILURE,
    connect_rows,
    database_option,
    exit_failed,
    json_option,
    operator_errors,
    print_json,
    table,
    wait_for_request,
)
from .queries import load_cli

Q = load_cli()


def _value(value: Any) -> str:
    if isinstance(value, dict) and "value" in value:
        name = value.get("name")
        return f"{value['value']}" + (f" ({name})" if name else "")
    return json.dumps(value, ensure_ascii=False)


def _print_missing(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("no row waits for a setting")
        return
    click.echo(f"{sum(r['rows_waiting'] for r in rows)} row(s) wait for settings this "
               "company has no value for:")
    for r in rows:
        keys = ", ".join(r["some_keys"] or [])
        more = ", …" if r["rows_waiting"] > len(r["some_keys"] or []) else ""
        click.echo(f"  {r['setting']}: {r['rows_waiting']} row(s) ({keys}{more})")
        click.echo(f"    {r['set_it']}")


def _print_summary(result: dict[str, Any]) -> None:
    click.echo(f"settings of QuickBooks company {result.get('realm_id')} looked up: "
               f"{result.get('saved', 0)} saved or changed, {result.get('removed', 0)} removed")
    for group, answer in (result.get("refused") or {}).items():
        click.secho(f"  QuickBooks refused the {group} look-up: {answer}", fg="yellow")
    for name, codes in (result.get("ties") or {}).items():
        listed = " and ".join(f'"{c["name"]}" (Id {c["id"]})' for c in codes)
        click.secho(f"  {name}: several active tax codes give this rate: {listed}; using "
                    f"Id {codes[0]['id']}", fg="yellow")
    for note in result.get("skipped") or []:
        click.echo(f"  {note}")


@click.command("settings")
@click.option("--refresh", is_flag=True,
              help="Have the running daemon look the settings up in QuickBooks again now "
                   "(it also does at every start); rows waiting for one found go on.")
@click.option("--wait", type=click.FloatRange(0), default=60.0, show_default=True,
              metavar="SECONDS",
              help="With --refresh: how long to wait for the daemon (0: just ask; exit 4 "
                   "on timeout).")
@json_option
@database_option
@operator_errors
def settings_command(refresh: bool, wait: float, as_json: bool,
                     database_url: str | None) -> None:
    """The company's settings (tax codes, income account, payment methods, deposit
    accounts) and the rows waiting for one it lacks; --refresh looks them up again.

    Exit 1 while any row waits for a setting."""
    out: dict[str, Any] = {}
    with connect_rows(database_url) as conn:
        if refresh:
            row = conn.execute(Q.request_settings_refresh).fetchone()
            assert row is not None
            request_id = int(row["id"])
            if wait == 0:
                if as_json:
                    print_json({"request_id": request_id})
                else:
                    click.echo(f"settings refresh requested (admin request {request_id})")
                return
            done = wait_for_request(conn, request_id, wait, "settings refresh", database_url)
            if done["state"] == "failed":
                exit_failed(f"settings refresh failed: {done['error']}")
            out["refresh"] = done["result"] or {}
            if not as_json:
                _print_summary(out["refresh"])
        else:
            looked = conn.execute(Q.settings_lookup).fetchone()
            if looked is None:
                exit_failed("no active QuickBooks company: run `qbsync connect` first")
                return
            settings = conn.execute(Q.realm_settings_list).fetchall()
            out.update(realm_id=looked["realm_id"], looked_up_at=looked["looked_up_at"],
                       refused=looked["refused"] or {}, settings=settings)
            if not as_json:
                click.echo(table(("setting", "value", "source", "updated"),
                                 [(s["name"], _value(s["value"]), s["source"], s["updated_at"])
                                  for s in settings]))
                when = looked["looked_up_at"]
                click.echo(f"last looked up in QuickBooks: {when:%Y-%m-%d %H:%M:%S}" if when
                           else "never looked up in QuickBooks yet (the daemon does at start)")
                for group, answer in out["refused"].items():
                    click.secho(f"QuickBooks refused the {group} look-up: {answer}",
                                fg="yellow")
        missing = conn.execute(Q.missing_settings).fetchall()
    if as_json:
        print_json({**out, "missing": missing})
    else:
        _print_missing(missing)
    if missing:
        sys.exit(EXIT_FAILURE)


COMMANDS: tuple[click.Command, ...] = (settings_command,)
