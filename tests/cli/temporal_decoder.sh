#!/usr/bin/env bash
# The temporal decoder of latent video from the shell (ctest `cli.temporal_decoder`): usage
#   temporal_decoder.sh BIN_DIR WORK_DIR
# A tiny image autoencoder on moving-toy first frames (16x16x1, f = 2), ddpm-autoencoder
# finetune-temporal on clips of 3 frames (encoder frozen: its weights stay those of the
# image autoencoder), a tiny latent video run of 3-frame clips on the image autoencoder,
# ddpm-sample --decoder (clip-wise decoding, recorded in sample_info.json), the same with
# first-frame conditioning (--first-frame-from: the clip decoder decodes the video stage, the
# image stage keeps the run's image decoder), and the
# refusals: another autoencoder's decoder, the run's own image autoencoder as --decoder, a
# decoder of another clip length, --decoder on a pixel-space run, an existing --out.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" temporal_decoder

tiny_ae=(--data moving-toy --canvas 16 --item-size 8 --steps 2 --batch-size 8 --base-channels 8 --channel-mult 1,2
         --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu)
"$bin/ddpm-autoencoder" train "${tiny_ae[@]}" --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train"
"$bin/ddpm-autoencoder" train "${tiny_ae[@]}" --seed 7 --out "$work/ae_other" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train (a second autoencoder)"

tune=(--data moving-toy --canvas 16 --item-size 8 --steps 2 --batch-size 2 --lr 1e-2 --log-every 1 --device cpu)
"$bin/ddpm-autoencoder" finetune-temporal --from "$work/ae" "${tune[@]}" --frames 3 --out "$work/dec3" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-autoencoder finetune-temporal --frames 3"
grep -q 'encoder frozen, training decoder' "$work/out.txt" || fail "the log does not say what trains"
grep -q '"temporal_frames": 3' "$work/dec3/config.json" || fail "config.json does not record temporal_frames 3"
grep -q '"train_only": "decoder"' "$work/dec3/config.json" || fail "config.json does not record --train-only"
"$bin/ddpm-autoencoder" finetune-temporal --from "$work/ae" "${tune[@]}" --frames 4 --train-only temporal \
  --out "$work/dec4" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-autoencoder finetune-temporal --frames 4"
"$bin/ddpm-autoencoder" finetune-temporal --from "$work/ae_other" "${tune[@]}" --frames 3 --out "$work/dec_other" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-autoencoder finetune-temporal from the second autoencoder"

refused "--out .* exists" "$bin/ddpm-autoencoder" finetune-temporal --from "$work/ae" "${tune[@]}" --frames 3 \
  --out "$work/dec3"
refused "already has a temporal decoder" "$bin/ddpm-autoencoder" finetune-temporal --from "$work/dec3" "${tune[@]}" \
  --frames 3 --out "$work/refused"
refused "--data must be moving-toy" "$bin/ddpm-autoencoder" finetune-temporal --from "$work/ae" --data toy \
  --frames 3 --steps 1 --out "$work/refused"
[ ! -e "$work/refused" ] || fail "a refused fine-tuning left $work/refused behind"

clips=(--canvas 16 --item-size 8 --frames 3)
tiny_video=("${tiny_model[@]/#toy/moving-toy}" "${clips[@]}" --save-every 2 --num-samples 2 --sample-steps 2)
"$bin/ddpm-train" "${tiny_video[@]}" --autoencoder "$work/ae" --steps 2 --out "$work/run" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --data moving-toy --autoencoder"
# A temporal decoder is for sampling only: a run trains on the image autoencoder.
refused "has a temporal decoder" "$bin/ddpm-train" "${tiny_video[@]}" --autoencoder "$work/dec3" --steps 2 \
  --out "$work/refused"
[ ! -e "$work/refused" ] || fail "a refused ddpm-train left $work/refused behind"

sample=(--checkpoint "$work/run" --num-samples 2 --sampler ddim --sampling-steps 2 --device cpu)
"$bin/ddpm-sample" "${sample[@]}" --out "$work/plain" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample"
"$bin/ddpm-sample" "${sample[@]}" --decoder "$work/dec3" --out "$work/s" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-sample --decoder"
grep -aq "'descr': '|u1'.*'shape': (2, 3, 16, 16, 1)" "$work/s/samples.npz" ||
  fail "samples.npz arr_0 is not uint8 [2, 3, 16, 16, 1]"
