"""A fake company identity provider: a JWKS served by a real HTTP server on loopback, and the
private keys to sign tokens with (RSA, EC and Ed25519, generated with PyJWT's cryptography).

Tests rotate keys mid-run (`publish`), count fetches, make the IdP fail or vanish, and
mint tokens, good and bad, with `token()`.

It also signs people in as an OIDC provider does for a browser app: a discovery document,
an authorization endpoint that remembers the PKCE challenge (S256 only) and sends the
browser back with a code for whoever `signed_in` names, and a token endpoint that redeems
a code once, only for the same client and redirect URI, and only with the verifier whose
SHA-256 is the challenge (each redemption is kept in `exchanges`, refused or not).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from support.loopback import LoopbackServer, QuietHandler

AUDIENCE = "image-gateway"
JWKS_PATH = "/oauth2/v1/keys"
AUTHORIZE_PATH = "/oauth2/v1/authorize"
TOKEN_PATH = "/oauth2/v1/token"
CONSOLE_CLIENT = "gateway-console"


@dataclass(frozen=True)
class SigningKey:
    """One IdP key pair: its id, algorithm, private half and public JWK."""

    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    def public_pem(self) -> bytes:
        """The public key as PEM (what an HMAC-confusion attacker would use as the secret)."""
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def new_key(kid: str, alg: str = "RS256", *, jwk_alg: bool = True) -> SigningKey:
    """A fresh key pair for `alg` (RS*/PS* RSA 2048, ES256 P-256, EdDSA Ed25519)."""
    private: Any
    if alg.startswith(("RS", "PS")):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(alg)
    jwk = {**jwk, "kid": kid, "use": "sig", **({"alg": alg} if jwk_alg else {})}
    return SigningKey(kid, alg, private, jwk)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWT assembled by hand, with whatever header and signature bytes are given."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(signature)


def hmac_with_public_key(key: SigningKey, claims: dict[str, Any]) -> str:
    """The classic key-confusion forgery: alg HS256, "signed" with the IdP's public key."""
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    mac = hmac.new(key.public_pem(), head.encode(), hashlib.sha256).digest()
    return head + "." + _b64(mac)


