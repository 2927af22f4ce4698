#!/usr/bin/env bash
# FAN v2.18 (issue 15, an experiment): v2.17's recipe + v2.16's locks of hair (training/configs/fan_v2_18.json
# = fan_v2_17.json + occluder_extra_lock_prob 0.5) for 400 steps from FAN v2.17: the glasses frames
# lowered the leak at a cost in fidelity, the locks bought fidelity back on v2.13 at an equal leak.
# Needs the 256x256 UV samples and robust fits (training/prepare_uv256.sh). Resumes from
# DATA_ROOT/runs/fan_v218_256/state.
# Usage: FAN_V217=/path/to/fan_v2_17 bash training/run_fan_v2_18.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V217:?set FAN_V217 to the FAN v2.17 folder v2.18 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_18.json fan_v218_256 "$FAN_V217" "${1:-/work/data}" 400
