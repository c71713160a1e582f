"""The seed's three variants on the demo data, over several seeds, through scripts/pipeline.sh:

1. feature extraction: the dense head on cached block5_pool features;
2. + data augmentation: the head on K cached augmented views per training image (one drawn
   per image each epoch), the book's policy;
3. + fine-tuning: block5 and the variant-2 head trained on cached block4_pool features of the
   same views, RMSprop(1e-5), as the book fine-tunes the model it trained with augmentation.

Prints a Markdown table (validation and test accuracy at the last epoch, per seed and mean,
and wall times: the one-time cost of each variant's features, then the training per seed) and
writes it, with every stage's time, to OUT/variants.json. Features are cached in OUT, so a
second run only trains.

    python3 scripts/dev/variants.py --work data/variants --views 8 --seeds 1 2 3
"""

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]


def pipeline(work, args):
    """Runs pipeline.sh; returns {stage: seconds} from its `==> STAGE took X s` lines."""
    cmd = [str(REPO / "scripts/pipeline.sh"), "--work", str(work)] + args
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    t = time.time()
    p = subprocess.run(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        sys.exit(f"pipeline.sh failed with exit code {p.returncode}")
    times = {}
    for stage, secs in re.findall(r"^==> (.+?) took ([0-9.]+) s", p.stderr, re.M):
        times.setdefault(stage, []).append(float(secs))
    times["wall"] = [time.time() - t]
    return times


def accuracies(run):
    metrics = json.loads((run / "metrics.json").read_text())
    acc = {s["split"]: s["accuracy"] for s in metrics["splits"]}
    return acc["validation"], acc["test"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=pathlib.Path, default=REPO / "data/variants")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--finetune-epochs", type=int, default=30)
    ap.add_argument("--data", help="data set root (default: the demo data)")
    ap.add_argument("--size", type=int, default=150)
    args = ap.parse_args()
    common = ["--size", str(args.size)] + (["--data", args.data] if args.data else [])
    runs = args.work / "runs"
    rows = {1: [], 2: [], 3: []}
    times = []
    for seed in args.seeds:
        t1 = pipeline(args.work, common + ["--seed", str(seed)])
        t23 = pipeline(args.work, common + ["--seed", str(seed), "--views", str(args.views),
                                            "--finetune", "--finetune-epochs",
                                            str(args.finetune_epochs)])
        times.append({"seed": seed, "variant1": t1, "variants2+3": t23})
        v = f"-views{args.views}"
        rows[1].append(accuracies(runs / f"dense-rescale-seed{seed}"))
        rows[2].append(accuracies(runs / f"dense-rescale{v}-seed{seed}"))
        rows[3].append(accuracies(runs / f"dense-rescale{v}-seed{seed}-finetune"))

    first = times[0]
    # extract took: [block5_pool] for variant 1; [block5_pool views, block4_pool views] for 2+3.
    features = {
        1: first["variant1"]["extract"][0],
        2: first["variants2+3"]["extract"][0],
        3: first["variants2+3"]["extract"][1],
    }
    train = {
        1: [t["variant1"]["train"][0] for t in times],
        2: [t["variants2+3"]["train"][0] for t in times],
        3: [t["variants2+3"]["fine-tune"][0] for t in times],
    }
    names = {
        1: "1. feature extraction (block5_pool, dense head)",
        2: f"2. + augmentation ({args.views} cached views per training image)",
        3: f"3. + fine-tuning block5 ({args.finetune_epochs} epochs on cached block4_pool views)",
    }
    costs = {
        1: "block5_pool, every image",
        2: f"block5_pool, {args.views} views of each training image",
        3: f"block4_pool, every image and its {args.views} views",
    }
    out = ["| variant | seeds | validation (per seed) | mean | test (per seed) | mean | "
           "features, once: wall | training per seed: wall |",
           "|---|---|---|---|---|---|---|---|"]
    for k in (1, 2, 3):
        val = [a for a, _ in rows[k]]
        test = [b for _, b in rows[k]]
        out.append(
            f"| {names[k]} | {' '.join(map(str, args.seeds))} | "
            f"{' '.join(f'{a:.3f}' for a in val)} | {statistics.mean(val):.3f} | "
            f"{' '.join(f'{b:.3f}' for b in test)} | {statistics.mean(test):.3f} | "
            f"{costs[k]}: {features[k]:.0f} s | {statistics.median(train[k]):.0f} s |")
    table = "\n".join(out)
    print(table)
    (args.work / "variants.json").write_text(json.dumps(
        {"views": args.views, "seeds": args.seeds, "finetune_epochs": args.finetune_epochs,
         "accuracies": rows, "times": times, "table": table}, indent=1))


if __name__ == "__main__":
    main()
