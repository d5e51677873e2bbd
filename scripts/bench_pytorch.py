#!/usr/bin/env python3
"""PyTorch eager baseline for the kernel benchmark: the same shapes as bench/cases.json,
timed the same way as bench-kernels (CUDA events, L2 flushed between repetitions, median).

Prints one JSON object per line: {"op", "case", "direction", "mode", "ms"}. scripts/bench.sh
joins these with bench-kernels' lines (run with and without --tf32) and prints the ratios.

Modes. "fp32": TF32 off in cuDNN and cuBLAS, the same arithmetic as our default. "tf32"
(conv2d and linear only): TF32 allowed, the same arithmetic as our --tf32. For conv2d the
tf32 row is what PyTorch does by default (torch.backends.cudnn.allow_tf32 = True); for
linear it is an opt-in (torch.backends.cuda.matmul.allow_tf32 defaults to False), and each
such row says so in "note". cuDNN algorithm choice is PyTorch's default, its heuristic
(torch.backends.cudnn.benchmark = False), unless --cudnn-benchmark is given; ours times the
candidates once by default (engine/math_mode.h).

    python3 scripts/bench_pytorch.py [--reps 50] [--cudnn-benchmark]
"""
import argparse
import json
import os
import statistics

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn, reps, flush):
    start = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for _ in range(3):
        fn()
    for i in range(reps):
        flush.zero_()
        start[i].record()
        fn()
        end[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(start, end))


def emit(op, case, direction, ms, mode="fp32", note=None):
    row = {"op": op, "case": case, "direction": direction, "mode": mode, "ms": ms}
    if note:
        row["note"] = note
    print(json.dumps(row), flush=True)


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


CONV_NOTES = {"fp32": "cudnn.allow_tf32=False (not the torch default)",
              "tf32": "cudnn.allow_tf32=True (the torch default)"}
LINEAR_NOTES = {"fp32": "matmul.allow_tf32=False (the torch default)",
                "tf32": "matmul.allow_tf32=True (opt-in)"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="time cuDNN's algorithms once per shape (torch.backends.cudnn.benchmark = True)")
    args = ap.parse_args()
    set_tf32(False)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    dev = torch.device("cuda")
    flush = torch.empty(256 * 1024 * 1024 // 4, device=dev)  # larger than any L2
    with open(os.path.join(HERE, "..", "bench", "cases.json")) as f:
        cases = json.load(f)

    for c in cases["group_norm_silu"]:
        x = torch.randn(c["n"], c["c"], c["h"], c["w"], device=dev).to(memory_format=torch.channels_last)
        w = torch.ones(c["c"], device=dev, requires_grad=True)
        b = torch.zeros(c["c"], device=dev, requires_grad=True)
        x.requires_grad_(True)
        fwd = lambda: F.silu(F.group_norm(x, c["groups"], w, b))
        emit("group_norm_silu", c, "forward", timed(fwd, args.reps, flush))
        y = fwd()
        g = torch.randn_like(y)
        bwd = lambda: torch.autograd.grad(y, (x, w, b), g, retain_graph=True)
        emit("group_norm_silu", c, "backward", timed(bwd, args.reps, flush))

    for c in cases["attention"]:
        d = c["c"] // c["heads"]
        q = torch.randn(c["b"], c["heads"], c["s"], d, device=dev, requires_grad=True)
        k, v = (torch.randn(c["b"], c["heads"], c.get("sk", c["s"]), d, device=dev, requires_grad=True)
                for _ in range(2))
        fwd = lambda: F.scaled_dot_product_attention(q, k, v)
        emit("attention", c, "forward", timed(fwd, args.reps, flush))
        y = fwd()
        g = torch.randn_like(y)
        bwd = lambda: torch.autograd.grad(y, (q, k, v), g, retain_graph=True)
        emit("attention", c, "backward", timed(bwd, args.reps, flush))

    for c in cases["layer_norm"]:
        x = torch.randn(c["n"] * c["l"], c["c"], device=dev, requires_grad=True)
        w = torch.randn(c["c"], device=dev, requires_grad=True)
        b = torch.randn(c["c"], device=dev, requires_grad=True)
        fwd = lambda: F.layer_norm(x, (c["c"],), w, b)
        emit("layer_norm", c, "forward", timed(fwd, args.reps, flush))
        y = fwd()
        g = torch.randn_like(y)
        bwd = lambda: torch.autograd.grad(y, (x, w, b), g, retain_graph=True)
        emit("layer_norm", c, "backward", timed(bwd, args.reps, flush))

    for mode in ("fp32", "tf32"):
        set_tf32(mode == "tf32")
        for c in cases["conv2d"]:
            x = torch.randn(c["n"], c["cin"], c["h"], c["w"], device=dev).to(memory_format=torch.channels_last)
            w = torch.randn(c["cout"], c["cin"], c["k"], c["k"], device=dev).to(memory_format=torch.channels_last)
            b = torch.randn(c["cout"], device=dev)
            x.requires_grad_(True)
            w.requires_grad_(True)
            fwd = lambda: F.conv2d(x, w, b, stride=c["stride"], padding=c["pad"])
            emit("conv2d", c, "forward", timed(fwd, args.reps, flush), mode, CONV_NOTES[mode])
            y = fwd()
            g = torch.randn_like(y)
            bwd = lambda: torch.autograd.grad(y, (x, w), g, retain_graph=True)
            emit("conv2d", c, "backward", timed(bwd, args.reps, flush), mode, CONV_NOTES[mode])

        for c in cases["linear"]:
            x = torch.randn(c["m"], c["k"], device=dev)
            w = torch.randn(c["n"], c["k"], device=dev)
            b = torch.randn(c["n"], device=dev)
            emit("linear", c, "forward", timed(lambda: F.linear(x, w, b), args.reps, flush), mode, LINEAR_NOTES[mode])
    set_tf32(False)

    for c in cases["adamw"]:
        p = torch.zeros(c["params"], device=dev, requires_grad=True)
        p.grad = torch.randn_like(p)
        opt = torch.optim.AdamW([p], lr=1e-4, fused=True)
        emit("adamw", c, "step", timed(opt.step, args.reps, flush))


if __name__ == "__main__":
    main()
