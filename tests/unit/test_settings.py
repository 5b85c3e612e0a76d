"""The config file and environment -> one validated, frozen Settings; errors name the key's path."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from support.config import EDITS_PRICE, edits_upstream

from gateway.settings.build import build_settings, load_settings
from gateway.settings.config import (
    DALL_E_2_PRICES,
    ConfigError,
    GatewayConfig,
    config_warnings,
    parse_config,
    read_config,
)

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"
DIGEST_A = hashlib.sha256(b"key-a").hexdigest()
DIGEST_B = hashlib.sha256(b"key-b").hexdigest()
# A real upstream (not the sandbox) that speaks the variations wire format: not OpenAI's,
# whose variations endpoint has no live model (see the upstream warnings below).
REAL = {"upstream": {"base_url": "https://images.example.com/v1"}}
SECRETS = {"OPENAI_API_KEY": "sk-test-upstream-0123456789", "GATEWAY_USER_SECRET": "hmac-secret"}


def _error(raw: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return str(caught.value)


def test_empty_document_gives_the_documented_defaults() -> None:
    """An empty config file yields the SPEC defaults (OpenAI upstream, dall-e-2, list prices)."""
    config = parse_config(None)
    assert config.upstream.base_url == "https://api.openai.com/v1"
    assert config.upstream.timeout_seconds == 300
    assert config.limits.shutdown_grace_seconds == 300
    assert config.upstream.watch_seconds == 300
    assert config.upstream.models == ("dall-e-2",)
    assert config.identity.user_field == "hashed"
    assert config.prices == DALL_E_2_PRICES
    assert config.cache.hits_count_against == ("requests",)
    assert config.store.on_error == "fail_closed"
    assert config.principals == ()


def test_shipped_config_is_valid() -> None:
    """config/gateway.yaml parses: the live path (the edits adapter, gpt-image-2) on the
    sandbox, with the default quota rules."""
    config = read_config(SHIPPED_CONFIG)
    assert config.upstream.is_sandbox
    assert config.upstream.adapter == "edits" and config.upstream.edits is not None
    assert config.upstream.edits.model_list == ("gpt-image-2",)
    assert [(r.unit, r.limit, r.window) for r in config.quotas.default] == [
        ("requests", 60, "minute"),
        ("images", 200, "day"),
        ("usd", 5.0, "day"),
    ]


def test_sso_example_config_is_valid() -> None:
    """config/gateway.sso.example.yaml parses, with SSO tokens and trusted headers both on."""
    config = read_config(SHIPPED_CONFIG.with_name("gateway.sso.example.yaml"))
    assert config.identity.jwt is not None and config.identity.jwt.algorithms == ("RS256",)
    assert config.identity.trusted_header is not None


def test_spec_example_config_is_valid() -> None:
    """The SPEC section 3 example (principals, overrides, team pools) parses as written."""
    raw = {
        "upstream": {"base_url": "https://api.openai.com/v1", "models": ["dall-e-2"]},
        "principals": [
            {"user": "alice", "team": "vision", "key_sha256": DIGEST_A},
            {"user": "grafana", "team": "ops", "role": "admin", "key_sha256": DIGEST_B},
        ],
        "quotas": {
            "default": [{"unit": "requests", "limit": 60, "window": "minute"}],
            "users": {"alice": [{"unit": "images", "limit": 500, "window": "day"}]},
            "teams": {"vision": [{"unit": "usd", "limit": 50.0, "window": "month"}]},
        },
        "prices": {"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.020},
        "cache": {"scope": "team", "hits_count_against": ["requests", "images"]},
    }
    config = parse_config(raw)
    assert config.principals[1].role == "admin"
    assert config.quotas.users["alice"][0].limit == 500
    assert config.quotas.teams["vision"][0].unit == "usd"


def test_config_is_frozen() -> None:
    """The validated config cannot be changed after start-up."""
    config = parse_config({})
    with pytest.raises(pydantic.ValidationError):
        config.upstream.timeout_seconds = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"upstreem": {}}, "upstreem: unknown key"),
        ({"upstream": {"timeout_secs": 5}}, "upstream.timeout_secs: unknown key"),
        (
            {"quotas": {"default": [{"unit": "images", "limit": 1, "window": "day", "x": 1}]}},
            "quotas.default[0].x: unknown key",
        ),
        ({"cache": {"enabled": True, "ttl": 5}}, "cache.ttl: unknown key"),
        ({"identity": {"secret": "inline-secret"}}, "identity.secret: unknown key"),
    ],
)
def test_unknown_key_is_an_error_naming_its_path(raw: dict[str, Any], path: str) -> None:
    """An unknown key anywhere is refused, and the message names its dotted path."""
    assert path in _error(raw)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"upstream": {"timeout_seconds": 0}}, "upstream.timeout_seconds"),
        ({"upstream": {"timeout_seconds": "soon"}}, "upstream.timeout_seconds"),
        ({"upstream": {"adapter": "generations"}}, "upstream.adapter"),
        ({"upstream": {"models": []}}, "upstream.models"),
        ({"identity": {"user_field": "email"}}, "identity.user_field"),
        (
            {"quotas": {"default": [{"unit": "bytes", "limit": 1, "window": "day"}]}},
            "quotas.default[0].unit",
        ),
        (
            {"quotas": {"default": [{"unit": "images", "limit": -1, "window": "day"}]}},
            "quotas.default[0].limit",
        ),
        (
            {"quotas": {"users": {"alice": [{"unit": "images", "limit": 1, "window": "year"}]}}},
            "quotas.users.alice[0].window",
        ),
        (
            {"principals": [{"user": "a", "team": "t", "key_sha256": "nothex"}]},
            "principals[0].key_sha256",
        ),
        (
            {"principals": [{"user": "a b", "team": "t", "key_sha256": DIGEST_A}]},
            "principals[0].user",
        ),
        (
            {"principals": [{"user": "a", "team": "t", "role": "root", "key_sha256": DIGEST_A}]},
            "principals[0].role",
        ),
        ({"cache": {"scope": "planet"}}, "cache.scope"),
        ({"cache": {"hits_count_against": ["tokens"]}}, "cache.hits_count_against[0]"),
        ({"store": {"on_error": "shrug"}}, "store.on_error"),
        ({"limits": {"max_image_side": 0}}, "limits.max_image_side"),
    ],
)
def test_bad_value_is_an_error_naming_its_path(raw: dict[str, Any], path: str) -> None:
    """A value of the wrong type or outside its set is refused, naming the key's path."""
    assert f"{path}:" in _error(raw)


