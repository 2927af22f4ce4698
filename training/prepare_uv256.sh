#!/usr/bin/env bash
# The 256x256 UV samples and per-sample robust low-frequency fits that FAN v2.x and the DRN v2/v3
# train on, for each SPLIT; what is already there is kept.
# Usage: bash training/prepare_uv256.sh DATA_ROOT SPLIT...     (PYTHON=... to pick the interpreter;
#        ROBUST_PRIOR_WEIGHT=... the robust fits' stiff-model prior, default the library's)
set -euo pipefail
cd "$(dirname "$0")/.."
D=$1
shift
PY=${PYTHON:-python}
for split in "$@"; do
    [ -f "$D/uv256/$split/index.json" ] || $PY training/prepare_data.py --split "$split" --out "$D/uv256" --resolution 256 --workers 2
    [ -f "$D/uv256/$split/lighting_robust.npz" ] || $PY training/fit_lighting.py --data "$D/uv256/$split" --method robust --workers 2 \
        ${ROBUST_PRIOR_WEIGHT:+--robust-prior-weight "$ROBUST_PRIOR_WEIGHT"}
done
