#!/usr/bin/env bash
# The shipped training run, end to end (CPU, 2 threads). Data and runs live outside the repo.
# Usage: bash training/run_all.sh [DATA_ROOT=/work/data]     (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
PY=${PYTHON:-python}
export OMP_WAIT_POLICY=PASSIVE  # OpenMP threads must not spin on a shared machine
# 1. UV samples at 128x128 (train: 9,780 photos, val: 2,000)
$PY training/prepare_data.py --split train --out "$D/uv128" --workers 2
$PY training/prepare_data.py --split val --out "$D/uv128" --workers 2
# 2. albedo PCA (K=80 at 64x64) under the white-light prior, into the face model; figure in checkpoints/ (the model card shows it)
$PY training/build_albedo_model.py --data "$D/uv128/train" --face-model checkpoints/face_model.safetensors \
    --out checkpoints/face_model.safetensors --components 80 --resolution 64 --white-light 10 \
    --figure checkpoints/albedo_pca.png --stats docs/training/albedo_stats.json
# 3. per-sample least-squares lighting and PCA albedo (what the pipeline computes without a B-Net)
$PY training/fit_lighting.py --data "$D/uv128/train"
$PY training/fit_lighting.py --data "$D/uv128/val"
# 4-6. B-Net, FAN, DRN: paper losses and weights; lr / resolution / batch / budget and the
# lighting choices are the departures listed in checkpoints/README.md
COMMON=(--data "$D/uv128/train" --resolution 128 --threads 2 --batch-size 8 --set face_model=checkpoints/face_model.safetensors)
$PY training/train_bnet.py "${COMMON[@]}" --out "$D/runs/bnet" --lr 2e-4 --max-minutes 20 --set w_light=1000
$PY training/train_fan.py "${COMMON[@]}" --out "$D/runs/fan" --lr 2e-4 --max-minutes 30 --max-steps 1400 \
    --set bnet="$D/runs/bnet/final" --set percep_resolution=64 --set lighting=least_squares \
    --set real_samples=least_squares
$PY training/train_drn.py "${COMMON[@]}" --out "$D/runs/drn" --lr 2e-4 --max-minutes 12 \
    --set bnet="$D/runs/bnet/final" --set fan="$D/runs/fan/final" --set lighting=least_squares \
    --set displacement_unit_scale=1
# 7. bundle (records every run in config.json), validation figures, grid, loss curves
$PY training/init_bundle.py --face-model checkpoints/face_model.safetensors --fan "$D/runs/fan/final" \
    --drn "$D/runs/drn/final" --record bnet="$D/runs/bnet/final" --out checkpoints
$PY training/evaluate.py --data "$D/uv128/val" --bnet "$D/runs/bnet/final" --bundle checkpoints \
    --out docs/training/val_metrics.json
$PY training/make_val_grid.py --bundle checkpoints --out docs/training/val_grid.png
for net in bnet fan drn; do
    cp "$D/runs/$net/loss_curve.png" "docs/training/${net}_loss_curve.png"
    cp "$D/runs/$net/final/train_config.json" "docs/training/${net}_train_config.json"
done
