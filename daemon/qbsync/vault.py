"""Token encryption at rest: AES-256-GCM under a ring of keys.

Blob layout: ``b"\\x01" + 12-byte nonce + ciphertext + 16-byte tag``. The associated data
binds the blob to its realm and key id, so a blob copied onto another connection row (or
relabelled with another key id) fails to decrypt instead of handing out another company's
tokens.

Keys come from ``QBSYNC_TOKEN_KEYS`` (``id1:base64key,id2:base64key``) or the systemd
credential ``$CREDENTIALS_DIRECTORY/qbsync-token-keys`` (same format, commas or one per
line, ``#`` comments). The first key is the primary: new blobs use it; the others only
decrypt, so a ring can hold a new key and the old one while the stored rows move from one
to the other (that move is `qbsync.rotate_key`'s; `generate_key` makes a ring entry).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, QbsyncError

if TYPE_CHECKING:
    from .config import Settings

ENV_VAR = "QBSYNC_TOKEN_KEYS"
CREDENTIAL_NAME = "qbsync-token-keys"
_VERSION = b"\x01"
_NONCE_LEN = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class VaultError(QbsyncError):
    """Token keys are missing or wrong, or a blob does not decrypt. Never holds key bytes
    or token values."""


class Vault:
    """Encrypts token payloads for one set of keys (``{key_id: 32-byte key}``)."""

    __slots__ = ("_ciphers", "_primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        if not keys:
            raise VaultError("no token encryption keys given")
        if primary not in keys:
            raise VaultError(f"primary token key {primary!r} is not among the keys given")
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise VaultError(
                    f"token key id {key_id!r} is invalid: use 1-64 of A-Z a-z 0-9 _ . -")
            if len(key) != 32:
                raise VaultError(f"token key {key_id!r} must be 32 bytes (AES-256), "
                                 f"got {len(key)}")
            ciphers[key_id] = AESGCM(bytes(key))
        self._ciphers = ciphers
        self._primary = primary

    @property
    def primary(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def __repr__(self) -> str:
        return f"Vault(key_ids={list(self._ciphers)!r}, primary={self._primary!r})"

    __str__ = __repr__

    def needs_reencrypt(self, key_id: str) -> bool:
        """True when a blob made with ``key_id`` should be re-saved under the primary key."""
        return key_id != self._primary

    def encrypt(self, realm_id: str, payload: Mapping[str, Any]) -> tuple[bytes, str]:
        """(blob, key id of the primary key) for a JSON-serialisable payload."""
        nonce = secrets.token_bytes(_NONCE_LEN)
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        sealed = self._ciphers[self._primary].encrypt(
            nonce, data, _associated_data(realm_id, self._primary))
        return _VERSION + nonce + sealed, self._primary

    def decrypt(self, realm_id: str, blob: bytes, key_id: str) -> dict[str, Any]:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise VaultError(
                f"the tokens of realm {realm_id} are encrypted with key {key_id!r}, which is not "
                f"configured (configured: {', '.join(self._ciphers)}); add it to {ENV_VAR} or "
                f"the {CREDENTIAL_NAME} credential")
        blob = bytes(blob)
        if len(blob) < 1 + _NONCE_LEN + 16 or blob[:1] != _VERSION:
            raise VaultError(f"the stored tokens of realm {realm_id} are not a qbsync token blob")
        nonce, sealed = blob[1:1 + _NONCE_LEN], blob[1 + _NONCE_LEN:]
        try:
            data = cipher.decrypt(nonce, sealed, _associated_data(realm_id, key_id))
        except InvalidTag:
            raise VaultError(
                f"the stored tokens of realm {realm_id} do not decrypt with key {key_id!r}: "
                "wrong key material, altered ciphertext, or a blob copied from another "
                "realm") from None
        try:
            payload = json.loads(data)
        except ValueError:
            raise VaultError(f"the decrypted tokens of realm {realm_id} are not JSON") from None
        if not isinstance(payload, dict):
            raise VaultError(f"the decrypted tokens of realm {realm_id} are not an object")
        return payload

    # --- loading keys --------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, *, source: str = ENV_VAR) -> Vault:
        """Keys from ``id1:base64key,id2:base64key`` (see `parse_key_ring`; first = primary)."""
        try:
            keys = parse_key_ring(text)
        except ValueError as exc:
            raise VaultError(f"{source}: {exc}") from None
        return cls(keys, next(iter(keys)))

    @classmethod
    def from_sources(cls, env_value: str | None, credentials_dir: str | None) -> Vault:
        """Keys from the environment value if set, else from the systemd credential file."""
        if env_value and env_value.strip():
            return cls.parse(env_value, source=ENV_VAR)
        if credentials_dir:
            path = Path(credentials_dir) / CREDENTIAL_NAME
            if path.is_file():
                return cls.parse(path.read_text(encoding="utf-8"), source=str(path))
        raise VaultError(
            f"no token encryption keys: set {ENV_VAR}=id:base64key or provide the systemd "
            f"credential {CREDENTIAL_NAME} (LoadCredential=); make a key with "
            "qbsync.vault.generate_key()")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Vault:
        env = os.environ if environ is None else environ
        return cls.from_sources(env.get(ENV_VAR), env.get("CREDENTIALS_DIRECTORY"))


def vault_for(settings: Settings) -> Vault:
    """The vault of the settings' ``token_keys`` (ConfigError when none is set)."""
    if settings.token_keys is None:
        raise ConfigError("token_keys is not set (QBSYNC_TOKEN_KEYS or the systemd credential "
                          "qbsync-token-keys); make a key with `qbsync keygen`")
    return Vault.parse(settings.token_keys.get_secret_value(), source="token_keys")


def generate_key(key_id: str | None = None) -> str:
    """A new key entry ``id:base64key`` (the id defaults to ``k`` + today's date)."""
    if key_id is None:
        from datetime import UTC, datetime

        key_id = "k" + datetime.now(UTC).strftime("%Y%m%d")
    if not _KEY_ID.match(key_id):
        raise VaultError(f"token key id {key_id!r} is invalid: use 1-64 of A-Z a-z 0-9 _ . -")
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def _associated_data(realm_id: str, key_id: str) -> bytes:
    return b"qbsync.tokens.v1\x00" + realm_id.encode() + b"\x00" + key_id.encode()


def key_ring_entries(text: str) -> list[str]:
    """``id:base64key`` entries: separated by commas or newlines, ``#`` starts a comment."""
    return [
        e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")
        if e.strip()
    ]


def parse_key_ring(text: str) -> dict[str, bytes]:
    """Parse ``id:base64key,id2:base64key2`` (commas or newlines, ``#`` comments, ids of
    A-Z a-z 0-9 _ . -, 32-byte AES-256 keys in standard base64; the first encrypts).
    Raises ValueError naming the bad entry by id, never key material."""
    ring: dict[str, bytes] = {}
    for position, entry in enumerate(key_ring_entries(text), start=1):
        key_id, sep, encoded = entry.partition(":")
        key_id, encoded = key_id.strip(), encoded.strip()
        if not sep or not key_id or not encoded:
            raise ValueError(f"entry {position} is not 'id:base64key'")
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"key id {key_id!r} is invalid: use 1-64 of A-Z a-z 0-9 _ . -")
        if key_id in ring:
            raise ValueError(f"key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} must be 32 bytes (AES-256), got {len(key)}")
        ring[key_id] = key
    if not ring:
        raise ValueError("no key given; expected 'id:base64key[,id:base64key...]'")
    return ring
