#!/usr/bin/env python3
"""Checks a convbase Parquet file with pyarrow, an implementation independent of arrow-rs.

Dev-only (never in the product path). One subcommand per file kind; each checks the footer
(`convbase.schema`, `convbase.schema_version`), the column names and Arrow types of the
contract in crates/convbase-format/README.md, and what the caller asserts on the command line.

  check_parquet.py manifest FILE [--rows N] [--classes a,b] [--ok N]
  check_parquet.py features FILE [--rows N] [--classes a,b] [--dim D]
  check_parquet.py predictions FILE [--rows N] [--classes a,b]

Exits 0 and prints a one-line summary when every check passes; exits 1 with the reasons
otherwise. To add a kind: write `check_KIND(table, meta, args) -> list[str]` returning
problems, and register it with its own arguments in `KINDS`.

Usage: .venv/bin/python scripts/dev/check_parquet.py manifest /tmp/manifest.parquet --rows 4000
(needs pyarrow from PyPI).
"""

import argparse
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1

MANIFEST_COLUMNS = {
    "path": pa.string(),
    "class": pa.string(),
    "label": pa.int32(),
    "split": pa.string(),
    "sha256": pa.string(),
    "bytes": pa.uint64(),
    "width": pa.uint32(),
    "height": pa.uint32(),
    "color": pa.string(),
    "status": pa.string(),
}
MANIFEST_REQUIRED = {"path", "class", "label", "split", "status"}


def check_columns(table, expected, required):
    problems = []
    for name, typ in expected.items():
        if name not in table.column_names:
            problems.append(f"column {name!r} missing")
            continue
        got = table.schema.field(name).type
        if got != typ:
            problems.append(f"column {name!r} has type {got}, expected {typ}")
        if name in required and table.column(name).null_count:
            problems.append(f"column {name!r} has nulls")
    return problems


def check_manifest(table, meta, args):
    problems = check_columns(table, MANIFEST_COLUMNS, MANIFEST_REQUIRED)
    if problems:
        return problems
    classes = json.loads(meta.get("convbase.classes", "null"))
    if not isinstance(classes, list) or classes != sorted(classes):
        problems.append(f"footer class list {classes!r} is not a sorted list")
    if args.classes is not None and classes != args.classes.split(","):
        problems.append(f"footer classes {classes}, expected {args.classes.split(',')}")
    for key in ("convbase.root", "convbase.layout"):
        if key not in meta:
            problems.append(f"footer key {key} missing")
    rows = table.to_pylist()
    for r in rows:
        if not (0 <= r["label"] < len(classes)) or classes[r["label"]] != r["class"]:
            problems.append(f"row {r['path']}: label {r['label']} does not name class {r['class']!r}")
            break
        if r["split"] not in ("train", "validation", "test"):
            problems.append(f"row {r['path']}: split {r['split']!r}")
            break
    paths = [r["path"] for r in rows]
    if paths != sorted(paths, key=lambda p: p.encode()):
        problems.append("rows are not sorted by path")
    ok = sum(r["status"] == "ok" for r in rows)
    if args.ok is not None and ok != args.ok:
        problems.append(f"{ok} rows with status ok, expected {args.ok}")
    args.summary = f"{ok} ok, classes {classes}, layout {meta.get('convbase.layout')!r}"
    return problems


FEATURE_KEYS = [
    "convbase.weights.sha256", "convbase.weights.source", "convbase.layer",
    "convbase.input_size", "convbase.resize_filter", "convbase.preprocess", "convbase.pool",
    "convbase.feature_shape", "convbase.flatten_order", "convbase.augment",
    "convbase.manifest.sha256", "convbase.classes", "convbase.dataset_root",
    "convbase.tool_version",
]


def check_classes(meta, args):
    classes = json.loads(meta.get("convbase.classes", "null"))
    if args.classes is not None and classes != args.classes.split(","):
        return classes, [f"footer classes {classes}, expected {args.classes.split(',')}"]
    return classes, []


