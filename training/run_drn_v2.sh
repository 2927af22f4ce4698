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
for split in train val; do
    [ -f "$D/uv256/$split/index.json" ] || $PY training/prepare_data.py --split $split --out "$D/uv256" --resolution 256 --workers 2
    [ -f "$D/uv256/$split/lighting_robust.npz" ] || $PY training/fit_lighting.py --data "$D/uv256/$split" --method robust --workers 2
done
$PY training/train_drn.py --config training/configs/drn_v2.json --data "$D/uv256/train" --out "$D/runs/drn_v2_256" \
    --resolution 256 --batch-size 4 --threads 2 --max-minutes "$M"
