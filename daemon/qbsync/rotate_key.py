"""`qbsync rotate-key`: every stored connection's tokens re-encrypted under the key ring's
primary key (the ring itself and a new entry for it, `qbsync keygen`, are `qbsync.vault`'s).

Order of operations (a daemon keeps syncing throughout):

1. ``qbsync keygen`` prints a new entry ``new:base64``.
2. Deploy the ring with the NEW key first and the old one after it
   (``QBSYNC_TOKEN_KEYS=new:…,old:…`` or the ``qbsync-token-keys`` credential) to every
   daemon and restart them, and to the CLI's environment. The daemons now decrypt both and
   encrypt every refreshed pair under ``new``.
3. ``qbsync rotate-key --new-key-id new`` re-encrypts every connection row still under
   another key. It refuses, before changing anything, when the ring's primary is not
   ``new``, when a row's key is not in the ring, when any row does not decrypt, or when a
   live daemon (``qbsync.workers``: heartbeat within 2 minutes) does not hold ``new``
   (``key_ids``, which each daemon records at start; NULL for one too old to say).
   ``--force`` re-encrypts anyway: such a daemon then pauses its company with a
   ``tokens_unreadable`` notice, burning no try, until it is restarted with the new ring.
4. When it reports every row under ``new``, drop the old key from the ring and restart.

Each row is re-encrypted in its own transaction that holds the realm's refresh lock (the
transaction-level twin of the daemon's: ``qbsync.refresh_lock(realm, 'transaction')``) and
the row lock (``FOR UPDATE``), and writes only if ``token_generation`` is unchanged. The
generation is NOT bumped: it means "the tokens changed", and they did not.
A daemon that saw the generation move after its access token was rejected would adopt the
stored (same, rejected) token instead of refreshing. A daemon still running with only the
old key cannot read the row at its next refresh: that is why step 2 comes first, and why
rotate-key checks the daemons' key ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from .config import Settings
from .errors import QbsyncError
from .operator_db import open_db, operator
from .queries import load_cli
from .vault import Vault, VaultError, vault_for

__all__ = ["RotateError", "Rotation", "rotate"]

Q = load_cli()

Progress = Callable[[int, int, str, str], None]  # done, total, realm, old key id


class RotateError(QbsyncError):
    """Rotation refused or stopped; the message says which realms and why."""


@dataclass
class Rotation:
    primary: str
    total: int = 0  # connection rows
    reencrypted: int = 0
    already: int = 0  # rows already under the primary key
    by_key: dict[str, int] = field(default_factory=dict)  # after the run
    live_daemons: list[str] = field(default_factory=list)
    lacking: list[str] = field(default_factory=list)  # live daemons without the new key
    not_primary: list[str] = field(default_factory=list)  # hold it, but encrypt with another

    @property
    def complete(self) -> bool:
        return set(self.by_key) <= {self.primary}


def check_primary(vault: Vault, new_key_id: str | None) -> None:
    if new_key_id is None or vault.primary == new_key_id:
        return
    if new_key_id in vault.key_ids:
        raise RotateError(
            f"key {new_key_id!r} is in token_keys but not first (the primary is "
            f"{vault.primary!r}): list the new key first, e.g. "
            f"QBSYNC_TOKEN_KEYS={new_key_id}:…,{vault.primary}:…")
    raise RotateError(f"key {new_key_id!r} is not in token_keys (it has "
                      f"{', '.join(vault.key_ids)}); deploy the ring with the new key first")


def preflight(vault: Vault, rows: list[asyncpg.Record]) -> None:
    """Refuse unless every row's key is in the ring and every ciphertext decrypts."""
    missing = [f"{r['realm_id']} (key {r['key_id']!r})" for r in rows
               if r["key_id"] not in vault.key_ids]
    if missing:
        raise RotateError(
            f"token_keys lacks the key of {', '.join(missing)}: keep the old key in the ring "
            "(new key first, old after it) until rotate-key has finished; nothing changed")
    broken: list[str] = []
    for r in rows:
        try:
            vault.decrypt(r["realm_id"], r["tokens"], r["key_id"])
        except VaultError as exc:
            broken.append(str(exc))
    if broken:
        raise RotateError("cannot decrypt: " + "; ".join(broken) + "; nothing changed (fix "
                          "the key material, or reconnect those companies with `qbsync "
                          "connect`)")


