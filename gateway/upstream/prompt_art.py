"""The sandbox's pictures of a prompt: what the words name is what is drawn.

gpt-image-2 draws what a prompt describes; the sandbox, offline, draws what it can read of
one. Colour words colour the shapes the shape words name ("a red circle", "three blue
squares"), as many as a number word says; a colour before `background`, `sky`, `sea`...
colours the ground ("on a green background"); a colour named with no shape colours shapes of
the prompt's own choosing. Words it does not know still count: everything not named (the
ground's tone, the shapes' places and sizes, the shapes of a prompt that names none) is drawn
from a seed made of the prompt, the image's index and its size, so the same prompt always
gives the same picture and another prompt another one.

Edits follow their input: without a mask, a re-take of the first image (`variation_art`)
with the prompt's shapes painted over it and the other images inset along its foot; with a
mask, the first image untouched wherever the mask is opaque, and the prompt's shapes (and
ground, if it names one) painted where it is transparent (OpenAI's rule: the transparent
area is what is edited).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from gateway.upstream.variation_art import render_variation

RGB = tuple[int, int, int]
COLOURS: dict[str, RGB] = {
    "red": (215, 30, 40), "orange": (245, 130, 20), "yellow": (245, 210, 30),
    "green": (35, 160, 60), "blue": (30, 80, 220), "navy": (20, 35, 120),
    "cyan": (20, 200, 225), "teal": (0, 128, 128), "purple": (125, 45, 180),
    "violet": (140, 70, 220), "magenta": (215, 35, 180), "pink": (245, 115, 175),
    "brown": (125, 75, 35), "gold": (212, 170, 40), "black": (18, 18, 18),
    "white": (248, 248, 248), "grey": (128, 128, 128), "gray": (128, 128, 128),
}  # fmt: skip
# Each word names one of the drawable shapes (a plural too: a trailing "s" is dropped).
SHAPES: dict[str, str] = {
    "circle": "circle", "ball": "circle", "sun": "circle", "moon": "circle", "dot": "circle",
    "disc": "circle", "square": "square", "box": "square", "cube": "square",
    "block": "square", "triangle": "triangle", "pyramid": "triangle", "mountain": "triangle",
    "star": "star", "ring": "ring", "donut": "ring", "diamond": "diamond", "stripe": "stripes",
    "line": "stripes",
}  # fmt: skip
NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "pair": 2, "couple": 2,
}  # fmt: skip
GROUNDS = frozenset({"background", "backdrop", "sky", "sea", "ocean", "field", "wall", "ground"})
MAX_SHAPES = 12


class Element(NamedTuple):
    """Shapes the prompt names: which, how many, and their colour (None: not named)."""

    shape: str
    number: int
    colour: RGB | None


class Scene(NamedTuple):
    """What a prompt says to draw."""

    ground: RGB | None  # None: a quiet tone of the prompt's own
    elements: tuple[Element, ...]
    colours: tuple[RGB, ...]  # named colours no shape or ground took


def _shape_of(word: str) -> str | None:
    return SHAPES.get(word) or (SHAPES.get(word[:-1]) if word.endswith("s") else None)


def read_prompt(prompt: str) -> Scene:
    """The colours, shapes, counts and ground a prompt names, in its own order."""
    elements: list[Element] = []
    loose: list[RGB] = []
    ground: RGB | None = None
    colour: RGB | None = None
    count: int | None = None
    for word in re.findall(r"[a-z]+|\d+", prompt.lower()):
        shape = _shape_of(word)
        if word in COLOURS:
            if colour is not None:
                loose.append(colour)
            colour = COLOURS[word]
        elif word.isdigit() or word in NUMBERS:
            count = int(word) if word.isdigit() else NUMBERS[word]
        elif shape is not None:
            elements.append(Element(shape, max(1, min(count or 1, MAX_SHAPES)), colour))
            colour = count = None
        elif word in GROUNDS and colour is not None:
            ground, colour = colour, None
    if colour is not None:
        loose.append(colour)
    return Scene(ground, tuple(elements), tuple(loose))


def seed_of(*parts: object) -> int:
    """A stable 64-bit seed from the parts' text."""
    text = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def _quiet_tone(rng: random.Random) -> RGB:
    """A pale, nearly grey ground, so that the named colours are what stands out."""
    base = rng.randint(222, 240)
    tint = [rng.randint(-8, 8) for _ in range(3)]
    return (base + tint[0], base + tint[1], base + tint[2])


