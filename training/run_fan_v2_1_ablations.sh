#!/usr/bin/env bash
# Ablations of FAN v2.1 (issue 15): equal-compute fine-tunes from the same start (the FAN v2 weights
# shipped before v2.1, commit 2a6c086's checkpoints/fan; pass their folder as FAN_V2), 128x128,
# batch 16, MINUTES each, one change at a time; each variant then scored on utkface/val (photos the
# training never saw) with the evaluation's own occluders and lights.
# Usage: FAN_V2=/path/to/fan_v2 bash training/run_fan_v2_1_ablations.sh [DATA_ROOT=/work/data] [MINUTES=8] [LIMIT=40]
# Runs resume where they stopped; results go to docs/evaluation/ablations/fan_v2_1_*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
M=${2:-8}
LIMIT=${3:-40}
PY=${PYTHON:-python}
: "${FAN_V2:?set FAN_V2 to the FAN v2 folder the ablations start from}"
A="$D/abl_v21"
R=docs/evaluation/ablations
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$A" "$R"
CFG=training/configs/fan_v2_1.json
COMMON=(--config "$CFG" --data "$D/uv256/train" --resolution 128 --batch-size 16 --threads 2 --max-minutes "$M"
        --set init_from="$FAN_V2")
declare -A VARIANTS=(
    [full]=""
    [no_gate]="w_gate=0"
    [pca_input]="inputs=[\"delit\",\"visibility\",\"confidence\",\"albedo_pca\"]"
    [no_occluders]="occlusion_prob=0"
    [no_relight]="relight=false"
)
for v in full no_gate pca_input no_occluders no_relight; do
    extra=()
    [ -n "${VARIANTS[$v]}" ] && extra=(--set "${VARIANTS[$v]}")
    [ -d "$A/$v/final" ] || $PY training/train_fan.py "${COMMON[@]}" "${extra[@]}" --out "$A/$v"
    [ -f "$R/fan_v2_1_$v.val.json" ] && continue
    bash training/score_on_val.sh "$A/$v/final" checkpoints/drn "$A/bundles/$v" "$R/fan_v2_1_$v.val.json" "$LIMIT"
done
