#!/usr/bin/env python3
"""Checks a ddpm-export folder against diffusers (run by hand; the C++ tests never call Python).

    ddpm-export --checkpoint RUN --out EXPORTED --probe probe.safetensors --seed 0
    /work/pyref/bin/python scripts/check_export.py EXPORTED probe.safetensors

Loads EXPORTED with diffusers' UNet2DModel.from_pretrained, runs it in float64 on the probe's
input (x is NHWC in the probe, NCHW for diffusers) at the probe's timesteps and labels, and
prints the largest absolute difference from our output. Exits 1 above --tol.
"""
import argparse
import sys

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the exported diffusers UNet2DModel folder")
    parser.add_argument("probe", help="the --probe file of ddpm-export (x, t, labels, out)")
    parser.add_argument("--tol", type=float, default=1e-4, help="largest allowed absolute difference")
    args = parser.parse_args()

    model = UNet2DModel.from_pretrained(args.folder).double().eval()
    probe = load_file(args.probe)
    x = probe["x"].double().permute(0, 3, 1, 2)  # NHWC -> NCHW
    t = probe["t"].double()
    labels = probe["labels"].long() if "labels" in probe else None
    with torch.no_grad():
        ref = model(x, t, class_labels=labels).sample.permute(0, 2, 3, 1)  # back to NHWC
    ours = probe["out"].double()
    diff = (ref - ours).abs().max().item()
    scale = ref.abs().max().item()
    print(f"output {tuple(ours.shape)}: max |diffusers - ours| = {diff:.3e} (max |output| = {scale:.3e})")
    return 0 if diff <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
