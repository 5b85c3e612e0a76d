"""The variations parameters: OpenAI's defaults, and each bad value refused with OpenAI's code."""

from __future__ import annotations

from collections.abc import Callable

import blake3
import pytest

from gateway.errors import InvalidRequest
from gateway.multipart import Upload
from gateway.params import parse_params
from gateway.upstream.base import VariationRequest

MODELS = ("dall-e-2",)


@pytest.fixture
def upload_of(valid_png: bytes) -> Callable[..., Upload]:
    """Build an `Upload` as the reader would: the valid PNG as a file, plus `fields`."""

    def build(**fields: str) -> Upload:
        return Upload(
            fields=dict(fields),
            image=valid_png,
            image_size=len(valid_png),
            image_is_file=True,
            image_digest="blake3:" + blake3.blake3(valid_png).hexdigest(),
        )

    return build


def _refusal(upload: Upload, models: tuple[str, ...] = MODELS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_params(upload, models=models, max_side=4096)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def test_absent_fields_take_openai_defaults(
    upload_of: Callable[..., Upload], valid_png: bytes
) -> None:
    """With only the image: model dall-e-2, n 1, size 1024x1024, response_format url."""
    request = parse_params(upload_of(), models=MODELS, max_side=4096)
    assert request == VariationRequest(
        image=valid_png,
        image_digest="blake3:" + blake3.blake3(valid_png).hexdigest(),
        model="dall-e-2",
        n=1,
        size="1024x1024",
        response_format="url",
    )


def test_every_field_given_is_used(upload_of: Callable[..., Upload]) -> None:
    """Sent values replace the defaults, n parsed from its string form."""
    request = parse_params(
        upload_of(model="dall-e-2", n="2", size="512x512", response_format="b64_json"),
        models=MODELS,
        max_side=4096,
    )
    assert (request.model, request.n, request.size, request.response_format) == (
        "dall-e-2",
        2,
        "512x512",
        "b64_json",
    )


def test_callers_user_field_is_accepted_and_not_kept(upload_of: Callable[..., Upload]) -> None:
    """A caller's `user` is allowed in the form but is not part of the request (it is replaced)."""
    request = parse_params(upload_of(user="mallory"), models=MODELS, max_side=4096)
    assert "mallory" not in repr(request)


@pytest.mark.parametrize(("raw", "n"), [("1", 1), ("2", 2), ("10", 10), ("07", 7)])
def test_n_in_range_is_parsed(upload_of: Callable[..., Upload], raw: str, n: int) -> None:
    """`n` as a decimal string from 1 to 10 becomes that integer."""
    assert parse_params(upload_of(n=raw), models=MODELS, max_side=4096).n == n


@pytest.mark.parametrize("raw", ["abc", "1.5", "", "2e0", " 2", "0x2", "two"])
def test_n_not_an_integer_is_invalid_type(upload_of: Callable[..., Upload], raw: str) -> None:
    """`n` that is not an integer string is invalid_type on n."""
    error = _refusal(upload_of(n=raw))
    assert (error.code, error.param) == ("invalid_type", "n")


@pytest.mark.parametrize("raw", ["0", "-1", "-100"])
def test_n_below_one_is_integer_below_min_value(upload_of: Callable[..., Upload], raw: str) -> None:
    """`n` under 1 is integer_below_min_value on n."""
    error = _refusal(upload_of(n=raw))
    assert (error.code, error.param) == ("integer_below_min_value", "n")


@pytest.mark.parametrize("raw", ["11", "100", "9" * 300])
def test_n_above_ten_is_integer_above_max_value(upload_of: Callable[..., Upload], raw: str) -> None:
    """`n` over 10 is integer_above_max_value on n."""
    error = _refusal(upload_of(n=raw))
    assert (error.code, error.param) == ("integer_above_max_value", "n")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "2048x2048"),
        ("size", "1024X1024"),
        ("size", "1792x1024"),
        ("size", ""),
        ("response_format", "png"),
        ("response_format", "URL"),
        ("model", "dall-e-3"),
        ("model", "gpt-image-1"),
    ],
)
def test_value_not_allowed_is_invalid_value_on_that_field(
    upload_of: Callable[..., Upload], field: str, value: str
) -> None:
    """A size, response_format or model outside the allowed set is invalid_value on that field."""
    error = _refusal(upload_of(**{field: value}))
    assert (error.code, error.param) == ("invalid_value", field)


def test_invalid_value_message_is_bounded(upload_of: Callable[..., Upload]) -> None:
    """A huge bad value is cut in the message rather than echoed whole."""
    error = _refusal(upload_of(size="x" * 1000))
    assert "x" * 65 not in error.message


def test_configured_models_are_the_allowed_set(upload_of: Callable[..., Upload]) -> None:
    """Any model listed in the config is accepted; dall-e-2 stays the default when listed."""
    models = ("gpt-image-1", "dall-e-2")
    assert parse_params(upload_of(model="gpt-image-1"), models=models, max_side=4096).model == (
        "gpt-image-1"
    )
    assert parse_params(upload_of(), models=models, max_side=4096).model == "dall-e-2"


def test_default_model_is_the_first_configured_when_dall_e_2_is_not_allowed(
    upload_of: Callable[..., Upload],
) -> None:
    """Without dall-e-2 in the config, an absent model defaults to the first configured one."""
    request = parse_params(upload_of(), models=("gpt-image-1",), max_side=4096)
    assert request.model == "gpt-image-1"
    assert _refusal(upload_of(model="dall-e-2"), models=("gpt-image-1",)).param == "model"


def test_missing_image_is_missing_required_parameter() -> None:
    """An upload without an image part is missing_required_parameter on image."""
    error = _refusal(Upload(fields={"n": "1"}))
    assert (error.code, error.param) == ("missing_required_parameter", "image")


def test_empty_image_file_is_invalid_image_format() -> None:
    """An empty image file is invalid_image_format on image."""
    error = _refusal(Upload(image=b"", image_is_file=True))
    assert (error.code, error.param) == ("invalid_image_format", "image")


def test_image_checks_use_max_side(make_png: Callable[..., bytes]) -> None:
    """The image is checked against the given side ceiling (invalid_image_dimensions)."""
    image = make_png(65)
    upload = Upload(image=image, image_size=len(image), image_is_file=True)
    with pytest.raises(InvalidRequest) as caught:
        parse_params(upload, models=MODELS, max_side=64)
    assert (caught.value.code, caught.value.param) == ("invalid_image_dimensions", "image")


def test_not_square_image_is_invalid_image_dimensions(make_png: Callable[..., bytes]) -> None:
    """A non-square image is refused before any parameter is looked at."""
    image = make_png(32, 16)
    error = _refusal(Upload(image=image, image_size=len(image), image_is_file=True))
    assert (error.code, error.param) == ("invalid_image_dimensions", "image")
