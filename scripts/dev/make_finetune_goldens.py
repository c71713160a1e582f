#!/usr/bin/env python3
"""Golden file for fine-tuning block5: two RMSprop steps of block5 + a small dense head,
computed independently with numpy (float64) from the real Keras VGG16 block5 weights.

Writes crates/convbase-finetune/tests/golden/block5_rmsprop.safetensors (float32 tensors;
the header metadata holds the case as JSON: labels, hyperparameters, losses). The Rust test
loads the same real weights, the inputs, the head's initial weights and the dropout masks
from it, runs the real model and optimiser, and compares.

The model (Keras semantics, as documented in the seed protocol):
- input: block4_pool maps of 4x4x512 (small, so the file stays small), stored as rows
  flattened in Keras' HWC order (channels fastest), as `convbase-extract` writes them;
- block5_conv1..3: 3x3 cross-correlation, stride 1, zero padding 1, + bias, ReLU; weights
  `features.{24,26,28}.weight` OIHW from data/weights/vgg16-keras-imagenet.safetensors;
- block5_pool: 2x2 max-pool, stride 2 (floor); the gradient goes to each window's maximum;
- Flatten in HWC order -> Dense(8, relu) -> Dropout(0.5) (masks given) -> Dense(1, sigmoid);
- binary cross-entropy on probabilities clipped to [1e-7, 1-1e-7], mean over the batch;
- RMSprop (Keras 3): v = rho*v + (1-rho)*g^2; p -= lr*g/sqrt(v+eps); every parameter,
  block5 included, is trained.

The convolution here is NHWC im2col written from the definition (the Rust side runs candle's
NCHW conv2d), and the backward pass is derived by hand; it is checked against central finite
differences before anything is written. The case is checked to be well conditioned for a
float32 implementation: no ReLU input near 0, no max-pool window with two near-equal
maxima, no clipped probability.

Written tensors (float32):
- x1, x2: (3, 8192) inputs of steps 1 and 2; mask1, mask2: (3, 8) dropout masks (0 or 2);
- init.<head tensor>: the head's initial weights (Keras layout, kernels (inputs, units));
- pool1: (3, 2048) block5_pool of x1 with the initial weights, flattened HWC;
- grad1.<name>: gradients of step 1 (block5 weights: the slice [:4, :8] of OIHW; biases,
  head: whole);
- final.<name>: parameters after step 2, same slices.

Usage: .venv/bin/python scripts/dev/make_finetune_goldens.py   (numpy only; repo root)
"""

import json
import os
import struct
import sys

import numpy as np

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WEIGHTS = os.path.join(REPO, "data", "weights", "vgg16-keras-imagenet.safetensors")
OUT = os.path.join(REPO, "crates", "convbase-finetune", "tests", "golden", "block5_rmsprop.safetensors")

CONVS = [24, 26, 28]  # torchvision indices of block5_conv1..3
EPS_CLIP = 1e-7
LR, RHO, EPS = 1e-4, 0.9, 1e-7
BATCH, SIDE, CH, WIDTH, RATE = 3, 4, 512, 8, 0.5
SLICE = (slice(0, 4), slice(0, 8))  # of an OIHW kernel: 4 outputs x 8 inputs x 3 x 3


def read_safetensors(path, names):
    """The named float32 tensors of a safetensors file, parsed by hand (header + offsets)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name in names:
        meta = header[name]
        assert meta["dtype"] == "F32", (name, meta["dtype"])
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[base + start : base + end], dtype="<f4").reshape(meta["shape"])
    return out


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def im2col(x):
    """x (N, H, W, C) -> (N*H*W, 9*C), columns ordered (ky, kx, c), zero padding 1."""
    n, h, w, c = x.shape
    p = np.zeros((n, h + 2, w + 2, c))
    p[:, 1:-1, 1:-1, :] = x
    cols = np.stack([p[:, ky : ky + h, kx : kx + w, :] for ky in range(3) for kx in range(3)], axis=3)
    return cols.reshape(n * h * w, 9 * c)


def col2im(dcols, shape):
    """Adjoint of im2col: scatter-adds column gradients back into (N, H, W, C)."""
    n, h, w, c = shape
    d = dcols.reshape(n, h, w, 9, c)
    p = np.zeros((n, h + 2, w + 2, c))
    k = 0
    for ky in range(3):
        for kx in range(3):
            p[:, ky : ky + h, kx : kx + w, :] += d[:, :, :, k, :]
            k += 1
    return p[:, 1:-1, 1:-1, :]


def kernel_matrix(w):
    """OIHW -> (9*I, O), rows ordered (ky, kx, i) like im2col's columns."""
    return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


