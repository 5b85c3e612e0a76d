"""The building blocks every config section shares: a strict model and the name types."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import ErrorDetails

from gateway.vocabulary import check_name


class Strict(BaseModel):
    """A config section: unknown keys are errors, and the parsed value is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def error_message(error: ErrorDetails) -> str:
    """What one validation error says: our own words for a check of ours, without the
    "Value error, " pydantic puts before them; pydantic's for its own checks."""
    raised = error.get("ctx", {}).get("error")
    if error["type"] == "value_error" and raised is not None:
        return str(raised)
    return error["msg"]


HexDigest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# User and team names: the config's, the admin API's and the CLI's, under the one rule.
Name = Annotated[str, AfterValidator(check_name)]
ClaimName = Annotated[str, Field(min_length=1, max_length=256)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
# A negative price would turn usd quotas into credit; NaN or infinity would poison counters.
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; `ValueError` naming it when the database has no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)"
        ) from None


def _zone_name(name: str) -> str:
    time_zone(name)
    return name


# A time zone by its IANA name, checked against the zone database at start-up.
TimeZoneName = Annotated[str, AfterValidator(_zone_name)]
