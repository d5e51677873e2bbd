#!/usr/bin/env bash
# ControlNet end to end from the shell (ctest `cli.control`): usage
#   control_test.sh BIN_DIR WORK_DIR
# Trains a tiny class-conditional base on the 16x16 toy shapes with ddpm-train, a ControlNet on
# it with ddpm-control train (edges hint), checks that a resumed control run is bit-identical
# to an uninterrupted one and that the base's files are untouched, samples with ddpm-sample
# --control from a PNG and from the base's own samples.npz (ddim, ddpm, heun, guidance),
# checks that --control-scale 0 reproduces the base's samples byte for byte, runs ddpm-control
# eval (table, --json, --out; each sample given its image's label), trains and samples
# ControlNets on an EDM and a latent base (a base whose autoencoder was swapped is refused),
# trains one with --posthoc-ema, exports a post-hoc EMA with ddpm-export and samples and evaluates
# it, stops one with SIGTERM and resumes it, and that the combinations that make no sense exit 2
# with one error line.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" control_test

tiny=("${tiny_model[@]}" --class-cond --diffusion-steps 40 --num-samples 2 --sample-steps 4)
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --save-every 2 --out "$work/base" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-train (base)"
sha_before=$(sha256sum "$work/base/checkpoints/step_2/ema.safetensors")
common=(--data toy --toy-count 16 --batch-size 4 --lr 1e-3 --log-every 1 --device cpu)
ctrl=(--base "$work/base" --hint edges "${common[@]}")
"$bin/ddpm-control" train "${ctrl[@]}" --steps 3 --save-every 1 --out "$work/ctrl" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-control train"
grep -q '"architecture": "controlnet"' "$work/ctrl/config.json" || fail "config.json does not name the architecture"
grep -q '"hint": "edges"' "$work/ctrl/config.json" || fail "config.json does not record the hint"
grep -q '"schedule_sampler": "uniform"' "$work/ctrl/config.json" || fail "config.json does not record the t sampler"
[ -f "$work/ctrl/checkpoints/step_3/ema.safetensors" ] || fail "no step_3 checkpoint"
grep -aq controlnet_mid_block "$work/ctrl/checkpoints/step_3/model.safetensors" || fail "no ControlNet tensor names"
if grep -aq up_blocks "$work/ctrl/checkpoints/step_3/model.safetensors"; then fail "the base's up path was saved"; fi
[ "$(sha256sum "$work/base/checkpoints/step_2/ema.safetensors")" = "$sha_before" ] || fail "the base was modified"

# Resume is bit-identical: 2 steps + 1 resumed step against 3 uninterrupted steps.
"$bin/ddpm-control" train "${ctrl[@]}" --steps 2 --save-every 1 --out "$work/ctrl_split" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control train (2 steps)"
"$bin/ddpm-control" train "${ctrl[@]}" --steps 3 --save-every 1 --resume latest --out "$work/ctrl_split" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-control train --resume latest"
for f in model.safetensors ema.safetensors optimizer.safetensors; do
  cmp -s "$work/ctrl/checkpoints/step_3/$f" "$work/ctrl_split/checkpoints/step_3/$f" \
    || fail "the resumed control run's step_3/$f differs from the uninterrupted run's"
done
# Metrics as ddpm-train writes them: a header and one line per step (--log-every 1), loss.png.
for d in ctrl ctrl_split; do
  [ "$(wc -l <"$work/$d/metrics.csv")" = 4 ] && [ "$(wc -l <"$work/$d/metrics.jsonl")" = 3 ] \
    || fail "$d: metrics.csv / metrics.jsonl do not hold one line per step"
  [ -f "$work/$d/loss.png" ] || fail "$d: no loss.png"
done
[ "$(cut -d, -f1-7 "$work/ctrl/metrics.csv")" = "$(cut -d, -f1-7 "$work/ctrl_split/metrics.csv")" ] \
  || fail "the resumed control run's metrics.csv differs from the uninterrupted run's"

# Sampling: hints from the base's own samples (npz) and from one PNG, with several samplers.
"$bin/ddpm-sample" --checkpoint "$work/base" --num-samples 3 --sampler ddim --sampling-steps 4 --device cpu \
  --out "$work/base_samples" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample (base)"
for sampler in ddim ddpm heun; do
  "$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl" --control-from "$work/base_samples/samples.npz" \
    --sampler "$sampler" --sampling-steps 4 --device cpu --out "$work/c_$sampler" >"$work/out.txt" 2>"$work/err.txt" \
    || fail "ddpm-sample --control with --sampler $sampler"
  grep -aq "'shape': (3, 16, 16, 1)" "$work/c_$sampler/samples.npz" || fail "$sampler: samples are not [3, 16, 16, 1]"
