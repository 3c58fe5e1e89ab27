"""A2A authentication schemes: declared on the card, enforced on exposure, sent on connect.

:class:`BearerAuth` (HTTP ``Authorization: Bearer <token>``) and :class:`ApiKeyAuth`
(a key in a header, ``X-API-Key`` by default) map each credential to an
*identity*: the agentcomm agent name the caller's calls are made as, so the
runtime's access policy (``Runtime(access=Policy(...))``) applies to A2A callers
by who they are. Credentials are compared in constant time.

Example::

    await rt.a2a.expose(
        "concierge",
        auth=[BearerAuth({"s3cret": "partner-team"}), ApiKeyAuth({"k1": "ops"})],
    )
    await rt.a2a.connect("concierge", url=url, token="s3cret")
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.names import check_name

__all__ = ["ApiKeyAuth", "Auth", "BearerAuth", "credential_headers"]


class Auth:
    """A scheme: its card entry and how it finds the caller's identity in headers."""

    #: The key of the scheme in the card's ``securitySchemes``.
    scheme_name: str = ""
    #: The ``WWW-Authenticate`` value of a refusal.
    challenge: str = ""

    def __init__(self, credentials: Mapping[str, str]) -> None:
        if not credentials:
            raise ConfigurationError(f"{type(self).__name__} needs at least one credential")
        for secret, identity in credentials.items():
            if not isinstance(secret, str) or len(secret) < 8:
                raise ConfigurationError("a credential is a string of at least 8 characters")
            check_name("agent", identity)
        self._credentials = [(s.encode(), i) for s, i in credentials.items()]

    def _match(self, presented: str | None) -> str | None:
        if not presented:
            return None
        given = presented.encode()
        found = None
        for secret, identity in self._credentials:  # no early exit: constant time
            if hmac.compare_digest(secret, given):
                found = identity
        return found

    def identify(self, headers: Mapping[str, str]) -> str | None:
        """The identity of the credential in ``headers`` (lower-case names), or ``None``."""
        raise NotImplementedError

    def card_scheme(self) -> dict[str, Any]:
        """The scheme as an A2A 1.0 ``SecurityScheme`` (JSON)."""
        raise NotImplementedError


class BearerAuth(Auth):
    """HTTP bearer tokens: ``{token: identity}``.

    Example::

        BearerAuth({"token-of-team-a": "team-a"})
    """

    scheme_name = "bearer"
    challenge = 'Bearer realm="a2a"'

    def identify(self, headers: Mapping[str, str]) -> str | None:
        value = headers.get("authorization", "")
        kind, _, token = value.partition(" ")
        return self._match(token.strip()) if kind.lower() == "bearer" else None

    def card_scheme(self) -> dict[str, Any]:
        return {
            "httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "description": "HTTP bearer token (Authorization: Bearer <token>)",
            }
        }


class ApiKeyAuth(Auth):
    """API keys in a header: ``{key: identity}``, header ``X-API-Key`` unless told.

    Example::

        ApiKeyAuth({"key-of-ops": "ops"}, header="X-API-Key")
    """

    scheme_name = "apiKey"

    def __init__(self, credentials: Mapping[str, str], *, header: str = "X-API-Key") -> None:
        super().__init__(credentials)
        self.header = header
        self.challenge = f'ApiKey header="{header}"'

    def identify(self, headers: Mapping[str, str]) -> str | None:
        return self._match(headers.get(self.header.lower()))

    def card_scheme(self) -> dict[str, Any]:
        return {
            "apiKeySecurityScheme": {
                "location": "header",
                "name": self.header,
                "description": f"API key in the {self.header} header",
            }
        }


def credential_headers(
    schemes: Mapping[str, Any], *, token: str | None, api_key: str | None
) -> dict[str, str]:
    """The headers that present ``token``/``api_key`` the way a card's schemes ask.

    ``schemes`` is the card's ``securitySchemes`` as JSON (1.0 field names).

    Example::

        credential_headers(card["securitySchemes"], token="t0ken-123", api_key=None)
    """
    out: dict[str, str] = {}
    for scheme in schemes.values():
        http = scheme.get("httpAuthSecurityScheme")
        key = scheme.get("apiKeySecurityScheme")
        if token and http and str(http.get("scheme", "")).lower() == "bearer":
            out["Authorization"] = f"Bearer {token}"
        if api_key and key and key.get("location", "header") == "header":
            out[str(key.get("name") or "X-API-Key")] = api_key
    if token and "Authorization" not in out:
        out["Authorization"] = f"Bearer {token}"
    if api_key and not any(k != "Authorization" for k in out):
        out["X-API-Key"] = api_key
    return out
