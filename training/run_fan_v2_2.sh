#!/usr/bin/env bash
# FAN v2.2 (issue 15): a 256x256 fine-tune of FAN v2.1 (pass its folder as FAN_V21: commit 135b457's
# checkpoints/fan, or training/run_fan_v2_1.sh's output) fed what an
# occluder really gives at inference: the robust low-frequency stage is rerun on every occluded
# and relit training input (`refit`), the gate is capped by that confidence inside the loop
# (`gate_by`), and E_pixel is repeated over the occluded texels alone (`w_occluded`).
# Needs the 256x256 UV samples and robust fits of training/run_fan_v2.sh. Resumes from RUN/state.
# The shipped weights are this run's step 800 (it was started with 900 and stopped there).
# Usage: FAN_V21=/path/to/fan_v2_1 bash training/run_fan_v2_2.sh [DATA_ROOT=/work/data] [STEPS=800]
set -euo pipefail
: "${FAN_V21:?set FAN_V21 to the FAN v2.1 folder v2.2 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_2.json fan_v22_256 "$FAN_V21" "${1:-/work/data}" "${2:-800}"
