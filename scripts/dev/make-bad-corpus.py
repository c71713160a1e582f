#!/usr/bin/env python3
"""Writes the fault suite's bad inputs into a temporary directory (dev/test only, never in the
product path; nothing it makes is committed).

Two subcommands:

  make-bad-corpus.py images OUT
      OUT/data/train/shirt/*   image files that are valid but unusual (grey, palette with
                               transparency, 16-bit, CMYK JPEG, EXIF-rotated, animated GIF,
                               wrong extension, ...), each with a "twin": a plain RGB8 PNG of
                               the pixels convbase must decode it to;
      OUT/data/train/tshirt/*  files that cannot be used (zero bytes, truncated JPEG and PNG,
                               text named .jpg, a header declaring 50000x50000 pixels, a
                               non-UTF-8 name, a broken symlink, a folder named x.jpg, a FIFO,
                               ...);
      OUT/expected/NAME.rgb    the expected RGB8 pixels (raw, row-major) of each valid kind;
      OUT/expected.json        one entry per file: kind, path (as the manifest records it),
                               expected status (`ok` or words the status must contain), and
                               for valid kinds width, height, colour type, pixels, tolerance
                               and twin.
      The caller adds good images around them (the demo data) and runs the stages.

  make-bad-corpus.py parquet --manifest M --features F --predictions P OUT
      Contract files that must be refused, made with pyarrow (an independent writer) from
      real ones: a foreign Parquet file, each kind with a schema version from the future,
      a features file whose footer says another vector length, one with a column of the
      wrong type, a manifest whose label column is text.

Expected pixels come from Pillow (its decoding and `convert('RGB')`, `ImageOps.exif_transpose`)
and numpy, independent of the Rust decoders; for 16-bit images they are `round(v / 257)`
computed by numpy from the values written (convbase's documented rule; Pillow truncates).
JPEG kinds carry a tolerance (libjpeg and zune-jpeg round their IDCT differently).

Usage: .venv/bin/python scripts/dev/make-bad-corpus.py images /tmp/corpus
Needs Pillow, numpy and pyarrow from PyPI.
"""

import argparse
import json
import os
import pathlib
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image, ImageOps

# Tolerance (max abs difference per channel) for kinds decoded by a JPEG decoder.
JPEG_TOLERANCE = 8