class FakeIdP:
    """Start with `with FakeIdP() as idp:`; `idp.jwks_url` is what the gateway fetches."""

    def __init__(self, keys: Sequence[SigningKey] = ()) -> None:
        self.published: list[SigningKey] = list(keys)
        self.fetches = 0
        self.status = 200
        self.delay = 0.0
        self.gate = threading.Event()  # clear it to hold every fetch until it is set again
        self.gate.set()
        self.override: tuple[int, dict[str, str], bytes] | None = None  # status, headers, body
        self._lock = threading.Lock()
        self.signed_in: dict[str, Any] = {}  # claim overrides of the person at the browser
        self.token_seconds = 600  # lifetime of the tokens the token endpoint issues
        self.codes: dict[str, dict[str, str]] = {}
        self.exchanges: list[dict[str, str]] = []
        self._server = LoopbackServer(self._handler_class())

    @property
    def issuer(self) -> str:
        return self._server.base + "/oauth2/default"

    @property
    def jwks_url(self) -> str:
        return self._server.base + JWKS_PATH

    def console_config(self, **overrides: Any) -> dict[str, Any]:
        """`identity.jwt.console` for this IdP: endpoints from its discovery document."""
        return {"client_id": CONSOLE_CLIENT, **overrides}

    def jwt_config(self, **overrides: Any) -> dict[str, Any]:
        """The gateway's `identity.jwt` section for this IdP: users by email, teams by group."""
        return {
            "issuer": self.issuer,
            "audience": AUDIENCE,
            "jwks_url": self.jwks_url,
            "algorithms": ["RS256", "ES256", "EdDSA"],
            "user_claim": "email",
            "groups_claim": "groups",
            "group_teams": {"grp-vision": "vision", "grp-audio": "audio"},
            "admin_claim": "groups",
            "admin_values": ["grp-gateway-admins"],
            **overrides,
        }

    def publish(self, *keys: SigningKey) -> None:
        """Serve exactly these public keys from now on (a rotation)."""
        with self._lock:
            self.published = list(keys)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims for the gateway's audience, issued now for ten minutes; `None` drops one."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "00u-dave",
            "email": "dave@example.com",
            "groups": ["grp-vision", "everyone"],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, key: SigningKey, *, kid: str | None = None, **overrides: Any) -> str:
        """A token signed with `key` (its `kid` unless told otherwise), claims as `claims()`."""
        return jwt.encode(
            self.claims(**overrides),
            key.private,
            algorithm=key.alg,
            headers={"kid": kid if kid is not None else key.kid},
        )

    def stop(self) -> None:
        """Take the IdP off the network: its port refuses connections from now on."""
        self.gate.set()
        self._server.stop()

    def __enter__(self) -> FakeIdP:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.fetches += 1
            keys = [key.jwk for key in self.published]
        self.gate.wait(timeout=10)
        if self.delay:
            time.sleep(self.delay)
        if self.override is not None:
            return self.override
        if self.status != 200:
            return self.status, {}, b'{"error": "temporarily_unavailable"}'
        return 200, {}, json.dumps({"keys": keys}).encode()

    def discovery(self) -> dict[str, str]:
        """The OIDC discovery document's endpoints."""
        base = self._server.base
        return {
            "issuer": self.issuer,
            "authorization_endpoint": base + AUTHORIZE_PATH,
            "token_endpoint": base + TOKEN_PATH,
            "jwks_uri": self.jwks_url,
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """The browser at the authorization endpoint: back to its redirect URI with a code."""
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {}, b"PKCE with S256 is required"
        if query.get("client_id") != CONSOLE_CLIENT or query.get("response_type") != "code":
            return 400, {}, b"unknown client or response type"
        code = secrets.token_urlsafe(16)
        with self._lock:
            self.codes[code] = {**query, "claims": json.dumps(self.signed_in)}
        back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return 302, {"location": back}, b""

    def redeem(self, form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """The token endpoint: the code, once, with the verifier its challenge was made of."""
        with self._lock:
            asked = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "").encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        checks = {
            "code": asked is not None,
            "client": asked is not None and form.get("client_id") == asked["client_id"],
            "redirect_uri": asked is not None and form.get("redirect_uri") == asked["redirect_uri"],
            "pkce": asked is not None and digest.decode() == asked["code_challenge"],
        }
        failed = [name for name, ok in checks.items() if not ok]
        self.exchanges.append({"result": "refused: " + failed[0] if failed else "issued"})
        if failed or asked is None:
            return 400, {}, json.dumps({"error": "invalid_grant"}).encode()
        return 200, {}, json.dumps(self._tokens(asked)).encode()

    def _tokens(self, asked: dict[str, str]) -> dict[str, Any]:
        key, now = self.published[0], int(time.time())
        times = {"iat": now, "nbf": now, "exp": now + self.token_seconds}
        claims = {**times, **json.loads(asked["claims"])}
        access = self.token(key, **claims)
        ident = self.token(key, aud=CONSOLE_CLIENT, nonce=asked.get("nonce"), **claims)
        return {"token_type": "Bearer", "access_token": access, "id_token": ident,
                "expires_in": self.token_seconds}  # fmt: skip

    def _handler_class(self) -> type[QuietHandler]:
        idp = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                path, _, raw = self.path.partition("?")
                discovery_path = urlsplit(idp.issuer).path + "/.well-known/openid-configuration"
                if path == JWKS_PATH:
                    status, headers, body = idp._answer()
                elif path == discovery_path:
                    status, headers, body = 200, {}, json.dumps(idp.discovery()).encode()
                elif path == AUTHORIZE_PATH:
                    status, headers, body = idp.authorize(dict(parse_qsl(raw)))
                else:
                    status, headers, body = 404, {}, b""
                # No keep-alive: once stopped, the IdP must refuse every new fetch.
                self.send_body(
                    status, {"content-type": "application/json", **headers}, body, close=True
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                answer = idp.redeem(form) if self.path == TOKEN_PATH else (404, {}, b"")
                status, headers, body = answer
                self.send_body(
                    status, {"content-type": "application/json", **headers}, body, close=True
                )

        return Handler
