#!/usr/bin/env bash
# The seed's experiment, stage by stage: prepare -> extract (cached) -> train a head -> report.
#
# With no options it runs Chollet's feature-extraction experiment (Deep Learning with
# Python, 5.3.1) on the demo data with the real Keras ImageNet VGG16 weights, in the seed's
# exact protocol: rescale 1/255, 150 px, nearest resize, batch 20, RMSprop 2e-5, 30 epochs.
# Weights and demo data are fetched when absent; features are cached, so a second run does
# no model work. Each stage is its own binary talking through Parquet files, so a head is
# swapped by naming another one.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/pipeline.sh [OPTIONS] [-- HEAD_TRAIN_ARGS...]

Options:
  --data DIR          data set root (pre-split or class folders) [default: data/demo, built if absent]
  --weights SPEC      weights file or hf:REPO [default: data/weights/vgg16-keras-imagenet.safetensors, fetched if absent]
  --head NAME         head binary: dense | linear | any convbase-head-NAME [default: dense]
  --preprocess MODE   rescale (the seed: x/255) | caffe (what Keras weights expect) | torch [default: rescale]
  --size PX           input size [default: 150]
  --seed N            training seed [default: 1]
  --views K           also cache K augmented views per training image; the head draws one
                      view per image each epoch (the seed's variant 2, without its cost) [default: 0]
  --augment SPEC      augmentation policy of the views (see convbase-extract --help) [default: book]
  --finetune          then fine-tune block5 with the trained head (the seed's variant 3): caches
                      block4_pool features (with the same views) and trains block5 + head on them
                      with convbase-finetune; both runs get a report, the fine-tuned one is printed
  --finetune-epochs N epochs of fine-tuning [default: 30]
  --work DIR          where manifest, features and runs go [default: data/work]
  --run NAME          run directory name [default: HEAD-PREPROCESS[-viewsK]-seedN]
  -h, --help          this help

Anything after `--` goes to `convbase-head-NAME train` (e.g. -- --epochs 50 --optimizer adam).
The run directory ends up holding config.json, model.safetensors, history.csv, curves.png,
predictions.parquet and the report (report.html); the report's path is printed on stdout.
With --finetune, the fine-tuned run is RUN-finetune beside the head's run.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data="" weights="" head=dense preprocess=rescale size=150 seed=1 work="$repo/data/work" run=""
views=0 augment=book finetune=0 finetune_epochs=30
head_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --head) head=$2; shift 2 ;;
    --preprocess) preprocess=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --views) views=$2; shift 2 ;;
    --augment) augment=$2; shift 2 ;;
    --finetune) finetune=1; shift ;;
    --finetune-epochs) finetune_epochs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --run) run=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; head_args=("$@"); break ;;
    *) echo "pipeline.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "==> $*" >&2; }
t0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

say "building the stages (release)"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --bins
bin="$repo/target/release"
[ -x "$bin/convbase-head-$head" ] || { echo "pipeline.sh: no head binary convbase-head-$head" >&2; exit 2; }

if [ -z "$data" ]; then
  data="$repo/data/demo"
  "$repo/scripts/demo-data.sh" >/dev/null
fi
if [ -z "$weights" ]; then
  weights=$("$repo/scripts/fetch-weights.sh")
fi
mkdir -p "$work"
plain="$work/features-$(basename "$data")-$preprocess-$size.parquet"
variant=$([ "$views" -gt 0 ] && echo "-views$views" || true)
# Views go to their own file, which borrows the plain file's rows (and the plain file its
# views file's plain rows): switching back and forth costs no model work.
features="${plain%.parquet}$variant.parquet"
run_dir="$work/runs/${run:-$head-$preprocess$variant-seed$seed}"

say "prepare: $data"
t=$(date +%s.%N)
manifest="$work/manifest-$(basename "$data").parquet"
"$bin/convbase-prepare" "$data" -o "$manifest"
say "prepare took $(elapsed "$t") s"

# extract LAYER OUT PREFIX: cached features of the manifest's images at LAYER into OUT,
# borrowing the rows of the other files PREFIX*.parquet computed with the same settings.
extract() {
  local layer=$1 out=$2 prefix=$3 reuse=() other t
  for other in "$prefix"*.parquet; do
    if [ -f "$other" ] && [ "$other" != "$out" ]; then reuse+=(--reuse "$other"); fi
  done
  say "extract ($layer): $out"
  t=$(date +%s.%N)
  "$bin/convbase-extract" -m "$manifest" -w "$weights" -o "$out" --layer "$layer" --pool none \
    --size "$size" --preprocess "$preprocess" --resize-filter nearest --batch 20 \
    --views "$views" --augment "$augment" ${reuse[@]+"${reuse[@]}"}
  say "extract took $(elapsed "$t") s"
}

extract block5_pool "$features" "${plain%.parquet}"

say "train: convbase-head-$head -> $run_dir"
t=$(date +%s.%N)
"$bin/convbase-head-$head" train --features "$features" --out "$run_dir" --seed "$seed" \
  ${head_args[@]+"${head_args[@]}"}
say "train took $(elapsed "$t") s"
say "report: $run_dir"
"$bin/convbase-report" "$run_dir"

if [ "$finetune" = 1 ]; then
  [ "$head" = dense ] || { echo "pipeline.sh: --finetune needs --head dense" >&2; exit 2; }
  block4_plain="$work/block4-$(basename "$data")-$preprocess-$size.parquet"
  block4="${block4_plain%.parquet}$variant.parquet"
  extract block4_pool "$block4" "${block4_plain%.parquet}"
  say "fine-tune: convbase-finetune -> $run_dir-finetune"
  t=$(date +%s.%N)
  "$bin/convbase-finetune" train --features "$block4" --head-run "$run_dir" \
    --out "$run_dir-finetune" --seed "$seed" --epochs "$finetune_epochs"
  say "fine-tune took $(elapsed "$t") s"
  run_dir="$run_dir-finetune"
  say "report: $run_dir"
  "$bin/convbase-report" "$run_dir"
fi

say "pipeline took $(elapsed "$t0") s in all"
say "report: $run_dir/report.html"
echo "$run_dir/report.html"
