#!/usr/bin/env python3
"""Checks a ddpm-export folder against diffusers (run by hand; the C++ tests never call Python).

    ddpm-export --checkpoint RUN --out EXPORTED --probe probe.safetensors --seed 0
    /work/pyref/bin/python scripts/check_export.py EXPORTED probe.safetensors

Loads EXPORTED with diffusers' UNet2DModel.from_pretrained, runs it in float64 on the probe's
input (x is NHWC in the probe, NCHW for diffusers) at the probe's timesteps and labels, and
prints the largest absolute difference from our output. Exits 1 above --tol.

A text-conditioned run exports a pipeline folder; check its UNet:

    /work/pyref/bin/python scripts/check_export.py EXPORTED/unet probe.safetensors

The probe then holds "encoder_hidden_states" (our text encoder's output for a few prompts) and
"input_ids": the UNet is loaded as a UNet2DConditionModel and fed those hidden states. When
the folder's sibling text_encoder/ exists (or --text-encoder names one), the text encoder is
checked too: it is not a transformers CLIPTextModel (non-causal, exact GELU), so this script
rebuilds it from torch's own functional layers, following the equations of
models/text/text_encoder.h, and compares its output on input_ids with encoder_hidden_states.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def text_encoder_forward(folder: str, input_ids: torch.Tensor) -> torch.Tensor:
    """Our text encoder (models/text/text_encoder.h) in float64 torch: pre-LN, no causal mask."""
    cfg = json.load(open(os.path.join(folder, "config.json")))
    w = {k: v.double() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    width, heads = cfg["width"], cfg["heads"]

    def linear(x, name):
        return F.linear(x, w[name + ".weight"], w[name + ".bias"])

    def norm(x, name):
        return F.layer_norm(x, (width,), w[name + ".weight"], w[name + ".bias"], eps=1e-5)

    n, length = input_ids.shape
    x = w["text_model.embeddings.token_embedding.weight"][input_ids] + w[
        "text_model.embeddings.position_embedding.weight"][:length]
    for i in range(cfg["layers"]):
        p = f"text_model.encoder.layers.{i}."
        u = norm(x, p + "layer_norm1")

        def split(t):  # [N, L, W] -> [N, heads, L, W / heads]
            return t.view(n, length, heads, width // heads).transpose(1, 2)

        q, k, v = (split(linear(u, p + "self_attn." + s)) for s in ("q_proj", "k_proj", "v_proj"))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1) @ v
        x = x + linear(a.transpose(1, 2).reshape(n, length, width), p + "self_attn.out_proj")
        x = x + linear(F.gelu(linear(norm(x, p + "layer_norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    return norm(x, "text_model.final_layer_norm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the exported diffusers UNet2DModel folder (a pipeline folder's unet/)")
    parser.add_argument("probe", help="the --probe file of ddpm-export (x, t, labels, out; a text model's context)")
    parser.add_argument("--tol", type=float, default=1e-4, help="largest allowed absolute difference")
    parser.add_argument("--text-encoder", help="the text encoder folder (default: ../text_encoder beside folder)")
    args = parser.parse_args()

    probe = load_file(args.probe)
    x = probe["x"].double().permute(0, 3, 1, 2)  # NHWC -> NCHW
    t = probe["t"].double()
    labels = probe["labels"].long() if "labels" in probe else None
    ok = True
    if "encoder_hidden_states" in probe:
        from diffusers import UNet2DConditionModel

        model = UNet2DConditionModel.from_pretrained(args.folder).double().eval()
        context = probe["encoder_hidden_states"].double()  # [N, L, D]
        with torch.no_grad():
            ref = model(x, t, encoder_hidden_states=context, class_labels=labels).sample.permute(0, 2, 3, 1)
        encoder = args.text_encoder or os.path.join(os.path.dirname(os.path.abspath(args.folder)), "text_encoder")
        if os.path.isdir(encoder):
            with torch.no_grad():
                ctx_ref = text_encoder_forward(encoder, probe["input_ids"].long())
            cdiff = (ctx_ref - context).abs().max().item()
            print(f"encoder_hidden_states {tuple(context.shape)}: max |torch - ours| = {cdiff:.3e} "
                  f"(max |context| = {ctx_ref.abs().max().item():.3e})")
            ok = ok and cdiff <= args.tol
    else:
        from diffusers import UNet2DModel

        model = UNet2DModel.from_pretrained(args.folder).double().eval()
        with torch.no_grad():
            ref = model(x, t, class_labels=labels).sample.permute(0, 2, 3, 1)  # back to NHWC
    ours = probe["out"].double()
    diff = (ref - ours).abs().max().item()
    scale = ref.abs().max().item()
    print(f"output {tuple(ours.shape)}: max |diffusers - ours| = {diff:.3e} (max |output| = {scale:.3e})")
    return 0 if ok and diff <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
