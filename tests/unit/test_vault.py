"""Token encryption at rest: round trip, rotation, tampering, realm binding, no leaks."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from qbsync.vault import CREDENTIAL_NAME, Vault, VaultError, generate_key

PAYLOAD = {"access_token": "eyJ-secret-access", "refresh_token": "AB11-secret-refresh"}


def _key(byte: int) -> bytes:
    return bytes([byte]) * 32


def test_round_trip() -> None:
    vault = Vault({"k1": _key(1)}, "k1")
    blob, key_id = vault.encrypt("9341", PAYLOAD)
    assert key_id == "k1"
    assert b"secret" not in blob
    assert vault.decrypt("9341", blob, key_id) == PAYLOAD


def test_each_encryption_uses_a_fresh_nonce() -> None:
    vault = Vault({"k1": _key(1)}, "k1")
    assert vault.encrypt("9341", PAYLOAD)[0] != vault.encrypt("9341", PAYLOAD)[0]


def test_rotation_decrypts_with_old_key_and_encrypts_with_primary() -> None:
    old = Vault({"old": _key(1)}, "old")
    blob, key_id = old.encrypt("9341", PAYLOAD)
    rotated = Vault({"new": _key(2), "old": _key(1)}, "new")
    assert rotated.decrypt("9341", blob, key_id) == PAYLOAD
    new_blob, new_id = rotated.encrypt("9341", PAYLOAD)
    assert new_id == "new"
    assert rotated.needs_reencrypt("old")
    assert not rotated.needs_reencrypt("new")
    with pytest.raises(VaultError, match="'new'"):
        old.decrypt("9341", new_blob, new_id)


def test_blob_copied_to_another_realm_is_refused() -> None:
    vault = Vault({"k1": _key(1)}, "k1")
    blob, key_id = vault.encrypt("9341", PAYLOAD)
    with pytest.raises(VaultError, match="another realm"):
        vault.decrypt("1111", blob, key_id)


def test_tampered_blob_is_refused() -> None:
    vault = Vault({"k1": _key(1)}, "k1")
    blob, key_id = vault.encrypt("9341", PAYLOAD)
    tampered = bytearray(blob)
    tampered[20] ^= 0x01
    with pytest.raises(VaultError):
        vault.decrypt("9341", bytes(tampered), key_id)
    with pytest.raises(VaultError, match="not a qbsync token blob"):
        vault.decrypt("9341", b"\x02" + blob[1:], key_id)


def test_relabelled_key_id_is_refused() -> None:
    # Same key material under two ids: the key id is bound too, so relabelling fails.
    vault = Vault({"a": _key(1), "b": _key(1)}, "a")
    blob, _ = vault.encrypt("9341", PAYLOAD)
    with pytest.raises(VaultError):
        vault.decrypt("9341", blob, "b")


def test_wrong_and_unknown_keys_name_the_key_but_not_the_secret() -> None:
    blob, key_id = Vault({"k1": _key(1)}, "k1").encrypt("9341", PAYLOAD)
    wrong = Vault({"k1": _key(9)}, "k1")
    with pytest.raises(VaultError) as wrong_exc:
        wrong.decrypt("9341", blob, key_id)
    assert "'k1'" in str(wrong_exc.value)
    with pytest.raises(VaultError) as unknown_exc:
        Vault({"k2": _key(2)}, "k2").decrypt("9341", blob, "k1")
    assert "'k1'" in str(unknown_exc.value)
    assert "not configured" in str(unknown_exc.value)
    for exc in (wrong_exc.value, unknown_exc.value):
        text = str(exc) + repr(exc)
        assert "secret" not in text
        assert base64.b64encode(_key(1)).decode() not in text
        assert base64.b64encode(_key(9)).decode() not in text


def test_repr_never_shows_key_material() -> None:
    entry = generate_key("k1")
    encoded = entry.split(":", 1)[1]
    vault = Vault.parse(entry)
    assert encoded not in repr(vault)
    assert encoded not in str(vault)
    assert "k1" in repr(vault)


def test_from_environment_value_first_key_is_primary() -> None:
    a, b = generate_key("a"), generate_key("b")
    vault = Vault.from_sources(f"{a}, {b}", None)
    assert vault.primary == "a"
    assert vault.key_ids == ("a", "b")


def test_from_credentials_file_one_per_line(tmp_path: Path) -> None:
    (tmp_path / CREDENTIAL_NAME).write_text(
        f"# rotated 2025-01\n{generate_key('new')}\n\n{generate_key('old')}\n")
    vault = Vault.from_sources(None, str(tmp_path))
    assert vault.primary == "new"
    assert vault.key_ids == ("new", "old")


def test_environment_value_wins_over_credential(tmp_path: Path) -> None:
    (tmp_path / CREDENTIAL_NAME).write_text(generate_key("file"))
    assert Vault.from_sources(generate_key("env"), str(tmp_path)).primary == "env"


def test_missing_keys_explain_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="QBSYNC_TOKEN_KEYS"):
        Vault.from_sources(None, str(tmp_path))
    with pytest.raises(VaultError, match="QBSYNC_TOKEN_KEYS"):
        Vault.from_sources("  ", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1", "not 'id:base64key'"),
        ("k1:not-base64!!", "not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "32 bytes"),
        ("bad id:" + base64.b64encode(_key(1)).decode(), "invalid"),
    ],
)
def test_bad_key_entries_are_refused_without_echoing_them(text: str, message: str) -> None:
    with pytest.raises(VaultError, match=message) as exc:
        Vault.parse(text)
    secret_part = text.split(":", 1)[-1]
    if ":" in text:
        assert secret_part not in str(exc.value)


def test_duplicate_key_id_is_refused() -> None:
    with pytest.raises(VaultError, match="twice"):
        Vault.parse(f"{generate_key('a')},{generate_key('a')}")


def test_generated_key_is_aes256() -> None:
    key_id, encoded = generate_key("k").split(":", 1)
    assert key_id == "k"
    assert len(base64.b64decode(encoded)) == 32
    assert generate_key().split(":", 1)[0].startswith("k")
