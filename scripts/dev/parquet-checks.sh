#!/usr/bin/env bash
# Runs every stage on a small real subset of the demo data (40 images, real weights) and
# reads each Parquet file it writes with pyarrow, an independent implementation: schema,
# row counts and footer keys must be what the contract promises.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
py=.venv/bin/python
bin=target/release
cargo build --release --quiet --bins
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The full demo manifest.
$bin/convbase-prepare -q data/demo -o "$tmp/manifest.parquet"
$py scripts/dev/check_parquet.py manifest "$tmp/manifest.parquet" --rows 4000 --classes shirt,tshirt

# A 40-image subset through every stage.
for split in train validation test; do
  for class in shirt tshirt; do
    mkdir -p "$tmp/small/$split/$class"
    # A glob, not `ls | head`: under pipefail, head closing the pipe early kills the
    # writer with SIGPIPE and the script with exit 141.
    files=("data/demo/$split/$class"/*)
    n=$([ $split = train ] && echo 10 || echo 5)
    cp "${files[@]:0:n}" "$tmp/small/$split/$class/"
  done
done
$bin/convbase-prepare -q "$tmp/small" -o "$tmp/small.parquet"
$bin/convbase-extract -q -m "$tmp/small.parquet" -w data/weights/vgg16-keras-imagenet.safetensors \
  -o "$tmp/features.parquet" --preprocess rescale
$py scripts/dev/check_parquet.py features "$tmp/features.parquet" --rows 40 --dim 8192 --classes shirt,tshirt
$bin/convbase-head-dense -q train --features "$tmp/features.parquet" --out "$tmp/run" --epochs 2
$py scripts/dev/check_parquet.py predictions "$tmp/run/predictions.parquet" --classes shirt,tshirt
echo "parquet checks: 3 passed, 0 failed"
