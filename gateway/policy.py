"""Which quota rules apply to whom: defaults, per-user overrides, team pools. Pure functions."""

from __future__ import annotations

from typing import Literal, NamedTuple

from gateway.settings import QuotaRule, QuotasConfig

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