def check_features(table, meta, args):
    problems = [f"footer key {k} missing" for k in FEATURE_KEYS if k not in meta]
    if problems:
        return problems
    shape = json.loads(meta["convbase.feature_shape"])
    dim = 1
    for s in shape:
        dim *= s
    if args.dim is not None and dim != args.dim:
        problems.append(f"feature_shape {shape} gives {dim} values, expected {args.dim}")
    expected = {
        "path": pa.string(),
        "sha256": pa.string(),
        "label": pa.int32(),
        "split": pa.string(),
        "view": pa.uint32(),
        "features": pa.list_(pa.field("item", pa.float32(), nullable=False), dim),
    }
    problems += check_columns(table, expected, set(expected))
    classes, p = check_classes(meta, args)
    problems += p
    if not problems:
        values = table.column("features").combine_chunks().flatten().to_numpy()
        if len(values) != table.num_rows * dim:
            problems.append(f"{len(values)} feature values for {table.num_rows} rows of {dim}")
        elif table.num_rows and not (values.min() >= 0.0 and values.max() > 0.0):
            # block5_pool follows a ReLU: non-negative, and not all zero on real images.
            problems.append(f"feature values in [{values.min()}, {values.max()}]")
        labels = table.column("label").to_pylist()
        if any(not 0 <= l < len(classes) for l in labels):
            problems.append("label outside the footer's class list")
    args.summary = (
        f"shape {shape} ({meta['convbase.flatten_order']}), layer {meta['convbase.layer']}, "
        f"{meta['convbase.input_size']} px, preprocess {meta['convbase.preprocess']}"
    )
    return problems


def check_predictions(table, meta, args):
    classes, problems = check_classes(meta, args)
    for key in ("convbase.head", "convbase.features"):
        if key not in meta:
            problems.append(f"footer key {key} missing")
    n = len(classes)
    expected = {
        "path": pa.string(),
        "split": pa.string(),
        "label": pa.int32(),
        "view": pa.uint32(),
        "probabilities": pa.list_(pa.field("item", pa.float32(), nullable=False), n),
        "predicted": pa.int32(),
    }
    problems += check_columns(table, expected, set(expected))
    if not problems:
        import numpy as np

        probs = np.array(table.column("probabilities").to_pylist(), dtype=np.float64)
        if len(probs) and not np.allclose(probs.sum(axis=1), 1.0, atol=1e-5):
            problems.append("probabilities do not sum to 1")
        predicted = np.array(table.column("predicted").to_pylist())
        if len(probs) and not (predicted == probs.argmax(axis=1)).all():
            problems.append("predicted is not the arg-max of probabilities")
    args.summary = f"head {meta.get('convbase.head')}, classes {classes}"
    return problems


# kind -> (checker, function adding the kind's own arguments)
KINDS = {
    "manifest": (
        check_manifest,
        lambda p: (
            p.add_argument("--classes", help="expected class list, comma-separated, in label order"),
            p.add_argument("--ok", type=int, help="expected number of rows with status ok"),
        ),
    ),
    "features": (
        check_features,
        lambda p: (
            p.add_argument("--classes", help="expected class list, comma-separated"),
            p.add_argument("--dim", type=int, help="expected feature vector length"),
        ),
    ),
    "predictions": (
        check_predictions,
        lambda p: (p.add_argument("--classes", help="expected class list, comma-separated"),),
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind, (_, add_args) in KINDS.items():
        p = sub.add_parser(kind, help=f"check a {kind} file")
        p.add_argument("file")
        p.add_argument("--rows", type=int, help="expected number of rows")
        add_args(p)
    args = parser.parse_args()

    pf = pq.ParquetFile(args.file)
    # The file's key/value metadata (arrow-rs writes the footer there; pyarrow's
    # schema_arrow.metadata shows only the embedded Arrow schema's own, empty, metadata).
    meta = {
        k.decode(): v.decode()
        for k, v in (pf.metadata.metadata or {}).items()
        if k != b"ARROW:schema"
    }
    problems = []
    if meta.get("convbase.schema") != args.kind:
        problems.append(f"footer convbase.schema is {meta.get('convbase.schema')!r}, expected {args.kind!r}")
    if meta.get("convbase.schema_version") != str(SCHEMA_VERSION):
        problems.append(f"footer convbase.schema_version is {meta.get('convbase.schema_version')!r}")
    table = pf.read()
    if args.rows is not None and table.num_rows != args.rows:
        problems.append(f"{table.num_rows} rows, expected {args.rows}")
    args.summary = ""
    if meta.get("convbase.schema") == args.kind:
        problems += KINDS[args.kind][0](table, meta, args)
    if problems:
        for p in problems:
            print(f"{args.file}: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.file}: {args.kind} OK, {table.num_rows} rows; {args.summary}")


if __name__ == "__main__":
    main()
