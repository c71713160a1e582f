#!/usr/bin/env python3
"""Writes Keras/SciPy-made golden files for convbase-data's augmentation tests (dev only,
never in the product path).

convbase's `augment::apply` claims to reproduce what Keras' ImageDataGenerator does to an
image once its random parameters are drawn: `apply_affine_transform` (matrix composition,
`transform_matrix_offset_center`, one `scipy.ndimage.affine_transform` per channel) and then
the flips of `apply_transform`. The references here are independent of convbase:

- geometry `keras3`, bilinear: Keras' own functions `transform_matrix_offset_center`,
  `apply_affine_transform` and `flip_axis`, taken from the installed Keras 3 source file
  keras/src/legacy/preprocessing/image.py (the module cannot be imported without a backend
  such as TensorFlow or JAX, so the three functions are compiled from that file's text);
- geometry `keras2`, bilinear: keras_preprocessing 1.1.2 (`keras_preprocessing/image/
  affine_transformations.py`, its last release), imported as is;
- geometry `keras2`, nearest, shear in radians: Keras 2.0.8, the version the book's
  notebooks ran (`keras.__version__` prints '2.0.8' in the first cell of
  first_edition/5.3-using-a-pretrained-convnet.ipynb). Its `ImageDataGenerator.random_transform`
  and `apply_transform` (keras/preprocessing/image.py in the Keras-2.0.8 wheel on PyPI)
  cannot be imported without a backend either, so their affine part is copied below in
  `keras_2_0_8_affine`, line for line.

Inputs: two Fashion-MNIST demo images (data/demo, made by scripts/demo-data.sh) resized to
48x48 with Pillow NEAREST as Keras' load_img does, and a synthetic 28x40 (rows x columns)
RGB gradient with a few sharp edges: not square, so that a swapped height and width shows.
Each case applies explicit parameters (theta, tx, ty, shear, zx, zy, flips) as Keras'
`apply_transform` receives them; outputs are float32 HWC, as Keras returns them for the
float32 array `img_to_array` makes.

The random draw of a view's parameters is convbase's own (Keras draws from NumPy's global
generator, which cannot be keyed per image), specified in `AugmentPolicy::draw`: ChaCha20
(as the rand_chacha crate runs it: 64-bit block counter and stream id 0) keyed with
SHA-256("convbase-augment-v1", seed, key, view), eight uniforms in a fixed order. `draw`
below implements that specification independently (ChaCha20 from RFC 8439's block
function) for a few policies, seeds, keys and views, so that the Rust test checks the draw
against it and anyone can reproduce a view's parameters outside convbase.

Writes into OUT_DIR (default crates/convbase-data/tests/golden/augment):
  in_NAME.png       the input images (lossless, 8-bit RGB)
  CASE.f32.gz       the reference output, float32 little-endian, HWC, gzip-compressed
  cases.json        one object per case: input, geometry, interpolation, fill, cval, params
  draws.json        policy ranges, seed, key, view, size and the parameters drawn
  VERSION           library versions used

Usage: .venv/bin/python scripts/dev/make_augment_goldens.py [OUT_DIR]
Needs numpy, scipy, Pillow, keras (3.x; only its source file is read, so
`pip install --no-deps keras` suffices) and keras-preprocessing==1.1.2 from PyPI.
"""

import ast
import gzip
import hashlib
import json
import math
import pathlib
import struct
import sys
import warnings

import numpy as np
import PIL
import scipy
import scipy.ndimage
from PIL import Image

import keras_preprocessing
from keras_preprocessing.image import affine_transformations as kp

REPO = pathlib.Path(__file__).resolve().parents[2]
OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "crates/convbase-data/tests/golden/augment")
DEMO = REPO / "data/demo"

# keras_preprocessing 1.1.2 and Keras 3 call scipy.ndimage.interpolation.affine_transform,
# a deprecated alias of scipy.ndimage.affine_transform; the warning is expected.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def keras3_functions():
    """Keras 3's transform_matrix_offset_center, apply_affine_transform and flip_axis,
    compiled from the installed source file without importing the keras package."""
    import importlib.util

    spec = importlib.util.find_spec("keras")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "src/legacy/preprocessing/image.py"
    tree = ast.parse(path.read_text())
    wanted = {"transform_matrix_offset_center", "apply_affine_transform", "flip_axis"}
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {f.name for f in funcs} == wanted, f"{path} lacks some of {wanted}"
    for f in funcs:
        f.decorator_list = []  # @keras_export needs the package
    namespace = {"np": np, "scipy": scipy}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), str(path), "exec"), namespace)
    version = (pathlib.Path(spec.submodule_search_locations[0]) / "src/version.py").read_text()
    return namespace, version.split('__version__ = "')[1].split('"')[0]


