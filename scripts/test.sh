#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (idempotent), checks
# formatting and lints, runs every crate's tests in release (a debug candle is too slow to run
# VGG16), then reads real outputs with an independent Parquet implementation (pyarrow).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CONVBASE_CACHE=${CONVBASE_CACHE:-$repo/.cache}
say() { echo "==> $*" >&2; }

say "test assets"
scripts/dev/setup-test-env.sh

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy"
cargo clippy --release --workspace --all-targets --quiet -- -D warnings

say "cargo test"
cargo test --release --workspace

say "independent Parquet checks (pyarrow)"
scripts/dev/parquet-checks.sh
