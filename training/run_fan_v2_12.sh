#!/usr/bin/env bash
# FAN v2.12 (issue 15): v2.10's fine-tune of FAN v2.6 (robust prior 3e-4 in the refits, occluded
# texels and gate term weighted up) with 60 % of the synthetic occluders centred on a brow, an eye,
# the nose or the mouth instead of anywhere on the layout (training/configs/fan_v2_12.json), so the
# completion learns to draw features, not only plain skin; 400 steps, batch 8, 2 threads. Needs the
# 256x256 UV samples and robust fits (training/prepare_uv256.sh). Resumes from DATA_ROOT/runs/fan_v212_256/state.
# Usage: FAN_V26=/path/to/fan_v2_6 bash training/run_fan_v2_12.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V26:?set FAN_V26 to the FAN v2.6 folder v2.12 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_12.json fan_v212_256 "$FAN_V26" "${1:-/work/data}" 400
