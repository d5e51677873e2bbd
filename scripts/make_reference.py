#!/usr/bin/env python3
# scripts/make_reference.py: regenerates the reference fixtures under tests/data/reference
# from Hugging Face diffusers, the outside implementation the C++ engine is checked against.
#
# Needs (not a project dependency; the C++ tests only read the files this writes):
#   pip install torch diffusers safetensors numpy
# Run from the repository root:
#   python scripts/make_reference.py
# Fixtures were made with torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0, numpy 2.4.6
# (the versions are also written into every file). docs/REFERENCE.md describes the files.
#
# What it writes:
#   tests/data/reference/<model>/config.json                         diffusers' save_pretrained
#   tests/data/reference/<model>/diffusion_pytorch_model.safetensors diffusers' save_pretrained (OIHW)
#   tests/data/reference/<model>/io.safetensors   inputs, outputs, loss and every gradient
#   tests/data/reference/schedulers/<schedule>.json  DDPMScheduler / DDIMScheduler values
# for <model> in ddpm, cond_scale_shift, cross_attn, cross_attn_pool and <schedule> in linear,
# cosine.
#
# Fixtures can be selected by name, so that adding one leaves the others untouched (a newer
# torch or diffusers would rewrite their version metadata even where the numbers agree):
#   python scripts/make_reference.py cross_attn          # only tests/data/reference/cross_attn
#   python scripts/make_reference.py ddpm schedulers     # any of: ddpm cond_scale_shift cross_attn
#                                                        #   cross_attn_pool schedulers
# Without names it writes everything.
#
# Everything is deterministic: fixed seeds, one CPU thread, no dropout.
import contextlib
import json
import math
import os
import sys

import numpy as np
import torch
import diffusers
import safetensors
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "data", "reference")
T_TRAIN = 1000

VERSIONS = {
    "torch": torch.__version__,
    "diffusers": diffusers.__version__,
    "safetensors": safetensors.__version__,
    "numpy": np.__version__,
    "python": sys.version.split()[0],
}

# --------------------------------------------------------------------------------------
# UNets
# --------------------------------------------------------------------------------------

# Shared by both models: the DDPM CIFAR-10 layout (a resolution without attention, then one
# with a single attention block, as DDPM's 32x32 -> 16x16-with-attention) at reduced width.
COMMON = dict(
    sample_size=16,
    in_channels=3,
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),  # 16x16, then 8x8 with attention
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2D",
    norm_num_groups=8,
    # diffusers gives the mid-block attention no GroupNorm when resnet_time_scale_shift is
    # not "default" unless attn_norm_num_groups is set; set it so every attention is
    # group_norm -> q, k, v -> out (+ residual) in both models.
    attn_norm_num_groups=8,
    norm_eps=1e-5,
    time_embedding_type="positional",
    act_fn="silu",
    downsample_type="conv",
    upsample_type="conv",
    downsample_padding=1,
    dropout=0.0,
)

MODELS = {
    # DDPM (Ho et al.): sinusoidal embedding [sin, cos] with frequencies
    # exp(-ln(10000) i / (half - 1)), ResNet blocks add the projected embedding, one head.
    "ddpm": dict(
        COMMON,
        out_channels=3,
        flip_sin_to_cos=False,
        freq_shift=1,
        attention_head_dim=None,  # one head over all channels
        resnet_time_scale_shift="default",
    ),
    # Improved/guided-diffusion style: [cos, sin] with exp(-ln(10000) i / half), AdaGN
    # scale-shift, 2 heads, class embedding with a null row, learned sigma (2C outputs).
    "cond_scale_shift": dict(
        COMMON,
        out_channels=6,
        flip_sin_to_cos=True,
        freq_shift=0,
        attention_head_dim=16,  # 32 channels / 16 = 2 heads
        resnet_time_scale_shift="scale_shift",
        num_class_embeds=5,  # 4 classes + the null label 4
    ),
}

BATCH = 4
TIMESTEPS = [0, 17, 421, 999]
LABELS = [0, 3, 4, 1]  # 4 is the null (unconditional) label