def forward_backward(params, x_rows, labels, mask):
    """Loss, diagnostics, block5_pool output and every parameter's gradient (float64)."""
    n = x_rows.shape[0]
    a = x_rows.reshape(n, SIDE, SIDE, CH)
    cache = []
    pre_margin = np.inf
    for i in CONVS:
        w, b = params[f"features.{i}.weight"], params[f"features.{i}.bias"]
        cols = im2col(a)
        pre = (cols @ kernel_matrix(w) + b).reshape(a.shape[:3] + (w.shape[0],))
        scale = np.abs(cols) @ np.abs(kernel_matrix(w)) + np.abs(b)
        pre_margin = min(pre_margin, np.min(np.abs(pre).reshape(-1) / scale.reshape(-1)))
        cache.append((a, cols, pre))
        a = np.maximum(pre, 0.0)
    h2 = SIDE // 2
    win = a[:, : 2 * h2, : 2 * h2, :].reshape(n, h2, 2, h2, 2, CH).transpose(0, 1, 3, 5, 2, 4).reshape(n, h2, h2, CH, 4)
    pooled = win.max(axis=-1)
    top2 = np.sort(win, axis=-1)[..., -2:]
    nonzero = top2[..., 1] > 0
    tie_gap = np.min((top2[..., 1] - top2[..., 0])[nonzero] / top2[..., 1][nonzero])
    f = pooled.reshape(n, -1)  # HWC flatten
    hpre = f @ params["hidden.0.kernel"] + params["hidden.0.bias"]
    hid = np.maximum(hpre, 0.0) * mask
    z = hid @ params["output.kernel"] + params["output.bias"]
    p = 1.0 / (1.0 + np.exp(-z[:, 0]))
    pc = np.clip(p, EPS_CLIP, 1 - EPS_CLIP)
    y = labels.astype(np.float64)
    loss = np.mean(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    inside = (p > EPS_CLIP) & (p < 1 - EPS_CLIP)
    assert inside.all(), "a clipped probability passes no gradient: pick another case"
    dz = ((-(y / pc) + (1 - y) / (1 - pc)) / n * p * (1 - p))[:, None]
    g = {"output.kernel": hid.T @ dz, "output.bias": dz.sum(axis=0)}
    dh = (dz @ params["output.kernel"].T) * mask * (hpre > 0)
    g["hidden.0.kernel"] = f.T @ dh
    g["hidden.0.bias"] = dh.sum(axis=0)
    hid_margin = np.min(np.abs(hpre))
    dpool = (dh @ params["hidden.0.kernel"].T).reshape(pooled.shape)
    # Max-pool backward: each window's gradient goes to its (unique) maximum.
    arg = win.argmax(axis=-1)
    dwin = np.zeros(win.shape)
    np.put_along_axis(dwin, arg[..., None], dpool[..., None], axis=-1)
    da = np.zeros(a.shape)
    da[:, : 2 * h2, : 2 * h2, :] = dwin.reshape(n, h2, h2, CH, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * h2, 2 * h2, CH)
    for i, (ain, cols, pre) in zip(reversed(CONVS), reversed(cache)):
        w = params[f"features.{i}.weight"]
        dpre = (da * (pre > 0)).reshape(-1, w.shape[0])
        g[f"features.{i}.weight"] = (cols.T @ dpre).reshape(3, 3, w.shape[1], w.shape[0]).transpose(3, 2, 0, 1)
        g[f"features.{i}.bias"] = dpre.sum(axis=0)
        da = col2im(dpre @ kernel_matrix(w).T, ain.shape)
    diag = {"pre_margin": pre_margin, "tie_gap": tie_gap, "hidden_margin": hid_margin, "p": p}
    return loss, f, g, diag


def check_gradients(params, x, labels, mask):
    """Central differences in float64 against the analytic gradients, a few entries each."""
    _, _, grads, _ = forward_backward(params, x, labels, mask)
    rng = np.random.default_rng(0)
    h = 1e-5
    for name, value in params.items():
        flat = value.reshape(-1)
        for j in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            old = flat[j]
            flat[j] = old + h
            lp = forward_backward(params, x, labels, mask)[0]
            flat[j] = old - h
            lm = forward_backward(params, x, labels, mask)[0]
            flat[j] = old
            numeric = (lp - lm) / (2 * h)
            analytic = grads[name].reshape(-1)[j]
            scale = max(np.max(np.abs(grads[name])), 1e-12)
            assert abs(numeric - analytic) <= 1e-4 * scale + 1e-9, (name, j, numeric, analytic)


def rmsprop(params, grads, velocity):
    for name in params:
        v = velocity.setdefault(name, np.zeros_like(params[name]))
        v *= RHO
        v += (1 - RHO) * grads[name] ** 2
        params[name] = params[name] - LR * grads[name] / np.sqrt(v + EPS)


def sliced(name, a):
    return a[SLICE] if name.endswith(".weight") else a


def make_case(seed, base):
    rng = np.random.default_rng(seed)
    params = {k: v.astype(np.float64).copy() for k, v in base.items()}

    def inputs():
        # Non-negative like block4_pool outputs (ReLU then max-pool), about a third zeros.
        x = np.abs(rng.normal(0.0, 20.0, size=(BATCH, SIDE * SIDE * CH)))
        x[rng.random(x.shape) < 0.35] = 0.0
        return x

    x1, x2 = inputs(), inputs()
    labels1 = np.array([0, 1, 1])
    labels2 = np.array([1, 0, 0])
    keep = 1.0 / (1.0 - RATE)
    mask1 = np.where(rng.random((BATCH, WIDTH)) >= RATE, keep, 0.0)
    mask2 = np.where(rng.random((BATCH, WIDTH)) >= RATE, keep, 0.0)
    for m in (mask1, mask2):
        m[:, 0] = keep  # at least one kept unit per row
    # Keras' glorot_uniform, then scaled so that the hidden pre-activations are about 1.
    fan_in = (SIDE // 2) ** 2 * CH
    limit = np.sqrt(6.0 / (fan_in + WIDTH))
    k1 = rng.uniform(-limit, limit, size=(fan_in, WIDTH))
    _, f, _, _ = forward_backward({**params, "hidden.0.kernel": k1, "hidden.0.bias": np.zeros(WIDTH),
                                   "output.kernel": np.ones((WIDTH, 1)), "output.bias": np.zeros(1)},
                                  x1, labels1, mask1)
    k1 /= np.std(f @ k1)
    limit = np.sqrt(6.0 / (WIDTH + 1))
    params["hidden.0.kernel"] = k1
    params["hidden.0.bias"] = rng.uniform(-0.1, 0.1, size=WIDTH)
    params["output.kernel"] = rng.uniform(-limit, limit, size=(WIDTH, 1))
    params["output.bias"] = np.zeros(1)
    init = {k: params[k].copy() for k in ("hidden.0.kernel", "hidden.0.bias", "output.kernel", "output.bias")}

    loss1, pool1, grads1, d1 = forward_backward(params, x1, labels1, mask1)
    velocity = {}
    rmsprop(params, grads1, velocity)
    loss2, _, grads2, d2 = forward_backward(params, x2, labels2, mask2)
    rmsprop(params, grads2, velocity)
    # float32 sums of 4608 products err by a few 1e-7 of the sum of magnitudes: a ReLU input
    # within 2e-6 of that sum could take the other side in the Rust run.
    ok = all(
        d["pre_margin"] > 2e-6 and d["tie_gap"] > 1e-4 and d["hidden_margin"] > 1e-3
        and np.all(np.abs(d["p"] - 0.5) < 0.45)
        for d in (d1, d2)
    )
    # RMSprop's first step is nearly lr*sqrt(10)*sign(g) where |g| >> sqrt(eps/(1-rho)) = 1e-3,
    # and lr*g/sqrt(eps) below: recorded, to read the tolerance against.
    g_margin = min(np.min(np.abs(sliced(k, v))) for k, v in grads1.items())
    return ok, dict(
        x1=x1, x2=x2, labels1=labels1, labels2=labels2, mask1=mask1, mask2=mask2, init=init,
        pool1=pool1, grads1=grads1, final=params, losses=[loss1, loss2], diag=(d1, d2), g_margin=g_margin,
    )


def main():
    names = [f"features.{i}.{k}" for i in CONVS for k in ("weight", "bias")]
    base = read_safetensors(WEIGHTS, names)
    for seed in range(1, 50):
        ok, case = make_case(seed, base)
        if ok:
            break
        d1, d2 = case["diag"]
        print(f"seed {seed}: badly conditioned ({d1['pre_margin']:.1e}, {d2['pre_margin']:.1e} relative "
              f"ReLU margins; {d1['tie_gap']:.1e} pool gap), trying the next", file=sys.stderr)
    else:
        sys.exit("no well conditioned case found")
    # Check the hand-written backward on the first step, before anything is written.
    start = {k: v.astype(np.float64).copy() for k, v in base.items()}
    start.update(case["init"])
    check_gradients(start, case["x1"], case["labels1"], case["mask1"])

    tensors = {
        "x1": case["x1"], "x2": case["x2"], "mask1": case["mask1"], "mask2": case["mask2"],
        "pool1": case["pool1"],
    }
    for k, v in case["init"].items():
        tensors[f"init.{k}"] = v
    for k, v in case["grads1"].items():
        tensors[f"grad1.{k}"] = sliced(k, v)
    for k, v in case["final"].items():
        tensors[f"final.{k}"] = sliced(k, v)
    d1, d2 = case["diag"]
    meta = {
        "seed": seed,
        "labels1": case["labels1"].tolist(),
        "labels2": case["labels2"].tolist(),
        "block4_shape": [SIDE, SIDE, CH],
        "width": WIDTH,
        "dropout": RATE,
        "optimizer": {"name": "rmsprop", "lr": LR, "rho": RHO, "eps": EPS},
        "losses": [float(l) for l in case["losses"]],
        "weight_slice": "[:4, :8, :, :] of OIHW",
        "conditioning": {
            "relu_margin_relative": float(min(d1["pre_margin"], d2["pre_margin"])),
            "pool_tie_gap_relative": float(min(d1["tie_gap"], d2["tie_gap"])),
            "min_abs_gradient_compared": float(case["g_margin"]),
        },
    }
    write_safetensors(OUT, tensors, {"case": json.dumps(meta)})
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes); losses {meta['losses']}; {meta['conditioning']}")


if __name__ == "__main__":
    main()
