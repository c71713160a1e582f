#!/usr/bin/env bash
# Builds the demo data set data/demo/{train,validation,test}/{shirt,tshirt}/CLASS.INDEX.png
# (4000 28x28 grayscale PNGs: Fashion-MNIST T-shirt/top vs Shirt, laid out like the seed's
# Dogs vs Cats) from Debian's dataset-fashion-mnist package.
#
# Usage: scripts/demo-data.sh [OUT_DIR]     (default: REPO/data/demo)
# The .deb and its extracted IDX files are cached in ${CONVBASE_CACHE:-REPO/.cache}.
# Idempotent: does nothing when OUT_DIR already holds the 4000 files. The selection itself is
# made by `convbase-demo-data` (Rust), which writes the tree atomically.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/data/demo}"
cache="${CONVBASE_CACHE:-$repo/.cache}"
expected=4000

if [[ -d "$out" ]] && [[ "$(find "$out" -type f -name '*.png' | wc -l)" -eq $expected ]]; then
    echo "demo-data: $out is complete ($expected files); nothing to do" >&2
    exit 0
fi

mkdir -p "$cache"
deb="$(ls "$cache"/dataset-fashion-mnist_*.deb 2>/dev/null | head -n1 || true)"
if [[ -z "$deb" ]]; then
    echo "demo-data: downloading dataset-fashion-mnist into $cache" >&2
    # apt-get download needs package lists; a fresh machine has none, so update only on failure.
    if ! (cd "$cache" && apt-get download dataset-fashion-mnist); then
        apt-get update
        (cd "$cache" && apt-get download dataset-fashion-mnist)
    fi
    deb="$(ls "$cache"/dataset-fashion-mnist_*.deb | head -n1)"
fi

idx="$cache/fashion-mnist/usr/share/datasets/fashion-mnist"
if [[ ! -f "$idx/train-images-idx3-ubyte.gz" ]]; then
    rm -rf "$cache/fashion-mnist"
    dpkg-deb -x "$deb" "$cache/fashion-mnist"
fi

cd "$repo"
# The whole workspace's binaries, not `-p convbase-data`: building one package resolves
# dependency features differently and would make the next workspace build compile again.
cargo build --release --quiet --workspace --bins >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/release/convbase-demo-data" "$idx" "$out"
