"""Draw the README's sandbox before/after: `python tests/support/readme_picture.py OUT.png`.

The painted scene on the left, then four of the sandbox's variations of it at 256x256.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parents[2])]
from gateway.upstream.variation_art import render_variations  # noqa: E402
from support.pngs import painted_scene  # noqa: E402

SIDE, GAP, TAKES = 256, 12, 4


def sheet() -> Image.Image:
    """The input and its variations side by side on white."""
    scene = painted_scene(SIDE)
    pictures = [scene, *render_variations(scene, TAKES, SIDE)]
    out = Image.new("RGB", (len(pictures) * (SIDE + GAP) - GAP, SIDE), "white")
    for index, png in enumerate(pictures):
        with Image.open(io.BytesIO(png)) as picture:
            out.paste(picture.convert("RGB"), (index * (SIDE + GAP), 0))
    return out


if __name__ == "__main__":
    sheet().save(sys.argv[1], format="PNG", optimize=True)