def _bright(rng: random.Random) -> RGB:
    return rng.choice(tuple(c for name, c in COLOURS.items() if name not in {"white", "grey"}))


def _cast(scene: Scene, rng: random.Random) -> list[tuple[str, RGB]]:
    """One (shape, colour) per shape to draw: the named ones, else the prompt's own."""
    spare = list(scene.colours) or [_bright(rng)]
    elements = scene.elements or tuple(
        Element(rng.choice(("circle", "square", "triangle", "star", "ring", "diamond")), 1, None)
        for _ in range(max(len(scene.colours), rng.randint(1, 3)))
    )
    cast: list[tuple[str, RGB]] = []
    for number, element in enumerate(elements):
        colour = element.colour or spare[number % len(spare)]
        cast.extend((element.shape, colour) for _ in range(element.number))
    return cast[:MAX_SHAPES]


Box = tuple[float, float, float]  # centre x, centre y, radius


def _places(count: int, width: int, height: int, rng: random.Random) -> list[Box]:
    """A place for each shape: one per cell of a grid of the canvas's proportions."""
    cols = max(1, min(count, round(math.sqrt(count * width / height))))
    rows = math.ceil(count / cols)
    cell_w, cell_h = width / cols, height / rows
    places = []
    for index in range(count):
        row, col = divmod(index, cols)
        radius = min(cell_w, cell_h) * rng.uniform(0.28, 0.4)
        slack_x, slack_y = cell_w / 2 - radius, cell_h / 2 - radius
        x = (col + 0.5) * cell_w + rng.uniform(-slack_x, slack_x) * 0.8
        y = (row + 0.5) * cell_h + rng.uniform(-slack_y, slack_y) * 0.8
        places.append((x, y, radius))
    return places


def _star(x: float, y: float, r: float) -> list[tuple[float, float]]:
    return [
        (x + (r if k % 2 == 0 else r * 0.45) * math.sin(k * math.pi / 5),
         y - (r if k % 2 == 0 else r * 0.45) * math.cos(k * math.pi / 5))
        for k in range(10)
    ]  # fmt: skip


def _stripes(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: RGB) -> None:
    for band in range(3):
        top = y - r + band * (2 * r / 2.5)
        draw.rectangle((x - r, top, x + r, top + r * 0.4), fill=fill)


