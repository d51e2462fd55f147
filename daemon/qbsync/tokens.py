"""OAuth tokens of a connected QuickBooks company, stored encrypted in qbsync.connections.

:class:`TokenStore` is the daemon's :class:`qbsync.qbo.client.TokenProvider` for one realm.
It keeps the access token in memory and refreshes it when it expires within 5 minutes or
when QuickBooks rejects it. Against an emulator running ``time_scale`` times faster than
real time, token lifetimes and the margin shrink alike (5 minutes are 5 s at 60x): with
the margin left at 5 real minutes, every request would refresh first.

Refreshes are single-flight, in one process (an asyncio lock) and across processes (a
session advisory lock per realm, taken on a pooled connection with no transaction open
during the HTTP call). Under the lock the row is read again: when ``token_generation``
moved, another process has refreshed and its tokens are used; otherwise the token endpoint
is called and the new pair is stored at once (``token_generation + 1``), before the new
access token is used, because Intuit may invalidate the old refresh token immediately.

A refresh token that Intuit rejects (``invalid_grant``) marks the connection
``needs_reconnect`` (the stored tokens are kept) and raises :class:`ReconnectRequired`:
the daemon pauses the realm instead of failing rows.

Stored tokens this daemon's key ring cannot decrypt (``qbsync rotate-key`` moved them to a
key it lacks) raise :class:`TokensUnreadable`, a pause of the same kind: the daemon keeps
running and burns no try, an admin notice (kind ``tokens_unreadable``) names the daemon
and the key it needs, and the first successful read (the tokens re-encrypted under a key
it holds, or the daemon restarted with the new ring) closes the notice and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import httpx

from . import db
from .errors import ReconnectRequired, TokensUnreadable
from .qbo import oauth
from .qbo.oauth import ClientCredentials, InvalidGrant, OAuthEndpoints, TokenSet
from .qbo.observer import NULL_OBSERVER, Observer
from .queries import load as load_queries
from .vault import Vault, VaultError

REFRESH_MARGIN = 300.0  # QuickBooks seconds before expiry when the access token is refreshed
Q = load_queries()
log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenStore:
    """Tokens of one realm; implements ``TokenProvider`` (``access_token``, ``refresh``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        vault: Vault,
        realm_id: str,
        *,
        http: httpx.AsyncClient,
        client: ClientCredentials,
        endpoints: OAuthEndpoints = oauth.PRODUCTION,
        refresh_margin: float = REFRESH_MARGIN,
        time_scale: float = 1.0,
        clock: Callable[[], datetime] = _utcnow,
        holder: str | None = None,
        max_response_bytes: int = oauth.DEFAULT_MAX_RESPONSE_BYTES,
        observer: Observer = NULL_OBSERVER,
    ) -> None:
        self.pool = pool
        self.observer = observer
        self.vault = vault
        self.realm_id = realm_id
        self.http = http
        self.client = client
        self.endpoints = endpoints
        self.time_scale = time_scale
        # real seconds: the margin is a span of the server's clock, like the token's life
        self.refresh_margin = refresh_margin / time_scale
        self.clock = clock
        self.holder = holder  # the daemon's worker name, for the tokens_unreadable notice
        self.max_response_bytes = max_response_bytes
        self._tokens: TokenSet | None = None
        self._generation: int | None = None
        self._lock = asyncio.Lock()
        self._unreadable: str | None = None  # the key id it could not decrypt with
        self._readable_said = False  # tokens_readable called since this store read them
        self.api_base_url: str | None = None
        self.environment: str | None = None
        self.refreshes = 0  # token endpoint calls made by this store (tests, stats)

    def __repr__(self) -> str:
        return f"TokenStore(realm_id={self.realm_id!r}, generation={self._generation!r})"

    @property
    def generation(self) -> int | None:
        return self._generation

    async def load(self) -> TokenSet:
        """Read the stored tokens (no lock: a plain read of the latest committed pair)."""
        row = await self.pool.fetchrow(Q.read_tokens, self.realm_id)
        return await self._readable(self.pool, row)

    async def access_token(self) -> str:
        tokens = self._tokens
        if tokens is None or self._expiring(tokens):
            tokens = await self.load()
            if self._expiring(tokens):
                return await self.refresh(tokens.access_token)
        return tokens.access_token

    async def refresh(self, rejected: str) -> str:
        """A fresh access token after ``rejected`` was refused or is about to expire."""
        async with self._lock:
            mine = self._tokens
            if mine is not None and mine.access_token != rejected and not self._expiring(mine):
                return mine.access_token  # another task of this process refreshed meanwhile
            return await self._refresh_shared(rejected)

    # --- internals -----------------------------------------------------------------------

    def _expiring(self, tokens: TokenSet) -> bool:
        return tokens.expires_within(self.refresh_margin, self.clock())

    async def _readable(self, conn: asyncpg.Pool | asyncpg.Connection,
                        row: asyncpg.Record | None) -> TokenSet:
        """`_adopt`, turning a decryption failure into a pause with a notice (once), and
        closing that notice at the first success after it."""
        try:
            tokens = self._adopt(row)
        except VaultError as exc:
            assert row is not None
            self._tokens = None  # nothing cached may outlive the row it came from
            key_id = str(row["key_id"])
            message = (f"daemon {self.holder or '(unnamed)'} cannot decrypt the tokens of "
                       f"QuickBooks company {self.realm_id}: {exc}. The company is paused in "
                       "this daemon (no row loses a try); restart it with a token_keys ring "
                       f"holding key {key_id!r} (new key first, e.g. "
                       f"QBSYNC_TOKEN_KEYS={key_id}:…,{self.vault.primary}:…); it resumes by "
                       "itself once the tokens decrypt")
            if self._unreadable != key_id:
                self._unreadable = key_id
                log.error("%s", message)
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await conn.execute(Q.tokens_unreadable, self.realm_id,
                                       self.holder or "", key_id, list(self.vault.key_ids),
                                       message)
            raise TokensUnreadable(self.realm_id, message, key_id) from None
        if self._unreadable is not None or not self._readable_said:
            # Once after a failure, and at the first read of this process: a notice left
            # by this daemon before a restart, or by a daemon now gone, is settled.
            if self._unreadable is not None:
                log.info("the tokens of QuickBooks company %s decrypt again; resuming",
                         self.realm_id)
            self._unreadable = None
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await conn.execute(Q.tokens_readable, self.realm_id, self.holder or "")
                self._readable_said = True
        return tokens

    def _adopt(self, row: asyncpg.Record | None) -> TokenSet:
        if row is None:
            raise ReconnectRequired(
                self.realm_id, f"QuickBooks company {self.realm_id} is not connected; run "
                "`qbsync connect`")
        if row["status"] != "connected":
            raise ReconnectRequired(
                self.realm_id, f"QuickBooks company {self.realm_id} is {row['status']}; "
                "reconnect it with `qbsync connect`")
        tokens = TokenSet.from_payload(
            self.vault.decrypt(self.realm_id, row["tokens"], row["key_id"]))
        self._tokens = tokens
        self._generation = row["token_generation"]
        self.api_base_url = row["api_base_url"]
        self.environment = row["environment"]
        return tokens

    async def _refresh_shared(self, rejected: str) -> str:
        known_generation = self._generation
        async with self.pool.acquire() as conn:
            # Session lock outside any transaction: nothing stays open during the HTTP call.
            # If this task dies holding it, the pool's connection reset unlocks it.
            db.holds_session_lock(conn)
            await conn.execute(Q.refresh_lock, self.realm_id)
            try:
                row = await conn.fetchrow(Q.read_tokens, self.realm_id)
                stored = await self._readable(conn, row)
                assert row is not None
                moved = known_generation is not None and row["token_generation"] != known_generation
                if (moved or stored.access_token != rejected) and not self._expiring(stored):
                    self.observer.token_refresh("shared")
                    return stored.access_token  # another process refreshed: use its pair
                try:
                    fresh = await oauth.refresh(self.http, self.client, stored.refresh_token,
                                                endpoints=self.endpoints, now=self.clock(),
                                                time_scale=self.time_scale,
                                                max_bytes=self.max_response_bytes)
                except InvalidGrant as exc:
                    self.observer.token_refresh("rejected")
                    await self._needs_reconnect(conn, exc)
                    raise ReconnectRequired(
                        self.realm_id,
                        f"Intuit refused the refresh token of QuickBooks company {self.realm_id} "
                        f"({exc.error}); the connection is marked needs_reconnect: run "
                        "`qbsync connect`") from None
                except Exception:
                    self.observer.token_refresh("failed")
                    raise
                self.refreshes += 1
                blob, key_id = self.vault.encrypt(self.realm_id, fresh.to_payload())
                generation = await conn.fetchval(
                    Q.store_refreshed_tokens, self.realm_id, blob, key_id, fresh.expires_at,
                    fresh.refresh_expires_at)
                if generation is None:
                    raise ReconnectRequired(
                        self.realm_id, f"QuickBooks company {self.realm_id} was disconnected "
                        "during a token refresh")
                self._tokens = fresh
                self._generation = generation
                self.observer.token_refresh("refreshed")
                return fresh.access_token
            finally:
                # On failure, releasing the connection to the pool resets it (unlocks) anyway.
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await conn.execute(Q.refresh_unlock, self.realm_id)

    async def _needs_reconnect(self, conn: asyncpg.Connection, exc: InvalidGrant) -> None:
        message = (f"refresh token rejected by Intuit ({exc.error}"
                   f"{': ' + exc.description if exc.description else ''}); reconnect with "
                   "`qbsync connect`")
        await conn.execute(Q.mark_needs_reconnect, self.realm_id, message)
