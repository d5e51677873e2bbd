#!/usr/bin/env python3
"""Joins bench-kernels' JSON lines with bench_pytorch.py's and prints a Markdown table:
op, direction, case, our ms, achieved rate, PyTorch ms, ratio (torch / ours)."""
import json
import sys


def key(r):
    case = {k: v for k, v in r["case"].items() if k != "fused_path"}
    return (r["op"], r["direction"], json.dumps(case, sort_keys=True))


def main(ours_path, torch_path):
    ours, torch = [], {}
    unet_ours, unet_torch = [], []
    header = None
    with open(ours_path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("op") == "unet":
                unet_ours.append(r)
            elif "op" in r:
                ours.append(r)
            else:
                header = r
    with open(torch_path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("op") == "unet":
                unet_torch.append(r)
            elif "op" in r:
                torch[key(r)] = r["ms"]
    if header:
        print(f"device: {header['device']}; measured copy {header['copy_gbps']:.0f} GB/s, "
              f"SGEMM {header['sgemm_tflops']:.1f} TFLOP/s\n")
    print("| op | dir | case | ours ms | rate | torch ms | torch/ours |")
    print("|---|---|---|---|---|---|---|")
    for r in ours:
        rate = ""
        if "gbps" in r:
            rate = f"{r['gbps']:.0f} GB/s ({r['pct_copy_bw']:.0f}% of copy)"
        elif "tflops" in r:
            rate = f"{r['tflops']:.1f} TFLOP/s ({r['pct_sgemm']:.0f}% of SGEMM)"
        t = torch.get(key(r))
        case = ", ".join(f"{k}={v}" for k, v in r["case"].items())
        ts = f"{t:.3f}" if t is not None else "-"
        ratio = f"{t / r['ms']:.2f}" if t is not None else "-"
        print(f"| {r['op']} | {r['direction']} | {case} | {r['ms']:.3f} | {rate} | {ts} | {ratio} |")
    if unet_ours or unet_torch:
        print("\nDDPM CIFAR-10 UNet (35.7M parameters): train = images/s, sample = network evaluations/s\n")
        print("| what | mode | batch | ms | per s | ours / this |")
        print("|---|---|---|---|---|---|")
        for r in unet_ours + unet_torch:
            mine = next((o for o in unet_ours if o["what"] == r["what"]), None)
            ratio = f"{mine['per_s'] / r['per_s']:.2f}" if mine else "-"
            print(f"| {r['what']} | {r['mode']} | {r['batch']} | {r['ms']:.1f} | {r['per_s']:.1f} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