def test_every_bad_key_is_reported_at_once() -> None:
    """Two bad keys produce one message listing both paths."""
    message = _error({"upstream": {"timeout_seconds": -1}, "store": {"on_error": "x"}})
    assert "upstream.timeout_seconds" in message
    assert "store.on_error" in message


@pytest.mark.parametrize("price", [-0.02, float("nan"), float("inf")])
def test_negative_or_nan_price_is_an_error(price: float) -> None:
    """A negative, NaN or infinite price is refused: usd quotas would become credit or poison."""
    prices = {**DALL_E_2_PRICES, "512x512": price}
    assert "prices.512x512:" in _error({"prices": prices})


def test_nan_limit_is_an_error() -> None:
    """A NaN quota limit is refused, naming the rule."""
    raw = {"quotas": {"default": [{"unit": "usd", "limit": float("nan"), "window": "day"}]}}
    assert "quotas.default[0].limit:" in _error(raw)


def test_missing_price_is_an_error() -> None:
    """Prices must cover every size."""
    assert "no price for 256x256" in _error({"prices": {"512x512": 0.1, "1024x1024": 0.1}})


def test_unknown_size_in_prices_is_an_error() -> None:
    """A price for a size the endpoint does not have is refused, naming it."""
    assert "prices.2048x2048" in _error({"prices": {**DALL_E_2_PRICES, "2048x2048": 0.1}})