grep -q "\"folder\": \"$work/dec3\"" "$work/s/sample_info.json" || fail "sample_info.json does not record the decoder"
grep -q '"decoder": null' "$work/plain/sample_info.json" || fail "a plain sample records a decoder"
# The same latents (same seed), a different decoder: the pixels differ.
cmp -s "$work/plain/samples.npz" "$work/s/samples.npz" && fail "--decoder changed nothing in the decoded clips"

# First-frame conditioning (--first-frame-from): a latent image run and a first-frame-conditioned
# latent video run on the same autoencoder. With --decoder the video stage's clips go through
# the clip decoder and the image stage's first frames through the run's own image decoder: the
# first frames are the same bytes as without --decoder (same seed), the clips are not.
"$bin/ddpm-train" "${tiny_model[@]/#toy/moving-toy}" --canvas 16 --item-size 8 --frames 1 --autoencoder "$work/ae" \
  --steps 1 --save-every 1 --num-samples 2 --sample-steps 2 --out "$work/image" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-train of the latent image run"
"$bin/ddpm-train" "${tiny_video[@]}" --first-frame-condition --autoencoder "$work/ae" --steps 2 --out "$work/ffc" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --first-frame-condition --autoencoder"
ffc=(--checkpoint "$work/ffc" --first-frame-from "$work/image" --num-samples 2 --batch-size 2 --sampler ddim
     --sampling-steps 2 --device cpu)
"$bin/ddpm-sample" "${ffc[@]}" --out "$work/ffc_plain" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-sample --first-frame-from"
"$bin/ddpm-sample" "${ffc[@]}" --decoder "$work/dec3" --out "$work/ffc_dec" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-sample --first-frame-from --decoder"
grep -aq "'shape': (2, 3, 16, 16, 1)" "$work/ffc_dec/samples.npz" || fail "--first-frame-from --decoder: not 2 clips of 3 frames"
python3 - "$work/ffc_dec/sample_info.json" "$work/ffc_plain/sample_info.json" "$work/dec3" <<'PY' ||
import json, sys
dec, plain = (json.load(open(p)) for p in sys.argv[1:3])
assert dec["decoder"]["folder"] == sys.argv[3], dec["decoder"]            # the video stage: the clip decoder
assert dec["video"]["image_stage"]["sample_info"]["decoder"] is None, dec  # the image stage: the run's own
assert plain["decoder"] is None, plain["decoder"]
PY
  fail "--first-frame-from: sample_info.json does not record the clip decoder for the video stage alone"
cmp -s "$work/ffc_plain/first_frames/samples.npz" "$work/ffc_dec/first_frames/samples.npz" ||
  fail "--decoder changed the image stage's first frames (they are decoded by the run's image decoder)"
cmp -s "$work/ffc_plain/samples.npz" "$work/ffc_dec/samples.npz" &&
  fail "--first-frame-from --decoder: the clips are the image decoder's (the clip decoder was not used)"

refused "does not match the run's autoencoder" "$bin/ddpm-sample" "${sample[@]}" --decoder "$work/dec_other" \
  --out "$work/refused"
refused "does not match the run's autoencoder" "$bin/ddpm-sample" "${sample[@]}" --decoder "$work/ae_other" \
  --out "$work/refused"
refused "an image decoder" "$bin/ddpm-sample" "${sample[@]}" --decoder "$work/ae" --out "$work/refused"
refused "decodes clips of 4 frames" "$bin/ddpm-sample" "${sample[@]}" --decoder "$work/dec4" --out "$work/refused"
"$bin/ddpm-train" "${tiny_model[@]}" --steps 1 --save-every 1 --out "$work/pixel" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-train (pixel space)"
refused "is a pixel-space model" "$bin/ddpm-sample" --checkpoint "$work/pixel" --num-samples 1 --sampler ddim --sampling-steps 2 \
  --device cpu --decoder "$work/dec3" --out "$work/refused"
[ ! -e "$work/refused" ] || fail "a refused ddpm-sample left $work/refused behind"
echo "temporal_decoder: ok"
