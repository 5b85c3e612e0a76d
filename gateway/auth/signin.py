"""The admin console's sign-in with the company IdP: OIDC authorization code with PKCE.

The page does the browser's half: it makes the PKCE verifier and its S256 challenge, a
`state` and a `nonce`, opens the IdP's authorization endpoint in a popup, and receives the
code on the console's callback page (same origin). It then hands the code and the verifier
to `POST /admin/console/sso/token`, and this module does the rest server-side: it redeems
the code at the IdP's token endpoint (the IdP checks the verifier against the challenge),
and verifies the token it got exactly as any bearer token is verified (`oidc.JwtVerifier`:
signature, issuer, audience, times), and, for an ID token, its `nonce`. The page keeps the
token in memory only and sends it as its bearer, so the admin API authorises the person
by the configured admin claim, as for any SSO caller.

The redemption happens here rather than in the page so that the page's Content-Security-
Policy still lets it talk to this origin alone, and so that an IdP that will not take a
public client can be given a client secret the page never sees. The IdP's endpoints come
from its discovery document (`<issuer>/.well-known/openid-configuration`), fetched on first
use and kept, unless the config names them.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import httpx
import jwt

from gateway.auth.base import Identity
from gateway.auth.oidc import JwtVerifier, rejected
from gateway.errors import AuthenticationError, IdentityProviderUnavailable
from gateway.settings.identity import ConsoleSignInConfig

MAX_IDP_ANSWER = 256 * 1024


class Endpoints(NamedTuple):
    """Where the browser is sent to sign in, and where the gateway redeems the code."""

    authorization: str
    token: str


class SignedIn(NamedTuple):
    """The console's bearer token, who it names, and when it stops working."""

    token: str
    identity: Identity
    expires_at: float


class ConsoleSignIn:
    """The console's OIDC client for the IdP that issues the gateway's SSO tokens."""

    def __init__(
        self,
        config: ConsoleSignInConfig,
        issuer: str,
        verifier: JwtVerifier,
        client_secret: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config, self._issuer, self._verifier = config, issuer, verifier
        self._secret = client_secret
        self._client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(10.0), follow_redirects=False
        )
        self._endpoints: Endpoints | None = None
        if config.authorization_endpoint and config.token_endpoint:
            self._endpoints = Endpoints(config.authorization_endpoint, config.token_endpoint)

    async def endpoints(self) -> Endpoints:
        """The IdP's endpoints (discovered once); `IdentityProviderUnavailable` if not now."""
        if self._endpoints is None:
            discovery = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await self._json("GET", discovery)
            authorization = self.config.authorization_endpoint or found.get(
                "authorization_endpoint"
            )
            token = self.config.token_endpoint or found.get("token_endpoint")
            if not isinstance(authorization, str) or not isinstance(token, str):
                raise IdentityProviderUnavailable()
            self._endpoints = Endpoints(authorization, token)
        return self._endpoints

    async def redeem(self, code: str, verifier: str, redirect_uri: str, nonce: str) -> SignedIn:
        """Redeem the code with its PKCE verifier; raises `AuthenticationError` (the IdP
        refused, or its token does not pass) or `IdentityProviderUnavailable`."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            "client_id": self.config.client_id,
        }
        if self._secret is not None:
            form["client_secret"] = self._secret
        answer = await self._json("POST", (await self.endpoints()).token, data=form)
        token = answer.get(self.config.token)
        if not isinstance(token, str):
            raise AuthenticationError(
                f"Sign-in failed: the identity provider sent no {self.config.token}."
            )
        identity = await self._verifier.authenticate(token)
        claims = jwt.decode(token, options={"verify_signature": False})  # verified just now
        if self.config.token == "id_token" and claims.get("nonce") != nonce:  # noqa: S105
            raise rejected("its nonce is not this sign-in's")
        return SignedIn(token, identity, float(claims["exp"]))

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """An IdP call's JSON object; its refusal (4xx) is the caller's 401."""
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise IdentityProviderUnavailable() from exc
        try:
            body = json.loads(response.content[:MAX_IDP_ANSWER])
        except ValueError:
            body = None
        if 400 <= response.status_code < 500:
            error = body.get("error") if isinstance(body, dict) else None
            reason = error if isinstance(error, str) and error.isidentifier() else "refused"
            raise AuthenticationError(f"Sign-in failed: the identity provider said {reason}.")
        if response.status_code != 200 or not isinstance(body, dict):
            raise IdentityProviderUnavailable()
        return body

    async def close(self) -> None:
        """Release the IdP client's connections."""
        await self._client.aclose()