done
[ -f "$work/c_ddim/control.png" ] || fail "no control.png"
grep -q '"hint": "edges"' "$work/c_ddim/sample_info.json" || fail "sample_info.json has no control record"
"$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl" --control-image "$work/base_samples/images/000001.png" \
  --num-samples 2 --guidance-scale 2 --sampler ddim --sampling-steps 4 --device cpu --out "$work/c_png" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample --control-image --guidance-scale 2"
grep -aq "'shape': (2, 16, 16, 1)" "$work/c_png/samples.npz" || fail "--control-image samples are not [2, 16, 16, 1]"
# --control-scale 0: the base's own samples, byte for byte.
"$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl" --control-from "$work/base_samples/samples.npz" \
  --control-scale 0 --sampler ddim --sampling-steps 4 --device cpu --out "$work/c_zero" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-sample --control-scale 0"
"$bin/ddpm-sample" --checkpoint "$work/base" --num-samples 3 --sampler ddim --sampling-steps 4 --device cpu \
  --out "$work/plain3" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample (plain)"
cmp -s "$work/c_zero/samples.npz" "$work/plain3/samples.npz" || fail "--control-scale 0 differs from the base"

# Post-hoc EMA (posthoc_flags.h): snapshots of the ControlNet alone, an export by ddpm-export
# --posthoc-ema that ddpm-sample --control and ddpm-control eval take like the run.
ph=(--posthoc-ema 0.05,0.10 --posthoc-snapshot-every 1)
"$bin/ddpm-control" train "${ctrl[@]}" "${ph[@]}" --steps 3 --save-every 3 --out "$work/ctrl_ph" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control train --posthoc-ema"
for s in 1 2 3; do [ -f "$work/ctrl_ph/posthoc/step_$s.safetensors" ] || fail "no post-hoc EMA snapshot of step $s"; done
[ -f "$work/ctrl_ph/checkpoints/step_3/power_ema.safetensors" ] || fail "the control checkpoint lacks the power EMAs"
grep -aq "phema1.controlnet_mid_block" "$work/ctrl_ph/posthoc/step_3.safetensors" || fail "no ControlNet tensors in the snapshot"
if grep -aq up_blocks "$work/ctrl_ph/posthoc/step_3.safetensors"; then fail "the base was snapshotted"; fi
"$bin/ddpm-export" --checkpoint "$work/ctrl_ph" --posthoc-ema 0.08 --out "$work/ctrl_ph_0.08" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-export --posthoc-ema of a control run"
grep -q "at step 3 from 3 snapshots: 6 coefficients" "$work/out.txt" && grep -q "ControlNet parameters" "$work/out.txt" \
  || fail "ddpm-export did not report the ControlNet reconstruction: $(cat "$work/out.txt")"
grep -q '"architecture": "controlnet"' "$work/ctrl_ph_0.08/config.json" || fail "the export is no ControlNet folder"
"$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl_ph_0.08" --control-from "$work/base_samples/samples.npz" \
  --sampler ddim --sampling-steps 4 --device cpu --out "$work/c_ph" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-sample --control of the post-hoc export"
grep -aq "'shape': (3, 16, 16, 1)" "$work/c_ph/samples.npz" || fail "post-hoc export samples are not [3, 16, 16, 1]"
"$bin/ddpm-control" eval --control "$work/ctrl_ph_0.08" --limit 2 --sampling-steps 4 --device cpu >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control eval of the post-hoc export"
refused "not empty" "$bin/ddpm-export" --checkpoint "$work/ctrl_ph" --posthoc-ema 0.08 --out "$work/ctrl_ph_0.08"
refused "sigma_rel must be in" "$bin/ddpm-export" --checkpoint "$work/ctrl_ph" --posthoc-ema 0.4 --out "$work/r14"
refused "probe does not apply" "$bin/ddpm-export" --checkpoint "$work/ctrl_ph" --posthoc-ema 0.08 \
  --probe "$work/p.safetensors" --out "$work/r15"
