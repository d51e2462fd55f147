"""`qbsync migrate`: create or upgrade the qbsync schema (stop, migrate, start), or with
--status list the migrations applied, pending and changed."""

from __future__ import annotations

import sys
from typing import Any

import click
import psycopg

from . import __version__, schema
from .cli_common import (
    EXIT_OK,
    EXIT_SCHEMA,
    conninfo,
    database_option,
    json_option,
    operator_errors,
    print_json,
    table,
    warn,
)
from .migrate import LiveDaemon, Migration, migrate, refuse_live_daemons


@click.command("migrate")
@click.option("--status", "show_status", is_flag=True,
              help="List applied, pending and changed migrations and apply nothing (exit 0 "
                   "when the schema is this qbsync's, 5 otherwise).")
@click.option("--force", is_flag=True,
              help="Migrate even while daemons are registered as running (they stop by "
                   "themselves once they see the new schema).")
@json_option
@database_option
@operator_errors
def migrate_command(show_status: bool, force: bool, as_json: bool,
                    database_url: str | None) -> None:
    """Create or upgrade the qbsync schema (safe to run twice, or concurrently).

    \b
    Upgrades are stop, migrate, start:
      systemctl stop qbsync      (every daemon, on every host)
      qbsync migrate             (refuses while a daemon heartbeats; --force)
      systemctl start qbsync     (a daemon refuses a schema it was not built for)
    """
    if show_status:
        sys.exit(_migration_status(conninfo(database_url), as_json))

    def announce(m: Migration) -> None:
        if not as_json:
            click.echo(f"applying {m.name}")

    def forced(alive: list[LiveDaemon]) -> None:
        warn(f"migrating while {len(alive)} daemon(s) run (--force): "
             f"{'; '.join(map(str, alive))}; each stops claiming once it sees the new schema")

    done = migrate(conninfo(database_url), on_apply=announce, check=_refuse_a_foreign_schema,
                   before_apply=refuse_live_daemons(force, forced))
    if as_json:
        print_json({"applied": [m.name for m in done]})
    else:
        click.echo(f"{len(done)} migration(s) applied" if done else "database is up to date")


def _refuse_a_foreign_schema(conn: psycopg.Connection, migrations: list[Migration]) -> None:
    """A schema that a newer qbsync, or another build of it, migrated is not this qbsync's
    to upgrade: refuse as every other command does (exit 5, naming both versions). Missing
    and older schemas are what migrate is for."""
    problem = schema.read_status(conn, migrations).problem()
    if problem is not None and problem.kind in ("newer", "changed"):
        raise problem


def _migration_status(url: str, as_json: bool) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        status = schema.read_status(conn)
    problem = status.problem()
    changed = {m.version: a for m, a in status.changed}
    rows: list[dict[str, Any]] = []
    for m in status.shipped:
        a = status.applied.get(m.version)
        state = "pending" if a is None else "changed" if m.version in changed else "applied"
        rows.append({"version": m.version, "name": m.name, "state": state,
                     "checksum": m.checksum, "database_checksum": a.checksum if a else None,
                     "applied_at": a.applied_at if a else None,
                     "applied_by": a.applied_by if a else None,
                     "qbsync_version": a.qbsync_version if a else None})
    for a in status.unknown:
        rows.append({"version": a.version, "name": a.name, "state": "unknown",
                     "checksum": None, "database_checksum": a.checksum,
                     "applied_at": a.applied_at, "applied_by": a.applied_by,
                     "qbsync_version": a.qbsync_version})
    if as_json:
        print_json({"qbsync_version": __version__, "code_version": status.code_version,
                    "database_version": status.database_version, "migrations": rows,
                    "problem": str(problem) if problem else None})
    else:
        click.echo(table(("state", "migration", "applied", "by", "qbsync", "note"), [
            (r["state"], r["name"], r["applied_at"], r["applied_by"], r["qbsync_version"],
             f"database checksum {r['database_checksum'][:12]}, file {r['checksum'][:12]}"
             if r["state"] == "changed" else
             "not shipped with this qbsync" if r["state"] == "unknown" else "")
            for r in rows]))
        click.echo(f"qbsync: {problem}" if problem else
                   f"up to date: schema version {status.code_version}")
    return EXIT_OK if problem is None else EXIT_SCHEMA


COMMANDS: tuple[click.Command, ...] = (migrate_command,)