def sinusoidal_embedding_f64(t, dim, flip_sin_to_cos, shift, max_period=10000.0):
    """diffusers' get_timestep_embedding, evaluated in float64 (diffusers uses float32):
    freq_i = exp(-ln(max_period) i / (half - shift)), emb = [sin(t f), cos(t f)], swapped
    to [cos, sin] when flip_sin_to_cos."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freqs = torch.exp(-math.log(max_period) * i / (half - shift))
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


def nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


def build_model(name, cfg, seed, model_class=UNet2DModel):
    torch.manual_seed(seed)
    model = model_class(**cfg)
    # Perturb every parameter so no path is silent: GroupNorm weights away from 1, biases
    # away from 0, and any zero-initialized layer becomes non-zero.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()  # no dropout anyway (dropout=0); eval keeps it explicit
    return model


def make_model_fixtures(name, cfg, seed):
    out_dir = os.path.join(OUT_DIR, name)
    os.makedirs(out_dir, exist_ok=True)
    model = build_model(name, cfg, seed)
    model.save_pretrained(out_dir, safe_serialization=True)

    gen = torch.Generator().manual_seed(seed + 1)
    C, H = cfg["in_channels"], cfg["sample_size"]
    x = torch.randn(BATCH, C, H, H, generator=gen)  # the network input x_t, NCHW
    noise = torch.randn(BATCH, C, H, H, generator=gen)  # the regression target eps
    t = torch.tensor(TIMESTEPS, dtype=torch.int64)
    conditional = cfg.get("num_class_embeds") is not None
    y = torch.tensor(LABELS, dtype=torch.int64) if conditional else None

    def l_simple(out):
        # L_simple = mean over N, C, H, W of (out[:, :C] - noise)^2 (the eps half only).
        return ((out[:, :C] - noise.to(out.dtype)) ** 2).mean()

    # float32, exactly as diffusers runs it.
    t_proj = model.time_proj(t)
    with torch.no_grad():
        out = model(x, t, class_labels=y).sample
        loss = l_simple(out)

    # float64 with the same (float32-valued) weights, and the sinusoidal embedding also in
    # float64 (diffusers computes it in float32, which for t = 999 errs by ~1e-5).
    model64 = build_model(name, cfg, seed).double()
    emb_dim = cfg["block_out_channels"][0]
    t_proj64 = sinusoidal_embedding_f64(t, emb_dim, cfg["flip_sin_to_cos"], cfg["freq_shift"])
    assert torch.allclose(t_proj64, t_proj.double(), atol=1e-4), "float64 embedding disagrees with diffusers"
    model64.time_proj.forward = lambda ts: sinusoidal_embedding_f64(ts, emb_dim, cfg["flip_sin_to_cos"], cfg["freq_shift"])
    model64.zero_grad()
    out64 = model64(x.double(), t, class_labels=y).sample
    loss64 = l_simple(out64)
    loss64.backward()
    assert torch.allclose(out64.float(), out, rtol=1e-3, atol=1e-4), "float32 and float64 forwards disagree"

    tensors = {
        "x": x,
        "x_nhwc": nhwc(x),
        "timesteps": t.to(torch.float64),  # integers stored as F64 (the C++ loader has no I64)
        "noise": noise,
        "noise_nhwc": nhwc(noise),
        "t_proj": t_proj.detach(),
        "t_proj_f64": t_proj64,
        "out": out,
        "out_nhwc": nhwc(out),
        "out_f64": out64.detach(),
        "out_f64_nhwc": nhwc(out64.detach()),
        "loss": loss.reshape(1),
        "loss_f64": loss64.detach().reshape(1),
    }
    if conditional:
        tensors["labels"] = y.to(torch.float64)
    n_grad = 0
    for pname, p in model64.named_parameters():
        # softmax is invariant to adding q . b_k to every logit of a query, so the key bias
        # has a zero gradient in exact arithmetic (what is stored is roundoff, ~1e-19).
        if pname.endswith("to_k.bias"):
            assert p.grad.abs().max() < 1e-15, f"{pname}: the key bias should get no gradient"
        else:
            assert p.grad.abs().max() > 1e-8, f"parameter {pname} got no gradient"
        # The float64 gradient, stored as float32 to keep the fixture small.
        tensors["grad." + pname] = p.grad.detach().float().contiguous()
        n_grad += 1
    # One metadata entry: safetensors writes several in hash order, so the bytes would vary.
    meta = {"reference": json.dumps({"model": name, "loss": "mean((out[:, :C] - noise)^2)", "versions": VERSIONS},
                                    sort_keys=True)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "io.safetensors"), metadata=meta)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params} parameters in {n_grad} tensors, loss {loss.item():.6f} (f64 {loss64.item():.12f})")


# --------------------------------------------------------------------------------------
# The cross-attention UNet (UNet2DConditionModel, Stable Diffusion 1.x style)
# --------------------------------------------------------------------------------------

# The layout of the engine's context UNet (models/unet/unet.h context_dim > 0) at a width that
# keeps the fixture under 1 MB: a 16x16 level without attention, then an 8x8 level whose
# attention is a Transformer2DModel (GroupNorm eps 1e-6 -> proj_in 1x1 conv -> one
# BasicTransformerBlock: self-attention, cross-attention to the context, GEGLU feed-forward
# -> proj_out 1x1 conv, + residual), the same in the middle block and the mirrored up level.
CROSS_ATTN = dict(
    sample_size=16,
    in_channels=3,
    out_channels=3,
    block_out_channels=(8, 16),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=4,
    norm_eps=1e-5,
    act_fn="silu",
    flip_sin_to_cos=True,  # UNet2DConditionModel's defaults: the improved-DDPM embedding
    freq_shift=0,
    downsample_padding=1,
    dropout=0.0,
    cross_attention_dim=8,  # the context width D of encoder_hidden_states [N, L, D]
    # diffusers' naming issue: in UNet2DConditionModel `attention_head_dim` is the NUMBER of
    # heads (num_attention_heads = num_attention_heads or attention_head_dim; setting
    # num_attention_heads itself is refused), and each Transformer2DModel gets
    # (heads, channels // heads). So 16 channels / 4 heads: 4 channels per head.
    attention_head_dim=4,
    transformer_layers_per_block=1,
    use_linear_projection=False,  # SD 1.x: proj_in/proj_out are 1x1 convolutions
    only_cross_attention=False,
    upcast_attention=False,
)
CONTEXT_TOKENS = 5  # L

# The same UNet2DConditionModel plus a pooled text embedding added to the timestep embedding
# (addition_embed_type="text": diffusers' TextTimeEmbedding over AttentionPooling, as GLIDE,
# Imagen and DeepFloyd IF; the engine's unet.h context_pool_heads), at a width that keeps the
# fixture under 200 KB: 8x8 then 4x4 with the spatial transformer, 4 channels at both.
CROSS_ATTN_POOL = dict(
    CROSS_ATTN,
    sample_size=8,
    block_out_channels=(4, 4),
    norm_num_groups=2,
    attention_head_dim=2,  # 2 heads of 2 channels (a head COUNT here: the naming issue above)
    addition_embed_type="text",
    addition_embed_type_num_heads=2,  # the pooling's heads over cross_attention_dim 8: 4 channels each
)


@contextlib.contextmanager
def float64_softmax(active):
    """diffusers' AttentionPooling casts its scores to float32 for the softmax (weight.float(),
    for float16 stability), which would leave float32 rounding (~1e-8) in the float64
    reference. While active, Tensor.float() keeps a float64 tensor float64, so the whole
    float64 run, forward and backward, stays in float64."""
    if not active:
        yield
        return
    to_float32 = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self if self.dtype == torch.float64 else to_float32(self, *a, **k)
    try:
        yield
    finally:
        torch.Tensor.float = to_float32


def make_cross_attn_fixtures(name, cfg, seed):
    """Like make_model_fixtures, for UNet2DConditionModel called as model(x, t,
    encoder_hidden_states=context); also stores the gradients of the loss w.r.t. x and the
    context (the text encoder's output, through which a text model trains tau_theta)."""
    out_dir = os.path.join(OUT_DIR, name)
    os.makedirs(out_dir, exist_ok=True)
    model = build_model(name, cfg, seed, UNet2DConditionModel)
    model.save_pretrained(out_dir, safe_serialization=True)

    gen = torch.Generator().manual_seed(seed + 1)
    C, H, D = cfg["in_channels"], cfg["sample_size"], cfg["cross_attention_dim"]
    x = torch.randn(BATCH, C, H, H, generator=gen)  # the network input x_t, NCHW
    noise = torch.randn(BATCH, C, H, H, generator=gen)  # the regression target eps
    context = torch.randn(BATCH, CONTEXT_TOKENS, D, generator=gen)  # encoder_hidden_states [N, L, D]
    t = torch.tensor(TIMESTEPS, dtype=torch.int64)

    def l_simple(out):
        return ((out - noise.to(out.dtype)) ** 2).mean()

    t_proj = model.time_proj(t)
    with torch.no_grad():
        out = model(x, t, encoder_hidden_states=context).sample
        loss = l_simple(out)

    model64 = build_model(name, cfg, seed, UNet2DConditionModel).double()
    emb_dim = cfg["block_out_channels"][0]
    t_proj64 = sinusoidal_embedding_f64(t, emb_dim, cfg["flip_sin_to_cos"], cfg["freq_shift"])
    assert torch.allclose(t_proj64, t_proj.double(), atol=1e-4), "float64 embedding disagrees with diffusers"
    model64.time_proj.forward = lambda ts: sinusoidal_embedding_f64(ts, emb_dim, cfg["flip_sin_to_cos"], cfg["freq_shift"])
    model64.zero_grad()
    x64 = x.double().requires_grad_(True)
    context64 = context.double().requires_grad_(True)
    with float64_softmax(cfg.get("addition_embed_type") is not None):
        out64 = model64(x64, t, encoder_hidden_states=context64).sample
        loss64 = l_simple(out64)
        loss64.backward()
    assert torch.allclose(out64.float(), out, rtol=1e-3, atol=1e-4), "float32 and float64 forwards disagree"
    assert context64.grad.abs().max() > 1e-8, "the context got no gradient"

    tensors = {
        "x": x,
        "x_nhwc": nhwc(x),
        "timesteps": t.to(torch.float64),  # integers stored as F64 (the C++ loader has no I64)
        "encoder_hidden_states": context,  # [N, L, D]: the same layout in both engines
        "noise": noise,
        "noise_nhwc": nhwc(noise),
        "t_proj": t_proj.detach(),
        "t_proj_f64": t_proj64,
        "out": out,
        "out_nhwc": nhwc(out),
        "out_f64": out64.detach(),
        "out_f64_nhwc": nhwc(out64.detach()),
        "loss": loss.reshape(1),
        "loss_f64": loss64.detach().reshape(1),
        # d loss_f64 / d input, float64 backward rounded to float32 like the parameters'.
        "grad_x_nhwc": nhwc(x64.grad.detach()).float(),
        "grad_encoder_hidden_states": context64.grad.detach().float(),
    }
    n_grad = 0
    for pname, p in model64.named_parameters():
        # The attention pooling's key bias adds q . b_k to every score of a query alike, and a
        # softmax does not see a constant shift: its gradient is zero up to roundoff.
        if not pname.endswith("pool.k_proj.bias"):
            assert p.grad.abs().max() > 1e-8, f"parameter {pname} got no gradient"
        tensors["grad." + pname] = p.grad.detach().float().contiguous()
        n_grad += 1
    meta = {"reference": json.dumps({"model": name, "loss": "mean((out - noise)^2)",
                                     "call": "model(x, timesteps, encoder_hidden_states=encoder_hidden_states)",
                                     "versions": VERSIONS}, sort_keys=True)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "io.safetensors"), metadata=meta)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params} parameters in {n_grad} tensors, loss {loss.item():.6f} (f64 {loss64.item():.12f})")


