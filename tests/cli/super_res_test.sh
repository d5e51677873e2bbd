#!/usr/bin/env bash
# Cascaded diffusion end to end from the shell (ctest `cli.super_res`): usage
#   super_res_test.sh BIN_DIR WORK_DIR
# Trains a tiny class-conditional base model on the 16x16 toy shapes and a tiny
# super-resolution model (--super-res 16) on the same shapes padded to 32x32, samples the base,
# feeds its samples.npz to the SR model (the cascade: npz uint8 [N, 32, 32, 1], low_res.png,
# sample_info.json "low_res") with several samplers and classifier-free guidance, upsamples a
# single PNG, checks that a resumed SR run is bit-identical to an uninterrupted one, trains with
# conditioning augmentation (--cond-augment: 0 is bit-identical to no flag, resume is
# bit-identical, --low-res-noise-level is deterministic and matters), that the one-call cascade
# (--low-res-from) equals the two commands, that an SR model takes an SR autoguide, and that the
# combinations that make no sense exit 2 with one error line.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" super_res_test

tiny=("${tiny_model[@]}" --class-cond --diffusion-steps 40 --num-samples 2 --sample-steps 4)
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --save-every 2 --out "$work/base" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-train (base)"
"$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --steps 2 --save-every 2 --out "$work/sr" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --super-res 16"
grep -q '"low_res_size": 16' "$work/sr/config.json" || fail "config.json does not record the low-res size"
[ -f "$work/sr/samples/step_2.png" ] || fail "no training sample grid of the SR run"

# Resume is bit-identical: 2 steps + 1 resumed step against 3 uninterrupted steps.
"$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --steps 3 --save-every 1 --out "$work/sr3" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --super-res 16 (3 steps)"
cp -r "$work/sr" "$work/sr_resumed"
"$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --steps 3 --save-every 1 --resume latest \
  --out "$work/sr_resumed" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --super-res 16 --resume latest"
for f in model.safetensors ema.safetensors; do
  cmp -s "$work/sr3/checkpoints/step_3/$f" "$work/sr_resumed/checkpoints/step_3/$f" \
    || fail "the resumed SR run's step_3/$f differs from the uninterrupted run's"
done

"$bin/ddpm-sample" --checkpoint "$work/base" --num-samples 3 --sampler ddim --sampling-steps 4 --device cpu \
  --out "$work/base_samples" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample (base)"
# samples.npz is stored uncompressed, so the npy headers are plain text.
grep -aq "'descr': '|u1'.*'shape': (3, 16, 16, 1)" "$work/base_samples/samples.npz" || fail "base samples are not [3, 16, 16, 1]"

# The cascade: every low-res image of the npz by default, with each sampler family.
for sampler in ddim ddpm heun euler dpm++2m euler-ancestral unipc dpm++2m-sde; do
  "$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/samples.npz" --sampler "$sampler" \
    --sampling-steps 4 --device cpu --out "$work/sr_$sampler" >"$work/out.txt" 2>"$work/err.txt" \
    || fail "ddpm-sample --low-res with --sampler $sampler"
  grep -aq "'descr': '|u1'.*'shape': (3, 32, 32, 1)" "$work/sr_$sampler/samples.npz" \
    || fail "$sampler: SR samples are not uint8 [3, 32, 32, 1]"
done
[ -f "$work/sr_ddim/low_res.png" ] || fail "no low_res.png"
grep -q '"low_res_size": 16' "$work/sr_ddim/sample_info.json" || fail "sample_info.json has no low_res record"
grep -q '"labels_from_low_res": true' "$work/sr_ddim/sample_info.json" || fail "the base samples' labels were not used"
# Classifier-free guidance doubles the batch inside the sampler; the condition must follow.
"$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/samples.npz" --num-samples 2 \
  --guidance-scale 2 --batch-size 2 --sampler ddim --sampling-steps 4 --device cpu --out "$work/sr_guided" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample --low-res --guidance-scale 2"
grep -aq "'shape': (2, 32, 32, 1)" "$work/sr_guided/samples.npz" || fail "guided SR samples are not [2, 32, 32, 1]"
# One PNG of the low resolution.
"$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/images/000001.png" --sampler ddim \
  --sampling-steps 4 --device cpu --out "$work/sr_png" >"$work/out.txt" 2>"$work/err.txt" || fail "--low-res PNG"