Painter = Callable[[ImageDraw.ImageDraw, float, float, float, RGB], None]
PAINTERS: dict[str, Painter] = {
    "circle": lambda d, x, y, r, c: d.ellipse((x - r, y - r, x + r, y + r), fill=c),
    "square": lambda d, x, y, r, c: d.rectangle((x - r, y - r, x + r, y + r), fill=c),
    "triangle": lambda d, x, y, r, c: d.polygon(
        [(x - r, y + r), (x + r, y + r), (x, y - r)], fill=c
    ),
    "diamond": lambda d, x, y, r, c: d.polygon(
        [(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=c
    ),
    "star": lambda d, x, y, r, c: d.polygon(_star(x, y, r), fill=c),
    "ring": lambda d, x, y, r, c: d.ellipse(
        (x - r, y - r, x + r, y + r), outline=c, width=max(1, round(r * 0.3))
    ),
    "stripes": _stripes,
}


def _ground(size: tuple[int, int], colour: RGB, transparent: bool) -> Image.Image:
    """The ground: the colour, a shade lighter at the top than at the foot."""
    if transparent:
        return Image.new("RGBA", size, (*colour, 0))
    ramp = Image.linear_gradient("L").resize(size).point(lambda v: round(v * 0.12))
    dark = Image.new("RGB", size, tuple(round(c * 0.88) for c in colour))
    image = Image.composite(dark, Image.new("RGB", size, colour), ramp)
    return image.convert("RGBA")


def paint_scene(
    scene: Scene, size: tuple[int, int], seed: int, *, transparent: bool = False
) -> Image.Image:
    """The scene drawn at `size` (RGBA), its free choices taken from `seed`."""
    rng = random.Random(seed)  # noqa: S311 - art, not secrets
    image = _ground(size, scene.ground or _quiet_tone(rng), transparent)
    cast = _cast(scene, rng)
    draw = ImageDraw.Draw(image)
    for (shape, colour), (x, y, r) in zip(cast, _places(len(cast), *size, rng), strict=True):
        PAINTERS[shape](draw, x, y, r, colour)
    return image


def render_generation(
    prompt: str, size: tuple[int, int], index: int, *, transparent: bool = False
) -> Image.Image:
    """Image `index` of a generation for `prompt` at `size` (RGBA), deterministic."""
    seed = seed_of(prompt, index, size)
    return paint_scene(read_prompt(prompt), size, seed, transparent=transparent)


def _open(data: bytes) -> Image.Image:
    with Image.open(BytesIO(data)) as image:
        return image.convert("RGBA")


def encode_png(image: Image.Image) -> bytes:
    """`image` as PNG bytes, quickly."""
    out = BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _inset(base: Image.Image, others: Sequence[bytes]) -> Image.Image:
    """The further input images, small, along the foot of `base`, each framed in white."""
    side = max(8, min(base.size) // 5)
    pad = max(2, side // 16)
    for number, data in enumerate(others[: max(1, base.width // (side + pad)) - 1]):
        thumb = ImageOps.fit(_open(data), (side, side))
        frame = Image.new("RGBA", (side + 2 * pad, side + 2 * pad), (255, 255, 255, 255))
        frame.paste(thumb, (pad, pad), thumb)
        base.paste(frame, (pad + number * (side + 2 * pad), base.height - side - 3 * pad))
    return base


def _edit_area(mask: bytes, size: tuple[int, int]) -> Image.Image:
    """The mask's transparent area at `size`: 255 where the image is to change."""
    with Image.open(BytesIO(mask)) as image:
        alpha = image.convert("RGBA").getchannel("A")
    return ImageOps.fit(alpha, size).point(lambda v: 255 if v < 128 else 0)


def render_edits(
    images: Sequence[bytes], mask: bytes | None, prompt: str, size: tuple[int, int], n: int
) -> list[Image.Image]:
    """`n` edits of `images` (the first is the one edited) for `prompt` at `size` (RGBA)."""
    return [render_edit(images, mask, prompt, size, index) for index in range(n)]


def render_edit(
    images: Sequence[bytes], mask: bytes | None, prompt: str, size: tuple[int, int], index: int
) -> Image.Image:
    """Edit `index` of `images` for `prompt` at `size` (RGBA), deterministic."""
    scene = read_prompt(prompt)
    if mask is not None:
        base = ImageOps.fit(_open(images[0]), size)
        area = _edit_area(mask, size)
        box = area.getbbox() or (0, 0, *size)
        seed = seed_of(prompt, index, size, "mask")
        # Only a ground the prompt names covers the area; else its shapes go on the input.
        clear = scene.ground is None
        patch = paint_scene(scene, (box[2] - box[0], box[3] - box[1]), seed, transparent=clear)
        painted = base.copy()
        painted.alpha_composite(patch, box[:2])
        return Image.composite(painted, base, area)
    side = min(max(size), 1024)  # the re-takes are square: of the image's middle square
    square = encode_png(ImageOps.fit(_open(images[0]), (side, side)))
    base = ImageOps.fit(_open(render_variation(square, index, side)), size)
    if scene.elements or scene.colours:
        overlay = paint_scene(scene, size, seed_of(prompt, index, size, "edit"), transparent=True)
        base = Image.alpha_composite(base, overlay)
    return _inset(base, images[1:])


def partial(final: Image.Image, index: int, count: int) -> Image.Image:
    """Partial image `index` of `count` on the way to `final`: coarse at first, each one
    finer (as a model's partial images sharpen towards the final one)."""
    factor = 2 ** (count - index + 2)
    width, height = final.size
    small = final.resize((max(1, width // factor), max(1, height // factor)), Image.Resampling.BOX)
    return small.resize(final.size, Image.Resampling.BILINEAR).filter(ImageFilter.SMOOTH)
