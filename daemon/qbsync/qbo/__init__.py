"""QuickBooks Online: HTTP client, errors, OAuth 2.0 and the shared rate limiter."""

from .client import CallInfo, QboClient, TokenProvider
from .errors import (
    AuthError,
    DuplicateDocNumber,
    DuplicateName,
    Forbidden,
    NotFound,
    QboError,
    StaleObject,
    Throttled,
    TransientError,
    UnknownOutcome,
    ValidationFault,
)
from .oauth import ClientCredentials, InvalidGrant, OAuthEndpoints, OAuthError, TokenSet
from .ratelimit import PermitStore, RateLimits, RequestLimiter

__all__ = [
    "AuthError",
    "CallInfo",
    "ClientCredentials",
    "DuplicateDocNumber",
    "DuplicateName",
    "Forbidden",
    "InvalidGrant",
    "NotFound",
    "OAuthEndpoints",
    "OAuthError",
    "PermitStore",
    "QboClient",
    "QboError",
    "RateLimits",
    "RequestLimiter",
    "StaleObject",
    "Throttled",
    "TokenProvider",
    "TokenSet",
    "TransientError",
    "UnknownOutcome",
    "ValidationFault",
]
