"""The openai npm package and curl as callers of a live gateway (raw sockets: tests/faults)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.config import KEYS
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.servers import GatewayProcess
from support.tools import NODE_DIR, need

pytestmark = pytest.mark.e2e


def run_node_sdk(
    gateway: GatewayProcess, image: Path, n: int, size: str, fmt: str
) -> dict[str, Any]:
    """One createVariation call by the npm SDK (variation.mjs); its JSON outcome line."""
    node = need("node")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        pytest.fail("the openai npm package is not installed: run `make test`")
    script = str(NODE_DIR / "variation.mjs")
    args = [node, script, gateway.url + "/v1", KEYS["carol"], str(image), str(n), size, fmt]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.node
@pytest.mark.parametrize(
    ("response_format", "size", "n"), [("url", "256x256", 2), ("b64_json", "1024x1024", 1)]
)
def test_node_sdk_file_stream_upload(
    live: GatewayProcess,
    upstream: FakeUpstream,
    tmp_path: Path,
    response_format: str,
    size: str,
    n: int,
) -> None:
    """images.createVariation with fs.createReadStream (a chunked upload) works end to end."""
    path = tmp_path / "in.png"
    path.write_bytes(make_png(40))
    result = run_node_sdk(live, path, n, size, response_format)
    assert result["ok"], result
    assert len(result["data"]) == n and result["requestId"].startswith("req_")
    [seen] = upstream.received
    fields = (seen.fields["n"], seen.fields["size"], seen.fields["response_format"])
    assert fields == (str(n), size, response_format)
    assert seen.fields["user"] != "node-caller-chosen-user"
    assert seen.files["image"][2] == path.read_bytes()


@pytest.mark.node
def test_node_sdk_sees_openai_errors(
    live: GatewayProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """A refusal reaches the npm SDK as an APIError with status and OpenAI's code."""
    path = tmp_path / "in.png"
    path.write_bytes(make_png(40, height=20))
    result = run_node_sdk(live, path, 1, "256x256", "url")
    assert result["ok"] is False and result["status"] == 400
    assert result["error"]["code"] == "invalid_image_dimensions"
    assert upstream.received == []


def test_curl_form_upload(live: GatewayProcess, upstream: FakeUpstream, tmp_path: Path) -> None:
    """`curl -F image=@file -F n=2` works as the README shows."""
    curl = need("curl")
    path = tmp_path / "in.png"
    path.write_bytes(make_png(40))
    args = [
        curl,
        "-sS",
        "-i",
        live.url + "/v1/images/variations",
        "-H",
        f"Authorization: Bearer {KEYS['bob']}",
        "-F",
        f"image=@{path}",
        "-F",
        "n=2",
        "-F",
        "size=512x512",
    ]
    out = subprocess.run(args, capture_output=True, timeout=30, check=True).stdout
    out = out.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl sends Expect: 100-continue
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"x-request-id: req_" in head
    assert len(json.loads(body)["data"]) == 2
    assert upstream.received[0].fields["size"] == "512x512"


def test_probes_and_request_ids(live: GatewayProcess) -> None:
    """/healthz and /readyz answer 200 with an x-request-id, unique per response."""
    import httpx

    ids = set()
    for path in ("/healthz", "/readyz", "/healthz"):
        response = httpx.get(live.url + path)
        assert response.status_code == 200
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 3