# --------------------------------------------------------------------------------------
# Schedulers
# --------------------------------------------------------------------------------------


def betas_f64(beta_schedule, T):
    """diffusers' beta formulas evaluated in float64 (diffusers stores them in float32)."""
    if beta_schedule == "linear":
        return torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    # betas_for_alpha_bar(T, max_beta=0.999, "cosine"): alpha_bar(t) = cos^2((t + 0.008) /
    # 1.008 pi/2) on the grid t = i/T, i = 0..T; beta_i = min(1 - abar((i+1)/T)/abar(i/T), 0.999).
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64)


def to_float64(sched, beta_schedule):
    """Replaces the scheduler's float32 tables by the same formulas in float64, after checking
    that rounding them to float32 gives diffusers' own tables."""
    b64 = betas_f64(beta_schedule, sched.config.num_train_timesteps)
    b32 = sched.betas
    max_ulps = ((b64.float() - b32).abs() / torch.finfo(torch.float32).eps / b32).max().item()
    assert max_ulps <= 1.0, f"{beta_schedule}: float64 betas differ from diffusers' by {max_ulps} ulp"
    sched.betas = b64
    sched.alphas = 1.0 - b64
    sched.alphas_cumprod = torch.cumprod(sched.alphas, dim=0)
    sched.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return sched


def flat(x):
    return [float(v) for v in x.reshape(-1).tolist()]


def step_inputs(gen, abar, shape):
    """A plausible x_t and eps-prediction: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps with x0
    uniform in [-1.2, 1.2] (so clipping to [-1, 1] sometimes acts) and the prediction eps
    plus noise."""
    x0 = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2.4) - 1.2
    eps = torch.randn(shape, generator=gen, dtype=torch.float64)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    model_output = eps + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
    return xt, model_output


STEP_SHAPE = (2, 3, 4, 4)


def ddpm_fixtures(beta_schedule, gen):
    kw = dict(num_train_timesteps=T_TRAIN, beta_schedule=beta_schedule, variance_type="fixed_small",
              prediction_type="epsilon")
    native = DDPMScheduler(clip_sample=True, **kw)
    betas32, abar32 = native.betas.clone(), native.alphas_cumprod.clone()
    sched = to_float64(DDPMScheduler(clip_sample=True, **kw), beta_schedule)
    unclipped = to_float64(DDPMScheduler(clip_sample=False, **kw), beta_schedule)
    learned = to_float64(DDPMScheduler(clip_sample=True, **dict(kw, variance_type="learned_range")), beta_schedule)

    posterior_variance = [float(sched._get_variance(t)) for t in range(T_TRAIN)]
    steps = []
    for t in [0, 1, 250, 500, 999]:
        xt, eps = step_inputs(gen, sched.alphas_cumprod[t], STEP_SHAPE)
        seed = 1000 + t
        res = sched.step(eps, t, xt, generator=torch.Generator().manual_seed(seed))
        # The same draw the step made (randn_tensor with the same seeded generator).
        z = randn_tensor(STEP_SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        std = sched._get_variance(t) ** 0.5 if t > 0 else torch.tensor(0.0, dtype=torch.float64)
        mean = res.prev_sample - std * z
        x0_unclipped = unclipped.step(eps, t, xt, generator=torch.Generator().manual_seed(seed)).pred_original_sample
        var_values = torch.rand(STEP_SHAPE, generator=gen, dtype=torch.float64) * 2 - 1
        entry = {
            "t": t,
            "shape": list(STEP_SHAPE),
            "sample": flat(xt),
            "model_output": flat(eps),
            "noise": flat(z),
            "pred_original_sample": flat(res.pred_original_sample),  # clipped to [-1, 1]
            "pred_original_sample_unclipped": flat(x0_unclipped),
            "prev_sample_mean": flat(mean),  # prev_sample - sqrt(variance) * noise
            "prev_sample": flat(res.prev_sample),
            "var_values": flat(var_values),
        }
        if t > 0:  # diffusers' learned_range log variance (at t = 0 it takes log(1e-20))
            entry["learned_range_log_variance"] = flat(learned._get_variance(t, predicted_variance=var_values))
        steps.append(entry)
    return {
        "config": {k: native.config[k] for k in ["num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                                                  "variance_type", "clip_sample", "clip_sample_range",
                                                  "prediction_type"]},
        "betas": flat(sched.betas),
        "alphas_cumprod": flat(sched.alphas_cumprod),
        "posterior_variance": posterior_variance,
        "betas_float32": flat(betas32.double()),
        "alphas_cumprod_float32": flat(abar32.double()),
        "steps": steps,
    }


def ddim_fixtures(beta_schedule, gen):
    out = {}
    for spacing in ["trailing", "leading"]:
        sched = to_float64(
            DDIMScheduler(num_train_timesteps=T_TRAIN, beta_schedule=beta_schedule, clip_sample=True,
                          set_alpha_to_one=True, steps_offset=0, timestep_spacing=spacing,
                          prediction_type="epsilon"), beta_schedule)
        sched.set_timesteps(50)
        ts = [int(v) for v in sched.timesteps]
        steps = []
        # The first step, one in the middle and the last (prev_t < 0: alpha_bar_prev = 1).
        for t in [ts[0], ts[25], ts[-1]]:
            xt, eps = step_inputs(gen, sched.alphas_cumprod[t], STEP_SHAPE)
            z = torch.randn(STEP_SHAPE, generator=gen, dtype=torch.float64)
            plain = sched.step(eps, t, xt, eta=0.0)
            reclipped = sched.step(eps, t, xt, eta=0.0, use_clipped_model_output=True)
            noisy = sched.step(eps, t, xt, eta=1.0, use_clipped_model_output=True, variance_noise=z)
            steps.append({
                "t": t,
                "prev_t": t - T_TRAIN // 50,
                "shape": list(STEP_SHAPE),
                "sample": flat(xt),
                "model_output": flat(eps),
                "pred_original_sample": flat(plain.pred_original_sample),  # clipped
                # eta = 0, diffusers' default: the direction term uses the model's eps as given.
                "prev_sample": flat(plain.prev_sample),
                # eta = 0, use_clipped_model_output=True: eps recomputed from the clipped x0
                # (improved-diffusion's DDIM).
                "prev_sample_clipped_eps": flat(reclipped.prev_sample),
                # eta = 1 with the given noise, eps recomputed from the clipped x0.
                "noise": flat(z),
                "prev_sample_eta1_clipped_eps": flat(noisy.prev_sample),
            })
        out[spacing] = {"num_inference_steps": 50, "timesteps": ts, "steps": steps}
    return out


def make_scheduler_fixtures():
    out_dir = os.path.join(OUT_DIR, "schedulers")
    os.makedirs(out_dir, exist_ok=True)
    for name, beta_schedule, seed in [("linear", "linear", 11), ("cosine", "squaredcos_cap_v2", 12)]:
        gen = torch.Generator().manual_seed(seed)
        doc = {
            "schedule": name,
            "diffusers_beta_schedule": beta_schedule,
            "versions": VERSIONS,
            "note": "float64 tables: diffusers' formulas with its float32 tables replaced by float64 ones; "
                    "*_float32: diffusers' own tables. Arrays of a step are flattened NCHW of 'shape'.",
            "ddpm": ddpm_fixtures(beta_schedule, gen),
            "ddim": ddim_fixtures(beta_schedule, gen),
        }
        path = os.path.join(out_dir, f"{name}.json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))  # repr floats: 17 significant digits round-trip
            f.write("\n")
        print(f"{path}: {os.path.getsize(path)} bytes")


FIXTURES = {
    "ddpm": lambda: make_model_fixtures("ddpm", MODELS["ddpm"], seed=1),
    "cond_scale_shift": lambda: make_model_fixtures("cond_scale_shift", MODELS["cond_scale_shift"], seed=2),
    "cross_attn": lambda: make_cross_attn_fixtures("cross_attn", CROSS_ATTN, seed=3),
    "cross_attn_pool": lambda: make_cross_attn_fixtures("cross_attn_pool", CROSS_ATTN_POOL, seed=4),
    "schedulers": make_scheduler_fixtures,
}


def main():
    names = sys.argv[1:] or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        sys.exit(f"make_reference.py: unknown fixture {', '.join(unknown)}; choose from {' '.join(FIXTURES)}")
    for name in names:
        FIXTURES[name]()


if __name__ == "__main__":
    main()
