"""Every error the gateway answers, each knowing its status, OpenAI type and code.

    GatewayError                      500 server_error          (anything unexpected)
    ├── AuthenticationError           401 invalid_api_key
    ├── PermissionDenied              403 permission_denied
    ├── InvalidRequest                400 <code> / <param>      (bad upload or parameter)
    │   └── RequestTimeout            400 request_timeout       x-should-retry: false
    ├── RequestTooLarge               413 request_too_large     Connection: close
    ├── UriTooLong                    414 uri_too_long          Connection: close
    ├── HeadersTooLarge               431 request_header_fields_too_large  Connection: close
    ├── NotFound                      404 not_found
    ├── UserExists                    409 user_exists           x-should-retry: false
    ├── MethodNotAllowed              405 method_not_allowed    Allow
    ├── RateLimited                   429 rate_limit_exceeded   Retry-After, retry-after-ms
    │   └── QuotaExceeded             429 insufficient_quota    x-should-retry: false
    ├── StoreUnavailable              503 quota_backend_unavailable
    ├── Overloaded                    503 server_overloaded     Retry-After (too many in flight,
    │                                                            or uploads held at capacity)
    ├── AdminBusy                     503 admin_busy            Retry-After (admin writes racing)
    ├── IdentityProviderUnavailable   503 identity_provider_unavailable (JWKS unreachable)
    ├── RuntimeKeysUnavailable        503 runtime_keys_unavailable Retry-After (a runtime key
    │                                     the replica cannot confirm is still live)
    └── UpstreamError                 502 upstream_error        (5xx, unreachable: nothing made)
        ├── UpstreamUnreachable       502 upstream_error        (never sent: refunded in full)
        ├── UpstreamModelUnavailable  503 upstream_model_unavailable x-should-retry: false
        │                                 (no configured model is left upstream: refunded in
        │                                  full, the request unit too)
        ├── UpstreamAnswerLost        502 upstream_error        (sent, but its answer was lost
        │   │                                                    or unusable: it may have billed)
        │   └── UpstreamTimeout       504 upstream_timeout      x-should-retry: false
        ├── UpstreamAuthError         502 upstream_auth_error   x-should-retry: false
        ├── UpstreamMisconfigured     502 upstream_misconfigured x-should-retry: false
        │                                 (the gateway's own upstream settings were refused)
        └── UpstreamRejected          the upstream's 4xx, its type/code/param rebuilt from a
                                          known set (the caller's own request when 400, 413,
                                          415 or 422: outcome `invalid`, not the upstream's)

Lower layers translate their own exceptions into these with `raise ... from exc`; one
handler (`error_response`) renders them all in OpenAI's shape, always with all four keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import orjson
from starlette.responses import Response

# Every request ends in one of these (gateway_requests_total{outcome}, the access log);
# each error class names its own, so there is no table to keep in step.
Outcome = Literal[
    "ok",
    "cache_hit",
    "invalid",
    "unauthenticated",
    "forbidden",
    "rate_limited",
    "quota_exceeded",
    "upstream_error",
    "store_error",
    "overloaded",
    "not_found",
    "method_not_allowed",
    "internal_error",
    "client_gone",
]
NO_RETRY = {"x-should-retry": "false"}
# Upstream statuses that refuse the request's content: the caller's to fix.
CALLER_STATUSES = frozenset({400, 413, 415, 422})


class GatewayError(Exception):
    """Base of the tree; a bare `GatewayError` is an internal error (500)."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"
    outcome: Outcome = "internal_error"
    default_message = "The gateway hit an internal error. The request id identifies it."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        if code is not None:
            self.code = code
        self.param = param
        self.headers = dict(self.default_headers())
        self.headers.update(headers or {})

    def default_headers(self) -> Mapping[str, str]:
        """Headers every instance of this class carries."""
        return {}

    def body(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class AuthenticationError(GatewayError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"
    outcome: Outcome = "unauthenticated"
    default_message = "Incorrect API key provided."


class PermissionDenied(GatewayError):
    status, type, code = 403, "invalid_request_error", "permission_denied"
    outcome: Outcome = "forbidden"
    default_message = "This key is not allowed to use this endpoint."


class InvalidRequest(GatewayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"
    outcome: Outcome = "invalid"
    default_message = "The request is not valid."


class RequestTimeout(InvalidRequest):
    code = "request_timeout"
    default_message = "The request body was not received in time."

    def default_headers(self) -> Mapping[str, str]:
        return NO_RETRY


class RequestTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "request_too_large"
    outcome: Outcome = "invalid"
    default_message = "The request body is too large."

    def default_headers(self) -> Mapping[str, str]:
        return {"connection": "close"}


class UriTooLong(RequestTooLarge):
    """A request line past the limit (answered in front of the HTTP parser)."""

    status, code = 414, "uri_too_long"
    default_message = "The request URL is too long."


class HeadersTooLarge(RequestTooLarge):
    """A request head past the limit (answered in front of the HTTP parser)."""

    status, code = 431, "request_header_fields_too_large"
    default_message = "The request headers are too large."


class NotFound(GatewayError):
    status, type, code = 404, "invalid_request_error", "not_found"
    outcome: Outcome = "not_found"
    default_message = (
        "Unknown path. This gateway serves POST /v1/images/variations, /v1/images/generations "
        "and /v1/images/edits: give the OpenAI SDKs this address with /v1 as their base URL. "
        "Admins: /admin/console. More: the gateway's README."
    )


class UserExists(GatewayError):
    """A runtime key asked for a user name someone else already holds (a configured
    principal, or another admin's keys) without the admin saying so: not retried."""

    status, type, code = 409, "invalid_request_error", "user_exists"
    outcome: Outcome = "invalid"

    def default_headers(self) -> Mapping[str, str]:
        return NO_RETRY


class MethodNotAllowed(GatewayError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"
    outcome: Outcome = "method_not_allowed"
    default_message = "Method not allowed for this path."


class RateLimited(GatewayError):
    status, type, code = 429, "requests", "rate_limit_exceeded"
    outcome: Outcome = "rate_limited"
    default_message = "Rate limit reached."


class QuotaExceeded(RateLimited):
    type, code = "insufficient_quota", "insufficient_quota"
    outcome: Outcome = "quota_exceeded"
    default_message = "Quota exhausted."

    def default_headers(self) -> Mapping[str, str]:
        return NO_RETRY


class StoreUnavailable(GatewayError):
    status, type, code = 503, "server_error", "quota_backend_unavailable"
    outcome: Outcome = "store_error"
    default_message = "The quota backend is unavailable. Retry shortly."

    def default_headers(self) -> Mapping[str, str]:
        return {"retry-after": "2"}


class Overloaded(GatewayError):
    """The process is at capacity: `limits.max_concurrent_requests` requests in flight, or
    `limits.upload_buffer_mb` of uploads held with none freed in time."""

    status, type, code = 503, "server_error", "server_overloaded"
    outcome: Outcome = "overloaded"
    default_message = "The gateway is serving too many requests right now. Retry shortly."

    def default_headers(self) -> Mapping[str, str]:
        return {"retry-after": "1"}


class AdminBusy(GatewayError):
    """Other admin writes kept winning the race for this one: retrying helps."""

    status, type, code = 503, "server_error", "admin_busy"
    outcome: Outcome = "overloaded"
    default_message = "Other admin changes kept racing this one. Retry shortly."

    def default_headers(self) -> Mapping[str, str]:
        return {"retry-after": "1"}


class IdentityProviderUnavailable(GatewayError):
    """A token's signing key is not cached and the IdP's JWKS cannot be fetched right now."""

    status, type, code = 503, "server_error", "identity_provider_unavailable"
    # Not authenticated either; the access log's error code tells the IdP outage apart.
    outcome: Outcome = "unauthenticated"
    default_message = (
        "The company identity provider cannot be reached to check this token's signing key. "
        "Retry shortly."
    )

    def default_headers(self) -> Mapping[str, str]:
        return {"retry-after": "5"}


class RuntimeKeysUnavailable(GatewayError):
    """A key issued at run time, and this replica has not confirmed for over a second that
    its view of such keys is current (the state store does not answer): the key may have
    been revoked since, so it is not honoured until the view is confirmed again."""

    status, type, code = 503, "server_error", "runtime_keys_unavailable"
    outcome: Outcome = "store_error"
    default_message = (
        "This key was issued at run time, and the gateway cannot confirm right now that it "
        "is still valid: the admin state store is not answering. Retry shortly."
    )

    def default_headers(self) -> Mapping[str, str]:
        return {"retry-after": "1"}


class UpstreamError(GatewayError):
    """The upstream produced nothing: it said so (an error status) or never got the request."""

    status, type = 502, "server_error"
    outcome: Outcome = "upstream_error"
    code: str | None = "upstream_error"
    default_message = "The upstream image service failed. Retry shortly."
    # Whether the upstream may have produced (and billed) the images all the same.
    may_have_billed = False
    # Whether the caller gets everything back, the request unit too: nothing of theirs
    # reached a model (never sent, or only to models the upstream no longer has).
    refund_in_full = False

    def default_headers(self) -> Mapping[str, str]:
        return {"retry-after": "1"}


class UpstreamUnreachable(UpstreamError):
    """The upstream could not be connected to: the request was never sent."""

    default_message = "The upstream image service could not be reached."
    refund_in_full = True


class UpstreamModelUnavailable(UpstreamError):
    """No model of the gateway's list is left upstream (each was refused as gone, or is no
    longer listed): the gateway's own configuration, not the caller's doing."""

    status, code = 503, "upstream_model_unavailable"
    default_message = (
        "No image model this gateway is configured with is available upstream right now. "
        "This is a gateway configuration problem, not your request: its operators are "
        "alerted. Retrying will not help until they change the model."
    )
    refund_in_full = True
    # The model was refused after the gateway had let go of the image, and another model
    # is left: a retry is served by it.
    retry_message = (
        "The image model this gateway used has just been retired upstream, and the gateway "
        "has moved to another. Retry the request."
    )

    def __init__(self, *, retry: bool = False, headers: Mapping[str, str] | None = None) -> None:
        self.retry = retry
        super().__init__(self.retry_message if retry else None, headers=headers)

    def default_headers(self) -> Mapping[str, str]:
        return {"retry-after": "1"} if self.retry else NO_RETRY


class UpstreamAnswerLost(UpstreamError):
    """The request was sent, but its answer never came whole (a reset, a truncated or
    malformed body, images the gateway could not keep): the upstream may have billed."""

    may_have_billed = True


class UpstreamAuthError(UpstreamError):
    code = "upstream_auth_error"
    default_message = "The gateway could not authenticate to the upstream image service."

    def default_headers(self) -> Mapping[str, str]:
        return NO_RETRY


class UpstreamTimeout(UpstreamAnswerLost):
    status, code = 504, "upstream_timeout"
    default_message = "The upstream image service did not answer in time."

    def default_headers(self) -> Mapping[str, str]:
        return NO_RETRY


class UpstreamMisconfigured(UpstreamError):
    """The upstream refused what the gateway's own settings put in the request (its model,
    prompt or quality), not anything of the caller's: retrying cannot help."""

    code = "upstream_misconfigured"
    default_message = (
        "The upstream image service refused the gateway's own request settings. "
        "This is a gateway configuration problem: contact the gateway's operators."
    )

    def default_headers(self) -> Mapping[str, str]:
        return NO_RETRY


class UpstreamRejected(UpstreamError):
    """The upstream refused the request itself (a 4xx): its status and codes, sanitised."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str,
        code: str | None,
        param: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, headers=headers)
        self.status, self.type, self.code = status, type_, code
        # The upstream refusing the caller's own image or parameters is the caller's
        # mistake, like the gateway's own refusal: upstream_error (the alert's numerator)
        # is kept for the upstream's failures.
        if self.callers_fault:
            self.outcome = "invalid"

    def default_headers(self) -> Mapping[str, str]:
        return {}

    @property
    def callers_fault(self) -> bool:
        """Whether the upstream refused something of the caller's (their image, their `n`),
        rather than failing or limiting the company's account."""
        return self.status in CALLER_STATUSES


def error_response(error: GatewayError, extra_headers: Mapping[str, str] | None = None) -> Response:
    """Render any gateway error as an OpenAI-shaped JSON response."""
    headers = {**error.headers, **(extra_headers or {})}
    return Response(
        orjson.dumps(error.body()),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )
