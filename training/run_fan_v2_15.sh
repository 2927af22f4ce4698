#!/usr/bin/env bash
# FAN v2.15 (issue 15, an experiment): v2.13's recipe (training/configs/fan_v2_15.json = fan_v2_13.json
# + occluder_lock_prob 0.35) for 400 steps from FAN v2.13: a third of the training occluders become
# locks of hair (strands side by side that bend together), the occluder the shipped FAN copies most.
# Needs the 256x256 UV samples and robust fits (training/prepare_uv256.sh). Resumes from
# DATA_ROOT/runs/fan_v215_256/state.
# Usage: FAN_V213=/path/to/fan_v2_13 bash training/run_fan_v2_15.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V213:?set FAN_V213 to the FAN v2.13 folder v2.15 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_15.json fan_v215_256 "$FAN_V213" "${1:-/work/data}" 400
