#!/usr/bin/env bash
# FAN v2.8 (issue 15): FAN v2.6 fine-tuned on CPU with the prefill: where the skin confidence m is
# low the network sees the stiff PCA albedo instead of the de-lit texture (weight m^2 on the photo),
# so its completion cannot copy what the robust stage flags (v2.6 with the gate shut still copied
# 0.18 of an unseen occluder through the completion); perceptual term 0.01 -> 0.05 (its share had
# fallen to 1 % of the loss). One cosine cycle of 600 steps (training/configs/fan_v2_8.json; batch 8,
# 2 threads, about 60-70 min). Needs the 256x256 UV samples and robust fits (training/prepare_uv256.sh).
# Resumes from DATA_ROOT/runs/fan_v28_256/state.
# Usage: FAN_V26=/path/to/fan_v2_6 bash training/run_fan_v2_8.sh [DATA_ROOT=/work/data]
set -euo pipefail
: "${FAN_V26:?set FAN_V26 to the FAN v2.6 folder v2.8 starts from}"
bash "$(dirname "$0")/finetune_fan_256.sh" training/configs/fan_v2_8.json fan_v28_256 "$FAN_V26" "${1:-/work/data}" 600
