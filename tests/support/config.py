"""A test configuration: known principals and keys, and the company's secrets."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import yaml

UPSTREAM_KEY = "sk-company-upstream-key-0123456789abcdef"
USER_SECRET = "test-user-secret-for-hmac"
KEYS = {
    "alice": "gwk_alice_test_key_aaaaaaaaaaaaaaaa",
    "bob": "gwk_bob_test_key_bbbbbbbbbbbbbbbbbb",
    "carol": "gwk_carol_test_key_cccccccccccccccc",
    "grafana": "gwk_grafana_test_key_gggggggggggggg",
}
TEAMS = {"alice": "vision", "bob": "vision", "carol": "audio", "grafana": "ops"}
ENV = {"OPENAI_API_KEY": UPSTREAM_KEY, "GATEWAY_USER_SECRET": USER_SECRET}


def principals() -> list[dict[str, str]]:
    """Every test principal, with its key's digest; grafana is the admin."""
    return [
        {
            "user": user,
            "team": TEAMS[user],
            "role": "admin" if user == "grafana" else "user",
            "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        }
        for user, key in KEYS.items()
    ]


def base_config(upstream_url: str) -> dict[str, Any]:
    """A config pointing at `upstream_url`, with no quota rules and no cache.

    Most tests count what reaches the upstream, so the cache is opt-in (tests of the
    cache turn it on).
    """
    return {
        "upstream": {"base_url": upstream_url, "timeout_seconds": 5},
        "principals": principals(),
        "quotas": {"default": []},
        "cache": {"enabled": False},
    }


def merged(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`config` with `overrides` merged in, section by section."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write `config` as YAML to `path`."""
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def auth(user: str = "alice") -> dict[str, str]:
    """The Authorization header of a test principal."""
    return {"Authorization": f"Bearer {KEYS[user]}"}


EDITS_MODEL = "gpt-image-test"
# Made-up list prices, round enough to compute expected costs by hand: per 1M tokens, text
# input 5 USD, image input 10, image output 40; one 1024x1024 image reserves 250, 1000 or
# 5000 output tokens, so 0.01, 0.04 or 0.2 USD.
EDITS_IMAGE_PRICE = {"low": 0.01, "medium": 0.04, "high": 0.2}
EDITS_PRICE: dict[str, Any] = {
    "text_input_per_1m_tokens": 5.0,
    "image_input_per_1m_tokens": 10.0,
    "image_output_per_1m_tokens": 40.0,
    "output_tokens": {"1024x1024": {"low": 250, "medium": 1000, "high": 5000}},
}


def edits_upstream(upstream_url: str, **edits: Any) -> dict[str, Any]:
    """The `upstream` section of a gateway in edits mode against `upstream_url`."""
    return {
        "base_url": upstream_url,
        "timeout_seconds": 5,
        "adapter": "edits",
        "edits": {"model": EDITS_MODEL, "prices": {EDITS_MODEL: EDITS_PRICE}, **edits},
    }