grep -aq "'shape': (1, 32, 32, 1)" "$work/sr_png/samples.npz" || fail "the PNG's SR sample is not [1, 32, 32, 1]"
# The diffusers export (UNet2DModel in_channels 1 + 1, our "_ddpm_super_res" record) re-opens
# as the same super-resolution model: the same samples, byte for byte.
"$bin/ddpm-export" --checkpoint "$work/sr" --out "$work/exported" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-export"
grep -q '"in_channels": 2' "$work/exported/config.json" || fail "the export's in_channels is not 1 + 1"
"$bin/ddpm-sample" --checkpoint "$work/exported" --low-res "$work/base_samples/samples.npz" --sampler ddim \
  --sampling-steps 4 --device cpu --out "$work/sr_exported" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the export"
cmp -s "$work/sr_exported/samples.npz" "$work/sr_ddim/samples.npz" || fail "the exported SR model samples differently"

# Conditioning augmentation (CDM sec. 3.2). --cond-augment 0 is today's SR training, bit for bit.
"$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --cond-augment 0 --steps 2 --save-every 2 \
  --out "$work/sr_aug0" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --cond-augment 0"
for f in model.safetensors ema.safetensors; do
  cmp -s "$work/sr/checkpoints/step_2/$f" "$work/sr_aug0/checkpoints/step_2/$f" \
    || fail "--cond-augment 0 changed step_2/$f"
done
if grep -q cond_augment "$work/sr_aug0/config.json"; then fail "--cond-augment 0 wrote a cond_augment record"; fi
# --cond-augment 0.5: recorded, and a resumed run is bit-identical to an uninterrupted one.
aug=("${tiny[@]}" --pad-to-32 --super-res 16 --cond-augment 0.5)
"$bin/ddpm-train" "${aug[@]}" --steps 2 --save-every 2 --out "$work/sra" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-train --cond-augment 0.5"
grep -q '"cond_augment": 0.5' "$work/sra/config.json" || fail "config.json does not record cond_augment"
"$bin/ddpm-train" "${aug[@]}" --steps 3 --save-every 1 --out "$work/sra3" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-train --cond-augment 0.5 (3 steps)"
cp -r "$work/sra" "$work/sra_resumed"
"$bin/ddpm-train" "${aug[@]}" --steps 3 --save-every 1 --resume latest --out "$work/sra_resumed" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --cond-augment 0.5 --resume latest"
for f in model.safetensors ema.safetensors; do
  cmp -s "$work/sra3/checkpoints/step_3/$f" "$work/sra_resumed/checkpoints/step_3/$f" \
    || fail "the resumed augmented run's step_3/$f differs from the uninterrupted run's"
done
# The cascade with a noised condition: deterministic for a seed, changed by the level.
for run in a b; do
  "$bin/ddpm-sample" --checkpoint "$work/sra" --low-res "$work/base_samples/samples.npz" --low-res-noise-level 0.2 \
    --sampler ddim --sampling-steps 4 --device cpu --out "$work/sra_$run" >"$work/out.txt" 2>"$work/err.txt" \
    || fail "ddpm-sample --low-res-noise-level 0.2 ($run)"
done
cmp -s "$work/sra_a/samples.npz" "$work/sra_b/samples.npz" || fail "--low-res-noise-level is not deterministic for a seed"
grep -q '"aug_level": 8' "$work/sra_a/sample_info.json" || fail "sample_info.json does not record level round(0.2 x 39)"
"$bin/ddpm-sample" --checkpoint "$work/sra" --low-res "$work/base_samples/samples.npz" --low-res-noise-level 0.5 \
  --sampler ddim --sampling-steps 4 --device cpu --out "$work/sra_c" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-sample --low-res-noise-level 0.5"
if cmp -s "$work/sra_a/samples.npz" "$work/sra_c/samples.npz"; then fail "the noise level does not change the samples"; fi
refused "without conditioning augmentation" "$bin/ddpm-sample" --checkpoint "$work/sr" \
  --low-res "$work/base_samples/samples.npz" --low-res-noise-level 0.2 --device cpu --out "$work/r9"
refused "must be in \[0, 0.5\]" "$bin/ddpm-sample" --checkpoint "$work/sra" \
  --low-res "$work/base_samples/samples.npz" --low-res-noise-level 0.7 --device cpu --out "$work/r10"
refused "super-resolution models only" "$bin/ddpm-sample" --checkpoint "$work/base" --low-res-noise-level 0.1 \
  --device cpu --out "$work/r11"
