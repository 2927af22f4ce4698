#!/usr/bin/env bash
# The shipped networks' chain, in the order they were made (run_all.sh is the v1 paper recipe):
# 256x256 UV samples + robust fits -> FAN v2 -> v2.1 -> DRN v3 (on v2.1) -> FAN v2.2 -> v2.3 -> v2.4
# -> v2.5 -> v2.6 -> v2.12 -> v2.13 -> v2.17, then a bundle of FAN v2.17 + DRN v3 (v2.7-v2.11 and
# v2.14-v2.16, tried and not shipped, are training/run_fan_v2_7.sh ... run_fan_v2_16.sh). About 14 hours on
# 2 CPU cores (the model card's wall times: data 0.5 h, FAN v2 1 h, v2.1 1.4 h, DRN v3 1.5 h, v2.2 1.4 h,
# v2.3 1.2 h, v2.4 2 h, v2.5 2 h as the CPU fallback, v2.6 1.1 h, v2.12 0.6 h, v2.13 0.6 h, v2.17 0.6 h). Not bit-identical to checkpoints/: three stages of the shipped FAN ran on a GPU (below),
# and FAN v2 and the GPU runs stopped on wall-clock budgets.
# Resumes: a stage whose folder already holds weights is skipped, and so is one that no missing later
# stage needs. Any FAN_V2..FAN_V217 set in the environment replaces that stage's output (e.g. a shipped
# checkpoints/fan from git history); relative paths are from the repo root.
# Usage: bash training/run_shipped.sh [DATA_ROOT=/work/data]     (PYTHON=... to pick the interpreter;
#        DRY_RUN=1 prints each stage's command instead of running it; BUNDLE, SHIP_FAN below)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
PY=${PYTHON:-python}
export PYTHON=$PY OMP_WAIT_POLICY=PASSIVE
unset EXTRA  # finetune_fan_256.sh reads it: only this script's own --set overrides may reach it
DRY=${DRY_RUN:-0}

: "${FAN_V2:=$D/runs/fan_v2_256/final}"
: "${FAN_V21:=$D/runs/fan_v21_ship}"   # stage D's weights with gate_by=confidence (run_fan_v2_1.sh)
: "${FAN_V22:=$D/runs/fan_v22_256/final}"
# The shipped v2.3, v2.4's start, is this run's step 1000 plus 495 GPU steps (run_fan_gpu.sh, 1,500
# packed samples; no CPU script): FAN_V23=<checkpoints/fan at cbac722> to start v2.4 from it.
: "${FAN_V23:=$D/runs/fan_v23_256/final}"
# The shipped v2.5 started from training/probes/fan_v2_4: the float16 copy of the original run's
# fan_v24b_256/final (run_fan_v2_4.sh cycle 2, the model card's stage 9, from the GPU-finished v2.3).
# FAN_V24=training/probes/fan_v2_4 starts from it as the shipped v2.5 did (and skips v2.2-v2.4).
: "${FAN_V24:=$D/runs/fan_v24b_256/final}"
# The shipped v2.5 is the GPU run g3 -> g3b (run_fan_v2_5.sh's header); here its CPU fallback.
: "${FAN_V25:=$D/runs/fan_v25b_256/final}"
: "${FAN_V26:=$D/runs/fan_v26_256/final}"
: "${FAN_V212:=$D/runs/fan_v212_256/final}"
: "${FAN_V213:=$D/runs/fan_v213_256/final}"
: "${FAN_V217:=$D/runs/fan_v217_256/final}"
DRN_V3=$D/runs/drn_v3e_256/final
SHIP_FAN=${SHIP_FAN:-$FAN_V217}
BUNDLE=${BUNDLE:-$D/bundles/shipped}

have() { [ -f "$1/model.safetensors" ]; }
want() {  # OUT_FOLDER FLAG...: 1 if OUT_FOLDER has no weights and a later stage needs it (a FLAG is 1)
    local out=$1 f
    shift
    if ! have "$out"; then for f in "$@"; do [ "$f" = 1 ] && { echo 1; return; }; done; fi
    echo 0
}
run() {  # the command, or (DRY_RUN=1) only its echo
    if [ "$DRY" = 1 ]; then printf '   '; printf ' %q' "$@"; echo; else "$@"; fi
}
stage() {  # FLAG LABEL OUT_FOLDER COMMAND...: run COMMAND when FLAG is 1, then check OUT_FOLDER
    local flag=$1 label=$2 out=$3
    shift 3
    if [ "$flag" != 1 ]; then echo "== $label: skipped ($out: $(have "$out" && echo done || echo not needed))"; return 0; fi
    echo "== $label -> $out"
    run "$@"
    [ "$DRY" = 1 ] || have "$out" || { echo "$label did not leave weights in $out" >&2; exit 1; }
}

