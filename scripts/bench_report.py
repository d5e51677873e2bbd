#!/usr/bin/env python3
"""Joins bench-kernels' JSON lines (two runs: "mode" fp32 and tf32) with bench_pytorch.py's
and prints Markdown tables, the model-level one last:

  kernels: op, direction, case, then per mode (fp32, tf32) our ms, PyTorch's ms and the
           ratio torch / ours (> 1: we are faster); the rate column is our fp32 row's.
           PyTorch has tf32 rows for conv2d (its default: cudnn.allow_tf32 = True) and
           linear (opt-in); elsewhere that column is "-".
  UNet:    every mode of ours and of PyTorch, with our fp32 and tf32 throughput over each.
Rows without a "mode" are fp32 (files from before TF32 existed)."""
import json
import sys

MODES = ("fp32", "tf32")


def key(r):
    case = {k: v for k, v in r["case"].items() if k != "fused_path"}
    return (r["op"], r["direction"], json.dumps(case, sort_keys=True))


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def fmt_ms(x):
    return f"{x:.3f}" if x is not None else "-"


def fmt_ratio(t, o):
    return f"{t / o:.2f}" if t is not None and o is not None else "-"


def main(ours_path, torch_path):
    ours = {m: {} for m in MODES}  # mode -> key -> row
    order = []                     # kernel keys in our first run's order
    torch = {m: {} for m in MODES}
    unet_ours, unet_torch, headers = [], [], []
    for r in read_lines(ours_path):
        if r.get("op") == "unet":
            unet_ours.append(r)
        elif "op" in r:
            k = key(r)
            ours[r.get("mode", "fp32")][k] = r
            if k not in order:
                order.append(k)
        elif "device" in r:
            headers.append(r)
    for r in read_lines(torch_path):
        if r.get("op") == "unet":
            unet_torch.append(r)
        elif "op" in r:
            torch[r.get("mode", "fp32")][key(r)] = r["ms"]

    for h in headers:
        extra = f", TF32 GEMM {h['tf32_gemm_tflops']:.1f} TFLOP/s" if "tf32_gemm_tflops" in h else ""
        print(f"device: {h['device']} ({h.get('mode', 'fp32')} run, conv algorithms {h.get('conv_algo', 'heuristic')}); "
              f"measured copy {h['copy_gbps']:.0f} GB/s, SGEMM {h['sgemm_tflops']:.1f} TFLOP/s{extra}")
    if headers:
        print("torch conv2d tf32 = PyTorch's default (cudnn.allow_tf32=True); torch linear tf32 is opt-in; "
              "rates are % of fp32 SGEMM\n")

    print("| op | dir | case | ours fp32 | rate (fp32) | torch fp32 | torch/ours | ours tf32 | torch tf32 | torch/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in order:
        f, t = ours["fp32"].get(k), ours["tf32"].get(k)
        any_row = f or t
        rate = ""
        if f and "gbps" in f:
            rate = f"{f['gbps']:.0f} GB/s ({f['pct_copy_bw']:.0f}% copy)"
        elif f and "tflops" in f:
            rate = f"{f['tflops']:.1f} TFLOP/s ({f['pct_sgemm']:.0f}%)"
        case = ", ".join(f"{a}={b}" for a, b in any_row["case"].items())
        of, ot = (f or {}).get("ms"), (t or {}).get("ms")
        tf, tt = torch["fp32"].get(k), torch["tf32"].get(k)
        print(f"| {any_row['op']} | {any_row['direction']} | {case} | {fmt_ms(of)} | {rate} | {fmt_ms(tf)} | "
              f"{fmt_ratio(tf, of)} | {fmt_ms(ot)} | {fmt_ms(tt)} | {fmt_ratio(tt, ot)} |")

    if unet_ours or unet_torch:
        print("\nDDPM CIFAR-10 UNet (35.7M parameters): train = images/s, sample = network evaluations/s\n")
        print("| what | mode | batch | ms | per s | peak MiB | ours fp32 / this | ours tf32 / this |")
        print("|---|---|---|---|---|---|---|---|")

        def mine(mode, what):
            return next((o for o in unet_ours if o["what"] == what and o.get("mode", "ours_fp32") == mode), None)

        for r in unet_ours + unet_torch:
            ratios = []
            for mode in ("ours_fp32", "ours_tf32"):
                m = mine(mode, r["what"])
                ratios.append(f"{m['per_s'] / r['per_s']:.2f}" if m else "-")
            peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
            print(f"| {r['what']} | {r['mode']} | {r['batch']} | {r['ms']:.1f} | {r['per_s']:.1f} | {peak} | "
                  f"{ratios[0]} | {ratios[1]} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
