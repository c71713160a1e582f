#!/usr/bin/env python3
"""Golden files for the heads' numerics: a few training steps of small dense heads,
computed independently with numpy (float64) from Keras' documented semantics.

Writes crates/convbase-train/tests/golden/*.json. Each file holds the initial weights, the
batches (inputs, labels, dropout masks) and, for every step, the loss Keras reports for it
(computed before the update), then the weights after the last step. The Rust tests load the
initial weights into the real head, run the same steps with the real optimiser and compare.

Semantics (Keras 3, as documented in the seed protocol):
- Dense: y = x @ kernel + bias, kernel stored (inputs, units).
- Dropout: inverted; kept units scaled by 1/(1-rate); masks are given per step.
- Two classes: one sigmoid unit, binary cross-entropy on probabilities clipped to
  [1e-7, 1-1e-7]. More: softmax, categorical cross-entropy with the same clipping.
- Class weights: per-sample weights w_i = class_weight[y_i]; loss = sum(w_i * l_i) / batch.
- L2 kernel penalty (linear head): loss += l2 * sum(kernel^2).
- RMSprop (Keras 3, keras/src/optimizers/rmsprop.py): v = rho*v + (1-rho)*g^2;
  p -= lr*g/sqrt(v+eps). (TF/Keras 2 and PyTorch add eps to the root instead.)
- Adam: m += (g-m)(1-b1); v += (g^2-v)(1-b2); p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps).
- AdamW: p -= lr*wd*p before the Adam update.
- SGD with momentum: m = mu*m - lr*g; p += m.

The gradients are checked against central finite differences before anything is written,
and each case is checked to be well conditioned for a float32 implementation (no
pre-activation or probability near a kink, no gradient that is a near-cancelling sum), so
the Rust side can be held to a tight tolerance.

Usage: python3 scripts/dev/make_head_goldens.py   (numpy only; run from the repo root)
"""

import json
import os
import sys

import numpy as np

EPS_CLIP = 1e-7
OUT_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "convbase-train", "tests", "golden")
)


