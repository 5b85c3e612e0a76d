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


def rules_for(quotas: QuotasConfig, user: str, team: str) -> tuple[ScopedRule, ...]:
    """Every rule a request by `user` of `team` must pass: theirs and their team's pool."""
    mine = tuple(ScopedRule("user", user, rule) for rule in user_rules(quotas, user))
    pool = tuple(ScopedRule("team", team, rule) for rule in quotas.teams.get(team, ()))
    return mine + pool
