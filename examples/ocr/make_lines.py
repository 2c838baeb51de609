"""Synthetic text-line images for the width-gear example: dark text on a light background,
heights 24-40, widths from the text length (24 calibration lines, 12 evaluation lines)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "ascend",
    "npu",
    "gear",
    "width",
    "line",
    "text",
    "model",
]


def main(out: Path) -> None:
    random.seed(0)
    font = ImageFont.load_default()
    for split, count in (("calib", 24), ("eval", 12)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            text = " ".join(random.choice(WORDS) for _ in range(random.randint(1, 6)))
            width = max(40, int(len(text) * 6.5) + 8)
            height = random.choice([24, 32, 40])
            image = Image.new("L", (width, height), color=random.randint(200, 255))
            draw = ImageDraw.Draw(image)
            draw.text((4, height // 2 - 6), text, fill=random.randint(0, 60), font=font)
            image.save(folder / f"{split}_{i:02d}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
