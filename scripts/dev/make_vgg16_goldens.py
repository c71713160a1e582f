"""Writes crates/convbase-vgg16/tests/golden/vgg16_keras_goldens.safetensors: block4_pool and
block5_pool outputs of the real Keras VGG16 weights, computed by onnxruntime on the tf2onnx
graph (an implementation independent of ours), for real colour photos shipped by
scikit-image, in caffe and rescale modes. Also writes two tiny broken Keras-layout .h5 files
for the loader's error tests.

Run: .venv/bin/pip install onnx onnxruntime scikit-image safetensors h5py numpy pillow
     .venv/bin/python scripts/dev/make_vgg16_goldens.py
(needs scripts/fetch-weights.sh to have cached the ONNX file)

Stored tensors (all NHWC, i.e. Keras' HWC layout per image):
  images               uint8   (3, 150, 150, 3)  RGB pixels, resized with PIL bilinear
  caffe.block5_pool    float32 (3, 4, 4, 512)
  rescale.block5_pool  float32 (3, 4, 4, 512)
  caffe.block4_pool    float32 (1, 9, 9, 512)    image 0 only
  rescale.block4_pool  float32 (1, 9, 9, 512)    image 0 only
"""
import json
import pathlib
import sys

import h5py
import numpy as np
import onnxruntime
import skimage
import skimage.data
from PIL import Image
from safetensors.numpy import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vgg16_onnx_ref as ref  # noqa: E402

SIZE = 150
IMAGES = ["chelsea", "astronaut", "coffee"]
OUT = ref.REPO / "crates/convbase-vgg16/tests/golden"


def load_images() -> np.ndarray:
    out = []
    for name in IMAGES:
        rgb = getattr(skimage.data, name)()
        assert rgb.ndim == 3 and rgb.shape[2] == 3, name
        out.append(np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.BILINEAR)))
    return np.stack(out).astype(np.uint8)


def numpy_block5_f64(x_nhwc: np.ndarray, weights: dict) -> np.ndarray:
    """Float64 reference of the base (NHWC), to measure how far float32 strays."""
    x = x_nhwc.astype(np.float64)
    for b, convs in enumerate([2, 2, 3, 3, 3], start=1):
        for c in range(1, convs + 1):
            k, bias = weights[f"block{b}_conv{c}"]
            w = k.astype(np.float64).transpose(2, 3, 1, 0)  # OIHW -> HWIO
            n, h, wd, ci = x.shape
            p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            cols = np.stack([p[:, i : i + h, j : j + wd, :] for i in range(3) for j in range(3)], axis=3)
            x = np.maximum(cols.reshape(n, h, wd, 9 * ci) @ w.reshape(9 * ci, -1) + bias, 0)
        n, h, wd, ch = x.shape
        x = x[:, : h // 2 * 2, : wd // 2 * 2].reshape(n, h // 2, 2, wd // 2, 2, ch).max(axis=(2, 4))
    return x


def main() -> None:
    path = ref.onnx_path()
    sess = ref.load_cut_model(path)
    images = load_images()
    tensors = {"images": images}
    for mode, fn in [("caffe", ref.caffe), ("rescale", ref.rescale)]:
        b4, b5 = sess.run([ref.POOLS["block4_pool"], ref.POOLS["block5_pool"]], {"input": fn(images)})
        tensors[f"{mode}.block5_pool"] = np.ascontiguousarray(b5.transpose(0, 2, 3, 1))
        tensors[f"{mode}.block4_pool"] = np.ascontiguousarray(b4[:1].transpose(0, 2, 3, 1))
        print(f"{mode}: block5_pool max {b5.max():.4g}, mean {b5.mean():.4g}; block4_pool max {b4.max():.4g}")

    exact = numpy_block5_f64(ref.caffe(images[:1]), ref.conv_weights(path))
    got = tensors["caffe.block5_pool"][:1].astype(np.float64)
    print(
        "onnxruntime float32 vs numpy float64, caffe block5_pool image 0: max |diff| "
        f"{np.abs(got - exact).max():.3g}, max |ref| {np.abs(exact).max():.4g}, "
        f"ratio {np.abs(got - exact).max() / np.abs(exact).max():.3g}"
    )

    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "images": json.dumps([f"skimage.data.{n} ({skimage.__version__})" for n in IMAGES]),
        "resize": f"PIL bilinear to {SIZE}x{SIZE}",
        "reference": f"onnxruntime {onnxruntime.__version__} CPU, tf2onnx graph cut at the pools",
        "weights_onnx_sha256": ref.ONNX_SHA256,
        "layout": "NHWC (Keras HWC per image)",
    }
    save_file(tensors, str(OUT / "vgg16_keras_goldens.safetensors"), metadata=meta)

    # Keras layout, broken: block1_conv1's kernel has 32 outputs instead of 64 / only block1_conv1.
    for name, outputs in [("keras_wrong_shape.h5", 32), ("keras_missing_layer.h5", 64)]:
        with h5py.File(OUT / name, "w") as f:
            f.attrs["layer_names"] = np.array([b"block1_conv1"])
            f.attrs["backend"] = b"tensorflow"
            g = f.create_group("block1_conv1")
            names = ["block1_conv1_W_1:0", "block1_conv1_b_1:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            g.create_dataset(names[0], data=np.full((3, 3, 3, outputs), 0.01, np.float32))
            g.create_dataset(names[1], data=np.zeros(outputs, np.float32))
    for p in sorted(OUT.iterdir()):
        print(f"{p.relative_to(ref.REPO)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
