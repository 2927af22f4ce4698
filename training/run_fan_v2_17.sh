#!/usr/bin/env bash
# FAN v2.17 (issue 15, an experiment): v2.13's recipe (training/configs/fan_v2_17.json = fan_v2_13.json
# + occluder_frames_prob 0.3) for 400 steps from FAN v2.13: 30 % of the occluded samples get glasses
# frames on top of their other occluders (thin rims around the eyes, sometimes a bridge, a shadow and a
# lens tint), because the FAN passes real glasses frames through, at their halo, into the albedo and
# the DRN carves them as rings. Needs the 256x256 UV samples and robust fits (training/prepare_uv256.sh).
# Resumes from DATA_ROOT/runs/fan_v217_256/state.
# Usage: FAN_V213=/path/to/fan_v2_13 bash training/run_fan_v2_17.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V213:?set FAN_V213 to the FAN v2.13 folder v2.17 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_17.json fan_v217_256 "$FAN_V213" "${1:-/work/data}" 400
