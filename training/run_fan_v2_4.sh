#!/usr/bin/env bash
# FAN v2.4 probe (issue 15): FAN v2.3 fine-tuned with the occluded-texel pixel term 0.5 -> 1.5 and the
# learning rates decayed along a half cosine to a tenth over the 800 steps (lr_decay_steps), so the
# last checkpoint, not a lucky one, is the result (training/configs/fan_v2_4.json). Pass v2.3's folder
# as FAN_V23 (checkpoints/fan at commit cbac722). Needs the 256x256 UV samples and robust fits of
# training/run_fan_v2.sh. Resumes from RUN/state.
# Usage: FAN_V23=/path/to/fan_v2_3 bash training/run_fan_v2_4.sh [DATA_ROOT=/work/data] [STEPS=800]
set -euo pipefail
: "${FAN_V23:?set FAN_V23 to the FAN v2.3 folder v2.4 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_4.json fan_v24_256 "$FAN_V23" "${1:-/work/data}" "${2:-800}"
