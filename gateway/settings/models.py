"""The config's image models: the edits adapter's ordered model list, each model's prices,
and the sandbox's switches that play the upstream's model lifecycle offline.

Prices are per 1M tokens, as OpenAI's pricing page gives them, plus the output tokens one
image costs by size and quality: what a request reserves before the call. The `usage` the
upstream reports then settles it to the real cost (`gateway.upstream.pricing`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from gateway.settings.types import Name, Price, Strict

Quality = Literal["low", "medium", "high", "auto"]
PricedQuality = Literal["low", "medium", "high"]
PRICED_QUALITIES: tuple[PricedQuality, ...] = ("low", "medium", "high")
# An upstream model id: `gpt-image-2`, `gpt-image-2-2026-04-21`, `ft:...`, `org/model`.
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
ModelName = Annotated[str, Field(pattern=f"^{MODEL_ID.pattern}$")]
# Image sizes as the image models take them: WIDTHxHEIGHT in pixels.
ImageSize = Annotated[str, Field(pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")]
MAX_MODELS = 8
DEFAULT_MODEL = "gpt-image-2"  # the edits adapter's model when the config names none
VARIATION_PROMPT = (
    "Create a variation of this image: the same subject, composition, colour palette and "
    "style, with small natural differences in detail, so that it reads as another take of "
    "the same picture rather than a copy or a new scene."
)
# Keys of the price format before prices were per 1M tokens with output tokens per image.
_OLD_PRICE_KEYS = frozenset(
    {"image", "input_per_1k_tokens", "output_per_1k_tokens", "image_input_per_1k_tokens"}
)


class ModelPrice(Strict):
    """An image model's list prices in USD per 1M tokens, and the output tokens of one image
    by size and quality (the reservation's estimate)."""

    text_input_per_1m_tokens: Price
    image_input_per_1m_tokens: Price
    image_output_per_1m_tokens: Price
    # Output text tokens (`output_tokens_details.text_tokens`); null: the image output rate.
    text_output_per_1m_tokens: Price | None = None
    output_tokens: dict[ImageSize, dict[PricedQuality, Annotated[StrictInt, Field(ge=0)]]]

    @model_validator(mode="before")
    @classmethod
    def _not_the_old_format(cls, value: Any) -> Any:
        if isinstance(value, dict) and _OLD_PRICE_KEYS & set(value):
            raise ValueError(
                "prices are now per 1M tokens, with the output tokens of one image by size "
                "and quality: text_input_per_1m_tokens, image_input_per_1m_tokens, "
                "image_output_per_1m_tokens and output_tokens replace image and the "
                "*_per_1k_tokens keys (docs/models.md has gpt-image-2's)"
            )
        return value

    @field_validator("output_tokens")
    @classmethod
    def _every_quality(
        cls, value: dict[str, dict[PricedQuality, int]]
    ) -> dict[str, dict[PricedQuality, int]]:
        if not value:
            raise ValueError("output_tokens: give at least one size (e.g. 1024x1024)")
        for size, tokens in value.items():
            missing = set(PRICED_QUALITIES) - set(tokens)
            if missing:
                raise ValueError(f"{size}: no output tokens for {', '.join(sorted(missing))}")
        return value


def unique_models(models: tuple[str, ...]) -> tuple[str, ...]:
    """`models` if no name repeats, else `ValueError` naming the first that does."""
    seen: set[str] = set()
    for model in models:
        if model in seen:
            raise ValueError(f"{model} is listed twice")
        seen.add(model)
    return models


class ModelCapabilities(Strict):
    """What a model takes on /images/generations and /images/edits: the gateway refuses the
    rest before spending anything. The defaults are gpt-image-2's (docs/models.md, "What
    the models take", says where each comes from)."""

    max_prompt_chars: int = Field(32000, ge=1)
    size_multiple: int = Field(16, ge=1)  # each side of WIDTHxHEIGHT a multiple of this
    max_edge: int = Field(3840, ge=16)  # the long side, in pixels
    max_ratio: float = Field(3.0, ge=1)  # long side over short side
    min_pixels: int = Field(655_360, ge=0)
    max_pixels: int = Field(8_294_400, ge=1)
    transparent_background: bool = False  # gpt-image-2 refuses `background: transparent`
    input_fidelity: bool = False  # gpt-image-2 takes no `input_fidelity`
    max_input_images: int = Field(16, ge=1, le=16)
    max_input_image_bytes: int = Field(50 * 1024 * 1024, ge=1)  # each input "less than"
    # What one input image of an edit is reserved at, in image input tokens (settled to
    # the `usage` the model reports): the gateway's estimate, erring high.
    input_image_tokens: int = Field(2000, ge=0)


GPT_IMAGE_2 = ModelCapabilities()
MAX_EDIT_BODY_BYTES = 1024 * 2**20  # the most `images.max_edit_body_mb` may allow


class TeamImagesConfig(Strict):
    """One team's limits on the generations and edits endpoints."""

    models: tuple[ModelName, ...] | None = None  # the models it may use; null: all
    cache_generations: bool | None = None  # null: `images.cache_generations`


class ImagesConfig(Strict):
    """The generations and edits endpoints: what caching generations, edit bodies and each
    team may do."""

    # A generation is expected to differ each time: cached only when a team or the request
    # opts in (`x-gateway-cache-generations: true`).
    cache_generations: bool = False
    # The largest edits body read, in MiB (all images and the mask, up to 16 images).
    max_edit_body_mb: int = Field(32, ge=1, le=MAX_EDIT_BODY_BYTES // 2**20)
    teams: dict[Name, TeamImagesConfig] = Field(default_factory=dict)

    def team_models(self, team: str) -> tuple[str, ...] | None:
        """The models `team` is limited to, or None when it may use every listed one."""
        limits = self.teams.get(team)
        return limits.models if limits is not None else None

    def caches_generations(self, team: str) -> bool:
        """Whether `team`'s generations are cached without a per-request opt-in."""
        limits = self.teams.get(team)
        if limits is None or limits.cache_generations is None:
            return self.cache_generations
        return limits.cache_generations


class EditsConfig(Strict):
    """`adapter: edits`: variations fulfilled by current image models via /images/edits.

    `models` is tried in order: the first one available upstream serves. `model` is the
    one-model shorthand (give one or the other).
    """

    model: ModelName | None = None
    models: tuple[ModelName, ...] = Field((), max_length=MAX_MODELS)
    prompt: str = Field(VARIATION_PROMPT, min_length=1, max_length=32000)
    quality: Quality = "medium"
    input_fidelity: Literal["low", "high"] | None = None  # None: not sent (the model's own)
    prices: dict[ModelName, ModelPrice] = Field(default_factory=dict)
    # What each model takes on the generations and edits endpoints; a model not named
    # here takes gpt-image-2's (`ModelCapabilities`' defaults).
    capabilities: dict[ModelName, ModelCapabilities] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _listed_and_priced(self) -> EditsConfig:
        if self.model is not None and self.models:
            raise ValueError("give model (one) or models (a list), not both")
        unique_models(self.models)
        unpriced = [m for m in self.model_list if m not in self.prices]
        if unpriced:
            raise ValueError(f"prices: no price for the model {', '.join(unpriced)}")
        return self

    @property
    def model_list(self) -> tuple[str, ...]:
        """The models in order of preference (`gpt-image-2` when none is named)."""
        if self.models:
            return self.models
        return (self.model or DEFAULT_MODEL,)


class SandboxConfig(Strict):
    """The sandbox upstream's switches: the shape of its `usage`, and the model lifecycle it
    plays (a shutdown date in /models, a model refused as retired)."""

    # false: `usage` without input_tokens_details and output_tokens_details.
    usage_details: bool = True
    # Refused with 404 `model_not_found`, and left out of /models.
    retired: tuple[ModelName, ...] = ()
    # model -> the `shutdown_date` /models lists for it (YYYY-MM-DD).
    shutdown_dates: dict[ModelName, Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]] = Field(
        default_factory=dict
    )
