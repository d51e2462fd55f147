"""Settings: sources and their precedence, validation messages, secrets that never print,
and the example file documenting every setting."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from qbsync import config, logs
from qbsync.config import CREDENTIALS, MASK, Settings, load_settings
from qbsync.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "systemd" / "qbsync.toml.example"

KEY1 = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(bytes(range(32, 64))).decode()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No QBSYNC_* variable, credential directory or host config file leaks in."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("QBSYNC_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", tmp_path / "absent.toml")
    yield
    logs.forget_secrets()


def write_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "qbsync.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("QBSYNC_CONFIG", str(path))
    return path


def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **values: str) -> Path:
    directory = tmp_path / "creds"
    directory.mkdir()
    for field, value in values.items():
        (directory / CREDENTIALS[field]).write_text(value, encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


def error_of(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    return str(info.value)


# --- defaults and documentation --------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings()
    assert s.database_url == ""
    assert s.realm_id is None
    assert s.client_id == ""
    assert s.client_secret is None
    assert s.token_keys is None
    assert s.api_base_url == "https://quickbooks.api.intuit.com"
    assert s.oauth_discovery_url == "https://developer.intuit.com/.well-known/openid_configuration/"
    assert (s.minor_version, s.concurrency, s.claim_batch, s.lease_seconds) == (75, 10, 50, 120)
    assert (s.poll_interval, s.wakeup_notify, s.shutdown_grace, s.http_timeout) == (
        2.0, True, 30, 60,
    )
    assert (s.requests_per_minute, s.requests_per_second, s.max_in_flight) == (500, 10, 10)
    assert (s.batch_per_minute, s.batch_size, s.batch_threshold) == (40, 30, 200)
    assert s.rate_limits is True
    assert s.skip_invoiced_orders is True
    assert s.sentry_dsn is None
    assert s.sentry_environment == "production"
    assert (s.log_format, s.log_level) == ("text", "INFO")
    host, _, pid = s.worker_name.rpartition(":")
    assert host
    assert pid.isdigit()


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()]
    assert missing == []


def example_settings() -> dict[str, str]:
    """name -> value text of every '# name = value' line of the example file."""
    found: dict[str, str] = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"# ([a-z_]+) = (.+)", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def test_example_documents_every_setting_and_nothing_else() -> None:
    assert set(example_settings()) == set(Settings.model_fields)


def test_example_as_is_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_CONFIG", str(EXAMPLE))
    assert load_settings().concurrency == 10


def test_example_defaults_are_the_real_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting every example line that shows a default changes nothing."""
    placeholders = {"realm_id", "worker_name", "sentry_dsn"}  # examples, not defaults
    body = "\n".join(
        f"{k} = {v}" for k, v in example_settings().items() if k not in placeholders
    )
    write_toml(tmp_path, monkeypatch, body)
    loaded = load_settings().redacted()
    defaults = Settings().redacted()
    for name in set(Settings.model_fields) - placeholders:
        assert loaded[name] == defaults[name], name


# --- sources and precedence ------------------------------------------------------------------


def test_toml_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, monkeypatch, 'concurrency = 4\nclaim_batch = 7\nlog_level = "debug"\n')
    s = load_settings()
    assert (s.concurrency, s.claim_batch, s.log_level) == (4, 7, "DEBUG")
    monkeypatch.setenv("QBSYNC_CONCURRENCY", "3")
    assert load_settings().concurrency == 3
    assert load_settings(concurrency=2, claim_batch=None).concurrency == 2
    assert load_settings(concurrency=2, claim_batch=None).claim_batch == 7  # None = not given


def test_env_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_WAKEUP_NOTIFY", "false")
    monkeypatch.setenv("QBSYNC_POLL_INTERVAL", "0.5")
    monkeypatch.setenv("QBSYNC_REALM_ID", "9341453054123456")
    monkeypatch.setenv("QBSYNC_LOG_FORMAT", "JSON")
    s = load_settings()
    assert (s.wakeup_notify, s.poll_interval, s.realm_id, s.log_format) == (
        False, 0.5, "9341453054123456", "json",
    )


def test_unrelated_qbsync_environment_variables_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QBSYNC_TEST_PGHOST", "elsewhere")
    assert load_settings().database_url == ""


def test_default_file_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = tmp_path / "etc.toml"
    default.write_text("claim_batch = 9\n", encoding="utf-8")
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", default)
    assert load_settings().claim_batch == 9


def test_named_config_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_CONFIG", str(tmp_path / "nope.toml"))
    message = error_of()
    assert "QBSYNC_CONFIG" in message
    assert "nope.toml" in message


