"""The words the gateway's records share: image sizes and formats, quota units and windows,
what a lost answer costs.

Plain literals, importing nothing: the records, the config and the rules all speak them.
"""

from __future__ import annotations

from typing import Literal

Size = Literal["256x256", "512x512", "1024x1024"]
SIZES: tuple[Size, ...] = ("256x256", "512x512", "1024x1024")
ResponseFormat = Literal["url", "b64_json"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("url", "b64_json")
Unit = Literal["requests", "images", "usd"]
Window = Literal["minute", "hour", "day", "month"]
# A call sent upstream whose answer never came whole: keep its charge, or give it back.
OnTimeout = Literal["keep_charge", "refund"]
