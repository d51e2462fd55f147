"""Settings: CLI overrides over QBSYNC_* environment variables over systemd credentials over
the TOML file over defaults.

* TOML file: ``$QBSYNC_CONFIG`` (an error if set and missing), else ``/etc/qbsync/qbsync.toml``
  when it exists. A key that is not a setting is an error naming the key.
* Secrets (``client_secret``, ``token_keys``) are ``SecretStr``: they never print. Under
  systemd they come from credential files, ``$CREDENTIALS_DIRECTORY/qbsync-client-secret``
  and ``$CREDENTIALS_DIRECTORY/qbsync-token-keys`` (``LoadCredential=`` in qbsync.service).
* A wrong value fails at start with the setting's name, where it came from and why
  (`ConfigError`).

``systemd/qbsync.toml.example`` documents every setting; keep it in step with this file
(tests/unit/test_config.py checks it).
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .errors import ConfigError
from .logs import register_secret, scrub
from .qbo.endpoints import DEFAULT_MAX_RESPONSE_BYTES, EndpointPolicy, normalise_host
from .qbo.oauth import EndpointSettings
from .vault import key_ring_entries, parse_key_ring

DEFAULT_CONFIG_FILE = Path("/etc/qbsync/qbsync.toml")
CONFIG_ENV = "QBSYNC_CONFIG"
ENV_PREFIX = "QBSYNC_"
MASK = "********"

# setting -> name of its systemd credential ($CREDENTIALS_DIRECTORY/<name>)
CREDENTIALS: dict[str, str] = {
    "client_secret": "qbsync-client-secret",
    "token_keys": "qbsync-token-keys",
}

INTUIT_API = "https://quickbooks.api.intuit.com"
INTUIT_DISCOVERY = "https://developer.intuit.com/.well-known/openid_configuration/"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["json", "text"]


def config_file() -> Path | None:
    """The TOML file to read: ``$QBSYNC_CONFIG`` (must exist), else the default if present."""
    explicit = os.environ.get(CONFIG_ENV, "").strip()
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={explicit}: no such file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def credentials_dir() -> Path | None:
    value = os.environ.get("CREDENTIALS_DIRECTORY", "").strip()
    return Path(value) if value else None


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class CredentialsSource(PydanticBaseSettingsSource):
    """Secrets from systemd credential files (``LoadCredential=``), trailing newline stripped."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        directory = credentials_dir()
        name = CREDENTIALS.get(field_name)
        if directory is None or name is None:
            return None, field_name, False
        path = directory / name
        try:
            return path.read_text(encoding="utf-8").strip(), field_name, False
        except FileNotFoundError:
            return None, field_name, False
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{field_name}: cannot read credential {path}: {exc}") from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file's table; a syntax or read error is a `ConfigError` naming the file."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        str_strip_whitespace=True,
    )

    SECRETS: ClassVar[tuple[str, ...]] = ("client_secret", "token_keys", "sentry_dsn")

    # --- database -------------------------------------------------------------------------
    database_url: str = Field(
        default="",
        description="libpq connection string or URL of the shop database; empty = libpq defaults "
        "(PGHOST, PGDATABASE, ...)",
    )

    # --- QuickBooks company and app -------------------------------------------------------
    realm_id: str | None = Field(
        default=None,
        description="QuickBooks company (realm ID, digits) this daemon serves; unset = the "
        "active connection in qbsync.connections",
    )
    client_id: str = Field(
        default="",
        description="Intuit app client ID (OAuth 2.0); needed to refresh access tokens",
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description="Intuit app client secret; prefer the systemd credential "
        "qbsync-client-secret over the config file",
    )
    token_keys: SecretStr | None = Field(
        default=None,
        description="keys that encrypt OAuth tokens at rest: 'id:base64key,...' (32-byte "
        "AES-256 keys, standard base64; commas or newlines); the first encrypts, all decrypt "
        "(rotation); prefer the systemd credential qbsync-token-keys",
    )
    # Checked before the URLs below (validators see the fields defined before them).
    quickbooks_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="hosts besides Intuit's own that may get the QuickBooks token and the "
        "client secret over https (e.g. a forwarding proxy); a list, or commas in the "
        "environment",
    )
    allow_local_quickbooks: bool = Field(
        default=False,
        description="accept QuickBooks and OAuth URLs on a loopback address (127.0.0.1, ::1, "
        "localhost), over http too: for the local emulator, the demo and tests only",
    )
    api_base_url: str = Field(
        default=INTUIT_API,
        description="QuickBooks Accounting API base URL (sandbox: "
        "https://sandbox-quickbooks.api.intuit.com; the local emulator needs "
        "allow_local_quickbooks); a company's stored URL may only choose this one or "
        "Intuit's production or sandbox API",
    )
    oauth_discovery_url: str = Field(
        default=INTUIT_DISCOVERY,
        description="OpenID discovery document giving the OAuth endpoints (sandbox: "
        "https://developer.intuit.com/.well-known/openid_sandbox_configuration/); empty = "
        "no discovery: the endpoints set below, else Intuit's documented ones",
    )
    oauth_authorization_endpoint: str = Field(
        default="",
        description="OAuth authorization endpoint; empty = from the discovery document, "
        "else Intuit's https://appcenter.intuit.com/connect/oauth2",
    )
    oauth_token_endpoint: str = Field(
        default="",
        description="OAuth token endpoint; empty = from the discovery document, else "
        "Intuit's https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
    )
    oauth_revocation_endpoint: str = Field(
        default="",
        description="OAuth token revocation endpoint; empty = from the discovery document, "
        "else Intuit's https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=64 * 1024,
        description="largest answer read from QuickBooks or its OAuth server, in bytes; a "
        "longer one is cut off and the attempt retried",
    )
    minor_version: int = Field(
        default=75,
        ge=75,
        description="QuickBooks API minorversion sent on every request (Intuit supports 75+)",
    )

    # --- worker loop ----------------------------------------------------------------------
    concurrency: int = Field(
        default=10, ge=1, le=10, description="pushes in flight at once in this daemon"
    )
    claim_batch: int = Field(
        default=50, ge=1, le=1000, description="outbox rows claimed per query"
    )
    lease_seconds: int = Field(
        default=120,
        ge=10,
        description="lease on a claimed row, extended while it is worked on; a killed "
        "daemon's rows are claimable again once it expires",
    )
    poll_interval: float = Field(
        default=2.0,
        ge=0.1,
        le=60,
        description="seconds between fallback polls of the outbox (wake-ups come by NOTIFY)",
    )
    wakeup_notify: bool = Field(
        default=True,
        description="LISTEN for wake-ups; false = poll only (for very high write rates)",
    )
    shutdown_grace: float = Field(
        default=30,
        ge=0,
        le=3600,
        description="seconds in-flight pushes may finish after SIGTERM; keep below the "
        "unit's TimeoutStopSec (45)",
    )
    http_timeout: float = Field(
        default=60, gt=0, le=600, description="seconds for one QuickBooks HTTP request"
    )
    worker_name: str = Field(
        default_factory=default_worker_name,
        min_length=1,
        max_length=200,
        description="this daemon's name on leases and in logs; default hostname:pid",
    )

    # --- QuickBooks limits (per realm) ----------------------------------------------------
    requests_per_minute: int = Field(
        default=500, ge=1, description="API requests per minute (QuickBooks allows 500)"
    )
    requests_per_second: int = Field(
        default=10, ge=1, description="API requests per second (QuickBooks allows 10)"
    )
    max_in_flight: int = Field(
        default=10, ge=1, description="concurrent API requests (QuickBooks allows 10)"
    )
    batch_per_minute: int = Field(
        default=40, ge=1, description="batch requests per minute (QuickBooks allows 40)"
    )
    batch_size: int = Field(
        default=30, ge=1, le=30, description="operations per batch request (QuickBooks: 30)"
    )
    batch_threshold: int = Field(
        default=200,
        ge=1,
        description="backlog (ready rows) from which the batch endpoint is used",
    )
    rate_limits: bool = Field(
        default=True,
        description="enforce the limits above; false only for benchmarks against the local "
        "emulator",
    )
    rate_time_scale: float = Field(
        default=1.0,
        gt=0,
        description="how many times faster than real time QuickBooks' clock runs (limit "
        "windows, token lifetimes, the token refresh margin); 1 for QuickBooks, the "
        "emulator's --time-scale for tests and benchmarks against it",
    )

    # --- behaviour ------------------------------------------------------------------------
    drift_interval: float = Field(
        default=300.0,
        ge=0,
        description="seconds between two reads of QuickBooks' change data capture, to find "
        "changes made outside qbsync (qbsync.drift); 0 turns drift detection off",
    )
    skip_invoiced_orders: bool = Field(
        default=True,
        description="skip an order that already has an invoice unless the push is forced",
    )

    # --- observability --------------------------------------------------------------------
    sentry_dsn: SecretStr | None = Field(
        default=None, description="Sentry DSN; unset = Sentry off"
    )
    sentry_environment: str = Field(
        default="production", min_length=1, description="Sentry environment tag"
    )
    log_format: LogFormat = Field(
        default="text", description="'text' (readable lines) or 'json' (one object a line)"
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    metrics_listen: str = Field(
        default="127.0.0.1:9464",
        description="host:port where `qbsync run` serves Prometheus metrics (/metrics) and "
        "health checks (/healthz, /readyz), over plain http without authentication: keep it "
        "on loopback or a private network; [::1]:9464 for IPv6; empty turns it off",
    )

    # --- validators -----------------------------------------------------------------------
    @field_validator("client_secret", "token_keys", "sentry_dsn", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _conninfo(cls, value: str) -> str:
        check_conninfo(value)
        return value

    @field_validator("realm_id", mode="before")
    @classmethod
    def _realm_digits(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if not value.isdigit():
                raise ValueError("must be a QuickBooks realm ID (digits only)")
        return value

    @field_validator("quickbooks_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # the environment: commas or white space
            value = [h for h in value.replace(",", " ").split() if h]
        if isinstance(value, list | tuple):
            return tuple(normalise_host(str(h)) for h in value)
        return value

    @field_validator("api_base_url", "oauth_discovery_url", "oauth_authorization_endpoint",
                     "oauth_token_endpoint", "oauth_revocation_endpoint")
    @classmethod
    def _allowed_endpoint(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.field_name != "api_base_url":
            return value  # unset: discovered, or Intuit's documented endpoint
        if not value.startswith(("https://", "http://")) or len(value) <= len("https://"):
            raise ValueError("must be an http:// or https:// URL")
        policy = EndpointPolicy.of(info.data.get("quickbooks_hosts") or (),
                                   bool(info.data.get("allow_local_quickbooks")))
        why = policy.refusal(value)
        if why is not None:
            raise ValueError(f"refused: {why}")
        return value.rstrip("/") if info.field_name == "api_base_url" else value

    @field_validator("token_keys")
    @classmethod
    def _key_ring(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key_ring(value.get_secret_value())
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _dsn_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            dsn = value.get_secret_value()
            if not dsn.startswith(("https://", "http://")) or "@" not in dsn:
                raise ValueError("must be a Sentry DSN like https://<key>@<host>/<project>")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("metrics_listen")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        listen_address(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.rate_limits and self.requests_per_second > self.requests_per_minute:
            raise ValueError(
                f"requests_per_second ({self.requests_per_second}) exceeds "
                f"requests_per_minute ({self.requests_per_minute})"
            )
        return self

    # --- sources --------------------------------------------------------------------------
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            CredentialsSource(settings_cls),
        ]
        toml_file = config_file()
        if toml_file is not None:
            # Parsed here (not by TomlConfigSettingsSource) for a clear error on bad syntax;
            # unknown keys reach the model and fail there (extra="forbid").
            sources.append(InitSettingsSource(settings_cls, init_kwargs=read_toml(toml_file)))
        return tuple(sources)

    # --- helpers --------------------------------------------------------------------------
    def redacted(self) -> dict[str, Any]:
        """Every setting, JSON-friendly, for printing: secrets shown as ``********`` (None when
        unset), a database password masked."""
        out = self.model_dump(mode="json")
        out["database_url"] = scrub(self.database_url)  # a password in the URL or conninfo
        for name in self.SECRETS:
            out[name] = MASK if getattr(self, name) is not None else None
        return out

    def secret_values(self) -> list[str]:
        """The secret strings to scrub from logs (`qbsync.logs.register_secret`)."""
        values: list[str] = []
        for name in self.SECRETS:
            secret: SecretStr | None = getattr(self, name)
            if secret is not None:
                values.append(secret.get_secret_value())
        if self.token_keys is not None:
            for entry in key_ring_entries(self.token_keys.get_secret_value()):
                values.append(entry.partition(":")[2].strip())  # each key, as written
        return [v for v in values if v]

    def endpoint_policy(self) -> EndpointPolicy:
        """The hosts that may get a QuickBooks token or the client secret."""
        return EndpointPolicy.of(self.quickbooks_hosts, self.allow_local_quickbooks)

    def oauth_sources(self, discovery_url: str | None = None) -> EndpointSettings:
        """Where the OAuth endpoints come from: those set directly, else the discovery
        document (``discovery_url`` when a connect target names another one)."""
        return EndpointSettings(
            discovery_url=self.oauth_discovery_url if discovery_url is None else discovery_url,
            authorization_endpoint=self.oauth_authorization_endpoint,
            token_endpoint=self.oauth_token_endpoint,
            revocation_endpoint=self.oauth_revocation_endpoint)

    def token_key_ring(self) -> dict[str, bytes]:
        """``token_keys`` parsed: key id -> raw key bytes, in order (the first encrypts)."""
        if self.token_keys is None:
            return {}
        return parse_key_ring(self.token_keys.get_secret_value())


def listen_address(value: str) -> tuple[str, int] | None:
    """``metrics_listen`` as (host, port); None when empty (off). ValueError saying what is
    wrong."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, e.g. [::1]:9464")
    if not host:
        raise ValueError("must name a host, e.g. 127.0.0.1:9464")
    # port 0: one the system chooses (tests)
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return host, int(port)


def check_conninfo(value: str) -> None:
    """A libpq URL or key=value string libpq can parse, with numeric ports; ValueError
    saying what is wrong (never echoing a password)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(value)
    except ProgrammingError as exc:
        raise ValueError(f"not a libpq connection string or URL: {scrub(str(exc).strip())}"
                         ) from None
    port = str(params.get("port") or "")
    if port and not all(p.strip().isdigit() for p in port.split(",")):
        raise ValueError(f"port {port!r} is not a number")


# Variables with the QBSYNC_ prefix that are not settings: the config file's path, and the
# test suite's own (QBSYNC_TEST_*).
NOT_SETTINGS = (CONFIG_ENV,)
RESERVED_PREFIXES = ("QBSYNC_TEST_",)


def environment_warnings(environ: dict[str, str] | None = None) -> list[str]:
    """One line for each QBSYNC_* variable that is no setting (a typo is otherwise silently
    ignored), naming the closest setting when there is one."""
    import difflib

    env = os.environ if environ is None else environ
    names = {f"{ENV_PREFIX}{n.upper()}" for n in Settings.model_fields} | set(NOT_SETTINGS)
    out = []
    for var in sorted(env):
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper in names \
                or upper.startswith(RESERVED_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, sorted(names), n=1, cutoff=0.75)
        out.append(f"environment variable {var} is not a qbsync setting; ignored"
                   + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def setting_sources(overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Where each setting's effective value comes from, in precedence order: "command-line
    option", "environment QBSYNC_X", "credential <path>", "file <path>" or "default"."""
    given = {k for k, v in (overrides or {}).items() if v is not None}
    toml_file = config_file()
    in_file = set(read_toml(toml_file)) if toml_file is not None else set()
    env = {k.upper() for k in os.environ}
    directory = credentials_dir()
    sources: dict[str, str] = {}
    for name in Settings.model_fields:
        var = f"{ENV_PREFIX}{name.upper()}"
        credential = directory / CREDENTIALS[name] if directory and name in CREDENTIALS \
            else None
        if name in given:
            sources[name] = "command-line option"
        elif var in env:
            sources[name] = f"environment {var}"
        elif credential is not None and credential.exists():
            sources[name] = f"credential {credential}"
        elif name in in_file:
            sources[name] = f"file {toml_file}"
        else:
            sources[name] = "default"
    return sources


def _origin(name: str, overrides: dict[str, Any], toml_file: Path | None) -> str:
    """Where a setting's value came from, for error messages."""
    if name in overrides:
        return "command-line option"
    env = f"{ENV_PREFIX}{name.upper()}"
    if any(k.upper() == env for k in os.environ):
        return f"environment {env}"
    directory = credentials_dir()
    if name in CREDENTIALS and directory is not None and (directory / CREDENTIALS[name]).exists():
        return f"credential {directory / CREDENTIALS[name]}"
    if toml_file is not None:
        return f"file {toml_file}"
    return "default"


def _describe(err: Any, overrides: dict[str, Any], toml_file: Path | None) -> str:
    loc = [str(p) for p in err["loc"]]
    name = loc[0] if loc else ""
    if not name:
        return f"settings: {err['msg'].removeprefix('Value error, ')}"
    origin = _origin(name, overrides, toml_file)
    if err["type"] == "extra_forbidden":
        return f"{'.'.join(loc)}: unknown setting ({origin}); see qbsync.toml.example"
    msg = err["msg"].removeprefix("Value error, ")
    if name in Settings.SECRETS or err["type"] in {"missing"}:
        return f"{name}: {msg} ({origin})"
    value = err.get("input")
    if isinstance(value, str):
        value = scrub(value)  # a password in database_url
    shown = repr(value) if isinstance(value, str | int | float | bool) else type(value).__name__
    return f"{name}: {msg}; got {shown} ({origin})"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, credentials and the TOML file; non-None overrides win
    (CLI options). Raises `ConfigError` naming each wrong setting, its origin and why.
    The secrets it loaded are registered with `qbsync.logs.register_secret`."""
    given = {k: v for k, v in overrides.items() if v is not None}
    toml_file = config_file()
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, given, toml_file) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
    for secret in settings.secret_values():
        register_secret(secret)  # never in a log line or a Sentry event from now on
    return settings