def keras_2_0_8_affine(x, theta_deg, tx, ty, shear_rad, zx, zy, fill_mode, cval):
    """The affine part of Keras 2.0.8's ImageDataGenerator.random_transform with its random
    draws replaced by the given values, for channels_last (row axis 0, col axis 1,
    channel axis 2). Copied from keras/preprocessing/image.py of the Keras-2.0.8 wheel:
    `theta = np.pi / 180 * np.random.uniform(...)`, shear used as radians, offsets
    `float(x) / 2 + 0.5`, and `apply_transform` calling affine_transform with order=0."""
    img_row_axis, img_col_axis, img_channel_axis = 0, 1, 2
    theta = np.pi / 180 * theta_deg
    shear = shear_rad

    transform_matrix = None
    if theta != 0:
        rotation_matrix = np.array([[np.cos(theta), -np.sin(theta), 0],
                                    [np.sin(theta), np.cos(theta), 0],
                                    [0, 0, 1]])
        transform_matrix = rotation_matrix

    if tx != 0 or ty != 0:
        shift_matrix = np.array([[1, 0, tx],
                                 [0, 1, ty],
                                 [0, 0, 1]])
        transform_matrix = shift_matrix if transform_matrix is None else np.dot(transform_matrix, shift_matrix)

    if shear != 0:
        shear_matrix = np.array([[1, -np.sin(shear), 0],
                                [0, np.cos(shear), 0],
                                [0, 0, 1]])
        transform_matrix = shear_matrix if transform_matrix is None else np.dot(transform_matrix, shear_matrix)

    if zx != 1 or zy != 1:
        zoom_matrix = np.array([[zx, 0, 0],
                                [0, zy, 0],
                                [0, 0, 1]])
        transform_matrix = zoom_matrix if transform_matrix is None else np.dot(transform_matrix, zoom_matrix)

    if transform_matrix is not None:
        h, w = x.shape[img_row_axis], x.shape[img_col_axis]
        # transform_matrix_offset_center of Keras 2.0.8
        o_x = float(h) / 2 + 0.5
        o_y = float(w) / 2 + 0.5
        offset_matrix = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
        reset_matrix = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
        transform_matrix = np.dot(np.dot(offset_matrix, transform_matrix), reset_matrix)
        # apply_transform of Keras 2.0.8
        x = np.rollaxis(x, img_channel_axis, 0)
        final_affine_matrix = transform_matrix[:2, :2]
        final_offset = transform_matrix[:2, 2]
        channel_images = [scipy.ndimage.affine_transform(
            x_channel,
            final_affine_matrix,
            final_offset,
            order=0,
            mode=fill_mode,
            cval=cval) for x_channel in x]
        x = np.stack(channel_images, axis=0)
        x = np.rollaxis(x, 0, img_channel_axis + 1)
    return x


def flip(x, p, flip_axis):
    """The flips of Keras' apply_transform (horizontal: the column axis, then vertical)."""
    if p["flip_horizontal"]:
        x = flip_axis(x, 1)
    if p["flip_vertical"]:
        x = flip_axis(x, 0)
    return x


def reference(x, case, k3):
    p = case["params"]
    geometry, interpolation = case["geometry"], case["interpolation"]
    fill, cval = case["fill"], case["cval"]
    if geometry == "keras3" and interpolation == "bilinear":
        y = k3["apply_affine_transform"](
            x, p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"],
            row_axis=0, col_axis=1, channel_axis=2, fill_mode=fill, cval=cval, order=1)
        return flip(y, p, k3["flip_axis"])
    if geometry == "keras2" and interpolation == "bilinear":
        y = kp.apply_affine_transform(
            x, p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"],
            row_axis=0, col_axis=1, channel_axis=2, fill_mode=fill, cval=cval, order=1)
        return flip(y, p, kp.flip_axis)
    if geometry == "keras2" and interpolation == "nearest":
        y = keras_2_0_8_affine(x, p["theta"], p["tx"], p["ty"], np.deg2rad(p["shear"]),
                               p["zx"], p["zy"], fill, cval)
        return flip(y, p, kp.flip_axis)
    raise ValueError(f"no reference for {geometry}/{interpolation}")


