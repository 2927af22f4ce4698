#!/usr/bin/env bash
# Ablations of FAN v2.2 (issue 15): the same 256x256 fine-tune as training/run_fan_v2_2.sh (from the
# FAN v2.1 weights, 800 steps, batch 8) with one of its three changes taken out, and with all three
# out (v2.1's recipe trained as long: the control at equal compute). FAN_V21: the v2.1 folder
# (git show 135b457:checkpoints/fan/...; /work/data/fan_v21_ship). Each variant is then scored on
# utkface/val (photos the training never saw) with the evaluation's own occluders and lights, like
# the shipped run's step 800 (checkpoints/README.md, "FAN v2.2" selection table).
# Usage: FAN_V21=/path/to/fan_v2_1 bash training/run_fan_v2_2_ablations.sh [DATA_ROOT=/work/data] [STEPS=800] [LIMIT=40]
# Runs resume from their last checkpoint; results go to docs/evaluation/ablations/fan_v2_2_*.val.json.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
STEPS=${2:-800}
LIMIT=${3:-40}
PY=${PYTHON:-python}
: "${FAN_V21:?set FAN_V21 to the FAN v2.1 folder the ablations start from}"
A="$D/abl_v22"
R=docs/evaluation/ablations
VAL=${VAL_IMAGES:-../shared/data/faces/utkface/val}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$A" "$R"
COMMON=(--config training/configs/fan_v2_2.json --data "$D/uv256/train" --resolution 256 --batch-size 8
        --lr 1e-4 --threads 2 --max-steps "$STEPS" --set init_from="$FAN_V21")
declare -A VARIANTS=(
    [no_refit]="refit=false"
    [no_inpaint]="w_occluded=0"
    [no_gate_cap]="gate_by=null"
    [v2_1_recipe]="refit=false w_occluded=0 gate_by=null"
)
for v in no_refit no_inpaint no_gate_cap v2_1_recipe; do
    extra=()
    for s in ${VARIANTS[$v]}; do extra+=(--set "$s"); done
    [ -d "$A/$v/final" ] || $PY training/train_fan.py "${COMMON[@]}" "${extra[@]}" --out "$A/$v"
    [ -f "$R/fan_v2_2_$v.val.json" ] && continue
    $PY training/init_bundle.py --face-model checkpoints/face_model.safetensors --fan "$A/$v/final" \
        --drn checkpoints/drn --out "$A/bundles/$v"
    $PY -m facelift.cli evaluate "$VAL" --weights "$A/bundles/$v" --limit "$LIMIT" --no-photo-metrics --no-lpips \
        --json "$R/fan_v2_2_$v.val.json" -q
done
