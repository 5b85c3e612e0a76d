"""The model catalogue: the list in force and its order, prices and their source, and the
availability the watch and the upstream's refusals teach it."""

from __future__ import annotations

from support.config import EDITS_PRICE

from gateway.settings.models import ModelPrice
from gateway.upstream.catalogue import (
    RETRY_REFUSED_SECONDS,
    Failover,
    Listing,
    ModelCatalogue,
    RuntimeModels,
)

PRICE = ModelPrice.model_validate(EDITS_PRICE)
DEAR = PRICE.model_copy(update={"image_output_per_1m_tokens": 80.0})


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def catalogue(
    runtime: RuntimeModels | None = None, clock: Clock | None = None
) -> tuple[ModelCatalogue, list[Failover]]:
    """A catalogue of edits: a then b, both priced, and the failovers it reports."""
    told: list[Failover] = []
    made = ModelCatalogue(
        {"edits": ("a", "b")},
        {"a": PRICE, "b": PRICE},
        runtime=lambda: runtime or RuntimeModels(),
        on_failover=told.append,
        clock=clock or Clock(),
    )
    return made, told


def test_the_first_available_model_serves() -> None:
    """With nothing known of the upstream, the list's order decides."""
    models, _ = catalogue()
    assert models.candidates("edits") == ("a", "b")
    assert models.serving("edits") == "a"
    assert models.serving("generations") is None


def test_a_refusal_moves_calls_down_the_list_once() -> None:
    """The first refusal of a model is one failover naming the next; later ones are not."""
    models, told = catalogue()
    models.refused("a", "edits", "req-1")
    models.refused("a", "edits", "req-2")
    assert models.serving("edits") == "b"
    assert [(f.model, f.next_model, f.upstream_request_id) for f in told] == [("a", "b", "req-1")]
    models.refused("b", "edits", None)
    assert models.serving("edits") is None
    assert told[-1].next_model is None


def test_a_model_the_upstream_does_not_list_is_skipped_without_a_call() -> None:
    """The watch's reading alone makes a model unavailable; an unknown one stays usable."""
    models, told = catalogue()
    models.observe({"a": Listing(False), "b": None})
    assert models.candidates("edits") == ("b",)
    assert [state.available for state in models.states()] == [False, True]
    assert not told


def test_a_failed_reading_keeps_what_was_known() -> None:
    """A /models failure changes no availability, and is kept for the admin view."""
    models, _ = catalogue()
    models.observe({"a": Listing(False)})
    models.observe({}, "the upstream answered HTTP 500")
    assert models.candidates("edits") == ("b",)
    assert models.watch.error == "the upstream answered HTTP 500"


def test_a_refused_model_listed_again_is_tried_after_an_hour_unless_shut_down() -> None:
    """A refusal sticks while the upstream lists the model with a passed shutdown date, or
    for the first hour; then a plain listing brings it back."""
    clock = Clock()
    models, _ = catalogue(clock=clock)
    models.refused("a", "edits", None)
    models.observe({"a": Listing(True)})
    assert models.serving("edits") == "b"
    clock.now += RETRY_REFUSED_SECONDS
    models.observe({"a": Listing(True, shutdown_at=clock.now - 1)})
    assert models.serving("edits") == "b"
    models.observe({"a": Listing(True, shutdown_at=clock.now + 86_400)})
    assert models.serving("edits") == "a"


def test_runtime_lists_and_prices_win_and_say_so() -> None:
    """An admin's list and price replace the config's; sources say which is in force."""
    runtime = RuntimeModels({"edits": ("c", "a")}, {"c": DEAR, "a": DEAR})
    models, _ = catalogue(runtime)
    assert models.models("edits") == ("c", "a")
    assert models.list_source("edits") == "runtime"
    assert models.config_list("edits") == ("a", "b")
    assert models.price("a") == DEAR and models.price_source("a") == "runtime"
    assert models.price("b") == PRICE and models.price_source("b") == "config"
    assert models.price_source("x") is None
    assert models.watched() == ("c", "a")
    assert models.estimate("c", "1024x1024", "medium") == 1000 * 80 / 1e6


def test_cost_uses_the_models_own_price() -> None:
    """A call is settled at the price of the model that made it."""
    runtime = RuntimeModels(prices={"b": DEAR})
    models, _ = catalogue(runtime)
    usage = {"input_tokens": 0, "output_tokens": 1000}
    assert models.cost("a", usage, "image") == 1000 * 40 / 1e6
    assert models.cost("b", usage, "image") == 1000 * 80 / 1e6


def test_runtime_model_settings_another_version_wrote_are_left_out() -> None:
    """A stored list or price this version cannot read is skipped, the rest kept: a replica
    never stops following the admin state over it."""
    import orjson

    from gateway.admin.records import decode_models

    good = orjson.dumps(EDITS_PRICE).decode()
    models = decode_models(
        {
            "list:edits": '["a", "b"]',
            "price:a": good,
            "price:b": '{"image": {"low": 1}}',
            "list:x": "not json",
        }
    )
    assert models.lists == {"edits": ("a", "b")}
    assert set(models.prices) == {"a"}
