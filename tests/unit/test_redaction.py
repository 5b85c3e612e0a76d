"""What of the upstream's words reaches a caller or a log (gateway/redaction.py)."""

from __future__ import annotations

import pytest

from gateway.redaction import known_fields, redact_keys, sanitise, without_credentials


@pytest.mark.parametrize(
    "account_id",
    ["proj_Q2xhT9aZk3LmN0pQ", "proj-Q2xhT9aZk3LmN0pQ", "org_AbCdEf123456", "org-AbCdEf123456"],
)
def test_organization_and_project_ids_are_redacted_in_every_spelling(account_id: str) -> None:
    """OpenAI's ids with `_` (today's) or `-` (older) never reach the caller."""
    out = sanitise(f"Project `{account_id}` does not have access to model `dall-e-2`")
    assert account_id not in out
    assert out.endswith("does not have access to model `dall-e-2`")


def test_the_configured_organization_and_project_are_redacted_whatever_their_shape() -> None:
    """The company's configured organization and project are cut out even when they do not
    look like ids."""
    out = sanitise("acme in team-images refused", ["acme", "team-images"])
    assert "acme" not in out and "team-images" not in out


def test_key_like_tokens_are_redacted() -> None:
    """Long tokens mixing letters and digits (keys, session ids) are cut out."""
    out = sanitise("token a1B2c3D4e5F6g7H8i9J0k1L2m3 rejected; api_key: hunter2")
    assert "a1B2c3D4e5F6g7H8i9J0k1L2m3" not in out and "hunter2" not in out
    assert out.startswith("token [redacted] rejected")


def test_a_key_echoed_in_code_type_or_param_becomes_generic() -> None:
    """Only codes, types and params OpenAI uses pass; an echoed key is replaced."""
    fields = known_fields(400, "sk-leak-12345678", "sk-leak-12345678", "sk-leak-12345678")
    assert fields == ("invalid_request_error", "invalid_request", None)
    limited = known_fields(429, "weird", "org-limit-xyz", None)
    assert limited == ("requests", "rate_limit_exceeded", None)


def test_known_code_type_and_param_are_kept() -> None:
    """The fields callers program against pass unchanged."""
    fields = known_fields(400, "invalid_request_error", "invalid_image_format", "image")
    assert fields == ("invalid_request_error", "invalid_image_format", "image")


def test_urls_are_logged_without_their_credentials() -> None:
    """user:password@ is removed from a URL; one without credentials is unchanged."""
    url = "https://svc:s3cret@idp.example/keys?x=1"
    assert without_credentials(url) == "https://idp.example/keys?x=1"
    assert without_credentials("https://idp.example/keys") == "https://idp.example/keys"


@pytest.mark.parametrize(
    "secret",
    [
        "gwk_" + "a1B2" * 10 + "xyz",
        "gwk_alice_test_key_aaaa",
        "sk-proj-abcdEFGH1234ijklMNOP",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    ],
)
def test_key_shaped_path_segments_are_redacted(secret: str) -> None:
    """A gateway key, an OpenAI key or a JWT in a path is cut out; the rest stays."""
    out = redact_keys(f"/admin/keys/{secret}/rotate")
    assert secret not in out and out == "/admin/keys/[redacted]/rotate"
    for plain in ("/admin/keys/key_5c1e0d9a7b3f2e41", "/admin/quotas/teams/sk-team"):
        assert redact_keys(plain) == plain