def test_duplicate_rule_is_an_error() -> None:
    """Two rules with the same unit and window in one list are refused."""
    rule = {"unit": "images", "limit": 1, "window": "day"}
    assert "same unit and window" in _error({"quotas": {"default": [rule, rule]}})


def test_user_listed_twice_is_an_error() -> None:
    """Two principals with the same user id are refused."""
    principals = [
        {"user": "a", "team": "t", "key_sha256": DIGEST_A},
        {"user": "a", "team": "u", "key_sha256": DIGEST_B},
    ]
    assert "a user is listed twice" in _error({"principals": principals})


def test_two_principals_sharing_a_key_is_an_error() -> None:
    """Two principals with the same key digest are refused."""
    principals = [
        {"user": "a", "team": "t", "key_sha256": DIGEST_A},
        {"user": "b", "team": "t", "key_sha256": DIGEST_A},
    ]
    assert "share one key" in _error({"principals": principals})


@pytest.mark.parametrize("raw", [[1, 2], "just a string", 42])
def test_top_level_must_be_a_mapping(raw: object) -> None:
    """A YAML document that is not a mapping is refused at the top level."""
    assert "(top level)" in _error(raw)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming the path."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert str(path) in str(caught.value)
    assert "cannot read" in str(caught.value)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not YAML is a ConfigError naming the path."""
    path = tmp_path / "bad.yaml"
    path.write_text("upstream: [unclosed\n  base_url: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert "not valid YAML" in str(caught.value)
    assert str(path) in str(caught.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is a ConfigError, not a crash."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"upstream:\n  base_url: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert str(path) in str(caught.value)


def test_real_upstream_needs_the_api_key_env() -> None:
    """A non-sandbox upstream without its API key variable is a ConfigError naming the variable."""
    with pytest.raises(ConfigError) as caught:
        build_settings(parse_config(REAL), {"GATEWAY_USER_SECRET": "s"})
    assert "upstream.api_key_env" in str(caught.value)
    assert "OPENAI_API_KEY" in str(caught.value)


def test_real_upstream_with_hashed_users_needs_the_secret() -> None:
    """user_field hashed against a real upstream needs GATEWAY_USER_SECRET."""
    with pytest.raises(ConfigError) as caught:
        build_settings(parse_config(REAL), {"OPENAI_API_KEY": "sk-x"})
    assert "identity.secret_env" in str(caught.value)


def test_plain_user_field_needs_no_secret() -> None:
    """With user_field plain a real upstream starts without a user secret."""
    config = parse_config({**REAL, "identity": {"user_field": "plain"}})
    settings = build_settings(config, {"OPENAI_API_KEY": "sk-x"})
    assert settings.config.identity.user_field == "plain"


def test_sandbox_needs_no_secrets_and_warns() -> None:
    """The sandbox starts with an empty environment, with a random user secret and a warning."""
    settings = build_settings(parse_config({"upstream": {"base_url": "sandbox"}}), {})
    assert settings.upstream_api_key is None
    assert len(settings.user_secret.get_secret_value()) == 64
    assert any("GATEWAY_USER_SECRET" in w for w in settings.warnings)


def test_serve_warns_of_a_missing_upstream_or_quotas_section() -> None:
    """The settings `serve` starts with carry the same missing-section warnings as
    `config check`: an empty file means api.openai.com and no limit."""
    warnings = build_settings(parse_config(None), SECRETS).warnings
    assert any("no upstream: section" in w for w in warnings)
    assert any("no quotas: section" in w for w in warnings)


def test_every_missing_secret_is_named_at_once() -> None:
    """A real upstream with neither secret set names both variables in one error."""
    with pytest.raises(ConfigError) as caught:
        build_settings(parse_config(REAL), {})
    assert "OPENAI_API_KEY" in str(caught.value)
    assert "GATEWAY_USER_SECRET" in str(caught.value)


def test_demo_key_is_refused_with_a_real_upstream() -> None:
    """GATEWAY_DEMO_KEY is only allowed with the sandbox upstream."""
    with pytest.raises(ConfigError) as caught:
        build_settings(parse_config(REAL), {**SECRETS, "GATEWAY_DEMO_KEY": "demo"})
    assert "GATEWAY_DEMO_KEY" in str(caught.value)


def test_demo_admin_key_is_refused_with_a_real_upstream() -> None:
    """GATEWAY_DEMO_ADMIN_KEY, which opens the admin plane, is only allowed with the sandbox,
    and the refusal is one line naming it."""
    with pytest.raises(ConfigError) as caught:
        build_settings(parse_config(REAL), {**SECRETS, "GATEWAY_DEMO_ADMIN_KEY": "gwk_x"})
    assert str(caught.value).startswith("GATEWAY_DEMO_ADMIN_KEY: ")
    assert "\n" not in str(caught.value)


def test_demo_key_is_read_with_the_sandbox() -> None:
    """With the sandbox, GATEWAY_DEMO_KEY is taken from the environment."""
    config = parse_config({"upstream": {"base_url": "sandbox"}})
    settings = build_settings(config, {"GATEWAY_DEMO_KEY": "gwk_demo"})
    assert settings.demo_key is not None
    assert settings.demo_key.get_secret_value() == "gwk_demo"


def test_secrets_come_from_the_named_variables() -> None:
    """Each secret comes from the variable the config names; cache Redis defaults to the store's."""
    config = parse_config(
        {
            **REAL,
            "upstream": {**REAL["upstream"], "api_key_env": "MY_KEY"},
            "metrics": {"token_env": "SCRAPE_TOKEN"},
        }
    )
    env = {
        "MY_KEY": "sk-mine",
        "GATEWAY_USER_SECRET": "hmac",
        "REDIS_URL": "redis://r:6379/0",
        "SCRAPE_TOKEN": "tok",
        "GATEWAY_PUBLIC_URL": "https://gw.example/",
    }
    settings = build_settings(config, env)
    assert settings.upstream_api_key is not None
    assert settings.upstream_api_key.get_secret_value() == "sk-mine"
    assert settings.redis_url is not None
    assert settings.cache_redis_url is not None
    assert settings.cache_redis_url.get_secret_value() == "redis://r:6379/0"
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "tok"
    assert settings.public_url == "https://gw.example"


