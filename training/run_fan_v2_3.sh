#!/usr/bin/env bash
# FAN v2.3 (issue 15): FAN v2.2 fine-tuned with the relighting-consistency weight lowered from 3 to 1
# (training/configs/fan_v2_3.json; everything else as v2.2), the change the v2.2 ablations pointed
# to: without the consistency term occlusion fell 0.35 -> 0.27 on utkface/val at the same lighting.
# Pass v2.2's folder as FAN_V22 (commit 181cf22's checkpoints/fan). Needs the 256x256 UV samples and
# robust fits of training/run_fan_v2.sh. Resumes from RUN/state. The shipped weights are this run's
# step 1000 (it went on to 1600) fine-tuned further by training/run_fan_gpu.sh (model card, "FAN v2.3").
# Usage: FAN_V22=/path/to/fan_v2_2 bash training/run_fan_v2_3.sh [DATA_ROOT=/work/data] [STEPS=1000]
set -euo pipefail
: "${FAN_V22:?set FAN_V22 to the FAN v2.2 folder v2.3 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_3.json fan_v23_256 "$FAN_V22" "${1:-/work/data}" "${2:-1000}"
