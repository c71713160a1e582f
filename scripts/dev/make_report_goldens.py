#!/usr/bin/env python3
"""Golden metrics for convbase-report, computed independently with numpy and scikit-learn.

Writes crates/convbase-report/tests/golden/metrics.json: a few fixed, small sets of
predictions (with tied scores, clipped probabilities, a class never predicted, a split with
one class only, and a 3-class case) and the metrics scikit-learn computes for them.

Run from the repository root:
    /work/main/.venv/bin/pip install numpy scikit-learn
    /work/main/.venv/bin/python scripts/dev/make_report_goldens.py

Log loss follows Keras: the true class' probability clipped to [1e-7, 1 - 1e-7]. scikit-learn
clips at the float64 machine epsilon instead, so the golden value is computed with numpy and
checked against sklearn.metrics.log_loss on the cases where the clip does not matter.
"""

import json
import pathlib
import warnings

import numpy as np
import sklearn
from sklearn import metrics

OUT = pathlib.Path("crates/convbase-report/tests/golden/metrics.json")
EPS = 1e-7


def as_f32(rows):
    """Probabilities exactly as a predictions file stores them (float32), as float64."""
    return np.asarray(rows, dtype=np.float32).astype(np.float64)


def case(name, classes, labels, probabilities):
    y = np.asarray(labels)
    p = as_f32(probabilities)
    k = len(classes)
    pred = p.argmax(axis=1)  # first maximum, like the heads' arg-max
    labels_all = list(range(k))
    p_true = np.clip(p[np.arange(len(y)), y], EPS, 1 - EPS)
    log_loss = float(-np.log(p_true).mean())
    unclipped = np.all((p[np.arange(len(y)), y] > EPS) & (p[np.arange(len(y)), y] < 1 - EPS))
    if unclipped:
        with warnings.catch_warnings():
            # float32 rows sum to 1 only within 1e-8; sklearn warns, then renormalises
            warnings.simplefilter("ignore", UserWarning)
            ref = metrics.log_loss(y, p, labels=labels_all)
        assert abs(ref - log_loss) < 1e-6, (name, ref, log_loss)
    prec, rec, f1, support = metrics.precision_recall_fscore_support(
        y, pred, labels=labels_all, zero_division=0
    )
    mp, mr, mf, _ = metrics.precision_recall_fscore_support(
        y, pred, labels=labels_all, average="macro", zero_division=0
    )
    auc = None
    if k == 2 and len(set(labels)) == 2:
        auc = float(metrics.roc_auc_score(y, p[:, 1]))
    return {
        "name": name,
        "classes": classes,
        "labels": [int(v) for v in y],
        "predicted": [int(v) for v in pred],
        # repr of the float32 value: parses back to the identical float32
        "probabilities": [[float(v) for v in row] for row in p],
        "expected": {
            "count": len(y),
            "accuracy": float(metrics.accuracy_score(y, pred)),
            "log_loss": log_loss,
            "confusion": metrics.confusion_matrix(y, pred, labels=labels_all).tolist(),
            "precision": [float(v) for v in prec],
            "recall": [float(v) for v in rec],
            "f1": [float(v) for v in f1],
            "support": [int(v) for v in support],
            "macro_precision": float(mp),
            "macro_recall": float(mr),
            "macro_f1": float(mf),
            "roc_auc": auc,
        },
    }


def binary(p1):
    return [[1.0 - v, v] for v in p1]


def main():
    cases = [
        # Tied scores across classes (0.5, 0.7, 0.2 appear for both labels).
        case(
            "binary_ties",
            ["cats", "dogs"],
            [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
            binary([0.1, 0.5, 0.7, 0.2, 0.2, 0.35, 0.5, 0.7, 0.9, 0.2, 0.65, 0.8, 0.7]),
        ),
        # Probabilities of exactly 0 and 1 for the true class: Keras' clip decides the loss.
        case(
            "binary_clipped",
            ["cats", "dogs"],
            [0, 1, 1, 0, 1, 0],
            binary([1.0, 0.0, 1.0, 0.0, 0.999, 0.4]),
        ),
        # Only one class present: ROC AUC undefined; class 1 never predicted either.
        case(
            "binary_one_class",
            ["cats", "dogs"],
            [0, 0, 0, 0],
            binary([0.1, 0.3, 0.45, 0.2]),
        ),
        # Three classes; class 2 is never predicted (precision 0 by zero_division=0).
        case(
            "three_classes",
            ["bag", "coat", "shirt"],
            [0, 0, 0, 1, 1, 1, 1, 2, 2, 2],
            [
                [0.7, 0.2, 0.1],
                [0.4, 0.5, 0.1],
                [0.6, 0.3, 0.1],
                [0.1, 0.8, 0.1],
                [0.2, 0.5, 0.3],
                [0.5, 0.3, 0.2],
                [0.3, 0.4, 0.3],
                [0.2, 0.5, 0.3],
                [0.45, 0.3, 0.25],
                [0.25, 0.4, 0.35],
            ],
        ),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "scripts/dev/make_report_goldens.py",
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "log_loss_clip": EPS,
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
