#!/usr/bin/env bash
# The ablations of docs/EVALUATION.md: short runs (400 steps, 128x128, batch 8) of the FAN with and
# without the GAN term and the flip features, and of the DRN with the gradient or a pixel loss, each
# against a baseline of the same length. Needs the UV samples and the B-Net run of run_all.sh.
# Usage: bash training/run_ablations.sh [DATA_ROOT=/work/data]     (PYTHON=... to pick the interpreter)
# Runs resume where they stopped; results go to docs/evaluation/ablations/.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
PY=${PYTHON:-python}
A="$D/abl"
R=docs/evaluation/ablations
EVAL_IMAGES=${EVAL_IMAGES:-../shared/data/faces/eval}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$A" "$R"
COMMON=(--data "$D/uv128/train" --resolution 128 --threads 2 --batch-size 8 --lr 2e-4 --max-steps 400
        --set face_model=checkpoints/face_model.safetensors --set bnet="$D/runs/bnet/final"
        --set lighting=least_squares)
FAN_ARGS=("${COMMON[@]}" --set percep_resolution=64 --set real_samples=least_squares)
DRN_ARGS=("${COMMON[@]}" --set fan=checkpoints/fan --set displacement_unit_scale=1)

$PY training/train_fan.py "${FAN_ARGS[@]}" --out "$A/fan_base"
$PY training/train_fan.py "${FAN_ARGS[@]}" --out "$A/fan_nogan" --set w_gan=0
$PY training/train_fan.py "${FAN_ARGS[@]}" --out "$A/fan_noflip" --set flip_features=false
$PY training/train_drn.py "${DRN_ARGS[@]}" --out "$A/drn_base"
$PY training/train_drn.py "${DRN_ARGS[@]}" --out "$A/drn_pixel" --set detail_loss=pixel

# FAN variants with the shipped DRN; DRN variants with the shipped FAN
for v in fan_base fan_nogan fan_noflip drn_base drn_pixel; do
    if [[ $v == fan_* ]]; then fan="$A/$v/final"; drn=checkpoints/drn; else fan=checkpoints/fan; drn="$A/$v/final"; fi
    $PY training/evaluate.py --data "$D/uv128/val" --bnet "$D/runs/bnet/final" --fan "$fan" --drn "$drn" \
        --face-model checkpoints/face_model.safetensors --limit 500 --out "$R/$v.val.json"
    $PY training/init_bundle.py --face-model checkpoints/face_model.safetensors --fan "$fan" --drn "$drn" \
        --out "$A/bundles/$v"
    $PY -m facelift.cli evaluate "$EVAL_IMAGES" --weights "$A/bundles/$v" --json "$R/$v.eval.json" -q
done
