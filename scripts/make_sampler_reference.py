#!/usr/bin/env python3
# scripts/make_sampler_reference.py: the UniPC fixture tests/data/reference/samplers/unipc.json,
# diffusers' UniPCMultistepScheduler run on a denoiser known in closed form, so that the C++
# solver (models/diffusion/unipc.h) can be checked step by step against it without Python.
#
# Needs torch and diffusers (not project dependencies). From the repository root:
#   python scripts/make_sampler_reference.py
# Made with torch 2.15.0, diffusers 0.42.1, numpy 2.4.6 (recorded in the file);
# docs/REFERENCE.md describes it. Deterministic: no random numbers are drawn here.
#
# The setting. The data are per element N(mu, s^2), whose ideal denoiser in the variance-
# exploding variable x = x_0 + sigma eps is D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu).
# diffusers' UniPC works on the VP sample x_vp = x / sqrt(1 + sigma^2) (its alpha_t =
# 1 / sqrt(1 + sigma^2)) with prediction_type="sample", i.e. the model returns x_0 directly:
# we hand it D(x_vp sqrt(1 + sigma_i^2); sigma_i), sigma_i = scheduler.sigmas[i], the level of
# step i. The levels are diffusers' own Karras sigmas (use_karras_sigmas=True on the linear
# beta schedule of T = 1000) ending in 0 (final_sigmas_type="zero"); the file stores them and
# the C++ test uses exactly these values.
#
# Two runs per solver order (2, diffusers' default, and 3):
#   "f32": diffusers as shipped (float32 sigmas, float32 sample);
#   "f64": the same float32 sigma values cast to float64 and a float64 sample, so every
#          coefficient is computed in double; the C++ f64 run must agree to ~1e-12.
# Each run records the start x (VE, x = sigma_0 z) and, after every step, diffusers'
# prev_sample (the VP sample at level i + 1: the predictor's output, corrected by the next
# step() call) and the x_0 it was given.
import json
import math
import os

import numpy as np
import torch
import diffusers
from diffusers import UniPCMultistepScheduler

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "reference", "samplers", "unipc.json")
VERSIONS = {"torch": torch.__version__, "diffusers": diffusers.__version__, "numpy": np.__version__}

MU, S = 0.3, 0.5  # the data distribution N(MU, S^2)
Z = [-1.7, -0.9, -0.25, 0.0, 0.4, 1.1, 1.6, 2.3]  # the start noise z (x = sigma_0 z)
STEPS = 10


def ideal_denoiser(x_ve, sigma):
    return MU + S * S / (S * S + sigma * sigma) * (x_ve - MU)


def run(order, dtype):
    sched = UniPCMultistepScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                    beta_schedule="linear", solver_order=order, prediction_type="sample",
                                    predict_x0=True, solver_type="bh2", lower_order_final=True,
                                    disable_corrector=[], use_karras_sigmas=True, final_sigmas_type="zero")
    sched.set_timesteps(STEPS)
    if dtype == torch.float64:
        sched.sigmas = sched.sigmas.to(torch.float64)  # the same values, double arithmetic
    sigmas = [float(s) for s in sched.sigmas]
    x_start = torch.tensor(Z, dtype=torch.float64) * sigmas[0]  # VE start, in double
    # diffusers' solvers want a batch dimension and a channel dimension: [1, 8]
    sample = (x_start / math.sqrt(1.0 + sigmas[0] ** 2)).to(dtype).reshape(1, -1)
    trajectory, denoised = [], []
    for i, t in enumerate(sched.timesteps):
        sigma = sigmas[i]
        x_ve = sample.to(torch.float64) * math.sqrt(1.0 + sigma * sigma)
        x0 = ideal_denoiser(x_ve, sigma).to(dtype)
        sample = sched.step(x0, t, sample).prev_sample
        trajectory.append([float(v) for v in sample.flatten()])
        denoised.append([float(v) for v in x0.flatten()])
    return {"sigmas": sigmas, "x_start": [float(v) for v in x_start], "trajectory": trajectory,
            "denoised": denoised}


def main():
    doc = {
        "what": "diffusers UniPCMultistepScheduler on the Gaussian ideal denoiser (scripts/make_sampler_reference.py)",
        "versions": VERSIONS,
        "scheduler": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000,
                      "use_karras_sigmas": True, "final_sigmas_type": "zero", "prediction_type": "sample",
                      "predict_x0": True, "solver_type": "bh2", "lower_order_final": True, "disable_corrector": [],
                      "num_inference_steps": STEPS},
        "data": {"mu": MU, "s": S},
        "trajectory_is": "prev_sample after each step(): VP scaling x / sqrt(1 + sigma_{i+1}^2)",
        "runs": {},
    }
    for order in (2, 3):
        for name, dtype in (("f32", torch.float32), ("f64", torch.float64)):
            doc["runs"][f"order{order}_{name}"] = run(order, dtype)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, OUT)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
