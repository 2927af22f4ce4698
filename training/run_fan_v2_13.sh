#!/usr/bin/env bash
# FAN v2.13 (issue 15): a second 400-step cycle on FAN v2.12 with 90 % of the synthetic occluders
# centred on a facial feature instead of 60 % (training/configs/fan_v2_13.json); otherwise v2.12's
# recipe. Needs the 256x256 UV samples and robust fits (training/prepare_uv256.sh). Resumes from
# DATA_ROOT/runs/fan_v213_256/state.
# Usage: FAN_V212=/path/to/fan_v2_12 bash training/run_fan_v2_13.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V212:?set FAN_V212 to the FAN v2.12 folder v2.13 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_13.json fan_v213_256 "$FAN_V212" "${1:-/work/data}" 400
