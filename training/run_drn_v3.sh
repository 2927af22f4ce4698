#!/usr/bin/env bash
# DRN v3 (issue 13) on CPU, at 256x256 on the UV samples and robust fits that training/run_fan_v2.sh
# prepares, on top of the shipped FAN v2.1, in three stages (each resumes from RUN/state; the next
# starts from the previous one's exported weights):
#   A  350 steps: crease prior 4 mm per unit of a sigma-3 high pass, cavity 0.25, w_const = w_flat = 0.01
#   B  225 steps: the band-pass prior (6 mm, sigma 1 -> 6) and cavity 0.3; fine detail came within
#      25 steps, but so did millimetre blobs on lips, brows and glasses frames
#   C  500 steps: B with w_const = w_flat = 0.3; the DRN then followed the prior closely (correlation
#      0.9-0.97 on eval/ photos), and the prior itself made lips, eye sockets and glasses frames relief
#   D  475 steps: C with the prior 0 on the eyes, brows and mouth and on trusted skin shrunk by 2
#      texels (prior_features_flat, prior_erode), E_flat there; clean, but fine-scale std 0.11 mm
#   E  the shipped recipe (training/configs/drn_v3.json): D with the prior at 8 mm (736 steps, 22 min)
# The frozen FAN is drn_v3.json's checkpoints/fan unless FAN names another folder: the shipped DRN v3
# was trained on FAN v2.1 (training/run_shipped.sh passes it).
# Usage: [FAN=/path/to/fan_v2_1] bash training/run_drn_v3.sh [DATA_ROOT=/work/data] [STEPS_E=736]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/work/data}
STEPS_E=${2:-736}
PY=${PYTHON:-python}
export OMP_WAIT_POLICY=PASSIVE
PYTHON=$PY bash training/prepare_uv256.sh "$D" train
common=(--config training/configs/drn_v3.json --data "$D/uv256/train" --resolution 256 --batch-size 4 --threads 2
        ${FAN:+--set fan="$FAN"})
stage() {  # name, steps, init (or ""), extra --set arguments...
    local name=$1 steps=$2 init=$3
    shift 3
    [ -f "$D/runs/${name}_init/config.json" ] && return 0
    $PY training/train_drn.py "${common[@]}" --out "$D/runs/${name}_256" --max-steps "$steps" \
        ${init:+--set init_from="$D/runs/${init}_init"} "$@"
    $PY training/export_state.py --run "$D/runs/${name}_256" --out "$D/runs/${name}_init"
}
before_d=(--set prior_erode=0 --set prior_features_flat=false --set prior_mm=6)
# later --set values win: each stage's own come last
stage drn_v3 350 "" "${before_d[@]}" --set prior_mm=4 --set prior_sigma=3 --set prior_fine_sigma=0 \
    --set cavity=0.25 --set w_const=0.01 --set w_flat=0.01
stage drn_v3b 225 drn_v3 "${before_d[@]}" --set w_const=0.01 --set w_flat=0.01
stage drn_v3c 500 drn_v3b "${before_d[@]}"
stage drn_v3d 475 drn_v3c --set prior_mm=6
$PY training/train_drn.py "${common[@]}" --out "$D/runs/drn_v3e_256" --set init_from="$D/runs/drn_v3d_init" \
    --max-steps "$STEPS_E"