def pattern(h, w, seed):
    """Four coloured quadrants with noise blocks: any rotation or mirror changes every pixel,
    and JPEG keeps the block colours within a few levels."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    quad = [(200, 30, 40), (30, 180, 60), (40, 70, 210), (230, 220, 30)]
    for i, c in enumerate(quad):
        ys = slice(0, h // 2) if i < 2 else slice(h // 2, h)
        xs = slice(0, w // 2) if i % 2 == 0 else slice(w // 2, w)
        img[ys, xs] = c
    noise = rng.integers(-25, 26, (h // 8 + 1, w // 8 + 1, 3))
    y, x = np.mgrid[0:h, 0:w]
    img = np.clip(img.astype(int) + noise[y // 8, x // 8], 0, 255).astype(np.uint8)
    return img


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(width, height, bit_depth, colour_type, rows):
    """A PNG written byte by byte (Pillow cannot write 48-bit RGB, nor lie in its header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


class Corpus:
    def __init__(self, out):
        self.out = out
        self.data = out / "data"
        self.good = self.data / "train" / "shirt"
        self.bad = self.data / "train" / "tshirt"
        self.expected = out / "expected"
        for d in (self.good, self.bad, self.expected):
            d.mkdir(parents=True, exist_ok=True)
        self.files = []

    def rel(self, path):
        return path.relative_to(self.data).as_posix()

    def valid(self, kind, name, write, rgb, color, tolerance=0):
        """A valid image: `write(path)` makes it, `rgb` (HxWx3 uint8) is what it must decode
        to, `color` the decoder colour type convbase records."""
        path = self.good / name
        write(path)
        rgb = np.ascontiguousarray(rgb, np.uint8)
        h, w, _ = rgb.shape
        stem = name.replace(".", "_")
        (self.expected / f"{stem}.rgb").write_bytes(rgb.tobytes())
        twin = self.good / f"{stem}.twin.png"
        Image.fromarray(rgb, "RGB").save(twin)
        self.files.append(
            {
                "kind": kind,
                "path": self.rel(path),
                "status": "ok",
                "width": w,
                "height": h,
                "color": color,
                "rgb": f"expected/{stem}.rgb",
                "tolerance": tolerance,
                "twin": self.rel(twin),
            }
        )

    def unusable(self, kind, name, make, status, manifest_path=None):
        """A file that cannot be used: `make(path)` creates it; its status must contain
        `status`."""
        # A bytes name is decoded with surrogate escapes: the file gets exactly those bytes.
        path = self.bad / (name if isinstance(name, str) else os.fsdecode(name))
        make(path)
        self.files.append(
            {
                "kind": kind,
                "path": manifest_path or self.rel(path),
                "status": status,
            }
        )


def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pil_upright_rgb(path):
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def save(img, **kw):
    return lambda p: img.save(p, **kw)


def images(out):
    c = Corpus(out)
    rgb = pattern(24, 40, 1)
    rgb_img = Image.fromarray(rgb, "RGB")
    jpeg = dict(quality=95, subsampling=0)

    # --- valid but unusual -------------------------------------------------------------
    grey = pattern(20, 30, 2)[..., 1]
    c.valid("grayscale PNG (L8)", "grey.png", save(Image.fromarray(grey, "L")), np.repeat(grey[..., None], 3, 2), "L8")
    c.valid("grayscale JPEG", "grey.jpg", save(Image.fromarray(grey, "L"), quality=95),
            np.repeat(grey[..., None], 3, 2), "L8", JPEG_TOLERANCE)

    bilevel = Image.fromarray(grey > 120)
    c.valid("1-bit PNG", "bilevel.png", save(bilevel), np.asarray(bilevel.convert("RGB")), "L8")

    pal = rgb_img.quantize(colors=12)
    # Palette index 3 is transparent (a tRNS chunk); convert('RGB') ignores transparency.
    c.valid("palette PNG with transparency", "palette-trns.png", save(pal, transparency=3),
            np.asarray(pal.convert("RGB")), "Rgba8")

    alpha = (np.arange(24 * 40).reshape(24, 40) % 256).astype(np.uint8)
    rgba = np.dstack([rgb, alpha])
    c.valid("RGBA PNG (alpha dropped, not blended)", "rgba.png", save(Image.fromarray(rgba, "RGBA")), rgb, "Rgba8")
    la = np.dstack([grey, grey[::-1]])
    c.valid("grey+alpha PNG", "la.png", save(Image.fromarray(la, "LA")), np.repeat(grey[..., None], 3, 2), "La8")

    g16 = (np.arange(20 * 30).reshape(20, 30) * 109 % 65536).astype(np.uint16)
    g16_8 = np.rint(g16 / 257).astype(np.uint8)
    c.valid("16-bit grey PNG", "grey16.png",
            lambda p: p.write_bytes(png_raw(30, 20, 16, 0, [r.astype(">u2").tobytes() for r in g16])),
            np.repeat(g16_8[..., None], 3, 2), "L16")
    rgb16 = (pattern(18, 26, 3).astype(np.uint32) * 257 + np.arange(26)[None, :, None] * 5).clip(0, 65535).astype(np.uint16)
    c.valid("16-bit RGB PNG (48 bits per pixel)", "rgb16.png",
            lambda p: p.write_bytes(png_raw(26, 18, 16, 2, [r.astype(">u2").tobytes() for r in rgb16])),
            np.rint(rgb16 / 257).astype(np.uint8), "Rgb16")

    cmyk_path = c.good / "cmyk.jpg"
    rgb_img.convert("CMYK").save(cmyk_path, quality=95)
    with Image.open(cmyk_path) as j:
        assert j.mode == "CMYK", j.mode
    # The JPEG decoder converts CMYK itself and reports Rgb8: the manifest cannot tell.
    c.valid("CMYK JPEG (Adobe, as Pillow writes it)", "cmyk.jpg", lambda p: None, pil_rgb(cmyk_path), "Rgb8", JPEG_TOLERANCE)

    for orientation in (3, 6, 8, 2):
        exif = Image.Exif()
        exif[0x0112] = orientation
        name = f"exif{orientation}.jpg"
        rgb_img.save(c.good / name, exif=exif, **jpeg)
        c.valid(f"EXIF orientation {orientation} JPEG", name, lambda p: None,
                pil_upright_rgb(c.good / name), "Rgb8", JPEG_TOLERANCE)
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb_img.save(c.good / "exif6.png", exif=exif)
    c.valid("EXIF orientation 6 PNG (eXIf chunk)", "exif6.png", lambda p: None,
            pil_upright_rgb(c.good / "exif6.png"), "Rgb8")

    frames = [Image.fromarray(pattern(16, 20, s), "RGB").quantize(colors=32) for s in (4, 5, 6)]
    gif_path = c.good / "animated.gif"
    frames[0].save(gif_path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(gif_path) as g:
        assert g.n_frames == 3, g.n_frames
        first = np.asarray(g.convert("RGB"))
    c.valid("animated GIF (first frame)", "animated.gif", lambda p: None, first, "Rgba8")

    c.valid("PNG named .jpg (wrong extension)", "png-inside.jpg", save(rgb_img, format="PNG"), rgb, "Rgb8")
    jpeg_named_png = c.good / "jpeg-inside.png"
    rgb_img.save(jpeg_named_png, format="JPEG", **jpeg)
    c.valid("JPEG named .png (wrong extension)", "jpeg-inside.png", lambda p: None, pil_rgb(jpeg_named_png), "Rgb8", JPEG_TOLERANCE)
    prog = c.good / "progressive.jpg"
    rgb_img.save(prog, progressive=True, **jpeg)
    c.valid("progressive JPEG", "progressive.jpg", lambda p: None, pil_rgb(prog), "Rgb8", JPEG_TOLERANCE)
    c.valid("BMP", "image.bmp", save(rgb_img), rgb, "Rgb8")
    c.valid("TIFF", "image.tiff", save(rgb_img), rgb, "Rgb8")
    c.valid("lossless WebP", "image.webp", save(rgb_img, lossless=True), rgb, "Rgb8")

    # --- not usable --------------------------------------------------------------------
    good_png = (c.good / "png-inside.jpg").read_bytes()
    good_jpeg = (c.good / "progressive.jpg").read_bytes()
    baseline = jpeg_named_png.read_bytes()
    c.unusable("zero bytes", "zero.jpg", lambda p: p.write_bytes(b""), "empty file")
    c.unusable("truncated baseline JPEG", "cut.jpg", lambda p: p.write_bytes(baseline[: len(baseline) * 6 // 10]), "truncated JPEG")
    c.unusable("truncated progressive JPEG", "cut-progressive.jpg",
               lambda p: p.write_bytes(good_jpeg[: len(good_jpeg) * 7 // 10]), "truncated JPEG")
    c.unusable("JPEG headers only", "headers-only.jpg", lambda p: p.write_bytes(baseline[:300]), "truncated JPEG")
    c.unusable("truncated PNG", "cut.png", lambda p: p.write_bytes(good_png[: len(good_png) // 2]), "corrupt Png")
    bad_idat = bytearray(good_png)
    idat = bad_idat.index(b"IDAT")
    for i in range(idat + 12, idat + 40):
        bad_idat[i] ^= 0x5A  # corrupt the deflate stream (and so the chunk's CRC)
    c.unusable("PNG with corrupt pixel data", "bad-idat.png", lambda p: p.write_bytes(bytes(bad_idat)), "corrupt Png")
    zero_width = png_raw(0, 4, 8, 0, [b""] * 4)
    c.unusable("PNG declaring 0 pixels wide", "zero-width.png", lambda p: p.write_bytes(zero_width), "corrupt Png")
    c.unusable("text file named .jpg", "notes.jpg", lambda p: p.write_text("these are not the pixels you are looking for\n"), "not an image")
    rng = np.random.default_rng(7)
    c.unusable("random bytes named .png", "noise.png", lambda p: p.write_bytes(b"\x00" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()), "not an image")
    ihdr_bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")
    c.unusable("PNG header declaring 50000x50000", "bomb.png", lambda p: p.write_bytes(ihdr_bomb), "too large: declares 50000x50000")
    gif_bomb = b"GIF89a" + struct.pack("<HH", 50000, 50000) + b"\x00\x00\x00" + b",\x00\x00\x00\x00" + struct.pack("<HH", 50000, 50000) + b"\x00\x02\x02\x44\x01\x00;"
    c.unusable("GIF header declaring 50000x50000", "bomb.gif", lambda p: p.write_bytes(gif_bomb), "too large: declares 50000x50000")
    sof = baseline.index(b"\xff\xc0")
    jpeg_bomb = baseline[: sof + 5] + struct.pack(">HH", 50000, 50000) + baseline[sof + 9 :]
    c.unusable("JPEG header declaring 50000x50000", "bomb.jpg", lambda p: p.write_bytes(jpeg_bomb), "too large: declares 50000x50000")
    c.unusable("PPM (a format convbase does not read)", "image.ppm", save(rgb_img), "unsupported format")
    c.unusable("ICO (a format convbase does not read)", "icon.ico", save(rgb_img, sizes=[(16, 16)]), "unsupported format")
    c.unusable("non-UTF-8 file name", b"caf\xe9.png", lambda p: p.write_bytes(good_png), "not valid UTF-8",
               manifest_path="train/tshirt/caf\ufffd.png")
    c.unusable("broken symlink", "dangling.png", lambda p: p.symlink_to(c.bad / "gone.png"), "broken symlink")
    c.unusable("folder named x.jpg", "x.jpg", lambda p: p.mkdir(), "a folder, not a file")
    (c.out / "elsewhere").mkdir(exist_ok=True)
    c.unusable("symlink to a folder", "linked.jpg", lambda p: p.symlink_to(c.out / "elsewhere"), "symlink to a folder")
    c.unusable("FIFO named .png", "pipe.png", lambda p: os.mkfifo(p), "not a regular file")

    meta = {"pillow": PIL.__version__, "numpy": np.__version__, "files": c.files}
    (out / "expected.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    good = sum(f["status"] == "ok" for f in c.files)
    print(f"{len(c.files)} kinds ({good} valid, {len(c.files) - good} unusable) in {c.data}")


def parquet(args):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def rewrite(src, dest, change_meta=None, change_table=None):
        table = pq.read_table(src)
        # convbase's footer is the file's key/value metadata (pyarrow's schema metadata
        # when written back); ARROW:schema is pyarrow's own to write.
        kv = pq.ParquetFile(src).metadata.metadata or {}
        meta = {k.decode(): v.decode() for k, v in kv.items() if k != b"ARROW:schema"}
        if change_meta:
            change_meta(meta)
        if change_table:
            table = change_table(table)
        table = table.replace_schema_metadata(meta)
        pq.write_table(table, dest)

    # A valid Parquet file that is not convbase's: same column names as a features file,
    # nothing in the footer.
    foreign = pa.table({
        "path": ["a.png", "b.png"],
        "label": pa.array([0, 1], pa.int32()),
        "features": [[0.5, 1.5], [2.5, 3.5]],
    })
    pq.write_table(foreign, out / "foreign.parquet")

    def future(meta):
        meta["convbase.schema_version"] = "2"

    rewrite(args.manifest, out / "manifest-v2.parquet", future)
    rewrite(args.features, out / "features-v2.parquet", future)
    rewrite(args.predictions, out / "predictions-v2.parquet", future)

    def shorter(meta):
        shape = json.loads(meta["convbase.feature_shape"])
        meta["convbase.feature_shape"] = json.dumps(shape[:-1] + [shape[-1] // 2])

    rewrite(args.features, out / "features-wrong-dim.parquet", shorter)

    def float64_features(table):
        i = table.schema.get_field_index("features")
        col = table.column(i).cast(pa.list_(pa.float64()))
        return table.set_column(i, "features", col)

    rewrite(args.features, out / "features-float64.parquet", change_table=float64_features)

    def text_labels(table):
        i = table.schema.get_field_index("label")
        return table.set_column(i, "label", table.column(i).cast(pa.string()))

    rewrite(args.manifest, out / "manifest-text-label.parquet", change_table=text_labels)
    print(f"bad Parquet files in {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    im = sub.add_parser("images")
    im.add_argument("out")
    pa_ = sub.add_parser("parquet")
    pa_.add_argument("--manifest", required=True)
    pa_.add_argument("--features", required=True)
    pa_.add_argument("--predictions", required=True)
    pa_.add_argument("out")
    args = ap.parse_args()
    if args.cmd == "images":
        images(pathlib.Path(args.out))
    else:
        parquet(args)


if __name__ == "__main__":
    sys.exit(main())
