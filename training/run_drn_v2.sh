#!/usr/bin/env bash
# DRN v2 (issue 13) on CPU: trained at 256x256 on the UV samples and robust fits that
# training/run_fan_v2.sh prepares, on top of the shipped FAN v2. Resumes from RUN/state.
# Usage: bash training/run_drn_v2.sh [DATA_ROOT=/work/data] [MINUTES=85]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
M=${2:-85}
PY=${PYTHON:-python}
export OMP_WAIT_POLICY=PASSIVE
PYTHON=$PY bash training/prepare_uv256.sh "$D" train val
$PY training/train_drn.py --config training/configs/drn_v2.json --data "$D/uv256/train" --out "$D/runs/drn_v2_256" \
    --resolution 256 --batch-size 4 --threads 2 --max-minutes "$M"
