"""Reading a JWKS document: which entries become signing keys, and which documents are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.fake_idp import SigningKey

from gateway.auth.jwks import JwksUnavailable, parse_jwks


def document(*keys: Any) -> bytes:
    """A JWKS document holding `keys` as they are."""
    return json.dumps({"keys": list(keys)}).encode()


def test_signing_keys_are_indexed_by_kid(signing_keys: dict[str, SigningKey]) -> None:
    """RSA, EC and Ed25519 public keys are kept under their kid, with or without `alg`."""
    names = ("rsa-1", "rsa-noalg", "ec-1", "ed-1")
    keys = parse_jwks(document(*(signing_keys[name].jwk for name in names)))
    assert sorted(keys) == sorted(names)
    assert keys["ec-1"] == signing_keys["ec-1"].jwk


def test_entries_that_cannot_sign_are_skipped(signing_keys: dict[str, SigningKey]) -> None:
    """Symmetric, encryption, private, kid-less, unparsable and non-object entries are ignored."""
    good = signing_keys["rsa-1"].jwk
    ignored = [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {**signing_keys["rsa-2"].jwk, "kid": "enc", "use": "enc"},
        {**signing_keys["rsa-3"].jwk, "kid": "private", "d": "AQAB"},
        {k: v for k, v in signing_keys["ec-1"].jwk.items() if k != "kid"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "EC", "kid": "no-point", "crv": "P-256"},
        "not-an-object",
    ]
    assert list(parse_jwks(document(*ignored, good))) == ["rsa-1"]


def test_first_of_two_keys_with_one_kid_wins(signing_keys: dict[str, SigningKey]) -> None:
    """A kid listed twice keeps its first key."""
    second = {**signing_keys["rsa-2"].jwk, "kid": "rsa-1"}
    assert (
        parse_jwks(document(signing_keys["rsa-1"].jwk, second))["rsa-1"]["n"]
        == (signing_keys["rsa-1"].jwk["n"])
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>login</html>", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"keys": {}}', "no 'keys' list"),
        (b"[]", "no 'keys' list"),
        (b'{"keys": []}', "no usable signing key"),
        (document({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}), "no usable signing key"),
    ],
)
def test_unusable_documents_are_refused(body: bytes, says: str) -> None:
    """A document that is not JSON, has no key list, or no usable key is a failed fetch."""
    with pytest.raises(JwksUnavailable, match=says):
        parse_jwks(body)
