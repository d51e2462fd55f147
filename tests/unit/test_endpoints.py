"""The endpoint policy (which hosts may get a QuickBooks token or the client secret), as a
function and as the settings' validation; the choice a stored API URL may make."""

from __future__ import annotations

import pytest

from qbsync.config import load_settings
from qbsync.errors import ConfigError
from qbsync.qbo.endpoints import (
    API_PRODUCTION,
    API_SANDBOX,
    EndpointPolicy,
    EndpointRefused,
    api_base_for,
    is_loopback_host,
)

STRICT = EndpointPolicy.of()
LOCAL = EndpointPolicy.of(allow_local=True)
PROXY = EndpointPolicy.of(["qbo-proxy.example.com"])


@pytest.mark.parametrize("url", [
    "https://quickbooks.api.intuit.com/v3/company/1/invoice",
    "https://sandbox-quickbooks.api.intuit.com",
    "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
    "https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
    "https://appcenter.intuit.com/connect/oauth2",
    "https://developer.intuit.com/.well-known/openid_configuration/",
    "https://QuickBooks.API.Intuit.com./v3",  # case and a trailing dot name the same host
])
def test_intuit_hosts_over_https_are_allowed(url: str) -> None:
    assert STRICT.refusal(url) is None


@pytest.mark.parametrize(("url", "why"), [
    ("http://quickbooks.api.intuit.com", "http:// is accepted only for a loopback address"),
    ("http://evil.example", "http:// is accepted only for a loopback address"),
    ("https://evil.example", "not one of Intuit's QuickBooks hosts"),
    ("https://quickbooks.api.intuit.com.evil.example", "not one of Intuit's"),
    ("https://quickbooks.api.intuit.com@evil.example/", "user:password@"),
    ("ftp://quickbooks.api.intuit.com", "only https://"),
    ("http://127.0.0.1:8765", "allow_local_quickbooks = true"),
    ("http://localhost:8765", "allow_local_quickbooks = true"),
    ("http://[::1]:8765", "allow_local_quickbooks = true"),
])
def test_refused_without_the_local_setting(url: str, why: str) -> None:
    with pytest.raises(EndpointRefused, match="refused") as info:
        STRICT.check(url, "api_base_url")
    assert why in str(info.value)


@pytest.mark.parametrize("url", [
    "http://evil.example", "http://10.0.0.5:8765", "http://192.168.1.1",
    "http://127.0.0.1.evil.example", "http://localhost.evil.example", "https://evil.example",
])
def test_non_loopback_is_refused_even_with_the_local_setting(url: str) -> None:
    assert LOCAL.refusal(url) is not None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8765", "http://127.0.0.2:9", "http://localhost:1", "http://[::1]:8765",
    "http://[::ffff:127.0.0.1]:8765", "https://127.0.0.1:8443",
])
def test_loopback_is_allowed_with_the_local_setting(url: str) -> None:
    assert LOCAL.refusal(url) is None


def test_a_listed_host_is_allowed_over_https_only() -> None:
    assert PROXY.refusal("https://qbo-proxy.example.com/v3/company/1") is None
    assert PROXY.refusal("https://QBO-proxy.example.com.") is None
    assert "http:// is accepted only" in str(PROXY.refusal("http://qbo-proxy.example.com"))
    assert PROXY.refusal("https://other.example.com") is not None
    assert PROXY.refusal("https://sub.qbo-proxy.example.com") is not None  # exact names only


@pytest.mark.parametrize("entry", ["https://qbo-proxy.example.com", "proxy:443", "a/b", "*.x",
                                   ""])
def test_host_list_entries_are_bare_host_names(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        EndpointPolicy.of([entry])


def test_loopback_names() -> None:
    assert is_loopback_host("127.255.0.1")
    assert is_loopback_host("LOCALHOST.")
    assert not is_loopback_host("localhost.example")
    assert not is_loopback_host("0.0.0.0")  # noqa: S104


# --- the settings ------------------------------------------------------------------------

def test_settings_refuse_http_without_the_local_setting() -> None:
    with pytest.raises(ConfigError, match=r"api_base_url: refused: .*allow_local_quickbooks"):
        load_settings(api_base_url="http://127.0.0.1:8765")
    with pytest.raises(ConfigError, match="oauth_discovery_url: refused: http:// is accepted "
                                          "only for a loopback address"):
        load_settings(oauth_discovery_url="http://evil.example/.well-known/x",
                      allow_local_quickbooks=True)


def test_settings_accept_the_emulator_with_the_local_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_ALLOW_LOCAL_QUICKBOOKS", "1")
    s = load_settings(api_base_url="http://127.0.0.1:8765",
                      oauth_token_endpoint="http://127.0.0.1:8765/oauth2/v1/tokens/bearer")
    assert s.allow_local_quickbooks
    assert s.endpoint_policy().refusal(s.oauth_token_endpoint) is None


def test_settings_accept_a_listed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_QUICKBOOKS_HOSTS", "qbo-proxy.example.com, other.example")
    s = load_settings(api_base_url="https://qbo-proxy.example.com")
    assert s.quickbooks_hosts == ("qbo-proxy.example.com", "other.example")
    assert s.api_base_url == "https://qbo-proxy.example.com"
    with pytest.raises(ConfigError, match="oauth_token_endpoint: refused"):
        load_settings(oauth_token_endpoint="https://third.example/token")


def test_settings_name_a_bad_host_entry() -> None:
    with pytest.raises(ConfigError, match=r"quickbooks_hosts: .*not a host name"):
        load_settings(quickbooks_hosts=["https://qbo-proxy.example.com"])


# --- a stored API URL chooses among allowed endpoints --------------------------------------

def test_a_stored_url_may_choose_intuit_or_the_configured_api() -> None:
    assert api_base_for(API_SANDBOX, API_PRODUCTION, STRICT, realm_id="1") == API_SANDBOX
    assert api_base_for(API_PRODUCTION + "/", API_PRODUCTION, STRICT, realm_id="1") \
        == API_PRODUCTION
    local = "http://127.0.0.1:8765"
    assert api_base_for(local, local, LOCAL, realm_id="1") == local
    assert api_base_for(API_PRODUCTION, local, LOCAL, realm_id="1") == API_PRODUCTION


@pytest.mark.parametrize("stored", [
    "http://evil.example", "https://evil.example", "http://127.0.0.1:6666",
    "https://quickbooks.api.intuit.com/../evil", "https://qbo-proxy.example.com",
])
def test_any_other_stored_url_is_refused(stored: str) -> None:
    """Even a loopback port or a listed host: only the configured URL is a choice."""
    policy = EndpointPolicy.of(["qbo-proxy.example.com"], allow_local=True)
    with pytest.raises(EndpointRefused, match=r"company 42 is .*not an API endpoint these "
                                              r"settings allow"):
        api_base_for(stored, "http://127.0.0.1:8765", policy, realm_id="42")


def test_the_configured_url_still_passes_the_policy() -> None:
    """A configured URL that escaped validation (Settings.model_copy does not validate)."""
    with pytest.raises(EndpointRefused, match="allow_local_quickbooks"):
        api_base_for("http://127.0.0.1:8765", "http://127.0.0.1:8765", STRICT, realm_id="1")
