#!/usr/bin/env bash
# One 256x256 FAN fine-tune on 2 CPU threads (batch 8, lr 1e-4), the shape of the v2.2 and v2.3 runs.
# Resumes from DATA_ROOT/runs/RUN/state. Needs the 256x256 UV samples and robust fits of training/run_fan_v2.sh.
# Usage: [EXTRA="--set key=value ..."] bash training/finetune_fan_256.sh CONFIG RUN INIT_FAN_FOLDER DATA_ROOT STEPS
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$1 RUN=$2 INIT=$3 D=$4 STEPS=$5
export OMP_WAIT_POLICY=PASSIVE
${PYTHON:-python} training/train_fan.py --config "$CONFIG" --data "$D/uv256/train" --threads 2 \
    --out "$D/runs/$RUN" --resolution 256 --batch-size 8 --lr 1e-4 --max-steps "$STEPS" --set init_from="$INIT" ${EXTRA:-}
