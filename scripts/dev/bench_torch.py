"""PyTorch's side of scripts/dev/bench_peers.py, run in the interpreter that has torch (its own
venv: PyPI's torch wheel pulls the CUDA stack, several GB, so it is kept apart from the test
venv). Prints one JSON line per memory format: the timed runs' seconds.

- `base`: the VGG16 conv base (13 torch.nn.Conv2d + ReLU, 5 MaxPool2d, as torchvision's
  `vgg16().features`) with the weights of a convbase safetensors file (torchvision names, OIHW;
  read here with numpy, no safetensors package needed), forward under `torch.no_grad()` on a
  raw f32 NCHW batch; writes the output of the last run (NHWC, f32) for the diff against
  onnxruntime.
- `block5`: block5_conv1..3 + ReLU and block5_pool on a random (batch, 512, size, size) batch
  of ReLU'd normals: forward and backward of the sum (gradients of the weights and biases, the
  input needs none, as for cached features), or forward only.

Usage (normally called by bench_peers.py):
  python bench_torch.py base --weights W.safetensors --input X.f32 --batch 20 --size 150 \
      --output-prefix /tmp/y --threads 2 --runs 7
  python bench_torch.py block5 --batch 20 --size 9 --threads 2 --runs 7 [--forward-only]
"""
import argparse
import json
import struct
import time

import numpy as np
import torch

# torchvision's vgg16().features: conv channels, "M" for a 2x2 max-pool.
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", (name, meta["dtype"])
        start, end = meta["data_offsets"]
        a = np.frombuffer(data[8 + n + start : 8 + n + end], dtype="<f4").reshape(meta["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


def features(weights=None):
    layers, c = [], 3
    for v in CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2))
        else:
            conv = torch.nn.Conv2d(c, v, 3, padding=1)
            if weights is not None:
                i = len(layers)
                conv.weight.data.copy_(weights[f"features.{i}.weight"])
                conv.bias.data.copy_(weights[f"features.{i}.bias"])
            layers += [conv, torch.nn.ReLU(inplace=True)]
            c = v
    return torch.nn.Sequential(*layers)


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["base", "block5"])
    ap.add_argument("--weights")
    ap.add_argument("--input")
    ap.add_argument("--output-prefix")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--size", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--forward-only", action="store_true")
    ap.add_argument("--formats", default="nchw,channels_last")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    for fmt in args.formats.split(","):
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        if args.what == "base":
            net = features(read_safetensors(args.weights)).eval().to(memory_format=mf)
            x = np.fromfile(args.input, dtype="<f4").reshape(args.batch, 3, args.size, args.size)
            x = torch.from_numpy(x).contiguous(memory_format=mf)
            out = {}

            def run():
                with torch.no_grad():
                    out["y"] = net(x)

            times = timed(run, args.runs, args.warmup)
            y = out["y"].permute(0, 2, 3, 1).contiguous().numpy()
            y.astype("<f4").tofile(f"{args.output_prefix}.{fmt}.f32")
        else:
            net = features()[24:].to(memory_format=mf)  # block5_conv1 .. block5_pool
            x = torch.randn(args.batch, 512, args.size, args.size).relu().contiguous(memory_format=mf)

            def run():
                if args.forward_only:
                    with torch.no_grad():
                        net(x)
                else:
                    net.zero_grad(set_to_none=True)
                    net(x).sum().backward()

            times = timed(run, args.runs, args.warmup)
        print(json.dumps({"system": f"PyTorch {torch.__version__} ({fmt})", "format": fmt,
                          "threads": torch.get_num_threads(), "runs_s": times}), flush=True)


if __name__ == "__main__":
    main()