def glorot(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def forward(params, hidden, x, masks, outputs, labels, weights, l2):
    """Returns loss, accuracy and the gradient of every parameter (float64)."""
    acts = [x]
    pres = []
    a = x
    for i in range(hidden):
        pre = a @ params[f"hidden.{i}.kernel"] + params[f"hidden.{i}.bias"]
        pres.append(pre)
        h = np.maximum(pre, 0.0)
        if masks is not None:
            h = h * masks[i]
        acts.append(h)
        a = h
    z = a @ params["output.kernel"] + params["output.bias"]
    b = x.shape[0]
    w = weights / b
    if outputs == 1:
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        pc = np.clip(p, EPS_CLIP, 1 - EPS_CLIP)
        y = labels.astype(np.float64)
        losses = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
        acc = np.mean((p > 0.5) == (labels == 1))
        inside = (p > EPS_CLIP) & (p < 1 - EPS_CLIP)
        dpc = w * (-(y / pc) + (1 - y) / (1 - pc))
        dz = (dpc * inside * p * (1 - p))[:, None]
        kink = np.min(np.minimum(np.abs(p - EPS_CLIP), np.abs(1 - EPS_CLIP - p)))
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        s = e / e.sum(axis=1, keepdims=True)
        sc = np.clip(s, EPS_CLIP, 1 - EPS_CLIP)
        onehot = np.eye(outputs)[labels]
        losses = -np.sum(onehot * np.log(sc), axis=1)
        acc = np.mean(np.argmax(s, axis=1) == labels)
        inside = (s > EPS_CLIP) & (s < 1 - EPS_CLIP)
        ds = -w[:, None] * onehot / sc * inside
        dz = s * (ds - np.sum(ds * s, axis=1, keepdims=True))
        kink = np.min(np.minimum(np.abs(s - EPS_CLIP), np.abs(1 - EPS_CLIP - s)))
    loss = np.sum(weights * losses) / b
    grads = {}
    if l2:
        loss += l2 * np.sum(params["output.kernel"] ** 2)
    grads["output.kernel"] = acts[-1].T @ dz + (2 * l2 * params["output.kernel"] if l2 else 0)
    grads["output.bias"] = dz.sum(axis=0)
    terms = {"output.kernel": np.abs(acts[-1]).T @ np.abs(dz), "output.bias": np.abs(dz).sum(axis=0)}
    d = dz @ params["output.kernel"].T
    for i in reversed(range(hidden)):
        if masks is not None:
            d = d * masks[i]
        d = d * (pres[i] > 0)
        grads[f"hidden.{i}.kernel"] = acts[i].T @ d
        grads[f"hidden.{i}.bias"] = d.sum(axis=0)
        terms[f"hidden.{i}.kernel"] = np.abs(acts[i]).T @ np.abs(d)
        terms[f"hidden.{i}.bias"] = np.abs(d).sum(axis=0)
        d = d @ params[f"hidden.{i}.kernel"].T
    margin = min([np.min(np.abs(p)) for p in pres] + [1.0])
    return loss, acc, grads, terms, margin, kink


def check_gradients(case, params, batch):
    """Central differences in float64 against the analytic gradients of step 0."""
    x, y, masks = batch
    args = (case["hidden"], x, masks, case["outputs"], y, case["sample_weights"](y), case["l2"])
    _, _, grads, _, _, _ = forward(params, *args)
    h = 1e-6
    for name, value in params.items():
        flat = value.reshape(-1)
        for j in range(0, flat.size, max(1, flat.size // 7)):
            old = flat[j]
            flat[j] = old + h
            lp = forward(params, *args)[0]
            flat[j] = old - h
            lm = forward(params, *args)[0]
            flat[j] = old
            num = (lp - lm) / (2 * h)
            ana = grads[name].reshape(-1)[j]
            assert abs(num - ana) <= 1e-7 + 1e-5 * abs(ana), (case["name"], name, j, num, ana)


class Optimiser:
    def __init__(self, spec, params):
        self.spec = spec
        self.t = 0
        self.state = {k: [np.zeros_like(v), np.zeros_like(v)] for k, v in params.items()}

    def step(self, params, grads):
        s = self.spec
        self.t += 1
        for k in params:
            g = grads[k]
            st = self.state[k]
            if s["name"] == "rmsprop":
                st[0] = s["rho"] * st[0] + (1 - s["rho"]) * g * g
                params[k] = params[k] - s["lr"] * g / np.sqrt(st[0] + s["eps"])
            elif s["name"] in ("adam", "adamw"):
                if s["name"] == "adamw":
                    params[k] = params[k] - params[k] * s["weight_decay"] * s["lr"]
                st[0] = st[0] + (g - st[0]) * (1 - s["beta1"])
                st[1] = st[1] + (g * g - st[1]) * (1 - s["beta2"])
                alpha = s["lr"] * np.sqrt(1 - s["beta2"] ** self.t) / (1 - s["beta1"] ** self.t)
                params[k] = params[k] - alpha * st[0] / (np.sqrt(st[1]) + s["eps"])
            elif s["name"] == "sgd":
                st[0] = s["momentum"] * st[0] - s["lr"] * g
                params[k] = params[k] + st[0]
            else:
                raise ValueError(s["name"])


def tensor(a):
    a = np.asarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "data": [float(v) for v in a.reshape(-1)]}


def make_case(case, seed):
    rng = np.random.default_rng(seed)
    inputs, hidden, width, outputs = case["inputs"], case["hidden"], case["width"], case["outputs"]
    params = {}
    fan_in = inputs
    for i in range(hidden):
        params[f"hidden.{i}.kernel"] = glorot(rng, fan_in, width)
        params[f"hidden.{i}.bias"] = np.zeros(width)
        fan_in = width
    params["output.kernel"] = glorot(rng, fan_in, outputs)
    params["output.bias"] = np.zeros(outputs)
    # Round the initial weights to float32 so both sides start from identical values.
    params = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}
    initial = {k: v.copy() for k, v in params.items()}
    # Features spanning several orders of magnitude, so that some gradients are small
    # enough for the placement of RMSprop's epsilon to matter.
    scales = np.logspace(-3, 0, inputs)
    classes = max(outputs, 2)
    batches = []
    for _ in range(case["steps"]):
        y = rng.integers(0, classes, size=case["batch"])
        x = rng.normal(size=(case["batch"], inputs)) * scales + 0.3 * scales * (y[:, None] - 0.5)
        x = x.astype(np.float32).astype(np.float64)
        masks = None
        if case["dropout"]:
            keep = 1.0 / (1.0 - case["dropout"])
            masks = [
                (rng.uniform(size=(case["batch"], width)) >= case["dropout"]) * keep for _ in range(hidden)
            ]
        batches.append((x, y, masks))
    check_gradients(case, {k: v.copy() for k, v in params.items()}, batches[0])
    opt = Optimiser(case["optimizer"], params)
    steps = []
    for x, y, masks in batches:
        loss, acc, grads, terms, margin, kink = forward(
            params, hidden, x, masks, outputs, y, case["sample_weights"](y), case["l2"]
        )
        if margin < 1e-3 or kink < 1e-3:
            return None
        for k, g in grads.items():
            nz = g != 0
            if np.any(np.abs(g[nz]) < 1e-3 * terms[k][nz]):
                return None
        opt.step(params, grads)
        steps.append(
            {
                "x": tensor(x),
                "labels": [int(v) for v in y],
                "masks": [tensor(m) for m in masks] if masks is not None else None,
                "loss": float(loss),
                "acc": float(acc),
            }
        )
    return {
        "description": case["description"],
        "seed": seed,
        "inputs": inputs,
        "hidden": hidden,
        "width": width,
        "classes": classes,
        "dropout": case["dropout"],
        "l2": case["l2"],
        "class_weight": case.get("class_weight"),
        "optimizer": case["optimizer"],
        "initial": {k: tensor(v) for k, v in initial.items()},
        "steps": steps,
        "final": {k: tensor(v) for k, v in params.items()},
    }


RMSPROP = {"name": "rmsprop", "lr": 1e-3, "rho": 0.9, "eps": 1e-7}
ADAM = {"name": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7}
# A large decay, so that an AdamW that forgets it fails the comparison.
ADAMW = dict(ADAM, name="adamw", weight_decay=0.5)
SGD = {"name": "sgd", "lr": 1e-2, "momentum": 0.9}


def ones(y):
    return np.ones(len(y))


CASES = [
    dict(name="dense_binary_rmsprop", description="16 -> 8 relu -> 1 sigmoid, RMSprop (Keras), no dropout",
         inputs=16, hidden=1, width=8, outputs=1, batch=6, steps=5, dropout=0.0, l2=0.0,
         optimizer=RMSPROP, sample_weights=ones),
    dict(name="dense_binary_dropout_rmsprop", description="16 -> 8 relu -> dropout 0.5 (given masks) -> 1 sigmoid, RMSprop",
         inputs=16, hidden=1, width=8, outputs=1, batch=6, steps=5, dropout=0.5, l2=0.0,
         optimizer=RMSPROP, sample_weights=ones),
    dict(name="dense_softmax3_weighted_rmsprop", description="16 -> 8 relu -> 3 softmax, class weights [1, 2, 0.5], RMSprop",
         inputs=16, hidden=1, width=8, outputs=3, batch=6, steps=5, dropout=0.0, l2=0.0,
         class_weight=[1.0, 2.0, 0.5], optimizer=RMSPROP,
         sample_weights=lambda y: np.array([1.0, 2.0, 0.5])[y]),
    dict(name="dense_binary_adam", description="16 -> 8 relu -> 1 sigmoid, Adam (Keras)",
         inputs=16, hidden=1, width=8, outputs=1, batch=6, steps=5, dropout=0.0, l2=0.0,
         optimizer=ADAM, sample_weights=ones),
    dict(name="dense_binary_adamw", description="16 -> 8 relu -> 1 sigmoid, AdamW (Keras semantics, weight decay 0.5)",
         inputs=16, hidden=1, width=8, outputs=1, batch=6, steps=5, dropout=0.0, l2=0.0,
         optimizer=ADAMW, sample_weights=ones),
    dict(name="dense_binary_sgd_momentum", description="16 -> 8 relu -> 1 sigmoid, SGD momentum 0.9",
         inputs=16, hidden=1, width=8, outputs=1, batch=6, steps=5, dropout=0.0, l2=0.0,
         optimizer=SGD, sample_weights=ones),
    dict(name="linear_softmax3_l2_rmsprop", description="linear probe 16 -> 3 softmax, L2 0.01, RMSprop",
         inputs=16, hidden=0, width=0, outputs=3, batch=6, steps=5, dropout=0.0, l2=0.01,
         optimizer=RMSPROP, sample_weights=ones),
]


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for case in CASES:
        for seed in range(1000):
            golden = make_case(case, seed)
            if golden is not None:
                break
        else:
            sys.exit(f"{case['name']}: no well-conditioned seed found")
        path = os.path.join(OUT_DIR, case["name"] + ".json")
        with open(path, "w") as f:
            json.dump(golden, f, indent=None, separators=(",", ":"))
            f.write("\n")
        losses = ", ".join(f"{s['loss']:.6f}" for s in golden["steps"])
        print(f"{path}: seed {seed}, losses {losses}")


if __name__ == "__main__":
    main()