[ ! -e "$work/r14" ] && [ ! -e "$work/r15" ] || fail "a refused export left its --out behind"
refused "needs --posthoc-ema" "$bin/ddpm-control" train "${ctrl[@]}" --posthoc-snapshot-every 2 --steps 1 --out "$work/r16"
rc=0
"$bin/ddpm-export" --checkpoint "$work/ctrl" --posthoc-ema 0.08 --out "$work/r17" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 1 ] && grep -q "has no posthoc/ folder" "$work/err.txt" || fail "a control run without snapshots: status $rc"
# Stopped by SIGTERM with snapshots too rare to fall on the stopping step: status 143, a
# checkpoint and a snapshot of that step, and the resumed run's export mixes it with the last.
"$bin/ddpm-control" train "${ctrl[@]}" --posthoc-ema 0.05,0.10 --posthoc-snapshot-every 100000 --save-every 100000 \
  --steps 100000 --out "$work/ctrl_stop" >"$work/stop.txt" 2>"$work/err.txt" &
pid=$!
for _ in $(seq 600); do  # up to 60 s for the first logged step
  grep -q '^ddpm-control: step [0-9]' "$work/stop.txt" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "ddpm-control train ended before the signal"
  sleep 0.1
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 143 ] || fail "ddpm-control train stopped by SIGTERM: exit status $rc, expected 143"
line=$(grep "stopped by SIGTERM after step" "$work/stop.txt") || fail "no 'stopped by SIGTERM' line"
step=$(sed -E 's/.*after step ([0-9]+);.*/\1/' <<<"$line")
[ -d "$work/ctrl_stop/checkpoints/step_$step" ] || fail "the stop wrote no checkpoint step_$step"
[ "$(ls "$work/ctrl_stop/posthoc")" = "step_$step.safetensors" ] ||
  fail "the stop wrote no post-hoc EMA snapshot of step $step alone: $(ls "$work/ctrl_stop/posthoc")"
"$bin/ddpm-control" train "${ctrl[@]}" --posthoc-ema 0.05,0.10 --posthoc-snapshot-every 100000 --save-every 100000 \
  --steps $((step + 1)) --resume latest --out "$work/ctrl_stop" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "resuming the stopped control run"
"$bin/ddpm-export" --checkpoint "$work/ctrl_stop" --posthoc-ema 0.08 --out "$work/ctrl_stop_ema" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-export --posthoc-ema after the stop"
grep -q "at step $((step + 1)) from 2 snapshots" "$work/out.txt" || fail "the export did not use the stop's snapshot"

# ddpm-control eval: the table, the JSON line and eval.png / eval.json.
"$bin/ddpm-control" eval --control "$work/ctrl" --limit 3 --sampling-steps 4 --device cpu >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control eval"
grep -q "baseline (scale 0)" "$work/out.txt" && grep -q "unrelated data pairs" "$work/out.txt" \
  || fail "ddpm-control eval printed no table"
"$bin/ddpm-control" eval --control "$work/ctrl" --limit 3 --sampling-steps 4 --json --out "$work/eval" --device cpu \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-control eval --json --out"
grep -q '"unrelated":{"edge_f1"' "$work/out.txt" || fail "ddpm-control eval --json printed no scores"
[ -f "$work/eval/eval.png" ] && [ -f "$work/eval/eval.json" ] || fail "ddpm-control eval --out wrote no eval.png / eval.json"
grep -q '"labels_from": "images"' "$work/eval/eval.json" || fail "eval did not condition on the images' labels"
refused "not empty" "$bin/ddpm-control" eval --control "$work/ctrl" --limit 3 --out "$work/eval" --device cpu
refused "limit must be >= 2" "$bin/ddpm-control" eval --control "$work/ctrl" --limit 1 --out "$work/r_eval" --device cpu
[ ! -e "$work/r_eval" ] || fail "a refused ddpm-control eval left its --out behind"

# Refusals.
refused "already holds a run" "$bin/ddpm-control" train "${ctrl[@]}" --steps 3 --out "$work/ctrl"
"$bin/ddpm-control" train "${ctrl[@]}" --steps 1 --overwrite --out "$work/ctrl_split" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control train --overwrite"
ls -d "$work"/ctrl_split.replaced-* >/dev/null 2>&1 || fail "--overwrite did not move the old run aside"
[ -f "$work/ctrl_split/checkpoints/step_1/model.safetensors" ] && [ ! -d "$work/ctrl_split/checkpoints/step_3" ] \
  || fail "--overwrite did not start a new run"
refused "different configuration" "$bin/ddpm-control" train --base "$work/base" "${common[@]}" --hint lowres:4 --steps 4 --resume latest \
  --out "$work/ctrl"
refused "schedule-sampler must be" "$bin/ddpm-control" train "${ctrl[@]}" --schedule-sampler bogus --steps 1 \
  --out "$work/r12"
