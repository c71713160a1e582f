#!/usr/bin/env bash
# The VGG16 conv base against its peers in one sitting: sets up onnxruntime in the local venv
# (.venv), the real weights (scripts/fetch-weights.sh) and the release binary, then runs
# onnxruntime and convbase (`Vgg16::forward`, each instruction set) on the same weights and the
# same input batch (batch 20, 150x150, 2 threads), taking turns, and prints a Markdown table with
# images/s, the ratio to onnxruntime and the largest output difference.
#
# Usage: scripts/bench-peers.sh [--runs N] [--rounds R] [--threads T] [--batch B] [--size S]
#                               [--isa avx512|avx2|portable ...]
# Absolute figures move with the machine's load; the ratio measured in one sitting is the point.
# PyTorch is not installed: PyPI's `torch` wheel pulls the CUDA stack (gigabytes).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CONVBASE_CACHE=${CONVBASE_CACHE:-$repo/.cache}

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import onnxruntime, onnx, numpy' 2>/dev/null; then
    echo "bench-peers: installing onnxruntime, onnx, numpy into .venv" >&2
    .venv/bin/pip install --quiet --cache-dir "$CONVBASE_CACHE/pip" \
        onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6
fi
weights=$(scripts/fetch-weights.sh)
cargo build --release --quiet --workspace --bins
exec .venv/bin/python scripts/dev/bench_peers.py \
    --binary "$repo/target/release/convbase-vgg16" --weights "$weights" "$@"