async def _rekey_row(conn: asyncpg.Connection, vault: Vault, realm: str) -> str | None:
    """Re-encrypt one row under the primary key; the old key id, or None when there was
    nothing to do (already primary, or the row is gone)."""
    async with conn.transaction():
        await conn.execute(Q.local_lock_timeout)
        await conn.execute(Q.refresh_xact_lock, realm)
        row = await conn.fetchrow(Q.lock_connection_tokens, realm)
        if row is None or row["key_id"] == vault.primary:
            return None
        try:
            payload = vault.decrypt(realm, row["tokens"], row["key_id"])
        except VaultError as exc:
            raise RotateError(f"{exc}; stopped (rows done so far stay re-encrypted)") from None
        blob, key_id = vault.encrypt(realm, payload)
        written = await conn.fetchval(Q.rekey_tokens, realm, blob, key_id,
                                      row["token_generation"])
        if not written:  # impossible under both locks; never write blindly
            raise RotateError(f"the tokens of realm {realm} changed during re-encryption")
        detail = {"message": f"tokens re-encrypted from key {row['key_id']} to {key_id}",
                  "from_key": row["key_id"], "to_key": key_id}
        await conn.execute(Q.log_connection_event, "token.rekey", realm, json.dumps(detail),
                           operator())
        return str(row["key_id"])


def check_daemons(result: Rotation, daemons: list[asyncpg.Record], force: bool) -> None:
    """Sort the live daemons by what they hold; refuse (unless ``force``) when one lacks
    the new key: it could not read the tokens once they are re-encrypted."""
    primary = result.primary
    for d in daemons:
        ring = list(d["key_ids"]) if d["key_ids"] is not None else None
        label = f"{d['worker_id']} (started {d['started_at']:%Y-%m-%d %H:%M}"
        label += f", keys {', '.join(ring)})" if ring is not None else \
            ", key ids unknown: started before daemons recorded them)"
        result.live_daemons.append(label)
        if ring is None or primary not in ring:
            result.lacking.append(label)
        elif ring[0] != primary:
            result.not_primary.append(label)
    if result.lacking and not force:
        raise RotateError(
            f"refused: {len(result.lacking)} running daemon(s) do not hold key {primary!r}: "
            f"{'; '.join(result.lacking)}. Deploy the ring with {primary!r} first (e.g. "
            f"QBSYNC_TOKEN_KEYS={primary}:…,<old>:…) and restart them, then run rotate-key "
            "again; nothing changed. --force re-encrypts anyway: those daemons then pause "
            "their company (a tokens_unreadable notice, no try lost) until restarted with "
            "the new ring")


async def rotate(settings: Settings, *, new_key_id: str | None = None, dry_run: bool = False,
                 force: bool = False, progress: Progress | None = None) -> Rotation:
    """Re-encrypt every connection's tokens under the ring's primary key (module docstring)."""
    vault = vault_for(settings)
    check_primary(vault, new_key_id)
    result = Rotation(vault.primary)
    conn = await open_db(settings)
    try:
        rows = await conn.fetch(Q.connection_keys)
        result.total = len(rows)
        check_daemons(result, list(await conn.fetch(Q.live_daemons)), force)
        preflight(vault, list(rows))
        todo = [r["realm_id"] for r in rows if r["key_id"] != vault.primary]
        result.already = result.total - len(todo)
        if not dry_run:
            for n, realm in enumerate(todo, start=1):
                old = await _rekey_row(conn, vault, realm)
                if old is None:
                    result.already += 1
                else:
                    result.reencrypted += 1
                if progress:
                    progress(n, len(todo), realm, old or vault.primary)
        counts = await conn.fetch(Q.connections_by_key)
        result.by_key = {r["key_id"]: r["n"] for r in counts}
    finally:
        await conn.close()
    return result