refused "unknown hint" "$bin/ddpm-control" train --base "$work/base" "${common[@]}" --hint canny --steps 1 --out "$work/r1"
refused "add --pad-to-32\|makes 16x16" "$bin/ddpm-control" train "${ctrl[@]}" --pad-to-32 --steps 1 --out "$work/r2"
refused "unknown subcommand" "$bin/ddpm-control" tran
"$bin/ddpm-train" "${tiny_model[@]}" --class-cond --diffusion-steps 30 --sample-steps 5 --steps 1 --save-every 1 --out "$work/other" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-train (other base)"
refused "differs from --checkpoint" "$bin/ddpm-sample" --checkpoint "$work/other" --control "$work/ctrl" \
  --control-from "$work/base_samples/samples.npz" --device cpu --out "$work/r3"
refused "the model makes 16x16" "$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl" \
  --control-image "$work/c_ddim/control.png" --device cpu --out "$work/r4"
refused "finite" "$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl" \
  --control-from "$work/base_samples/samples.npz" --control-scale nan --device cpu --out "$work/r5"
refused "exactly one of" "$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl" --device cpu --out "$work/r6"
refused "need --control" "$bin/ddpm-sample" --checkpoint "$work/base" --control-image "$work/c_ddim/control.png" \
  --device cpu --out "$work/r7"
"$bin/ddpm-train" "${tiny_model[@]}" --objective edm --steps 1 --save-every 1 --out "$work/edm" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-train --objective edm"
# An EDM base: the ControlNet trains with the EDM loss and samples through the EDM path (heun).
"$bin/ddpm-control" train --base "$work/edm" "${common[@]}" --steps 1 --out "$work/ctrl_edm" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control train on an EDM base"
"$bin/ddpm-sample" --checkpoint "$work/edm" --control "$work/ctrl_edm" --control-from "$work/base_samples/samples.npz" \
  --sampling-steps 4 --device cpu --out "$work/c_edm" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-sample --control with an EDM base"
grep -q '"sampler": "heun"' "$work/c_edm/sample_info.json" || fail "the EDM base was not sampled with heun"
# A latent base (autoencoder f = 2): pixel hints, stride-2 hint embedding, decoded samples.
"$bin/ddpm-autoencoder" train --data toy --steps 2 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train"
"$bin/ddpm-train" "${tiny_model[@]}" --autoencoder "$work/ae" --diffusion-steps 40 --steps 2 --save-every 2 \
  --num-samples 2 --sample-steps 4 --out "$work/latent" >"$work/out.txt" 2>"$work/err.txt" || fail "latent training"
"$bin/ddpm-control" train --base "$work/latent" "${common[@]}" --steps 2 --out "$work/ctrl_latent" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control train on a latent base"
grep -q '"hint_downsampling_factor": 2' "$work/ctrl_latent/config.json" || fail "the latent control run has no factor"
"$bin/ddpm-sample" --checkpoint "$work/latent" --control "$work/ctrl_latent" \
  --control-from "$work/base_samples/samples.npz" --sampler ddim --sampling-steps 4 --device cpu --out "$work/c_latent" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample --control with a latent base"
grep -aq "'shape': (3, 16, 16, 1)" "$work/c_latent/samples.npz" || fail "latent controlled samples are not [3, 16, 16, 1]"
"$bin/ddpm-control" eval --control "$work/ctrl_latent" --limit 2 --sampling-steps 4 --device cpu >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-control eval on a latent base"
refused "differs from --checkpoint" "$bin/ddpm-sample" --checkpoint "$work/base" --control "$work/ctrl_latent" \
  --control-from "$work/base_samples/samples.npz" --device cpu --out "$work/r11"
# The latent base with another autoencoder of the same config in its folder: refused by both.
"$bin/ddpm-autoencoder" train --data toy --steps 2 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --seed 5 --out "$work/ae2" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-autoencoder train (a second one)"
cp -r "$work/latent" "$work/latent_swapped"
rm -r "$work/latent_swapped/autoencoder"
cp -r "$work/ae2" "$work/latent_swapped/autoencoder"
refused "decodes with a different one" "$bin/ddpm-sample" --checkpoint "$work/latent_swapped" \
  --control "$work/ctrl_latent" --control-from "$work/base_samples/samples.npz" --device cpu --out "$work/r13"
refused "decodes with a different one" "$bin/ddpm-control" eval --control "$work/ctrl_latent" \
  --checkpoint "$work/latent_swapped" --limit 2 --device cpu
refused "is a ddpm-control run" "$bin/ddpm-export" --checkpoint "$work/ctrl" --out "$work/r9"
refused "is a ddpm-control run" "$bin/ddpm-sample" --checkpoint "$work/ctrl" --device cpu --out "$work/r10"
echo "control_test: OK"
