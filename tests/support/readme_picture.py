"""Draw the README's sandbox pictures: `python tests/support/readme_picture.py OUT.png`
for the variations, `... OUT.png images` for the generations and an edit.

Variations: the painted scene on the left, then four of the sandbox's variations of it at
256x256. Images: three generations of `PROMPTS`, then the scene and its masked edit.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parents[2])]
from gateway.upstream.imaging import encode  # noqa: E402
from gateway.upstream.prompt_art import render_edits, render_generation  # noqa: E402
from gateway.upstream.variation_art import render_variations  # noqa: E402
from support.pngs import painted_scene  # noqa: E402

SIDE, GAP, TAKES = 256, 12, 4
PROMPTS = (
    "three red circles on a blue background",
    "a yellow star in a navy sky",
    "two green triangles and a pink ring",
)
EDIT_PROMPT = "a gold sun"


def sheet() -> Image.Image:
    """The input and its variations side by side on white."""
    scene = painted_scene(SIDE)
    pictures = [scene, *render_variations(scene, TAKES, SIDE)]
    out = Image.new("RGB", (len(pictures) * (SIDE + GAP) - GAP, SIDE), "white")
    for index, png in enumerate(pictures):
        with Image.open(io.BytesIO(png)) as picture:
            out.paste(picture.convert("RGB"), (index * (SIDE + GAP), 0))
    return out


def _row(pictures: list[Image.Image]) -> Image.Image:
    out = Image.new("RGB", (len(pictures) * (SIDE + GAP) - GAP, SIDE), "white")
    for index, picture in enumerate(pictures):
        out.paste(picture.convert("RGB"), (index * (SIDE + GAP), 0))
    return out


def images_sheet() -> Image.Image:
    """Generations of `PROMPTS`, then the scene and its edit where the mask (the right
    half) is transparent."""
    generated = [render_generation(prompt, (SIDE, SIDE), 0) for prompt in PROMPTS]
    scene = painted_scene(SIDE)
    mask = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (SIDE // 2, 0, SIDE, SIDE // 2))
    (edited,) = render_edits([scene], encode(mask, "png"), EDIT_PROMPT, (SIDE, SIDE), 1)
    with Image.open(io.BytesIO(scene)) as source:
        return _row([*generated, source.convert("RGB"), edited])


if __name__ == "__main__":
    picture = images_sheet() if sys.argv[2:] == ["images"] else sheet()
    picture.save(sys.argv[1], format="PNG", optimize=True)
