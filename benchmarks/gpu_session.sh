#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one short run (about 5 minutes on one H100/H200): the CUDA tests
# (AMP bf16/fp16/off training, autocast accuracy, channels_last, GPU checkpoint -> CPU resume, predict on
# the GPU, four Ray trials packed on one real GPU at gpu: 0.25) and benchmark 7 (benchmarks/gpu.py) with
# AMP and, for the AMP speed-up, once without.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR [STEP...]]   # logs and result JSON go to OUT_DIR
#
# STEPs (default all): tests (~2 min), bench (~6 min: the cuDNN warm-up epoch dominates), amp_off (~2 min),
# no_cudnn_benchmark (~2 min: the warm-up epoch without cuDNN autotuning). On a 15-minute lease run
# `tests amp_off no_cudnn_benchmark` and `bench` as two calls.
#
# On a machine whose Python lacks some requirements (a bare CUDA image), put their wheels in .whl/ first;
# they are installed into a private folder that goes first on PYTHONPATH (Ray too, as .whl/ray.tar.xz, an
# extracted wheel without its Java jars, which keeps the upload small). Each step has its own time limit,
# and a failed step does not stop the next one; the exit status is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-/tmp/gpu_session}}
shift || true
STEPS=${*:-tests bench amp_off no_cudnn_benchmark}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 RAY_AIR_NEW_OUTPUT=0
PY=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null || [ -f .whl/ray.tar.xz ]; then
    SITE=/tmp/bus-site
    mkdir -p "$SITE"
    if compgen -G ".whl/*.whl" >/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    fi
    [ -f .whl/ray.tar.xz ] && tar -xJf .whl/ray.tar.xz -C "$SITE"
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

failed=0
step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUT_DIR/NAME.log, count failures
    local name=$1 limit=$2
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc in $((SECONDS - start)) s"
    [ $rc -eq 0 ] || { failed=$((failed + 1)); tail -n 25 "$OUT_DIR/$name.log"; }
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
    $PY -c 'import torch, timm, segmentation_models_pytorch as smp, numpy
print("torch", torch.__version__, "cuda", torch.version.cuda, "bf16", torch.cuda.is_bf16_supported())
print("timm", timm.__version__, "smp", smp.__version__, "numpy", numpy.__version__)'
    $PY -c 'import ray; print("ray", ray.__version__)'
} >"$OUT_DIR/env.log" 2>&1
cat "$OUT_DIR/env.log"

step tests 180 $PY -m pytest -q -p no:cacheprovider --timeout=150 \
    tests/trainables/test_cuda.py tests/trainables/test_device.py tests/analysis/test_predict.py \
    "tests/search/test_parallel.py::test_four_trials_share_one_gpu"
grep -E "passed|failed|error" "$OUT_DIR/tests.log" 2>/dev/null | tail -n 3
step bench 420 $PY -m benchmarks.gpu --out "$OUT_DIR"
step amp_off 150 $PY -m benchmarks.gpu --fractions 1 --epochs 1 --amp off --out "$OUT_DIR"
step no_cudnn_benchmark 150 $PY -m benchmarks.gpu --fractions 1 --epochs 1 --no-cudnn-benchmark --out "$OUT_DIR"
for s in bench amp_off no_cudnn_benchmark; do
    [ -f "$OUT_DIR/$s.log" ] && grep -E "^(fraction|one trial|RESULT)" "$OUT_DIR/$s.log"
done
echo "failed steps: $failed"
exit "$failed"
