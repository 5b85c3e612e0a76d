"""The building blocks every config section shares: a strict model and the name types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A config section: unknown keys are errors, and the parsed value is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


HexDigest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@+-]+$")]
ClaimName = Annotated[str, Field(min_length=1, max_length=256)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
# A negative price would turn usd quotas into credit; NaN or infinity would poison counters.
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
