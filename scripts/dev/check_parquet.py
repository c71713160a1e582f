#!/usr/bin/env python3
"""Checks a convbase Parquet file with pyarrow, an implementation independent of arrow-rs.

Dev-only (never in the product path). One subcommand per file kind; each checks the footer
(`convbase.schema`, `convbase.schema_version`), the column names and Arrow types of the
contract in crates/convbase-format/README.md, and what the caller asserts on the command line.

  check_parquet.py manifest FILE [--rows N] [--classes a,b] [--ok N]

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


# kind -> (checker, function adding the kind's own arguments)
KINDS = {
    "manifest": (
        check_manifest,
        lambda p: (
            p.add_argument("--classes", help="expected class list, comma-separated, in label order"),
            p.add_argument("--ok", type=int, help="expected number of rows with status ok"),
        ),
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
