#!/usr/bin/env bash
# FAN v2.5 (issue 15): the v2.4 probe (training/probes/fan_v2_4) fine-tuned with the occluded-texel pixel
# term 1.5 -> 3.0 (training/configs/fan_v2_5.json), in two cosine cycles.
#
# The shipped weights were trained on a lent GPU (one H200, 16 CPU cores, three runs sharing it), on
# 1,500 packed training samples; here, in the repo root:
#   python training/pack_for_device.py pack --data /work/data/uv256/train --count 1500 \
#       --vgg ../shared/weights/vgg16_imagenet_lpips.safetensors --out device_pack
# there (device_pack carried), cycle 1 then cycle 2 on the same machine:
#   OUT=$OUT CONFIG=training/configs/fan_v2_5.json INIT=training/probes/fan_v2_4 MINUTES=7.3 BATCH=16 \
#       bash training/run_fan_gpu.sh g3
#   OUT=$OUT CONFIG=training/configs/fan_v2_5.json MINUTES=4.2 BATCH=16 \
#       bash training/run_fan_gpu.sh "g3b:lr_decay_steps=320,init_from=/tmp/runs/g3/final"
# (555 + 302 steps at batch 16). This script is the CPU fallback with the same number of samples
# (batch 8, all training samples; 1,110 + 604 steps, about 2 CPU-hours on 2 cores). Needs the 256x256
# UV samples and robust fits of training/run_fan_v2.sh. Each cycle resumes from RUN/state.
# FAN_V24 names another start (training/run_shipped.sh passes its own v2.4).
# Usage: [FAN_V24=training/probes/fan_v2_4] bash training/run_fan_v2_5.sh [DATA_ROOT=/work/data]
set -euo pipefail
D=${1:-/work/data}
HERE="$(dirname "$0")"
EXTRA="--set lr_decay_steps=1110" bash "$HERE/finetune_fan_256.sh" training/configs/fan_v2_5.json fan_v25_256 \
    "${FAN_V24:-training/probes/fan_v2_4}" "$D" 1110
[ -f "$D/runs/fan_v25_256/final/model.safetensors" ] || { echo "cycle 1 did not finish" >&2; exit 1; }
EXTRA="--set lr_decay_steps=604" bash "$HERE/finetune_fan_256.sh" training/configs/fan_v2_5.json fan_v25b_256 \
    "$D/runs/fan_v25_256/final" "$D" 604