refused "needs --super-res" "$bin/ddpm-train" "${tiny[@]}" --cond-augment 0.2 --out "$work/r12"
refused "in \[0, 1\]" "$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --cond-augment 1.5 --out "$work/r13"
refused "aug_embedding" "$bin/ddpm-export" --checkpoint "$work/sra" --out "$work/r14"

expect_refusal "SR model without --low-res" "" "$bin/ddpm-sample" --checkpoint "$work/sr" --device cpu --out "$work/r1"
expect_refusal "--low-res for a base model" "" "$bin/ddpm-sample" --checkpoint "$work/base" \
  --low-res "$work/base_samples/samples.npz" --device cpu --out "$work/r2"
expect_refusal "--low-res of the wrong size" "" "$bin/ddpm-sample" --checkpoint "$work/sr" \
  --low-res "$work/sr_ddim/samples.npz" --device cpu --out "$work/r3"
expect_refusal "--num-samples above the low-res count" "" "$bin/ddpm-sample" --checkpoint "$work/sr" \
  --low-res "$work/base_samples/samples.npz" --num-samples 4 --device cpu --out "$work/r4"
expect_refusal "--inpaint with SR" "" "$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/samples.npz" \
  --inpaint "$work/base_samples/images/000000.png" --mask "$work/base_samples/images/000000.png" --device cpu \
  --out "$work/r5"
expect_refusal "bpd of an SR model" "" "$bin/ddpm-eval" bpd --checkpoint "$work/sr" --data toy --limit 2 --device cpu
expect_refusal "nll of an SR model" "" "$bin/ddpm-eval" nll --checkpoint "$work/sr" --data toy --limit 2 --device cpu
expect_refusal "ddpm-edit on an SR model" "" "$bin/ddpm-edit" img2img --checkpoint "$work/sr" \
  --images "$work/base_samples/samples.npz" --strength 0.5 --device cpu --out "$work/r8"
expect_refusal "--super-res with --autoencoder" "" "$bin/ddpm-train" "${tiny[@]}" --super-res 8 --autoencoder "$work/base" \
  --out "$work/r6"
expect_refusal "--super-res that does not divide" "" "$bin/ddpm-train" "${tiny[@]}" --super-res 5 --out "$work/r7"
for r in r1 r2 r3 r4 r5 r6 r8 r9 r10 r11 r12 r13 r14; do [ ! -e "$work/$r" ] || fail "a refused command left $work/$r behind"; done

# Blurring augmentation (blur_augment.h): trains and records its settings; refusals leave nothing.
"$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --blur-augment 0.5 --blur-sigma 0.4,0.8 --cond-augment 0.2 \
  --steps 2 --save-every 2 --out "$work/srb" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --blur-augment"
grep -q '"blur_augment": 0.5' "$work/srb/config.json" || fail "config.json does not record --blur-augment"
grep -q '"blur_augment": 0.0' "$work/sr/config.json" || fail "config.json of a run without blur does not record 0"
refused "needs --super-res" "$bin/ddpm-train" "${tiny[@]}" --blur-augment 0.5 --out "$work/r15"
refused "must be a probability in \[0, 1\]" "$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --blur-augment 1.5 \
  --out "$work/r16"
refused "0 < A <= B" "$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --blur-augment 0.5 --blur-sigma 0.6,0.4 \
  --out "$work/r17"
refused "--blur-sigma must be a range" "$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --blur-augment 0.5 \
  --blur-sigma 0.5 --out "$work/r18"
# A changed probability on resume: exit 2, the message lists the difference on its own line.
rc=0
"$bin/ddpm-train" "${tiny[@]}" --pad-to-32 --super-res 16 --blur-augment 0.25 --blur-sigma 0.4,0.8 --cond-augment 0.2 \
  --steps 3 --save-every 2 --resume latest --out "$work/srb" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 2 ] || fail "a resume with another --blur-augment: exit status $rc, expected 2"
grep -q 'train.blur_augment: 0.5 vs 0.25' "$work/err.txt" || fail "the refused resume does not name train.blur_augment"
[ ! -e "$work/srb/checkpoints/step_3" ] || fail "a refused resume wrote a checkpoint"
for r in r15 r16 r17 r18; do [ ! -e "$work/$r" ] || fail "a refused command left $work/$r behind"; done
# --low-res-blur (blur the low-res inputs before the upsample, as --blur-augment trained): 0 is
# bit-identical to no flag, a sigma changes the samples and is recorded; refusals exit 2.
"$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/samples.npz" --low-res-blur 0 --sampler ddim \
  --sampling-steps 4 --device cpu --out "$work/sr_blur0" >"$work/out.txt" 2>"$work/err.txt" || fail "--low-res-blur 0"
