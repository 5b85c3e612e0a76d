"""`Identity`, the one record every identity source produces, and the one rule for names.

API keys, company SSO tokens and trusted proxy headers all resolve to the same `Identity`,
so quotas, the cache scope, the upstream `user` field and metrics never ask where it came
from. `source` is carried for the access log only and takes no part in equality.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "admin"]
Source = Literal["key", "jwt", "header"]

# The one rule for user and team names, wherever they come from (the config, a runtime key,
# the CLI, a token, a proxy header): wide, as identity providers issue subjects such as
# `auth0|5f1c...` or with `/`. Names become Redis key parts and metric labels: printable
# ASCII without spaces, and without braces, which delimit a Redis Cluster hash tag.
_NAME = re.compile(r"[!-z|~]{1,256}")
NAME_RULE = "1 to 256 printable ASCII characters, no spaces or braces"


@dataclass(frozen=True)
class Identity:
    """Who is calling: the internal user id, their team and role."""

    user: str
    team: str
    role: Role = "user"
    source: Source = field(default="key", compare=False)

    def log_fields(self) -> dict[str, str]:
        """What the access log says of the caller: never a key or a token."""
        return {"user": self.user, "team": self.team, "auth": self.source}


def external_name(value: object) -> str | None:
    """`value` if it is a string usable as a user id or team name, else None."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    return None


def check_name(value: str) -> str:
    """`value` if it may name a user or team, else `ValueError` stating the rule."""
    if external_name(value) is None:
        raise ValueError(f"{value!r} is not a valid name: use {NAME_RULE}")
    return value


def known_team(
    team: str, teams: frozenset[str], default_team: str | None, unknown: str
) -> str | None:
    """`team` if it is a configured team; else `default_team` when the policy maps unknown
    teams there; else None (the caller is refused)."""
    if team in teams:
        return team
    return default_team if unknown == "default_team" else None
