#!/usr/bin/env bash
# Fuzzes what convbase reads from files it does not control: image bytes (the loader every
# stage uses) and the three Parquet contract files (every reader of each). Dev only, not CI:
# cargo-fuzz needs a nightly toolchain.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Runs each target (default: all of fuzz/fuzz_targets) for SECONDS on one core and prints
# its executions. The corpus in fuzz/corpus/TARGET (not committed) is seeded on first use
# with real inputs: the bad-image corpus of scripts/dev/make-bad-corpus.py, and contract
# files the release binaries write for 8 demo images. libFuzzer runs in fork mode and goes
# on after a crash, so one known crash does not hide others; each crashing input (and any
# input that runs out of memory or time: a bug too on inputs this small) is left under
# fuzz/artifacts/TARGET/ and makes the script exit 1. Minimise one with
#   cd fuzz && cargo +nightly fuzz tmin -O TARGET artifacts/TARGET/crash-...
# and turn it into a regression test of the crate at fault.
#
# Needs: rustup's nightly toolchain, `cargo install cargo-fuzz`, the dev venv and the demo
# data and weights (scripts/dev/setup-test-env.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

rustup toolchain list | grep -q '^nightly' || { echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: needs cargo-fuzz (cargo install cargo-fuzz)" >&2; exit 2; }

say() { echo "==> $*" >&2; }

seed_corpus() {
  local corpus=fuzz/corpus
  # Seeded last, so a seeding that was interrupted is done again.
  [ -e "$corpus/.seeded" ] && return
  say "seeding fuzz/corpus"
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$corpus"/{decode_image,read_manifest,read_features,read_predictions}
  .venv/bin/python scripts/dev/make-bad-corpus.py images "$tmp/images" >/dev/null
  find "$tmp/images/data" -type f -size -64k -exec cp {} "$corpus/decode_image/" \;
  # The workspace's binaries (those the tests use): building a few packages alone would
  # resolve other features and compile the dependencies a second time.
  cargo build --release --quiet --bins
  local bin=target/release
  for split in train validation; do
    for class in shirt tshirt; do
      mkdir -p "$tmp/demo/$split/$class"
      files=("data/demo/$split/$class"/*)
      cp "${files[@]:0:2}" "$tmp/demo/$split/$class/"
    done
  done
  $bin/convbase-prepare -q "$tmp/demo" -o "$corpus/read_manifest/manifest.parquet"
  # A small layer and global pooling keep the features file small (64 floats a row).
  $bin/convbase-extract -q -m "$corpus/read_manifest/manifest.parquet" -o "$tmp/features.parquet" \
    -w data/weights/vgg16-keras-imagenet.safetensors --size 32 --layer block1_pool --pool avg
  cp "$tmp/features.parquet" "$corpus/read_features/"
  $bin/convbase-head-dense -q train --features "$tmp/features.parquet" --out "$tmp/run" --epochs 1 --width 4
  cp "$tmp/run/predictions.parquet" "$corpus/read_predictions/"
  # Each reader also starts from the other kinds' files (wrong kind, same format).
  for t in read_manifest read_features read_predictions; do
    cp -n "$corpus"/read_{manifest,features,predictions}/*.parquet "$corpus/$t/" 2>/dev/null || true
  done
  touch "$corpus/.seeded"
}

seed_corpus
say "building the fuzz targets (nightly, sanitizer coverage)"
(cd fuzz && cargo +nightly fuzz build -O)

failed=0
summary=()
for t in "${targets[@]}"; do
  case $t in
    decode_image) max_len=8192 ;;
    *) max_len=32768 ;;
  esac
  say "$t: ${secs}s"
  log=fuzz/artifacts/$t.log
  mkdir -p "fuzz/artifacts/$t"
  # Crashes, and also out-of-memory and timeout inputs: on a small input either is a bug
  # (a huge allocation from a declared size, a slow path), not noise.
  findings() { ls "fuzz/artifacts/$t" | grep -cE '^(crash|oom|timeout)-' || true; }
  before=$(findings)
  (cd fuzz && cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
      -fork=1 -ignore_crashes=1 -max_total_time="$secs" -max_len=$max_len -timeout=10 \
      -rss_limit_mb=4096) >"$log" 2>&1 || true
  # Fork mode's progress lines: "#EXECUTIONS: cov: N ... oom/timeout/crash: A/B/C ...".
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
  execs=$(echo "$last" | sed -E 's/^#([0-9]+):.*/\1/')
  cov=$(echo "$last" | sed -E 's/.*cov: ([0-9]+).*/\1/')
  crashes=$(echo "$last" | sed -E 's|.*oom/timeout/crash: ([0-9/]+).*|\1|')
  new=$(( $(findings) - before ))
  if [ "$new" -gt 0 ] || [ "${crashes:-?}" != 0/0/0 ]; then
    failed=1
    summary+=("$t: ${execs:-?} executions, coverage ${cov:-?}, oom/timeout/crash ${crashes:-?}: $new new crash/oom/timeout inputs in fuzz/artifacts/$t/ (log: $log)")
    grep -m1 -A1 'panicked at' "$log" >&2 || true
  else
    summary+=("$t: ${execs:-?} executions, coverage ${cov:-?}, oom/timeout/crash ${crashes:-?}")
  fi
done
say "summary"
printf '%s\n' "${summary[@]}"
exit $failed
