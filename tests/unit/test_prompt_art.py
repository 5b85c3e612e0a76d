"""The sandbox's generations and edits read as the prompt says: measured, not looked at."""

from __future__ import annotations

import colorsys
import io
import statistics
from collections import deque

import pytest
from PIL import Image, ImageChops
from support.pngs import painted_scene

from gateway.upstream import prompt_art
from gateway.upstream.imaging import encode

SIZE = (256, 256)
# Hue in degrees of each colour word's paint, the way a person would name it.
HUES = {"red": 357, "orange": 28, "yellow": 50, "green": 132, "blue": 225, "purple": 280}


def _hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 360 - abs(a - b))


def saturated_hues(image: Image.Image) -> list[float]:
    """The hue (degrees) of every clearly coloured pixel."""
    hues = []
    data = image.convert("RGB").resize((96, 96), Image.Resampling.NEAREST).tobytes()
    for r, g, b in zip(data[0::3], data[1::3], data[2::3], strict=True):
        h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        if s > 0.45 and v > 0.25:
            hues.append(h * 360)
    return hues


def dominant_hue(image: Image.Image) -> float:
    """The hue most coloured pixels share (the 10-degree bin with the most)."""
    hues = saturated_hues(image)
    bins = statistics.multimode(round(h / 10) % 36 for h in hues)
    return bins[0] * 10.0


