#!/usr/bin/env bash
# The paper's DRN ablation (issue 13) for DRN v3: its last stage (training/run_drn_v3.sh, stage E:
# 736 steps from stage D's weights, on FAN v2.1) trained again with the pixel loss |I_t - I_syn|
# in place of E_grad, everything else the same; then the shipped bundle with this DRN in place of
# DRN v3 is scored on utkface/val like the shipped one (docs/evaluation/utkface_val_100_fan_v2_2.json).
# FAN_V21: the v2.1 folder the DRN was trained on (git show 135b457:checkpoints/fan/...).
# Usage: FAN_V21=/path/to/fan_v2_1 bash training/run_drn_v3_ablation.sh [DATA_ROOT=/work/data] [STEPS=736] [LIMIT=100]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
STEPS=${2:-736}
LIMIT=${3:-100}
PY=${PYTHON:-python}
: "${FAN_V21:?set FAN_V21 to the FAN v2.1 folder DRN v3 was trained on}"
[ -f "$D/runs/drn_v3d_init/config.json" ] || { echo "run training/run_drn_v3.sh first (stage D's weights)" >&2; exit 1; }
OUT="$D/runs/drn_v3e_pixel_256"
R=docs/evaluation/ablations
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$R"
[ -d "$OUT/final" ] || $PY training/train_drn.py --config training/configs/drn_v3.json --data "$D/uv256/train" \
    --resolution 256 --batch-size 4 --threads 2 --out "$OUT" --max-steps "$STEPS" \
    --set init_from="$D/runs/drn_v3d_init" --set fan="$FAN_V21" --set detail_loss=pixel
bash training/score_on_val.sh checkpoints/fan "$OUT/final" "$D/bundles/drn_v3_pixel" "$R/drn_v3_pixel.val.json" "$LIMIT"
