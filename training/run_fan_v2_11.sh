#!/usr/bin/env bash
# FAN v2.11 (issue 15): the v2.9 fine-tune of FAN v2.6 (robust prior 3e-4 in the refits, 300 steps,
# batch 8, 2 threads) with the gate term 0.05 -> 0.5 (training/configs/fan_v2_11.json): the gate's
# skin/occluder discrimination is what bounds leak against sharpness (docs/EVALUATION.md, "After v2.6"),
# and its own term was 0.03 of the generator's loss. Needs the 256x256 UV samples and robust fits
# (training/prepare_uv256.sh). Resumes from DATA_ROOT/runs/fan_v211_256/state.
# Usage: FAN_V26=/path/to/fan_v2_6 bash training/run_fan_v2_11.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V26:?set FAN_V26 to the FAN v2.6 folder v2.11 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_11.json fan_v211_256 "$FAN_V26" "${1:-/work/data}" 300
