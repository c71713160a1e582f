#!/usr/bin/env python3
"""Writes Pillow-made golden files for convbase-data's tests (dev only, never in the product path).

Keras' load_img decodes with PIL, converts to RGB with convert('RGB') and resizes with
Image.resize((w, h), resample). These files let the Rust tests check that convbase-data does
the same, against an independent implementation:

- inputs (PNG, lossless): gray28 (L), rgb28, rgb499x375 and rgb375x500 (RGB patterns);
- for each input and filter in nearest, bilinear, bicubic, lanczos: the 150x150 result of
  img.convert('RGB').resize((150, 150), filter) as `NAME.FILTER150.png`;
- gray28.rgb.png: gray28 after convert('RGB');
- cmyk.jpg: a CMYK JPEG written by Pillow's encoder, and cmyk.rgb.png, Pillow's own decoding
  of it converted to RGB;
- palette.png (mode P) and its convert('RGB') as palette.rgb.png;
- orient6.jpg: a 40x20 JPEG whose EXIF orientation (6) says rotate 90 degrees clockwise,
  and orient6.rgb.png, Pillow's ImageOps.exif_transpose of it.

Usage: .venv/bin/python scripts/dev/make_resize_goldens.py [OUT_DIR]
(default crates/convbase-data/tests/golden). Needs Pillow and numpy from PyPI.
"""

import pathlib
import sys

import numpy as np
import PIL
from PIL import Image, ImageOps

OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "crates/convbase-data/tests/golden")
FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos3": Image.LANCZOS,
}


def pattern(h, w, seed):
    """Stripes, a diagonal edge and blocks of noise: sharp edges at odd positions, so that
    any off-by-one in the sampling shows, while staying small as PNG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = ((x // 3 + y // 7) % 2) * 200 + 20
    img[..., 1] = np.where(x * h > y * w, 230, 15)
    blocks = rng.integers(0, 256, (h // 9 + 1, w // 11 + 1), dtype=np.uint8)
    img[..., 2] = blocks[y // 9, x // 11]
    return img


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240601)
    inputs = {
        "gray28": Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L"),
        "rgb28": Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), "RGB"),
        "rgb499x375": Image.fromarray(pattern(375, 499, 1), "RGB"),
        "rgb375x500": Image.fromarray(pattern(500, 375, 2), "RGB"),
    }
    for name, img in inputs.items():
        img.save(OUT / f"{name}.png")
        rgb = img.convert("RGB")
        for fname, f in FILTERS.items():
            rgb.resize((150, 150), f).save(OUT / f"{name}.{fname}150.png")
    inputs["gray28"].convert("RGB").save(OUT / "gray28.rgb.png")

    # CMYK JPEG through Pillow's own encoder (libjpeg, Adobe marker, inverted CMYK).
    blocks = np.zeros((32, 48, 3), np.uint8)
    for i, colour in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 210), (240, 240, 240), (90, 90, 90), (250, 200, 20)]):
        blocks[(i // 3) * 16:(i // 3 + 1) * 16, (i % 3) * 16:(i % 3 + 1) * 16] = colour
    cmyk = Image.fromarray(blocks, "RGB").convert("CMYK")
    cmyk.save(OUT / "cmyk.jpg", quality=95)
    with Image.open(OUT / "cmyk.jpg") as j:
        assert j.mode == "CMYK", j.mode
        j.convert("RGB").save(OUT / "cmyk.rgb.png")

    pal = Image.fromarray(pattern(20, 30, 3), "RGB").quantize(colors=16)
    pal.save(OUT / "palette.png")
    pal.convert("RGB").save(OUT / "palette.rgb.png")

    # 40 wide, 20 high; left half red, right half blue. Orientation 6: displayed rotated
    # 90 degrees clockwise, so 20 wide, 40 high, red on top.
    o = np.zeros((20, 40, 3), np.uint8)
    o[:, :20] = (230, 20, 20)
    o[:, 20:] = (20, 20, 230)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(o, "RGB").save(OUT / "orient6.jpg", quality=95, exif=exif)
    with Image.open(OUT / "orient6.jpg") as j:
        ImageOps.exif_transpose(j).convert("RGB").save(OUT / "orient6.rgb.png")

    (OUT / "VERSION").write_text(f"Pillow {PIL.__version__}, numpy {np.__version__}\n")
    print(f"wrote goldens to {OUT} with Pillow {PIL.__version__}")


if __name__ == "__main__":
    main()