W217=$(want "$FAN_V217" 1)
W213=$(want "$FAN_V213" "$W217")
W212=$(want "$FAN_V212" "$W213")
W26=$(want "$FAN_V26" "$W212")
W25=$(want "$FAN_V25" "$W26")
W24=$(want "$FAN_V24" "$W25")
W23=$(want "$FAN_V23" "$W24")
W22=$(want "$FAN_V22" "$W23")
WDRN=$(want "$DRN_V3" 1)
W21=$(want "$FAN_V21" "$W22" "$WDRN")
W2=$(want "$FAN_V2" "$W21")

# 1. 256x256 UV samples and robust fits (the face model's albedo PCA is committed: run_all.sh builds it),
# with the stiff-model prior the shipped networks were trained on (the library's default became 3e-4
# after them; the v2.2-v2.6 configs pin the same 1e-4 for their in-training refits)
echo "== UV samples and robust fits -> $D/uv256"
if [[ "$W2$W21$WDRN$W22$W23$W24$W25$W26$W212$W213$W217" == *1* ]]; then
    run env ROBUST_PRIOR_WEIGHT=1e-4 bash training/prepare_uv256.sh "$D" train val
fi

# 2. FAN v2: 128 then 256, on the model card's wall times (its record: 1,412 and 167 steps; the first 400
# at 128 had w_gan 0.1 and w_consistency 1, which the script does not repeat). A finished 128 stage gets
# 0 minutes: it would otherwise resume and train on.
M128=49
have "$D/runs/fan_v2_128/final" && M128=0
stage "$W2" "FAN v2" "$FAN_V2" bash training/run_fan_v2.sh "$D" "$M128" 10
stage "$W21" "FAN v2.1" "$FAN_V21" env FAN_V2="$FAN_V2" bash training/run_fan_v2_1.sh "$D"

# 3. DRN v3 on the FAN it was trained on (v2.1)
stage "$WDRN" "DRN v3 (on FAN v2.1)" "$DRN_V3" env FAN="$FAN_V21" bash training/run_drn_v3.sh "$D" 736

# 4. FAN v2.2 -> v2.6
stage "$W22" "FAN v2.2" "$FAN_V22" env FAN_V21="$FAN_V21" bash training/run_fan_v2_2.sh "$D" 800
stage "$W23" "FAN v2.3 (CPU stage 6)" "$FAN_V23" env FAN_V22="$FAN_V22" bash training/run_fan_v2_3.sh "$D" 1000
stage "$W24" "FAN v2.4 (two cycles)" "$FAN_V24" env FAN_V23="$FAN_V23" bash training/run_fan_v2_4.sh "$D"
stage "$W25" "FAN v2.5 (CPU fallback, two cycles)" "$FAN_V25" env FAN_V24="$FAN_V24" bash training/run_fan_v2_5.sh "$D"
stage "$W26" "FAN v2.6" "$FAN_V26" env FAN_V25="$FAN_V25" bash training/run_fan_v2_6.sh "$D"
# 4b. FAN v2.12 -> v2.13: occluders centred on facial features, refits at the 3e-4 prior (their configs)
stage "$W212" "FAN v2.12" "$FAN_V212" env FAN_V26="$FAN_V26" bash training/run_fan_v2_12.sh "$D"
stage "$W213" "FAN v2.13" "$FAN_V213" env FAN_V212="$FAN_V212" bash training/run_fan_v2_13.sh "$D"
# 4c. FAN v2.17: glasses frames on top of 30 % of the occluded samples (fan_v2_17.json)
stage "$W217" "FAN v2.17" "$FAN_V217" env FAN_V213="$FAN_V213" bash training/run_fan_v2_17.sh "$D"

# 5. Bundle with init_bundle.py, as run_all.sh and score_on_val.sh make one. Not into checkpoints/ by
# default: there it would rewrite config.json, whose training records each ship edited by hand.
if [ -f "$BUNDLE/config.json" ]; then
    echo "== bundle: skipped ($BUNDLE exists)"
else
    echo "== bundle (FAN $SHIP_FAN, DRN $DRN_V3) -> $BUNDLE"
    run "$PY" training/init_bundle.py --face-model checkpoints/face_model.safetensors --fan "$SHIP_FAN" \
        --drn "$DRN_V3" --drn-detail-gate 0.2 --out "$BUNDLE"
fi
echo "No script ships a bundle: each ship replaced checkpoints/fan or checkpoints/drn and edited"
echo "checkpoints/config.json's training record and checkpoints/README.md by hand."
