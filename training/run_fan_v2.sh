#!/usr/bin/env bash
# FAN v2 (issue 15), end to end on CPU: 256x256 UV samples, the robust low-frequency fit per sample,
# the FAN trained at 128 then fine-tuned at 256 (the same weights: depth 7), then the bundle.
# Every step resumes: finished shards / fits are kept, training resumes from RUN/state.
# Usage: bash training/run_fan_v2.sh [DATA_ROOT=/work/data] [MINUTES_128=50] [MINUTES_256=30]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
M128=${2:-50}
M256=${3:-30}
PY=${PYTHON:-python}
export OMP_WAIT_POLICY=PASSIVE
PYTHON=$PY bash training/prepare_uv256.sh "$D" train val
$PY training/train_fan.py --config training/configs/fan_v2.json --data "$D/uv256/train" --out "$D/runs/fan_v2_128" \
    --resolution 128 --batch-size 16 --threads 2 --max-minutes "$M128"
$PY training/train_fan.py --config training/configs/fan_v2.json --data "$D/uv256/train" --out "$D/runs/fan_v2_256" \
    --resolution 256 --batch-size 8 --threads 2 --lr 1e-4 --max-minutes "$M256" --set init_from="$D/runs/fan_v2_128/final"