def params(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0, fh=False, fv=False):
    return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
            "flip_horizontal": fh, "flip_vertical": fv}


# One transform at a time, then all together; shear in degrees (the Keras 2.0.8 reference
# converts it to the radians that version takes).
SINGLE = {
    "rotation": params(theta=23.5),
    "shift": params(tx=4.3, ty=-7.6),
    "shear": params(shear=17.0),
    "zoom": params(zx=0.83, zy=1.17),
    "hflip": params(fh=True),
    "vflip": params(fv=True),
    "combined": params(theta=-31.0, tx=-5.2, ty=6.9, shear=9.5, zx=1.13, zy=0.88, fh=True),
}
# Large enough to sample far outside the image, where the fill modes differ.
WIDE = params(theta=35.0, tx=9.3, ty=-11.1, shear=12.0, zx=1.45, zy=1.3, fv=True)
FILLS = [("nearest", 0.0), ("constant", 0.0), ("constant", 97.5), ("reflect", 0.0), ("wrap", 0.0)]


def cases():
    out = []

    def add(name, inp, p, fill="nearest", cval=0.0, geometry="keras3", interpolation="bilinear"):
        out.append({"name": name, "input": inp, "geometry": geometry,
                    "interpolation": interpolation, "fill": fill, "cval": cval, "params": p})

    for kind, p in SINGLE.items():
        add(f"tshirt_{kind}", "tshirt", p)
    add("shirt_combined", "shirt", SINGLE["combined"])
    for fill, cval in FILLS:
        tag = fill if fill != "constant" or cval == 0 else f"{fill}{cval:g}"
        add(f"gradient_wide_{tag}", "gradient", WIDE, fill, cval)
    for kind in ["rotation", "shift", "shear", "zoom"]:
        add(f"gradient_{kind}", "gradient", SINGLE[kind])
    # keras_preprocessing 1.1.2 geometry (centre n/2 + 0.5, matrix in row/column order)
    add("gradient_wide_reflect_keras2", "gradient", WIDE, "reflect", geometry="keras2")
    add("gradient_combined_keras2", "gradient", SINGLE["combined"], geometry="keras2")
    add("shirt_combined_keras2", "shirt", SINGLE["combined"], geometry="keras2")
    # Keras 2.0.8, the book's: nearest-neighbour sampling, shear in radians
    add("gradient_combined_keras208", "gradient", SINGLE["combined"], geometry="keras2",
        interpolation="nearest")
    add("gradient_wide_wrap_keras208", "gradient", WIDE, "wrap", geometry="keras2",
        interpolation="nearest")
    add("shirt_combined_keras208", "shirt", SINGLE["combined"], geometry="keras2",
        interpolation="nearest")
    return out


def chacha20_block(key_words, counter):
    """RFC 8439 ChaCha20 block function; words 12-13 hold a 64-bit counter and 14-15 the
    stream id (0), as rand_chacha lays them out."""
    def rotl(v, n):
        return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

    def quarter(s, a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)

    init = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *key_words,
            counter & 0xFFFFFFFF, counter >> 32, 0, 0]
    s = list(init)
    for _ in range(10):
        quarter(s, 0, 4, 8, 12); quarter(s, 1, 5, 9, 13)
        quarter(s, 2, 6, 10, 14); quarter(s, 3, 7, 11, 15)
        quarter(s, 0, 5, 10, 15); quarter(s, 1, 6, 11, 12)
        quarter(s, 2, 7, 8, 13); quarter(s, 3, 4, 9, 14)
    return [(a + b) & 0xFFFFFFFF for a, b in zip(s, init)]