def test_bad_toml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, monkeypatch, "concurrency = = 3\n")
    message = error_of()
    assert str(path) in message
    assert "TOML" in message


def test_unknown_key_in_file_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path, monkeypatch, "concurency = 3\n")
    message = error_of()
    assert "concurency" in message
    assert "unknown setting" in message
    assert str(path) in message


def test_unknown_table_in_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, monkeypatch, "[qbo]\nminor_version = 75\n")
    assert "qbo: unknown setting" in error_of()


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("concurrency", 11, "less than or equal to 10"),
        ("concurrency", 0, "greater than or equal to 1"),
        ("claim_batch", 1001, "less than or equal to 1000"),
        ("lease_seconds", 5, "greater than or equal to 10"),
        ("poll_interval", 0.05, "greater than or equal to 0.1"),
        ("poll_interval", 61, "less than or equal to 60"),
        ("minor_version", 74, "greater than or equal to 75"),
        ("batch_size", 31, "less than or equal to 30"),
        ("http_timeout", 0, "greater than 0"),
        ("log_level", "verbose", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("log_format", "xml", "'json' or 'text'"),
        ("realm_id", "abc", "digits only"),
        ("api_base_url", "quickbooks.api.intuit.com", "http:// or https:// URL"),
        ("sentry_dsn", "not-a-dsn", "Sentry DSN"),
        ("token_keys", "k1", "not 'id:base64key'"),
        ("token_keys", "k1:%%%", "not valid base64"),
        ("token_keys", f"k1:{base64.b64encode(b'short').decode()}", "must be 32 bytes"),
        ("token_keys", f"k1:{KEY1},k1:{KEY2}", "appears twice"),
        ("token_keys", f"bad id:{KEY1}", "is invalid"),
    ],
)
def test_wrong_value_names_setting_and_reason(name: str, value: Any, why: str) -> None:
    message = error_of(**{name: value})
    assert message.startswith("invalid configuration: ")
    assert f"{name}: " in message
    assert why in message
    assert "command-line option" in message


def test_error_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_CLAIM_BATCH", "lots")
    message = error_of()
    assert "claim_batch" in message
    assert "QBSYNC_CLAIM_BATCH" in message
    assert "'lots'" in message


def test_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, monkeypatch, "batch_size = 50\n")
    message = error_of()
    assert "batch_size" in message
    assert str(path) in message
    assert "50" in message


def test_inconsistent_rate_limits_are_rejected() -> None:
    message = error_of(requests_per_second=20, requests_per_minute=10)
    assert "requests_per_second (20) exceeds requests_per_minute (10)" in message
    assert load_settings(requests_per_second=20, requests_per_minute=10, rate_limits=False)


def test_several_errors_are_reported_together() -> None:
    message = error_of(concurrency=0, batch_size=0)
    assert "concurrency" in message
    assert "batch_size" in message


def test_realm_id_and_urls_are_normalised() -> None:
    s = load_settings(realm_id=" 123 ", api_base_url="http://127.0.0.1:8080/",
                      allow_local_quickbooks=True)
    assert s.realm_id == "123"
    assert s.api_base_url == "http://127.0.0.1:8080"


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials(
        tmp_path, monkeypatch, client_secret="cs-from-credential\n", token_keys=f"k1:{KEY1}\n"
    )
    s = load_settings()
    assert s.client_secret is not None
    assert s.token_keys is not None
    assert s.client_secret.get_secret_value() == "cs-from-credential"
    assert s.token_key_ring() == {"k1": bytes(range(32))}


def test_environment_beats_credentials_beats_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(tmp_path, monkeypatch, 'client_secret = "from-file-123"\n')
    assert load_settings().client_secret == SecretStr("from-file-123")
    credentials(tmp_path, monkeypatch, client_secret="from-credential")
    assert load_settings().client_secret == SecretStr("from-credential")
    monkeypatch.setenv("QBSYNC_CLIENT_SECRET", "from-env-456")
    assert load_settings().client_secret == SecretStr("from-env-456")


def test_missing_credential_file_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials(tmp_path, monkeypatch)  # empty directory
    assert load_settings().client_secret is None


def test_empty_secret_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_CLIENT_SECRET", "")
    monkeypatch.setenv("QBSYNC_SENTRY_DSN", "  ")
    s = load_settings()
    assert s.client_secret is None
    assert s.sentry_dsn is None


def test_token_keys_accept_the_vault_format() -> None:
    s = load_settings(token_keys=f"# current\nk2:{KEY2}\nk1:{KEY1}  # old\n")
    assert list(s.token_key_ring()) == ["k2", "k1"]


