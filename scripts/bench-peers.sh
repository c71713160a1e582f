#!/usr/bin/env bash
# The VGG16 conv base and fine-tuning's block5 against their peers in one sitting: sets up
# onnxruntime in the local venv (.venv), the real weights (scripts/fetch-weights.sh) and the
# release binary, then prints two Markdown tables (scripts/dev/bench_peers.py):
# - the conv base forward (batch 20, 150x150 -> block5_pool): onnxruntime, convbase
#   (`Vgg16::forward`, each instruction set) and PyTorch (NCHW, channels-last) on the same weights
#   and input, images/s, the ratio to onnxruntime and the largest output difference;
# - block5 forward + backward and forward only (batch 20 x 9x9x512, fine-tuning's step):
#   convbase's Winograd path (each instruction set) and GEMM path against PyTorch, images/s and
#   the ratio to PyTorch.
# Systems take turns (2 threads each by default).
#
# Usage: scripts/bench-peers.sh [--torch] [--runs N] [--rounds R] [--threads T] [--batch B]
#                               [--size S] [--isa amx|avx512|avx2|portable]... [--only base|block5]
#                               [--torch-python PYTHON]
# --torch: include PyTorch, installed on first use into its own venv under
#   ${CONVBASE_CACHE:-.cache}/torch-venv (PyPI's torch wheel pulls the CUDA stack: about 3 GB;
#   it runs on the CPU). --torch-python PYTHON (or CONVBASE_TORCH_PYTHON): use an interpreter
#   that already imports torch instead.
# Absolute figures move with the machine's load; the ratio measured in one sitting is the point.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CONVBASE_CACHE=${CONVBASE_CACHE:-$repo/.cache}

args=()
torch=0
for a in "$@"; do
    if [[ "$a" == "--torch" ]]; then torch=1; else args+=("$a"); fi
done

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import onnxruntime, onnx, numpy' 2>/dev/null; then
    echo "bench-peers: installing onnxruntime, onnx, numpy into .venv" >&2
    .venv/bin/pip install --quiet --cache-dir "$CONVBASE_CACHE/pip" \
        onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6
fi
if [[ $torch == 1 && -z "${CONVBASE_TORCH_PYTHON:-}" ]]; then
    venv="$CONVBASE_CACHE/torch-venv"
    if ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
        echo "bench-peers: installing torch into $venv (about 3 GB with its CUDA wheels)" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --cache-dir "$CONVBASE_CACHE/pip" torch==2.15.0 numpy
    fi
    export CONVBASE_TORCH_PYTHON="$venv/bin/python"
fi
weights=$(scripts/fetch-weights.sh)
cargo build --release --quiet --workspace --bins
exec .venv/bin/python scripts/dev/bench_peers.py \
    --binary "$repo/target/release/convbase-vgg16" --weights "$weights" "${args[@]}"
