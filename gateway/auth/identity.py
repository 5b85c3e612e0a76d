"""`Identity`, the one record every identity source produces, and the rule for names from outside.

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

# Names from a token or a header become Redis key parts and metric labels: printable
# ASCII without spaces, and without braces, which delimit a Redis Cluster hash tag.
_EXTERNAL_NAME = re.compile(r"[!-z|~]{1,256}")
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
    """`value` if it is usable as a user id or team name from outside the config, else None."""
    if isinstance(value, str) and _EXTERNAL_NAME.fullmatch(value):
        return value
    return None


def known_team(
    team: str, teams: frozenset[str], default_team: str | None, unknown: str
) -> str | None:
    """`team` if it is a configured team; else `default_team` when the policy maps unknown
    teams there; else None (the caller is refused)."""
    if team in teams:
        return team
    return default_team if unknown == "default_team" else None
