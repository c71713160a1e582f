"""The VGG16 conv base side by side in one sitting: onnxruntime (MLAS) on the real Keras VGG16
graph cut at block5_pool, and convbase's `Vgg16::forward` (`convbase-vgg16 bench`, once per
instruction set asked for) on the same weights and the very same input batch (batch 20,
150x150, preprocessed values ~ N(0, 50)), the same number of threads.

Each system runs `--runs` timed batches after one warm-up, and the systems take turns over
`--rounds` rounds, so that a change in the machine's load hits all of them; the table shows the
median over all timed runs, images/s and the ratio to onnxruntime. It also compares the outputs
(convbase's Winograd kernels against onnxruntime on this batch). PyTorch is listed only when it
is importable (PyPI's `torch` wheel pulls the CUDA stack, so the setup script does not install
it).

Run via scripts/bench-peers.sh, which sets up the venv, the weights and the binary.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vgg16_onnx_ref as ref  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True, help="the convbase-vgg16 executable (release)")
    ap.add_argument("--weights", required=True, help="convbase weights (safetensors)")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2, help="threads for every system")
    ap.add_argument("--runs", type=int, default=7, help="timed batches per system per round")
    ap.add_argument("--rounds", type=int, default=2, help="turns each system takes")
    ap.add_argument("--isa", action="append", default=None,
                    help="convbase instruction set(s) to run (avx512, avx2, portable); "
                         "default: the CPU's best, plus avx2 when the best is avx512")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x_nhwc = rng.normal(0, 50, (args.batch, args.size, args.size, 3)).astype(np.float32)
    sess = ref.load_cut_model(ref.onnx_path(), threads=args.threads)
    out_name = [ref.POOLS["block5_pool"]]

    def run_ort():
        sess.run(out_name, {"input": x_nhwc})  # warm-up
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            (y,) = sess.run(out_name, {"input": x_nhwc})
            times.append(time.perf_counter() - t)
        return times, y.transpose(0, 2, 3, 1)  # NCHW -> NHWC

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-peers-"))
    x_path, y_path = tmp / "x.f32", tmp / "y.f32"
    # convbase takes NCHW (the same values: the ONNX graph transposes its NHWC input too).
    np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)).tofile(x_path)

    def run_convbase(isa):
        cmd = [args.binary, "--quiet", "bench", args.weights, "--batch", str(args.batch),
               "--size", str(args.size), "--runs", str(args.runs), "--warmup", "1",
               "--input", str(x_path), "--output", str(y_path)]
        e = dict(env, CONVBASE_ISA=isa) if isa else env
        res = json.loads(subprocess.run(cmd, env=e, check=True, capture_output=True,
                                        text=True).stdout)
        y = np.fromfile(y_path, dtype=np.float32)
        return res["runs_s"], y, res["isa"]

    isas = args.isa
    if isas is None:
        _, _, best = run_convbase(None)
        isas = [best] + (["avx2"] if best == "avx512" else [])

    systems = {"onnxruntime": run_ort}
    for isa in isas:
        systems[f"convbase ({isa})"] = lambda isa=isa: run_convbase(isa)[:2]
    torch_note = None
    if importlib.util.find_spec("torch") is None:
        torch_note = "PyTorch: not installed (PyPI's torch wheel pulls CUDA packages; skipped)"
    else:
        torch_note = "PyTorch: installed but not benchmarked by this script"

    times = {name: [] for name in systems}
    outputs = {}
    for r in range(args.rounds):
        for name, fn in systems.items():
            t, y = fn()
            times[name] += t
            outputs[name] = np.asarray(y, dtype=np.float32).reshape(-1)
            print(f"round {r + 1}/{args.rounds} {name}: "
                  f"median {statistics.median(t):.3f} s/batch", file=sys.stderr)

    ort_med = statistics.median(times["onnxruntime"])
    ort_y = outputs["onnxruntime"]
    scale = float(np.abs(ort_y).max())
    print(f"VGG16 conv base, batch {args.batch}, {args.size}x{args.size} -> block5_pool, "
          f"{args.threads} threads, median of {args.runs} x {args.rounds} runs "
          f"(1-minute load average at the end: {os.getloadavg()[0]:.1f})\n")
    print("| system | s/batch | images/s | vs onnxruntime | max abs diff to onnxruntime "
          "(rel. to max) |")
    print("|---|---|---|---|---|")
    for name, t in times.items():
        med = statistics.median(t)
        diff = float(np.abs(outputs[name] - ort_y).max())
        print(f"| {name} | {med:.3f} | {args.batch / med:.2f} | {ort_med / med:.2f}x | "
              f"{diff:.3g} ({diff / scale:.2e}) |")
    print(f"\n{torch_note}")


if __name__ == "__main__":
    main()
