#!/usr/bin/env bash
# FAN training on a lent GPU machine (issue 15; see facelift/training/pack.py for what travels).
# Here:  python training/pack_for_device.py pack --data /work/data/uv256/train --count 1500 \
#            --vgg ../shared/weights/vgg16_imagenet_lpips.safetensors --out device_pack
# There: OUT=/dir INIT=checkpoints/fan MINUTES=7 [CONFIG=training/configs/fan_v2_4.json] bash training/run_fan_gpu.sh NAME:KEY=VALUE,... [NAME:...]
# Each NAME is one run of CONFIG (default training/configs/fan_v2_3.json) with its --set overrides, all runs at
# once on the one GPU, the robust stage's refit spread over the CPU cores; each run's weights,
# loss log, progress and config come back as OUT/NAME.tar.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
: "${OUT:?set OUT}" "${CONFIG:=training/configs/fan_v2_3.json}" "${INIT:=checkpoints/fan}" "${MINUTES:=7}" "${BATCH:=16}" "${PACK:=device_pack}"
python training/pack_for_device.py unpack --pack "$PACK" --out /tmp/uv > "$OUT/unpack.log" 2>&1 || { cat "$OUT/unpack.log"; exit 1; }
cores=$(nproc)
workers=$(( (cores - $#) / $# ))
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
train() {
    local name=${1%%:*} sets=${1#*:} args=()
    [ "$sets" = "$1" ] && sets=""
    IFS=, read -ra kv <<< "$sets"
    for s in "${kv[@]}"; do args+=(--set "$s"); done
    python training/train_fan.py --config "$CONFIG" --data /tmp/uv/train --out "/tmp/runs/$name" \
        --resolution 256 --batch-size "$BATCH" --lr 1e-4 --max-minutes "$MINUTES" --threads 1 \
        --set vgg=/tmp/uv/vgg16.safetensors --set refit_workers="$workers" --set init_from="$INIT" \
        --set checkpoint_every=100 "${args[@]}" > "/tmp/runs/$name.log" 2>&1
    echo "$name exit $?"
    cp "/tmp/runs/$name.log" "/tmp/runs/$name/"
    [ -d "/tmp/runs/$name/final" ] || cp "/tmp/runs/$name/state/model.safetensors" "/tmp/runs/$name/last_state_model.safetensors"
    tar -C /tmp/runs -cf "$OUT/$name.tar" --exclude=state "$name"
    tail -3 "/tmp/runs/$name.log"
}
mkdir -p /tmp/runs
for spec in "$@"; do train "$spec" & done
wait
