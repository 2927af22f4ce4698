#!/usr/bin/env bash
# FAN v2.7 (issue 15): FAN v2.6 (checkpoints/fan at commit a951f31) fine-tuned on CPU with the skin
# confidence's cap on the gate squared (gate_power 2: a half-trusted texel passes a quarter of the de-lit
# texture through, not half), the occluded-texel term 5.0 -> 7.0 and the perceptual term 0.01 -> 0.05
# (its share had fallen to 1 % of the loss); one cosine cycle of 600 steps (training/configs/fan_v2_7.json;
# batch 8, 2 threads, all training samples, about 70 min). Needs the 256x256 UV samples and robust fits of
# training/run_fan_v2.sh. Resumes from DATA_ROOT/runs/fan_v27_256/state.
# Usage: FAN_V26=/path/to/fan_v2_6 bash training/run_fan_v2_7.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V26:?set FAN_V26 to the FAN v2.6 folder v2.7 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_7.json fan_v27_256 "$FAN_V26" "${1:-/work/data}" 600