def test_separate_cache_redis_url_wins() -> None:
    """CACHE_REDIS_URL, when set, is the cache's Redis instead of the store's."""
    env = {**SECRETS, "REDIS_URL": "redis://store", "CACHE_REDIS_URL": "redis://cache"}
    settings = build_settings(parse_config(REAL), env)
    assert settings.cache_redis_url is not None
    assert settings.cache_redis_url.get_secret_value() == "redis://cache"


@pytest.mark.parametrize("cache_url", [None, "rediss://r:6380/0"])
def test_a_cache_on_the_stores_url_takes_the_stores_settings(cache_url: str | None) -> None:
    """CACHE_REDIS_URL unset or equal to REDIS_URL: the cache's options are the store's
    (TLS, credentials), so the two share one client; a cache.redis section is then unused,
    and the settings warn so."""
    store_tls = {"tls": {"check_hostname": False}}
    config = parse_config(
        {**REAL, "store": {"redis": store_tls}, "cache": {"redis": {"username_env": "U"}}}
    )
    env = {**SECRETS, "REDIS_URL": "rediss://r:6380/0", "U": "cache-user"}
    settings = build_settings(
        config, {**env, **({"CACHE_REDIS_URL": cache_url} if cache_url else {})}
    )
    assert settings.cache_redis_options == settings.redis_options
    assert settings.redis_options.tls is not None
    assert any("cache.redis is not used" in w for w in settings.warnings) == bool(cache_url)


