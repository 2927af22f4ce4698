#!/usr/bin/env bash
# FAN v2.14 (issue 15, an experiment, not shipped): a third 400-step cycle of v2.13's recipe
# (training/configs/fan_v2_14.json = fan_v2_13.json) from FAN v2.13, to see whether more cycles with
# the occluders on facial features keep lowering the leak. Needs the 256x256 UV samples and robust fits
# (training/prepare_uv256.sh). Resumes from DATA_ROOT/runs/fan_v214_256/state.
# Usage: FAN_V213=/path/to/fan_v2_13 bash training/run_fan_v2_14.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V213:?set FAN_V213 to the FAN v2.13 folder v2.14 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_14.json fan_v214_256 "$FAN_V213" "${1:-/work/data}" 400
