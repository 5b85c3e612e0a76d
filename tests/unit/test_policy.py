"""Which quota rules apply to whom: defaults, per-user overrides and team pools."""

from __future__ import annotations

from gateway.quota.policy import ScopedRule, rules_for, user_rules
from gateway.settings.config import QuotaRule, QuotasConfig

REQUESTS_MINUTE = QuotaRule(unit="requests", limit=60, window="minute")
IMAGES_DAY = QuotaRule(unit="images", limit=200, window="day")
ALICE_IMAGES_DAY = QuotaRule(unit="images", limit=500, window="day")
ALICE_IMAGES_HOUR = QuotaRule(unit="images", limit=50, window="hour")
VISION_USD = QuotaRule(unit="usd", limit=50.0, window="month")

QUOTAS = QuotasConfig(
    default=(REQUESTS_MINUTE, IMAGES_DAY),
    users={"alice": (ALICE_IMAGES_DAY, ALICE_IMAGES_HOUR)},
    teams={"vision": (VISION_USD,)},
)


def test_user_without_override_gets_the_defaults() -> None:
    """A user with no override has exactly the default rules."""
    assert user_rules(QUOTAS, "bob") == (REQUESTS_MINUTE, IMAGES_DAY)


def test_override_replaces_only_the_same_unit_and_window() -> None:
    """An override replaces the default of its unit+window and adds the others."""
    assert user_rules(QUOTAS, "alice") == (REQUESTS_MINUTE, ALICE_IMAGES_DAY, ALICE_IMAGES_HOUR)


def test_rules_for_adds_the_team_pool() -> None:
    """A team member gets their own rules (scope user) plus the team's pool (scope team)."""
    assert rules_for(QUOTAS, "alice", "vision") == (
        ScopedRule("user", "alice", REQUESTS_MINUTE),
        ScopedRule("user", "alice", ALICE_IMAGES_DAY),
        ScopedRule("user", "alice", ALICE_IMAGES_HOUR),
        ScopedRule("team", "vision", VISION_USD),
    )


def test_team_without_pool_adds_nothing() -> None:
    """A team with no configured pool contributes no rules."""
    assert rules_for(QUOTAS, "carol", "audio") == (
        ScopedRule("user", "carol", REQUESTS_MINUTE),
        ScopedRule("user", "carol", IMAGES_DAY),
    )


def test_no_rules_at_all_is_unlimited() -> None:
    """An empty quotas section yields no rules."""
    assert rules_for(QuotasConfig(), "alice", "vision") == ()


def test_override_for_a_user_does_not_leak_to_teammates() -> None:
    """Alice's override does not change bob's rules, though they share a team."""
    bob = rules_for(QUOTAS, "bob", "vision")
    assert ScopedRule("user", "bob", IMAGES_DAY) in bob
    assert all(rule.rule != ALICE_IMAGES_DAY for rule in bob)


def test_runtime_rules_replace_the_configs_of_the_same_unit_and_window() -> None:
    """A runtime rule replaces the config's user override and default of its unit+window,
    adds a new unit+window, and makes a team pool where the config had none."""
    from gateway.quota.policy import Overrides, rules_for, with_overrides
    from gateway.settings.config import QuotaRule, parse_config

    quotas = parse_config(
        {"quotas": {"default": [{"unit": "images", "limit": 1, "window": "day"},
                                {"unit": "requests", "limit": 9, "window": "minute"}],
                    "users": {"alice": [{"unit": "images", "limit": 2, "window": "day"}]}}}
    ).quotas  # fmt: skip
    runtime: Overrides = {
        ("user", "alice"): (QuotaRule(unit="images", limit=7, window="day"),
                            QuotaRule(unit="usd", limit=3, window="month")),
        ("team", "vision"): (QuotaRule(unit="requests", limit=4, window="day"),),
    }  # fmt: skip
    merged = rules_for(with_overrides(quotas, runtime), "alice", "vision")
    assert {(s.scope, r.unit, r.window, r.limit) for s in merged for r in [s.rule]} == {
        ("user", "requests", "minute", 9),
        ("user", "images", "day", 7),
        ("user", "usd", "month", 3),
        ("team", "requests", "day", 4),
    }
