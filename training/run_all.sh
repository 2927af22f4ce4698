#!/usr/bin/env bash
# The shipped training run, end to end (CPU, 2 threads). Data and runs live outside the repo.
# Usage: bash training/run_all.sh [DATA_ROOT=/work/data]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
PY=${PYTHON:-python}
# 1. UV samples at 128x128 (train: 9,780 photos, val: 2,000)
$PY training/prepare_data.py --split train --out $D/uv128 --workers 2
$PY training/prepare_data.py --split val --out $D/uv128 --workers 2
# 2. albedo PCA (K=80 at 64x64) into the face model, figure in docs/
$PY training/build_albedo_model.py --data $D/uv128/train --face-model checkpoints/face_model.safetensors \
    --out checkpoints/face_model.safetensors --components 80 --resolution 64 --figure docs/albedo_pca.png
# 3-5. B-Net, FAN, DRN: paper losses and weights; lr / resolution / batch / budget are the CPU departures
COMMON="--data $D/uv128/train --resolution 128 --threads 2 --set face_model=checkpoints/face_model.safetensors"
$PY training/train_bnet.py $COMMON --out $D/runs/bnet --batch-size 8 --lr 2e-4 --max-minutes 20
$PY training/train_fan.py $COMMON --out $D/runs/fan --batch-size 8 --lr 2e-4 --max-minutes 25 \
    --set bnet=$D/runs/bnet/final --set percep_resolution=64
$PY training/train_drn.py $COMMON --out $D/runs/drn --batch-size 8 --lr 2e-4 --max-minutes 10 \
    --set bnet=$D/runs/bnet/final --set fan=$D/runs/fan/final
# 6. bundle, validation figures, grid
$PY training/init_bundle.py --face-model checkpoints/face_model.safetensors --fan $D/runs/fan/final \
    --drn $D/runs/drn/final --out checkpoints
$PY training/evaluate.py --data $D/uv128/val --bnet $D/runs/bnet/final --bundle checkpoints --out docs/val_metrics.json
$PY training/make_val_grid.py --bundle checkpoints --bnet $D/runs/bnet/final --out docs/val_grid.png
