#!/usr/bin/env bash
# FAN v2.6 (issue 15): FAN v2.5 (checkpoints/fan at commit 6073bf6) fine-tuned on CPU with the
# occluded-texel pixel term 3.0 -> 5.0 and one cosine cycle of 600 steps (training/configs/fan_v2_6.json;
# batch 8, 2 threads, all training samples, about 66 min). Needs the 256x256 UV samples and robust fits of
# training/run_fan_v2.sh. Resumes from DATA_ROOT/runs/fan_v26_256/state.
# Usage: FAN_V25=/path/to/fan_v2_5 bash training/run_fan_v2_6.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V25:?set FAN_V25 to the FAN v2.5 folder v2.6 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_6.json fan_v26_256 "$FAN_V25" "${1:-/work/data}" 600
