#!/usr/bin/env bash
# A bundle of the shipped face model with the given FAN and DRN, scored on utkface/val as the
# ablations and checkpoint selections are (the evaluation's own occluders and lights; no
# photo-level metrics, no LPIPS). Used by the run_*_ablation(s).sh scripts.
# Usage: bash training/score_on_val.sh FAN_DIR DRN_DIR BUNDLE_OUT JSON_OUT [LIMIT=40]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
VAL=${VAL_IMAGES:-../shared/data/faces/utkface/val}
$PY training/init_bundle.py --face-model checkpoints/face_model.safetensors --fan "$1" --drn "$2" --out "$3"
$PY -m facelift.cli evaluate "$VAL" --weights "$3" --limit "${5:-40}" --no-photo-metrics --no-lpips --json "$4" -q
