"""`qbsync shop install|generate|new`: the sample shops (`qbsync.shop`) installed and
filled with orders, and a starting mapping for a shop of one's own (`qbsync.kit`)."""

from __future__ import annotations

from pathlib import Path

import click

from . import kit, shop
from .cli_common import (
    connect_checked,
    database_option,
    operator_errors,
)


@click.group("shop")
def shop_group() -> None:
    """Sample shops (the Dixis marketplace, a Medusa store) for demos, tests and benchmarks;
    `new`: a starting mapping for a shop of your own."""


@shop_group.command("install")
@click.argument("name", type=click.Choice(shop.SHOPS), default="dixis")
@click.option("--no-track", is_flag=True, help="Install without the capture triggers.")
@database_option
@operator_errors
def shop_install(name: str, no_track: bool, database_url: str | None) -> None:
    """Install a sample shop's schema, mapping functions and tracking rules."""
    with connect_checked(database_url) as conn:
        shop.install_shop(conn, name, track=not no_track)
    click.echo(f"shop {name} installed" + ("" if no_track else " with capture triggers"))


@shop_group.command("generate")
@click.argument("name", type=click.Choice(shop.SHOPS), default="dixis")
@click.option("--orders", type=click.IntRange(1, 10_000_000), default=300, show_default=True)
@click.option("--seed", type=float, default=0.42, show_default=True)
@database_option
@operator_errors
def shop_generate(name: str, orders: int, seed: float, database_url: str | None) -> None:
    """Fill an installed sample shop with realistic customers, products and orders."""
    with connect_checked(database_url) as conn:
        counts = shop.generate(conn, orders, seed=seed, name=name)
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()))


@shop_group.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the files (default: ./NAME).")
@click.option("--entities", default=",".join(kit.DEFAULT_ENTITIES), show_default=True,
              metavar="LIST",
              help="Which entities to map, comma-separated, of: "
                   f"{', '.join(kit.ENTITIES)}.")
@click.option("--tax-model", type=click.Choice(["vat", "us"]), default="vat",
              show_default=True,
              help="vat: a tax code per VAT rate on every line (prices may include VAT); "
                   "us: TAX or NON per line, QuickBooks computes the sales tax.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@operator_errors
def shop_new(name: str, directory: Path | None, entities: str, tax_model: str,
             force: bool) -> None:
    """Write a starting mapping for a shop of your own into a directory: per entity the
    body function, _keys(), _key_exists(), _outcome(), the define_entity and track()
    calls, with the places to fill in marked FILL; install.sql; and test.sql, plain SQL
    checks to run with psql. Then: fill, install, `qbsync check-mapping`."""
    try:
        chosen = kit.parse_entities(entities)
        written = kit.write(name, directory or Path(name), chosen, tax_model, force=force)
    except kit.KitUsage as exc:
        raise click.UsageError(str(exc)) from None
    where = directory or Path(name)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"\nnext: fill the places marked FILL (grep -n FILL {where}/*.sql), then\n"
               f"  psql -v ON_ERROR_STOP=1 -f {where}/install.sql\n"
               f"  psql -v ON_ERROR_STOP=1 -f {where}/test.sql\n"
               f"  qbsync check-mapping --sample 200\n"
               f"({where}/README.md says more)")


COMMANDS: tuple[click.Command, ...] = (shop_group,)
