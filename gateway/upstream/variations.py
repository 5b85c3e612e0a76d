"""The variations adapter: OpenAI's variations wire format, forwarded as it is.

Two adapters fulfil a variations request: `VariationsUpstream` (here) forwards it to a
service speaking the variations wire format (OpenAI's, or the sandbox); `EditsUpstream`
(edits.py) uses a current image model through the edits endpoint. Either way the upstream
request is rebuilt from an allowlist (the image, the parameters, the pseudonymous `user`
and the company's credentials); nothing else of the caller's is forwarded. Answers and
failures are translated into an `UpstreamAnswer` or a `GatewayError`, so the endpoint
never sees httpx.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import orjson

from gateway.upstream.base import Operation, UpstreamAnswer, UpstreamRequest, VariationRequest
from gateway.upstream.client import Account, UpstreamCall, error_object, malformed
from gateway.vocabulary import Size


class VariationsUpstream:
    """Forwards a validated request to `{base_url}/images/variations`, relaying the answer."""

    headers: Mapping[str, str] = {}
    operations: frozenset[Operation] = frozenset({"variations"})

    def __init__(
        self,
        client: httpx.AsyncClient,
        account: Account,
        base_url: str,
        prices: Mapping[Size, float],
    ) -> None:
        self._call = UpstreamCall(client, account, base_url.rstrip("/") + "/images/variations")
        self._prices = prices
        self.identity = f"variations|{self._call.url}"

    def image_price(self, size: Size) -> float:
        """dall-e-2's price table, by size."""
        return self._prices[size]

    def estimate(self, request: UpstreamRequest) -> float:
        """`request.n` images at the price of their size."""
        assert isinstance(request, VariationRequest)
        return request.n * self._prices[request.size]

    async def produce(self, request: UpstreamRequest, user: str) -> UpstreamAnswer:
        """Send the request upstream; raises an `UpstreamError` subclass on any failure."""
        assert isinstance(request, VariationRequest)
        fields = {
            "model": request.model,
            "n": str(request.n),
            "size": request.size,
            "response_format": request.response_format,
            "user": user,
        }
        response = await self._call.post(fields, request.image, request.sent)
        request_id = response.headers.get("x-request-id")
        if response.status_code != 200:
            raise self._call.failure(response, error_object(response.content))
        try:
            data = orjson.loads(response.content)["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise malformed() from exc
        if not isinstance(data, list):
            raise malformed()
        return UpstreamAnswer(response.content, len(data), request_id)
