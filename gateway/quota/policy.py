"""Which quota rules apply to whom: defaults, per-user overrides, team pools. Pure functions."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Literal, NamedTuple

from gateway.settings.config import GatewayConfig, QuotaRule, QuotasConfig
from gateway.vocabulary import Unit, Window

Scope = Literal["user", "team"]


class ScopedRule(NamedTuple):
    """A rule and the subject whose counter it charges."""

    scope: Scope
    subject: str
    rule: QuotaRule


def user_rules(quotas: QuotasConfig, user: str) -> tuple[QuotaRule, ...]:
    """The user's own rules: the defaults, each replaced by an override of the same unit+window."""
    overrides = quotas.users.get(user, ())
    replaced = {(rule.unit, rule.window) for rule in overrides}
    kept = tuple(rule for rule in quotas.default if (rule.unit, rule.window) not in replaced)
    return kept + tuple(overrides)


def own_rules(quotas: QuotasConfig, user: str) -> tuple[ScopedRule, ...]:
    """The user's own rules, scoped to them."""
    return tuple(ScopedRule("user", user, rule) for rule in user_rules(quotas, user))


def pool_rules(quotas: QuotasConfig, team: str) -> tuple[ScopedRule, ...]:
    """The team's pool rules, scoped to the team."""
    return tuple(ScopedRule("team", team, rule) for rule in quotas.teams.get(team, ()))


def rules_for(quotas: QuotasConfig, user: str, team: str) -> tuple[ScopedRule, ...]:
    """Every rule a request by `user` of `team` must pass: theirs and their team's pool."""
    return own_rules(quotas, user) + pool_rules(quotas, team)


Overrides = Mapping[tuple[Scope, str], tuple[QuotaRule, ...]]  # (scope, subject) -> rules


def _replace(base: tuple[QuotaRule, ...], top: tuple[QuotaRule, ...]) -> tuple[QuotaRule, ...]:
    """`base` with each rule of the same unit+window as one of `top` replaced by it."""
    replaced = {(rule.unit, rule.window) for rule in top}
    return tuple(rule for rule in base if (rule.unit, rule.window) not in replaced) + top


def with_overrides(quotas: QuotasConfig, overrides: Overrides) -> QuotasConfig:
    """The config's quotas with runtime rules on top: each replaces the config's rule of the
    same unit and window for its user (over the user's own and the default rules) or its
    team's pool, and a rule of a new unit and window is added."""
    users, teams = dict(quotas.users), dict(quotas.teams)
    for (scope, subject), rules in overrides.items():
        if scope == "user":
            users[subject] = _replace(users.get(subject, ()), rules)
        else:
            teams[subject] = _replace(teams.get(subject, ()), rules)
    return quotas.model_copy(update={"users": users, "teams": teams})


class QuotaPolicy:
    """The quota rules in force, looked up once per (user, team), not per request, and the
    budget alert thresholds by (scope, subject) (quota/alerts.py)."""

    def __init__(
        self,
        quotas: QuotasConfig,
        thresholds: Mapping[tuple[Scope, str], tuple[int, ...]] | None = None,
    ) -> None:
        self.quotas = quotas
        self.thresholds = thresholds or {}
        self.rules_for = functools.lru_cache(maxsize=4096)(functools.partial(rules_for, quotas))


def rule_labels(quotas: QuotasConfig) -> frozenset[tuple[Scope, Unit, Window]]:
    """Every (scope, unit, window) a configured rule can refuse under."""
    users = (*quotas.default, *(rule for rules in quotas.users.values() for rule in rules))
    teams = (rule for rules in quotas.teams.values() for rule in rules)
    return frozenset(
        [("user", rule.unit, rule.window) for rule in users]
        + [("team", rule.unit, rule.window) for rule in teams]
    )


def configured_teams(config: GatewayConfig) -> frozenset[str]:
    """Every team the config names: its principals', its pools', and the identity sections'
    mappings and defaults. Teams from tokens and headers must be one of these."""
    identity = config.identity
    named = [p.team for p in config.principals] + list(config.quotas.teams)
    if identity.jwt is not None:
        named += [*identity.jwt.group_teams.values(), identity.jwt.default_team or ""]
    if identity.trusted_header is not None:
        named.append(identity.trusted_header.default_team or "")
    return frozenset(team for team in named if team)