def draw(policy, key, view, height, width):
    """AugmentPolicy::draw's specification, independently of its Rust code."""
    if view == 0:
        return params()
    digest = hashlib.sha256(b"convbase-augment-v1" + policy["seed"].to_bytes(8, "little")
                            + len(key.encode()).to_bytes(8, "little") + key.encode()
                            + view.to_bytes(4, "little")).digest()
    words = chacha20_block(list(struct.unpack("<8I", digest)), 0)  # 8 u64 need 16 words
    u64s = [words[2 * i] | (words[2 * i + 1] << 32) for i in range(8)]
    units = [(v >> 11) * (1.0 / (1 << 53)) for v in u64s]

    def uniform(lo, hi, u):
        return lo + (hi - lo) * u

    rot, ws, hs, sh = policy["rotation"], policy["width_shift"], policy["height_shift"], policy["shear"]
    lo, hi = policy["zoom"]
    theta = uniform(-rot, rot, units[0])
    tx = uniform(-hs, hs, units[1])
    ty = uniform(-ws, ws, units[2])
    shear = uniform(-sh, sh, units[3])
    zx, zy = uniform(lo, hi, units[4]), uniform(lo, hi, units[5])
    zoom_off = lo == 1.0 and hi == 1.0
    return params(
        theta=theta,
        tx=tx * height if hs < 1 else tx,
        ty=ty * width if ws < 1 else ty,
        shear=shear if policy["shear_unit"] == "degrees" else shear * (180.0 / math.pi),
        zx=1.0 if zoom_off else zx,
        zy=1.0 if zoom_off else zy,
        fh=policy["horizontal_flip"] and uniform(0.0, 1.0, units[6]) < 0.5,
        fv=policy["vertical_flip"] and uniform(0.0, 1.0, units[7]) < 0.5,
    )


BOOK = {"rotation": 40.0, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2,
        "shear_unit": "degrees", "zoom": [0.8, 1.2], "horizontal_flip": True,
        "vertical_flip": False, "seed": 0}


def draws():
    sha = "3f0a9c2e6b1d4f58a7c0e9d2b4f6a8c1e3d5f7a9b0c2d4e6f8a1b3c5d7e9f0a2"
    policies = [
        ("book", dict(BOOK), 150, 150),
        ("book_seed7", dict(BOOK, seed=7), 150, 150),
        ("radians_vflip_pixels", dict(BOOK, shear_unit="radians", vertical_flip=True,
                                      width_shift=12.0, zoom=[0.5, 1.5], seed=2**64 - 1), 28, 40),
        ("no_zoom", dict(BOOK, zoom=[1.0, 1.0], seed=3), 64, 64),
    ]
    out = []
    for name, pol, h, w in policies:
        for key in [sha, "train/cats/cat.1.jpg", ""]:
            for view in [0, 1, 2, 9, 4_000_000_000]:
                out.append({"policy": name, "ranges": pol, "key": key, "view": view,
                            "height": h, "width": w, "params": draw(pol, key, view, h, w)})
    return out


def gradient(h=28, w=40):
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (x * 255) // (w - 1)
    img[..., 1] = (y * 255) // (h - 1)
    img[..., 2] = np.where((x // 5 + y // 4) % 2 == 0, 40, 220)
    img[h // 3, :, :] = (255, 255, 0)  # one bright row and column: sharp edges
    img[:, w // 4, :] = (0, 255, 255)
    return img


def demo(path):
    with Image.open(DEMO / path) as im:
        return np.asarray(im.convert("RGB").resize((48, 48), Image.NEAREST))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.f32*"):
        old.unlink()
    k3, k3_version = keras3_functions()
    inputs = {
        "tshirt": demo("train/tshirt/tshirt.1.png"),
        "shirt": demo("train/shirt/shirt.1003.png"),
        "gradient": gradient(),
    }
    for name, img in inputs.items():
        Image.fromarray(img, "RGB").save(OUT / f"in_{name}.png")
    all_cases = cases()
    for case in all_cases:
        x = inputs[case["input"]].astype(np.float32)  # img_to_array
        y = reference(x, case, k3)
        assert y.dtype == np.float32 and y.shape == x.shape, (case["name"], y.dtype, y.shape)
        raw = np.ascontiguousarray(y).astype("<f4").tobytes()
        (OUT / f"{case['name']}.f32.gz").write_bytes(gzip.compress(raw, 9, mtime=0))
    (OUT / "cases.json").write_text(json.dumps(all_cases, indent=1) + "\n")
    (OUT / "draws.json").write_text(json.dumps(draws(), indent=1) + "\n")
    (OUT / "VERSION").write_text(
        f"keras {k3_version} (source of keras/src/legacy/preprocessing/image.py), "
        f"keras-preprocessing {keras_preprocessing.__version__}, scipy {scipy.__version__}, "
        f"numpy {np.__version__}, Pillow {PIL.__version__}\n")
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {len(all_cases)} cases to {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
