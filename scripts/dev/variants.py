"""The seed's three variants on the demo data, over several seeds, through scripts/pipeline.sh:

1. feature extraction: the dense head on cached block5_pool features;
2. + data augmentation: the head on K cached augmented views per training image (one drawn
   per image each epoch), the book's policy;
3. + fine-tuning: block5 and the variant-2 head trained on cached block4_pool features of the
   same views, RMSprop(1e-5), as the book fine-tunes the model it trained with augmentation;
3b. fine-tuning without augmentation: block5 and the variant-1 head on the plain block4_pool
   features (their rows are borrowed from variant 3's file: no model work).

Prints a Markdown table (validation and test accuracy at the last epoch, per seed and mean,
and wall times: the one-time cost of each variant's features, then the training per seed) and
writes it, with every stage's time, to OUT/variants.json. Features are cached in OUT, so a
second run only trains; a pipeline call whose runs are complete and whose times OUT/variants.json
already holds is not run again (an interrupted experiment resumes; delete the file to redo all).

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


def pipeline(work, args, done=None):
    """Runs pipeline.sh; returns {stage: seconds} from its `==> STAGE took X s` lines. `done`:
    the times of an earlier, complete run of the same call, returned as they are."""
    if done is not None:
        print("# reusing " + " ".join(args), file=sys.stderr, flush=True)
        return done
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


def write_atomic(path, value):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


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
    v = f"-views{args.views}"
    # Each pipeline call: its extra arguments and the runs it makes (name(seed) below).
    finetune = ["--finetune", "--finetune-epochs", str(args.finetune_epochs)]
    calls = {
        "variant1": ([], [1]),
        "variants2+3": (["--views", str(args.views)] + finetune, [2, 3]),
        "variant3b": (finetune, ["3b"]),
    }

    def name(k, seed):
        return {1: f"dense-rescale-seed{seed}", 2: f"dense-rescale{v}-seed{seed}",
                3: f"dense-rescale{v}-seed{seed}-finetune",
                "3b": f"dense-rescale-seed{seed}-finetune"}[k]

    journal = args.work / "variants.json"
    earlier = json.loads(journal.read_text()) if journal.exists() else {}
    same = all(earlier.get(k) == getattr(args, k) for k in ("views", "finetune_epochs"))
    earlier_times = {t["seed"]: t for t in earlier.get("times", [])} if same else {}
    rows = {1: [], 2: [], 3: [], "3b": []}
    times = []
    for seed in args.seeds:
        t = {"seed": seed}
        for call, (extra, made) in calls.items():
            complete = all((runs / name(k, seed) / "metrics.json").exists() for k in made)
            done = earlier_times.get(seed, {}).get(call) if complete else None
            t[call] = pipeline(args.work, common + ["--seed", str(seed)] + extra, done)
        times.append(t)
        for k in rows:
            rows[k].append(accuracies(runs / name(k, seed)))
        # Journal after every seed, so that an interrupted experiment resumes.
        write_atomic(journal, {"views": args.views, "finetune_epochs": args.finetune_epochs,
                               "times": times})

    first = times[0]
    # extract took: [block5_pool] for variant 1; [block5_pool views, block4_pool views] for 2+3.
    features = {
        1: first["variant1"]["extract"][0],
        2: first["variants2+3"]["extract"][0],
        3: first["variants2+3"]["extract"][1],
        "3b": first["variant3b"]["extract"][1],
    }
    train = {
        1: [t["variant1"]["train"][0] for t in times],
        2: [t["variants2+3"]["train"][0] for t in times],
        3: [t["variants2+3"]["fine-tune"][0] for t in times],
        "3b": [t["variant3b"]["fine-tune"][0] for t in times],
    }
    names = {
        1: "1. feature extraction (block5_pool, dense head)",
        2: f"2. + augmentation ({args.views} cached views per training image)",
        3: f"3. + fine-tuning block5 ({args.finetune_epochs} epochs on cached block4_pool views)",
        "3b": f"3b. fine-tuning block5 without augmentation ({args.finetune_epochs} epochs, "
              "variant 1's head, plain block4_pool)",
    }
    costs = {
        1: "block5_pool, every image",
        2: f"block5_pool, {args.views} views of each training image",
        3: f"block4_pool, every image and its {args.views} views",
        "3b": "block4_pool rows borrowed from variant 3's file",
    }
    out = ["| variant | seeds | validation (per seed) | mean | test (per seed) | mean | "
           "features, once: wall | training per seed: wall |",
           "|---|---|---|---|---|---|---|---|"]
    for k in rows:
        val = [a for a, _ in rows[k]]
        test = [b for _, b in rows[k]]
        out.append(
            f"| {names[k]} | {' '.join(map(str, args.seeds))} | "
            f"{' '.join(f'{a:.3f}' for a in val)} | {statistics.mean(val):.3f} | "
            f"{' '.join(f'{b:.3f}' for b in test)} | {statistics.mean(test):.3f} | "
            f"{costs[k]}: {features[k]:.0f} s | {statistics.median(train[k]):.0f} s |")
    table = "\n".join(out)
    print(table)
    write_atomic(journal, {"views": args.views, "seeds": args.seeds,
                           "finetune_epochs": args.finetune_epochs,
                           "accuracies": {str(k): r for k, r in rows.items()},
                           "times": times, "table": table})


if __name__ == "__main__":
    main()
