#!/usr/bin/env bash
# The prepared GPU check: one device run (an H100/H200, about 5-8 minutes) that does what
# this CPU-only machine cannot — the CUDA tests, then `benchmarks.speed train` on the GPU:
# ml-1m epochs of kgrec against PyG's LightGCN (BPR, batch 8,192) side by side, and kgrec on
# the 1M-user / 200k-item / 100M-edge synthetic graph (peak memory, epoch time from 20 steps).
#
# The device machine has torch + CUDA, PyG, Lightning, pandas, scikit-learn and transformers
# but no internet, so the ml-1m files travel with the repo. Prepare once, here, from the repo root:
#   echo /.devcache/ >> .git/info/exclude
#   mkdir -p .devcache/datasets && cp -r ~/.cache/kgrec/datasets/ml-1m .devcache/datasets/
#   gzip -f .devcache/datasets/ml-1m/ml-1m.inter          # 45 MB -> ~12 MB: the tree travels capped at 64 MiB
#   pip download --no-deps -d .devcache/wheels jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0
# (LightningCLI needs jsonargparse[signatures], which the device image lacks: ~1 MB of pure-Python
# wheels, installed there into a scratch directory on PYTHONPATH, never into its environment),
# then run it there with carry [".devcache"]:   bash benchmarks/device.sh
# A second call, `bash benchmarks/device.sh scale` (same carry, for the wheels), runs the CLI config of GPU
# scale instead: `kgrec fit --config configs/synthetic_scale.yaml` (1M users, 200k items, 100M
# TRAIN edges built as tensors), two epochs, each validated by full ranking for 100k sampled
# validation users (data.loader.val_max_users), GPU memory sampled
# every 0.5 s by nvidia-smi into $OUT/gpu_memory.csv.
# Results land in $OUT (speed.json, speed_train.md, logs); merge speed.json's "train" rows into
# benchmarks/results/speed/ with a CPU run of the same command without --device cuda.
# Text features are 384-d hashing vectors (the MiniLM weights, ~90 MB, do not fit the transfer):
# the same input width as MiniLM, so the same model and the same work per step.
set -uo pipefail
out=${OUT:-runs/device}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 KGREC_CACHE_DIR=$PWD/.devcache
if ! python3 -c "import jsonargparse, docstring_parser, typeshed_client" 2>/dev/null; then
    if ls .devcache/wheels/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/kgrec-site .devcache/wheels/*.whl
        export PYTHONPATH=/tmp/kgrec-site:$PWD
    else
        echo "warning: no jsonargparse here and no .devcache/wheels: 'kgrec fit' (the scale step) cannot start" >&2
    fi
fi
if [ -f .devcache/datasets/ml-1m/ml-1m.inter.gz ]; then gunzip -kf .devcache/datasets/ml-1m/ml-1m.inter.gz; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ "${1:-}" = scale ]; then
    # checkpoints (~2.5 GB each at this size: 16 B per train edge plus fp16 text) stay on the device: only logs and metrics come back
    nvidia-smi --query-gpu=timestamp,memory.used --format=csv -lms 500 > "$out/gpu_memory.csv" &
    sampler=$!
    timer=""
    if [ -x /usr/bin/time ]; then timer="/usr/bin/time -v"; fi
    start=$(date +%s)
    $timer timeout 540 python3 -m kgrec.cli fit --config configs/synthetic_scale.yaml \
        --trainer.max_epochs 2 --trainer.default_root_dir runs/scale 2>&1 \
        | grep -v -i "warning\|litlogger\|pytree" | tee "$out/scale_fit.log"
    rc=${PIPESTATUS[0]}
    echo "rc=$rc wall_s=$(( $(date +%s) - start ))" | tee "$out/scale_rc.txt"
    kill "$sampler"
    sort -t, -k2 -n "$out/gpu_memory.csv" | tail -1 | tee "$out/gpu_memory_peak.txt"
    find runs/scale -name metrics.csv -exec cp {} "$out/scale_metrics.csv" \;
    exit "$rc"
fi
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/training tests/sampler tests/models \
    -k "cuda or gpu" 2>&1 | tail -5 | tee "$out/tests.txt"
timeout 420 python3 -m benchmarks.speed train --out "$out" --device cuda --data ml-1m --epochs 5 \
    --text-encoder hashing --scale 1000000,200000,100000000 --scale-steps 20 2>&1 \
    | grep -v -i "warning\|litlogger\|pytree" | tee "$out/train_speed.log"