cmp -s "$work/sr_ddim/samples.npz" "$work/sr_blur0/samples.npz" || fail "--low-res-blur 0 changed the samples"
"$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/samples.npz" --low-res-blur 0.6 --sampler ddim \
  --sampling-steps 4 --device cpu --out "$work/sr_blur" >"$work/out.txt" 2>"$work/err.txt" || fail "--low-res-blur 0.6"
grep -q '"blur_sigma": 0.6' "$work/sr_blur/sample_info.json" || fail "sample_info.json does not record --low-res-blur"
grep -q '"blur_sigma": 0.0' "$work/sr_ddim/sample_info.json" || fail "sample_info.json without blur does not record 0"
! cmp -s "$work/sr_ddim/samples.npz" "$work/sr_blur/samples.npz" || fail "--low-res-blur 0.6 did not change the samples"
refused "--low-res-blur must be a blur sigma >= 0" "$bin/ddpm-sample" --checkpoint "$work/sr" \
  --low-res "$work/base_samples/samples.npz" --low-res-blur=-0.5 --device cpu --out "$work/r19"
refused "it needs --low-res" "$bin/ddpm-sample" --checkpoint "$work/sr" --low-res-blur 0.6 --device cpu --out "$work/r20"
for r in r19 r20; do [ ! -e "$work/$r" ] || fail "a refused command left $work/$r behind"; done
# The cascade in one call (--low-res-from, cascade_run.h): the base stage defaults to --sampler,
# --sampling-steps and --seed, so it must equal the two commands above file for file.
"$bin/ddpm-sample" --checkpoint "$work/sr" --low-res-from "$work/base" --num-samples 3 --sampler ddim \
  --sampling-steps 4 --device cpu --out "$work/cascade" >"$work/out.txt" 2>"$work/err.txt" || fail "--low-res-from"
cmp -s "$work/cascade/base/samples.npz" "$work/base_samples/samples.npz" || fail "the cascade's base/ differs from ddpm-sample's"
cmp -s "$work/cascade/base/grid.png" "$work/base_samples/grid.png" || fail "the cascade's base/grid.png differs"
cmp -s "$work/cascade/samples.npz" "$work/sr_ddim/samples.npz" || fail "the one-call cascade differs from the two commands"
grep -q '"base_stage"' "$work/cascade/sample_info.json" || fail "sample_info.json does not record the base stage"
refused "not both" "$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/samples.npz" \
  --low-res-from "$work/base" --device cpu --out "$work/r21"
refused "is itself a super-resolution model" "$bin/ddpm-sample" --checkpoint "$work/sr" --low-res-from "$work/sr3" \
  --device cpu --out "$work/r22"
refused "needs --low-res-from BASE" "$bin/ddpm-sample" --checkpoint "$work/sr" --low-res "$work/base_samples/samples.npz" \
  --base-seed 3 --device cpu --out "$work/r23"
# Autoguidance of an SR model by an earlier checkpoint of an SR run: w = 1 is the model alone.
"$bin/ddpm-sample" --checkpoint "$work/sr3" --autoguide "$work/sr3/checkpoints/step_1" --guidance-scale 1 \
  --low-res "$work/base_samples/samples.npz" --sampler ddim --sampling-steps 4 --device cpu --out "$work/sr_ag1" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "--autoguide with --low-res"
"$bin/ddpm-sample" --checkpoint "$work/sr3" --low-res "$work/base_samples/samples.npz" --sampler ddim \
  --sampling-steps 4 --device cpu --out "$work/sr3_plain" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling sr3"
cmp -s "$work/sr_ag1/samples.npz" "$work/sr3_plain/samples.npz" || fail "--autoguide at --guidance-scale 1 changed the samples"
refused "without conditioning augmentation" "$bin/ddpm-sample" --checkpoint "$work/sra" --autoguide "$work/sr" \
  --guidance-scale 2 --low-res "$work/base_samples/samples.npz" --device cpu --out "$work/r24"
for r in r21 r22 r23 r24; do [ ! -e "$work/$r" ] || fail "a refused command left $work/$r behind"; done
echo "super_res_test: ok"
