#!/usr/bin/env bash
# Ablation table of issue 15 for FAN v2.2: the shipped 256x256 fine-tune (training/run_fan_v2_2.sh:
# from the FAN v2.1 weights, batch 8, lr 1e-4) run for STEPS steps with one part of the v2 recipe
# taken out, and with all of them out (the paper's training signal: pixel + VGG + GAN with the PCA
# albedos as real samples, on the v2 network). The control at the same compute is the shipped run's
# own step 200 (checkpoints/README.md, "FAN v2.2" selection table). Each variant is scored on
# utkface/val (photos the training never saw) with the evaluation's own occluders and lights.
#   no_occluders  no synthetic occluders (and so no inpainting term)
#   no_relight    no random relighting (and so no consistency term)
#   no_robust     no skin confidence from the robust stage: every visible texel is clean skin for
#                 the inputs and the losses, the stiff albedo input is the PCA albedo, no refit,
#                 no gate cap (the low-frequency targets stay the robust fit's: the prepared data)
#   paper_losses  all of the above, and no gate and low-frequency terms
# FAN_V21: the v2.1 folder (git show 135b457:checkpoints/fan/...).
# Usage: FAN_V21=/path/to/fan_v2_1 bash training/run_fan_v2_2_ablations.sh [DATA_ROOT=/work/data] [STEPS=200] [LIMIT=40]
# Runs resume from their last checkpoint; results go to docs/evaluation/ablations/fan_v2_2_*.val.json.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
STEPS=${2:-200}
LIMIT=${3:-40}
PY=${PYTHON:-python}
: "${FAN_V21:?set FAN_V21 to the FAN v2.1 folder the ablations start from}"
A="$D/abl_v22"
R=docs/evaluation/ablations
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$A" "$R"
COMMON=(--config training/configs/fan_v2_2.json --data "$D/uv256/train" --resolution 256 --batch-size 8
        --lr 1e-4 --threads 2 --max-steps "$STEPS" --set init_from="$FAN_V21")
no_robust="robust_confidence=false refit=false gate_by=null"
declare -A VARIANTS=(
    [no_occluders]="occlusion_prob=0 w_occluded=0"
    [no_relight]="relight=false"
    [no_robust]="$no_robust"
    [paper_losses]="occlusion_prob=0 w_occluded=0 relight=false $no_robust w_gate=0 w_lowfreq=0"
)
for v in ${VARIANTS_TO_RUN:-no_occluders no_relight no_robust paper_losses}; do
    extra=()
    for s in ${VARIANTS[$v]}; do extra+=(--set "$s"); done
    [ -d "$A/$v/final" ] || $PY training/train_fan.py "${COMMON[@]}" "${extra[@]}" --out "$A/$v"
    [ -f "$R/fan_v2_2_$v.val.json" ] && continue
    bash training/score_on_val.sh "$A/$v/final" checkpoints/drn "$A/bundles/$v" "$R/fan_v2_2_$v.val.json" "$LIMIT"
done
