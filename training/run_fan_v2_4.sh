#!/usr/bin/env bash
# FAN v2.4 probe (issue 15): FAN v2.3 fine-tuned with the occluded-texel pixel term 0.5 -> 1.5 and the
# learning rates decayed along a half cosine to a tenth (lr_decay_steps), so the last checkpoint, not a
# lucky one, is the result (training/configs/fan_v2_4.json): cycle 1, 800 steps from v2.3
# (runs/fan_v24_256), then cycle 2, 600 more steps from cycle 1's final weights with a fresh decay
# (runs/fan_v24b_256). Pass v2.3's folder as FAN_V23 (checkpoints/fan at commit cbac722). Needs the
# 256x256 UV samples and robust fits of training/run_fan_v2.sh. Each cycle resumes from RUN/state.
# Usage: FAN_V23=/path/to/fan_v2_3 bash training/run_fan_v2_4.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V23:?set FAN_V23 to the FAN v2.3 folder v2.4 starts from}"
D=${1:-/work/data}
HERE="$(dirname "$0")"
bash "$HERE/finetune_fan_256.sh" training/configs/fan_v2_4.json fan_v24_256 "$FAN_V23" "$D" 800
[ -f "$D/runs/fan_v24_256/final/model.safetensors" ] || { echo "cycle 1 did not finish" >&2; exit 1; }
EXTRA="--set lr_decay_steps=600" bash "$HERE/finetune_fan_256.sh" training/configs/fan_v2_4.json fan_v24b_256 \
    "$D/runs/fan_v24_256/final" "$D" 600
