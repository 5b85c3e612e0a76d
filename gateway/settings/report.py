"""What `gateway config check` prints about a valid config: one small function per part.

It needs no secret: the environment is only asked whether each variable `serve` reads is
set, and no value is ever printed.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.quota.policy import rules_for
from gateway.redaction import without_credentials
from gateway.settings.config import GatewayConfig, QuotaRule
from gateway.settings.environment import environment_needs
from gateway.upstream.edits import GENERATED_SIZE
from gateway.upstream.pricing import output_tokens, per_image


def print_upstream(config: GatewayConfig) -> None:
    """Where variations go and, for the edits adapter, which models at what price."""
    upstream = config.upstream
    print(f"upstream: {upstream.adapter} adapter, {without_credentials(upstream.base_url)}")
    edits = upstream.edits
    if upstream.adapter != "edits" or edits is None:
        return
    print(f"  models, the first available serving: {', '.join(edits.model_list)}")
    print(f"  /models read at start-up and every {upstream.watch_seconds:g} s")
    for model in edits.model_list:
        price = edits.prices[model]
        tokens = output_tokens(price, GENERATED_SIZE, edits.quality)
        usd = per_image(price, GENERATED_SIZE, edits.quality)
        print(
            f"  {model}, quality {edits.quality}: reserves {usd:.4g} USD per image "
            f"({tokens} output tokens), settled to the reported usage"
        )


def print_environment(config: GatewayConfig, env: Mapping[str, str]) -> None:
    """Each variable `serve` will read, whether it must be set and whether it is."""
    print("environment `gateway serve` reads (values are never shown):")
    for var in environment_needs(config):
        need = "required" if var.required else "optional"
        state = "set" if env.get(var.name) else "unset"
        where = f"{var.key}: " if var.key else ""
        print(f"  {var.name:<22} {need:<8} {state:<5}  {where}{var.purpose}")


def _rule(rule: QuotaRule) -> str:
    return f"{rule.unit:<8} {rule.limit:>10g} per {rule.window}"


def print_quota_rules(config: GatewayConfig) -> None:
    """The rules as written: the default per user, the per-user overrides, the team pools."""
    quotas = config.quotas
    print("default rules, per user (quotas.default):")
    for rule in quotas.default:
        print(f"  {_rule(rule)}")
    if not quotas.default:
        print("  none: a user without an override is unlimited")
    if quotas.users:
        print("user overrides, each replacing the default of its unit and window (quotas.users):")
        for user, rules in quotas.users.items():
            for rule in rules:
                print(f"  {user:<16} {_rule(rule)}")
    print("team pools, one counter shared by the team's members (quotas.teams):")
    for team, rules in quotas.teams.items():
        for rule in rules:
            print(f"  {team:<16} {_rule(rule)}")
    if not any(quotas.teams.values()):
        print("  none")


def print_principals(config: GatewayConfig) -> None:
    """The effective rules of each configured principal: theirs and their team's pool."""
    if not config.principals:
        print("principals: none (`gateway keys new` prints an entry to add)")
    for principal in config.principals:
        print(f"{principal.user} (team {principal.team}, role {principal.role}):")
        rules = rules_for(config.quotas, principal.user, principal.team)
        for scope, subject, rule in rules:
            print(f"  {scope:<4} {subject:<16} {_rule(rule)}")
        if not rules:
            print("  no quota rules: unlimited")


def print_other_sources(config: GatewayConfig) -> None:
    """Callers the config does not list: who vouches for them, and which rules they get."""
    sources = []
    if config.identity.jwt is not None:
        sources.append(f"SSO tokens issued by {config.identity.jwt.issuer}")
    if config.identity.trusted_header is not None:
        proxies = ", ".join(config.identity.trusted_header.proxies)
        sources.append(f"trusted headers from {proxies}")
    if sources:
        print(f"other users ({'; '.join(sources)}):")
        print("  the default rules (or their quotas.users entry), plus their team's pool")
