"""The building blocks every config section shares: a strict model and the name types."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A config section: unknown keys are errors, and the parsed value is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


HexDigest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# User and team names of the config (and of `gateway keys new`): Redis key parts and
# metric labels, so short, without spaces, quotes or the braces of a Redis Cluster hash tag.
_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
NAME_RULE = "1 to 128 characters, each a letter, a digit or one of . _ @ + -"


def check_name(value: str) -> str:
    """`value` if it may name a user or team in the config, else `ValueError` stating the rule."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use {NAME_RULE}")
    return value


Name = Annotated[str, AfterValidator(check_name)]
ClaimName = Annotated[str, Field(min_length=1, max_length=256)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
# A negative price would turn usd quotas into credit; NaN or infinity would poison counters.
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