def test_empty_redis_url_means_the_in_process_store() -> None:
    """An empty REDIS_URL is the same as unset: no Redis."""
    settings = build_settings(parse_config(REAL), {**SECRETS, "REDIS_URL": ""})
    assert settings.redis_url is None
    assert settings.cache_redis_url is None


def test_secrets_never_appear_in_the_settings_repr() -> None:
    """repr(Settings) masks every secret."""
    env = {**SECRETS, "REDIS_URL": "redis://:hunter2@r:6379"}
    text = repr(build_settings(parse_config(REAL), env))
    for secret in ("sk-test-upstream-0123456789", "hmac-secret", "hunter2"):
        assert secret not in text


def test_load_settings_reads_the_file_and_the_environment(tmp_path: Path) -> None:
    """load_settings joins a YAML file with the environment's secrets."""
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({**REAL, "upstream": {"timeout_seconds": 7}}), "utf-8")
    settings = load_settings(path, SECRETS)
    assert isinstance(settings.config, GatewayConfig)
    assert settings.config.upstream.timeout_seconds == 7
    assert settings.user_secret.get_secret_value() == "hmac-secret"


SSO = {
    "issuer": "https://login.example.com/oauth2/default",
    "audience": "image-gateway",
    "jwks_url": "https://login.example.com/oauth2/default/v1/keys",
    "default_team": "misc",
}


def test_identity_sources_are_off_by_default_and_parse_when_set() -> None:
    """No identity.jwt or trusted_header by default; both sections parse with their defaults."""
    assert parse_config(None).identity.jwt is None
    assert parse_config(None).identity.trusted_header is None
    headers = {"team_header": "X-Team", "proxies": ["10.0.0.0/8", "fd00::/8"]}
    identity = parse_config({"identity": {"jwt": SSO, "trusted_header": headers}}).identity
    assert identity.jwt is not None and identity.trusted_header is not None
    jwt = identity.jwt
    assert (jwt.algorithms, jwt.leeway_seconds, jwt.user_claim) == (("RS256",), 30, "sub")
    assert (jwt.jwks_cache_seconds, jwt.jwks_min_refresh_seconds) == (300, 30)
    assert identity.trusted_header.user_header == "X-Forwarded-User"


@pytest.mark.parametrize(
    ("identity", "warned"),
    [
        ({"jwt": SSO}, None),
        ({"jwt": {**SSO, "jwks_url": "http://127.0.0.1:8081/keys"}}, None),
        ({"jwt": {**SSO, "jwks_url": "http://localhost/keys"}}, None),
        ({"jwt": {**SSO, "jwks_url": "http://idp.corp/keys"}}, "plain http"),
        ({"trusted_header": {"team_header": "T", "proxies": ["10.0.0.0/8"]}}, None),
        ({"trusted_header": {"team_header": "T", "proxies": ["0.0.0.0/0"]}}, "every address"),
        ({"trusted_header": {"team_header": "T", "proxies": ["::/0"]}}, "every address"),
    ],
)
def test_risky_identity_settings_start_with_a_warning(
    identity: dict[str, Any], warned: str | None
) -> None:
    """A plain-http JWKS off loopback, or proxies trusting every address, is warned about."""
    config = parse_config({**REAL, "quotas": {}, "identity": identity})
    settings = build_settings(config, SECRETS)
    found = [w for w in settings.warnings if warned and warned in w]
    assert found if warned else not settings.warnings


def test_the_shipped_edits_example_parses_and_prices_its_model() -> None:
    """config/gateway.edits.example.yaml: the edits adapter, priced for its model."""
    config = read_config(SHIPPED_CONFIG.with_name("gateway.edits.example.yaml"))
    edits = config.upstream.edits
    assert config.upstream.adapter == "edits" and edits is not None
    assert edits.model_list == ("gpt-image-2",)
    assert set(edits.model_list) <= set(edits.prices)
    assert build_settings(config, SECRETS).warnings == ()


