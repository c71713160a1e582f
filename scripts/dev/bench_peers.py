"""The VGG16 conv base and fine-tuning's block5 side by side in one sitting.

Table 1, the conv base forward (inference): onnxruntime (MLAS) on the real Keras VGG16 graph cut
at block5_pool, convbase's `Vgg16::forward` (`convbase-vgg16 bench`, once per instruction set
asked for) and, with `--torch-python`, PyTorch (torchvision's layer stack, NCHW and
channels-last) on the same weights and the very same input batch (batch 20, 150x150,
preprocessed values ~ N(0, 50)), the same number of threads. It also compares the outputs with
onnxruntime's.

Table 2, block5 for fine-tuning (block5_conv1..3 + block5_pool on block4_pool-shaped maps, batch
20 x 9 x 9 x 512 at 150 px): forward + backward (the gradients of the block5 weights and
biases; the input needs none, as for cached features), and forward only. convbase
(`convbase-vgg16 bench-block5`: the NHWC Winograd path fine-tuning uses, per instruction set,
and the previous NCHW GEMM path) against PyTorch (NCHW and channels-last), with the ratio to
PyTorch's faster format.

Each system runs `--runs` timed batches after warm-up, and the systems take turns over
`--rounds` rounds, so that a change in the machine's load hits all of them; the tables show the
median over all timed runs. PyTorch runs in its own interpreter (PyPI's torch wheel pulls the
CUDA stack, several GB): scripts/bench-peers.sh --torch sets one up, or pass any interpreter
that imports torch.

Run via scripts/bench-peers.sh, which sets up the venv, the weights and the binary.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vgg16_onnx_ref as ref  # noqa: E402


def json_lines(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


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
                    help="convbase instruction set to run (amx, avx512, avx2, portable), once "
                         "per set; default: the CPU's best and the narrower x86 ones below it")
    ap.add_argument("--torch-python", default=os.environ.get("CONVBASE_TORCH_PYTHON"),
                    help="a Python interpreter that imports torch (env CONVBASE_TORCH_PYTHON); "
                         "without it PyTorch is left out")
    ap.add_argument("--only", choices=["base", "block5"], help="run one table only")
    args = ap.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-peers-"))
    torch = args.torch_python
    torch_script = str(HERE / "bench_torch.py")
    if torch:
        version = subprocess.run([torch, "-c", "import torch; print(torch.__version__)"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        torch_note = f"PyTorch {version} ({torch}), {args.threads} threads"
    else:
        torch_note = ("PyTorch: not run (give --torch-python, or scripts/bench-peers.sh --torch "
                      "to install it: PyPI's torch wheel pulls CUDA packages, several GB)")

    def isa_env(isa):
        return dict(env, CONVBASE_ISA=isa) if isa else env

    isas = args.isa
    if isas is None:
        best = json_lines([args.binary, "--quiet", "bench-block5", "--runs", "1", "--warmup",
                           "0", "--batch", "1", "--size", "3"], env)[0]["isa"]
        # The widest, and the narrower x86 ones below it (AMX's convs fall back to AVX-512).
        isas = [best] + {"amx": ["avx512", "avx2"], "avx512": ["avx2"]}.get(best, [])

    def turns(systems, rounds):
        """Runs each system once per round, in turn; returns name -> all timed runs."""
        times = {}
        for r in range(rounds):
            for fn in systems:
                for name, t in fn():
                    times.setdefault(name, []).extend(t)
                    print(f"round {r + 1}/{rounds} {name}: median {statistics.median(t):.4f} "
                          "s/batch", file=sys.stderr)
        return times

    if args.only in (None, "base"):
        base_table(args, env, tmp, torch, torch_script, isas, isa_env, turns, torch_note)
    if args.only in (None, "block5"):
        block5_table(args, torch, torch_script, isas, isa_env, turns, torch_note)


def base_table(args, env, tmp, torch, torch_script, isas, isa_env, turns, torch_note):
    rng = np.random.default_rng(0)
    x_nhwc = rng.normal(0, 50, (args.batch, args.size, args.size, 3)).astype(np.float32)
    sess = ref.load_cut_model(ref.onnx_path(), threads=args.threads)
    out_name = [ref.POOLS["block5_pool"]]
    outputs = {}

    def run_ort():
        sess.run(out_name, {"input": x_nhwc})  # warm-up
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            (y,) = sess.run(out_name, {"input": x_nhwc})
            times.append(time.perf_counter() - t)
        outputs["onnxruntime"] = y.transpose(0, 2, 3, 1).reshape(-1)  # NCHW -> NHWC
        return [("onnxruntime", times)]

    x_path, y_path = tmp / "x.f32", tmp / "y.f32"
    # convbase and PyTorch take NCHW (the same values: the ONNX graph transposes its NHWC
    # input too).
    np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)).tofile(x_path)

    def run_convbase(isa):
        name = f"convbase ({isa})"
        cmd = [args.binary, "--quiet", "bench", args.weights, "--batch", str(args.batch),
               "--size", str(args.size), "--runs", str(args.runs), "--warmup", "1",
               "--input", str(x_path), "--output", str(y_path)]
        (res,) = json_lines(cmd, isa_env(isa))
        outputs[name] = np.fromfile(y_path, dtype=np.float32)
        return [(name, res["runs_s"])]

    def run_torch():
        prefix = tmp / "torch"
        cmd = [torch, torch_script, "base", "--weights", args.weights, "--input", str(x_path),
               "--batch", str(args.batch), "--size", str(args.size), "--threads",
               str(args.threads), "--runs", str(args.runs), "--warmup", "1",
               "--output-prefix", str(prefix)]
        res = []
        for r in json_lines(cmd, env):
            outputs[r["system"]] = np.fromfile(f"{prefix}.{r['format']}.f32", dtype=np.float32)
            res.append((r["system"], r["runs_s"]))
        return res

    systems = [run_ort] + [lambda isa=isa: run_convbase(isa) for isa in isas]
    if torch:
        systems.append(run_torch)
    times = turns(systems, args.rounds)

    ort_med = statistics.median(times["onnxruntime"])
    ort_y = outputs["onnxruntime"]
    scale = float(np.abs(ort_y).max())
    print(f"VGG16 conv base forward, batch {args.batch}, {args.size}x{args.size} -> "
          f"block5_pool, {args.threads} threads, median of {args.runs} x {args.rounds} runs "
          f"(1-minute load average at the end: {os.getloadavg()[0]:.1f})\n")
    print("| system | s/batch | images/s | vs onnxruntime | max abs diff to onnxruntime "
          "(rel. to max) |")
    print("|---|---|---|---|---|")
    for name, t in times.items():
        med = statistics.median(t)
        diff = float(np.abs(outputs[name] - ort_y).max())
        print(f"| {name} | {med:.3f} | {args.batch / med:.2f} | {ort_med / med:.2f}x | "
              f"{diff:.3g} ({diff / scale:.2e}) |")
    print(f"\n{torch_note}\n")


def block5_table(args, torch, torch_script, isas, isa_env, turns, torch_note):
    side = 9  # block4_pool of a 150 px image

    def run_convbase(isa, path, forward_only):
        cmd = [args.binary, "--quiet", "bench-block5", "--batch", str(args.batch), "--size",
               str(side), "--path", path, "--runs", str(args.runs), "--warmup", "2"]
        if forward_only:
            cmd.append("--forward-only")
        (res,) = json_lines(cmd, isa_env(isa))
        return [(f"convbase {path} ({res['isa']})", res["runs_s"])]

    def run_torch(forward_only):
        cmd = [torch, torch_script, "block5", "--batch", str(args.batch), "--size", str(side),
               "--threads", str(args.threads), "--runs", str(args.runs), "--warmup", "2"]
        if forward_only:
            cmd.append("--forward-only")
        return [(r["system"], r["runs_s"]) for r in json_lines(cmd, dict(os.environ))]

    rows = []
    for forward_only in (False, True):
        # Training has no AMX kernels: its convs run AVX-512 under `amx`.
        train_isas = [i for i in isas if i != "amx"] or ["avx512"]
        systems = [lambda isa=isa: run_convbase(isa, "winograd", forward_only)
                   for isa in train_isas]
        systems.append(lambda: run_convbase(train_isas[0], "gemm", forward_only))
        if torch:
            systems.append(lambda: run_torch(forward_only))
        rows.append((forward_only, turns(systems, args.rounds)))

    print(f"block5 (block5_conv1..3 + block5_pool) for fine-tuning, batch {args.batch} x "
          f"{side}x{side}x512, {args.threads} threads, median of {args.runs} x {args.rounds} runs "
          f"(1-minute load average at the end: {os.getloadavg()[0]:.1f})\n")
    print("| pass | system | s/batch | images/s | vs PyTorch (faster format) |")
    print("|---|---|---|---|---|")
    for forward_only, times in rows:
        pass_name = "forward" if forward_only else "forward + backward"
        meds = {name: statistics.median(t) for name, t in times.items()}
        torch_best = min((m for n, m in meds.items() if n.startswith("PyTorch")), default=None)
        for name, med in meds.items():
            ratio = f"{torch_best / med:.2f}x" if torch_best else "-"
            print(f"| {pass_name} | {name} | {med:.4f} | {args.batch / med:.1f} | {ratio} |")
    print(f"\nconvbase winograd: NHWC, Winograd F(3x3, 3x3) for the output and both gradients "
          f"(fine-tuning's path); gemm: the NCHW im2col GEMM op. {torch_note}")


if __name__ == "__main__":
    main()