def blobs(image: Image.Image, colour: tuple[int, int, int]) -> list[tuple[int, float]]:
    """The connected areas painted `colour`: (pixels, share of their bounding box filled)."""
    side = 128
    data = image.convert("RGB").resize((side, side), Image.Resampling.NEAREST).tobytes()
    near = {
        (i % side, i // side)
        for i in range(side * side)
        if sum(abs(data[3 * i + c] - colour[c]) for c in range(3)) < 30
    }
    found = []
    while near:
        todo, area = deque([near.pop()]), []
        while todo:
            x, y = todo.popleft()
            area.append((x, y))
            for step in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if step in near:
                    near.remove(step)
                    todo.append(step)
        xs, ys = [p[0] for p in area], [p[1] for p in area]
        box = (max(xs) - min(xs) + 1) * (max(ys) - min(ys) + 1)
        found.append((len(area), len(area) / box))
    return [blob for blob in found if blob[0] > 20]  # not a stray edge pixel


@pytest.mark.parametrize("word", sorted(HUES))
def test_the_colour_word_is_the_dominant_hue(word: str) -> None:
    """ "a <colour> circle": most coloured pixels are of the hue the word names."""
    image = prompt_art.render_generation(f"a {word} circle", SIZE, 0)
    assert _hue_distance(dominant_hue(image), HUES[word]) <= 15


def test_a_named_ground_colours_the_background() -> None:
    """ "on a green background": the corners (the ground) are green, the shape is red."""
    image = prompt_art.render_generation("a red square on a green background", SIZE, 0)
    r, g, b, _ = image.getpixel((1, 1))  # type: ignore[misc]
    assert g > r + 60 and g > b + 60
    assert any(_hue_distance(h, HUES["red"]) <= 15 for h in saturated_hues(image))


@pytest.mark.parametrize(
    ("shape", "fill"), [("circle", 0.785), ("square", 1.0), ("triangle", 0.5), ("diamond", 0.5)]
)
def test_the_shape_word_is_the_shape_drawn(shape: str, fill: float) -> None:
    """Each shape fills its bounding box as that shape does (a circle pi/4 of it, a square
    all of it, a triangle half)."""
    image = prompt_art.render_generation(f"one blue {shape}", SIZE, 0)
    (blob,) = blobs(image, prompt_art.COLOURS["blue"])
    assert blob[1] == pytest.approx(fill, abs=0.08)


@pytest.mark.parametrize(("words", "count"), [("three", 3), ("5", 5), ("a", 1), ("two", 2)])
def test_a_number_word_is_how_many_are_drawn(words: str, count: int) -> None:
    """ "three purple circles" draws three separate purple circles."""
    image = prompt_art.render_generation(f"{words} purple circles", SIZE, 1)
    assert len(blobs(image, prompt_art.COLOURS["purple"])) == count


def test_the_same_prompt_gives_the_same_image_and_another_prompt_another() -> None:
    """Deterministic: same prompt, index and size, same pixels; a changed word, a changed
    image; the images of one answer (index) differ; words it does not know still count."""

    def png(prompt: str, index: int = 0) -> bytes:
        return encode(prompt_art.render_generation(prompt, SIZE, index), "png")

    assert png("a cat on a red sofa") == png("a cat on a red sofa")
    assert png("a cat on a red sofa") != png("a dog on a red sofa")
    assert png("a yellow star") != png("a yellow star", 1)


def test_transparent_background_leaves_the_ground_clear() -> None:
    """background transparent: the ground's alpha is 0, the shapes' 255."""
    image = prompt_art.render_generation("one red circle", SIZE, 0, transparent=True)
    alphas = set(image.getchannel("A").tobytes())
    assert alphas == {0, 255}
    assert image.getpixel((0, 0))[3] == 0  # type: ignore[index]


def _mask(size: tuple[int, int], hole: tuple[int, int, int, int]) -> bytes:
    """An opaque mask with a transparent rectangle: where the edit may paint."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    return encode(mask, "png")


def test_a_masked_edit_changes_only_the_transparent_area() -> None:
    """With a mask, the input is untouched where the mask is opaque, and the prompt's
    colour appears where it is transparent."""
    scene = painted_scene()
    (edited,) = prompt_art.render_edits(
        [scene], _mask((128, 128), (64, 0, 128, 128)), "a yellow star", (128, 128), 1
    )
    with Image.open(io.BytesIO(scene)) as source:
        base = source.convert("RGBA").resize((128, 128))
    edited_rgb, base_rgb = edited.convert("RGB"), base.convert("RGB")
    kept = ImageChops.difference(edited_rgb.crop((0, 0, 60, 128)), base_rgb.crop((0, 0, 60, 128)))
    assert kept.getbbox() is None  # not a pixel changed outside the hole
    hole = (68, 0, 128, 128)
    assert ImageChops.difference(edited_rgb.crop(hole), base_rgb.crop(hole)).getbbox()
    hues = saturated_hues(edited.crop((64, 0, 128, 128)))
    assert any(_hue_distance(h, HUES["yellow"]) <= 15 for h in hues)


def test_an_edit_without_a_mask_follows_the_input_and_the_prompt() -> None:
    """Without a mask: each image is a re-take of the input (its layout kept), the named
    shape in the named colour painted on it, and the n images differ."""
    scene = painted_scene()
    edits = prompt_art.render_edits([scene], None, "two red circles", (128, 128), 2)
    with Image.open(io.BytesIO(scene)) as source:
        layout = list(source.convert("L").resize((8, 8), Image.Resampling.BOX).tobytes())
    for edited in edits:
        taken = list(edited.convert("L").resize((8, 8), Image.Resampling.BOX).tobytes())
        assert statistics.correlation(layout, taken) > 0.5
        # The two circles, not a re-coloured bit of the scene's own red house.
        assert len([b for b in blobs(edited, prompt_art.COLOURS["red"]) if b[0] > 400]) == 2
    assert encode(edits[0], "png") != encode(edits[1], "png")


def test_partial_images_sharpen_towards_the_final_one() -> None:
    """Each partial image is nearer the final image than the one before it."""
    final = prompt_art.render_generation("three green triangles", SIZE, 0)

    def distance(image: Image.Image) -> float:
        return statistics.fmean(ImageChops.difference(image, final).convert("L").tobytes())

    distances = [distance(prompt_art.partial(final, k, 3)) for k in range(3)]
    assert distances == sorted(distances, reverse=True) and distances[-1] > 0


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_images_come_in_the_asked_format(fmt: str, pil: str) -> None:
    """encode: the asked format, the image's size; jpeg of a transparent image is opaque."""
    image = prompt_art.render_generation("a blue ring", (160, 96), 0, transparent=True)
    with Image.open(io.BytesIO(encode(image, fmt, 80))) as decoded:
        assert (decoded.format, decoded.size) == (pil, (160, 96))


def test_an_edit_of_an_oblong_image_comes_at_the_asked_size() -> None:
    """A wide input, a tall output: the re-take is of the image's middle, at the asked size."""
    from support.pngs import make_png

    (edited,) = prompt_art.render_edits([make_png(96, height=40)], None, "a red dot", (96, 160), 1)
    assert edited.size == (96, 160)
