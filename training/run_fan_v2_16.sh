#!/usr/bin/env bash
# FAN v2.16 (issue 15, an experiment): v2.13's recipe (training/configs/fan_v2_16.json = fan_v2_13.json
# + occluder_extra_lock_prob 0.5) for 400 steps from FAN v2.13: half of the occluded samples get a lock
# of hair on top of their other occluders (v2.15 put locks in place of a third of them and lost on the
# sunglasses what it won on the hair). Needs the 256x256 UV samples and robust fits
# (training/prepare_uv256.sh). Resumes from DATA_ROOT/runs/fan_v216_256/state.
# Usage: FAN_V213=/path/to/fan_v2_13 bash training/run_fan_v2_16.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V213:?set FAN_V213 to the FAN v2.13 folder v2.16 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_16.json fan_v216_256 "$FAN_V213" "${1:-/work/data}" 400
