"""onnxruntime on the same shape as benches/forward.rs (batch 20, 150x150, to block5_pool) with
the real Keras VGG16 graph cut at the pools, for an images/s figure from the same sitting.

Run: .venv/bin/python scripts/dev/bench_vgg16_onnxruntime.py [--threads 2] [--runs 7]
"""
import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vgg16_onnx_ref as ref  # noqa: E402

BATCH, SIZE = 20, 150


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    sess = ref.load_cut_model(ref.onnx_path(), threads=args.threads)
    x = np.random.default_rng(0).normal(0, 50, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
    out = [ref.POOLS["block5_pool"]]
    sess.run(out, {"input": x})  # warm-up
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        sess.run(out, {"input": x})
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"onnxruntime {args.threads} threads, batch {BATCH}, {SIZE}px -> block5_pool: "
          f"median {med:.3f} s/batch = {BATCH / med:.2f} images/s (runs: {', '.join(f'{t:.3f}' for t in times)})")


if __name__ == "__main__":
    main()
