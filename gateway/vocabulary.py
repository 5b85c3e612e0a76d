"""The words the gateway's records share: image sizes and formats, quota units and windows,
what a lost answer costs, and what may name a user or a team.

Plain literals and one rule, importing nothing: the records, the config and the rules all
speak them.
"""

from __future__ import annotations

import re
from typing import Literal

Size = Literal["256x256", "512x512", "1024x1024"]
SIZES: tuple[Size, ...] = ("256x256", "512x512", "1024x1024")
ResponseFormat = Literal["url", "b64_json"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("url", "b64_json")
Unit = Literal["requests", "images", "usd"]
Window = Literal["minute", "hour", "day", "week", "month"]
WINDOWS: tuple[Window, ...] = ("minute", "hour", "day", "week", "month")
# A call sent upstream whose answer never came whole: keep its charge, or give it back.
OnTimeout = Literal["keep_charge", "refund"]

# The one rule for user and team names, wherever they come from (the config, a runtime key,
# the CLI, a token, a proxy header): wide, as identity providers issue subjects such as
# `auth0|5f1c...` or with `/`. Names become Redis key parts and metric labels: printable
# ASCII without spaces, and without braces, which delimit a Redis Cluster hash tag. Not `.`
# or `..`: the admin routes carry a name as a path segment, and every HTTP client and
# browser drops those segments (`%2E%2E` too) before the request leaves.
_NAME = re.compile(r"(?!\.\.?$)[!-z|~]{1,256}")
NAME_RULE = "1 to 256 printable ASCII characters, no spaces or braces, not . or .."


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