def test_secrets_never_print() -> None:
    s = load_settings(
        client_secret="cs-very-secret",
        token_keys=f"k1:{KEY1}",
        sentry_dsn="https://pubkey123@o1.ingest.sentry.io/42",
        database_url="postgresql://qbsync:db-pass-789@db.example/shop",
    )
    shown = [str(s), repr(s), str(s.redacted())]
    for text in shown:
        for secret in ("cs-very-secret", KEY1, "pubkey123"):
            assert secret not in text
    red = s.redacted()
    assert red["client_secret"] == red["token_keys"] == red["sentry_dsn"] == MASK
    assert red["database_url"] == f"postgresql://qbsync:{MASK}@db.example/shop"
    assert red["concurrency"] == 10
    assert Settings().redacted()["client_secret"] is None


def test_key_errors_do_not_show_key_material() -> None:
    bad = base64.b64encode(b"sixteen byte key").decode()
    message = error_of(token_keys=f"k1:{bad}")
    assert bad not in message
    assert "k1" in message


def test_loaded_secrets_are_scrubbed_from_logs() -> None:
    load_settings(client_secret="cs-registered-1", token_keys=f"k1:{KEY1}")
    assert logs.scrub("x cs-registered-1 y") == f"x {MASK} y"
    assert KEY1 not in logs.scrub(f"key {KEY1}")


# --- operators' aids: misspelled variables, where each value came from ------------------------


def test_a_misspelled_variable_is_reported_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pydantic-settings ignores an unknown QBSYNC_* variable: a typo would silently leave
    the default in effect."""
    monkeypatch.setenv("QBSYNC_CONCURENCY", "4")
    monkeypatch.setenv("QBSYNC_TOKEN_KEY", "k1:x")
    monkeypatch.setenv("QBSYNC_NOTHING_LIKE_IT", "1")
    monkeypatch.setenv("QBSYNC_TEST_PGHOST", "elsewhere")  # the test suite's own
    monkeypatch.setenv("QBSYNC_LOG_LEVEL", "debug")  # a real one
    warnings = config.environment_warnings()
    assert warnings == [
        "environment variable QBSYNC_CONCURENCY is not a qbsync setting; ignored (did you "
        "mean QBSYNC_CONCURRENCY?)",
        "environment variable QBSYNC_NOTHING_LIKE_IT is not a qbsync setting; ignored",
        "environment variable QBSYNC_TOKEN_KEY is not a qbsync setting; ignored (did you "
        "mean QBSYNC_TOKEN_KEYS?)",
    ]
    assert load_settings().concurrency == 10  # what the typo would silently have meant


def test_the_config_file_variable_is_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(tmp_path, monkeypatch, "")
    assert config.environment_warnings() == []


def test_each_setting_says_where_its_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = write_toml(tmp_path, monkeypatch, "concurrency = 4\nclaim_batch = 7\n")
    creds = credentials(tmp_path, monkeypatch, client_secret="cs-from-credential")
    monkeypatch.setenv("QBSYNC_CLAIM_BATCH", "9")
    sources = config.setting_sources({"database_url": "dbname=x", "realm_id": None})
    assert sources["database_url"] == "command-line option"
    assert sources["claim_batch"] == "environment QBSYNC_CLAIM_BATCH"
    assert sources["client_secret"] == f"credential {creds / 'qbsync-client-secret'}"
    assert sources["concurrency"] == f"file {toml}"
    assert sources["realm_id"] == "default"  # a None override is no override
    assert sources["lease_seconds"] == "default"
    assert set(sources) == set(Settings.model_fields)


@pytest.mark.parametrize("url", ["postgresql://[bad", "not a url", "http://example.test",
                                 "postgresql://u@h:notaport/db"])
def test_an_unparsable_database_url_is_a_configuration_error(url: str) -> None:
    message = error_of(database_url=url)
    assert message.startswith("invalid configuration: database_url: ")
    assert "(command-line option)" in message


def test_a_database_url_error_never_shows_its_password() -> None:
    message = error_of(database_url="postgresql://u:pw-secret-1@h:nope/db")
    assert "pw-secret-1" not in message
    assert "port 'nope' is not a number" in message


@pytest.mark.parametrize("url", ["", "dbname=shop host=/run/postgresql",
                                 "postgresql://qbsync@db.example:5432,db2:5433/shop"])
def test_good_database_urls_pass(url: str) -> None:
    assert load_settings(database_url=url).database_url == url
