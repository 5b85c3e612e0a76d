"""Building variations requests the way the SDKs do."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from support.config import auth
from support.pngs import make_png

DEFAULT_PNG = make_png(32)
PATH = "/v1/images/variations"


def post_variation(
    client: TestClient,
    *,
    image: bytes | None = DEFAULT_PNG,
    fields: dict[str, str] | None = None,
    user: str = "alice",
    headers: dict[str, str] | None = None,
    filename: str | None = "image.png",
) -> Any:
    """POST a multipart variations request as the python SDK would."""
    files = {"image": (filename, image, "application/octet-stream")} if image is not None else None
    return client.post(
        PATH, data=fields or {}, files=files, headers={**auth(user), **(headers or {})}
    )


def assert_openai_error(
    response: Any,
    status: int,
    code: str | None,
    param: str | None = None,
    type_: str = "invalid_request_error",
) -> dict[str, Any]:
    """The response is an OpenAI-shaped error with exactly these values."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (type_, code, param)
    assert error["message"]
    return dict(error)
