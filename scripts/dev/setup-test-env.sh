#!/usr/bin/env bash
# Installs what the tests need, doing nothing that is already done: a Python venv with the
# reference packages (dev only), the real ImageNet VGG16 weights, the demo images.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
export CONVBASE_CACHE=${CONVBASE_CACHE:-$repo/.cache}
mkdir -p "$CONVBASE_CACHE"

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pyarrow, numpy, h5py, onnx, PIL' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --cache-dir "$CONVBASE_CACHE/pip" -r scripts/dev/requirements-test.txt
fi
scripts/fetch-weights.sh >/dev/null
# The real weights in Keras' .h5 layout, for the h5 loader's tests (59 MB, not committed).
.venv/bin/python scripts/dev/make_vgg16_h5.py >/dev/null
scripts/demo-data.sh >/dev/null
