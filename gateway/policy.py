"""Which quota rules apply to whom: defaults, per-user overrides, team pools. Pure functions."""

from __future__ import annotations

from typing import Literal, NamedTuple

from gateway.settings import GatewayConfig, QuotaRule, QuotasConfig, Unit, Window

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