UPSTREAM_WARNINGS = [
    ({"base_url": "https://api.openai.com/v1"}, {}, "has no live model at api.openai.com"),
    (
        {"base_url": "https://api.openai.com/v1", "adapter": "variations"},
        {},
        "Set adapter: edits",
    ),
    (
        {
            **edits_upstream("https://api.openai.com/v1", input_fidelity="high"),
            "edits": {
                "models": ["gpt-image-2"],
                "input_fidelity": "high",
                "prices": {"gpt-image-2": EDITS_PRICE},
            },
        },
        {},
        "gpt-image-2 takes none",
    ),
    ({**REAL["upstream"], "sandbox": {"retired": ["m"]}}, {}, "only used with base_url: sandbox"),
    (REAL["upstream"], {"shutdown_grace_seconds": 30}, "a restart cancels image calls"),
]


@pytest.mark.parametrize(("upstream", "limits", "warned"), UPSTREAM_WARNINGS)
def test_upstream_settings_that_cannot_work_start_with_a_warning(
    upstream: dict[str, Any], limits: dict[str, Any], warned: str
) -> None:
    """Variations at OpenAI (no live model), input_fidelity for gpt-image-2, sandbox
    switches off the sandbox, and a drain shorter than a call are said at start-up."""
    config = parse_config({"upstream": upstream, "quotas": {}, "limits": limits})
    assert any(warned in warning for warning in build_settings(config, SECRETS).warnings)


def test_the_edits_adapter_at_openai_starts_without_a_warning() -> None:
    """The live default: edits with gpt-image-2 at api.openai.com, nothing to say."""
    config = parse_config({"upstream": edits_upstream("https://api.openai.com/v1"), "quotas": {}})
    assert build_settings(config, SECRETS).warnings == ()


def test_placeholder_digests_are_warned_and_real_ones_are_not() -> None:
    """A typed placeholder digest (no key matches it) is warned, naming the principal; a
    real key's SHA-256 is not."""
    placeholder = "0" * 63 + "1"
    config = parse_config(
        {
            "principals": [
                {"user": "alice", "team": "t", "key_sha256": DIGEST_A},
                {"user": "bob", "team": "t", "key_sha256": placeholder},
            ]
        }
    )
    warned = [w for w in config_warnings(config) if "key_sha256" in w]
    assert warned == [
        "principals[1] (bob): key_sha256 is a placeholder no key matches; put the entry "
        "`gateway keys new` prints in its place"
    ]


def test_the_latency_histograms_reach_past_the_upstream_timeout() -> None:
    """Calls of several minutes land in a bucket of their own: one at the default upstream
    timeout, and more above it (a call plus its upload and its wait)."""
    from gateway.metrics import LATENCY_BUCKETS
    from gateway.settings.config import UPSTREAM_TIMEOUT_SECONDS

    assert UPSTREAM_TIMEOUT_SECONDS in LATENCY_BUCKETS
    assert max(LATENCY_BUCKETS) > UPSTREAM_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    ("images", "limits", "warned"),
    [
        ({"teams": {"vision": {"models": ["gpt-image-9"]}}}, {}, "gpt-image-9 not in"),
        ({"max_edit_body_mb": 100}, {"upload_buffer_mb": 64}, "one edit may hold"),
    ],
)
def test_images_settings_that_cannot_work_start_with_a_warning(
    images: dict[str, Any], limits: dict[str, Any], warned: str
) -> None:
    """A team limited to a model no list names, and an edits body over the upload buffer,
    are said at start-up; the defaults say nothing."""
    upstream = edits_upstream("https://api.openai.com/v1")
    config = parse_config({"upstream": upstream, "quotas": {}, "images": images, "limits": limits})
    assert any(warned in warning for warning in build_settings(config, SECRETS).warnings)
    plain = parse_config({"upstream": upstream, "quotas": {}, "images": {}})
    assert build_settings(plain, SECRETS).warnings == ()
