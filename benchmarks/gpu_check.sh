#!/usr/bin/env bash
# Issue 18, part 2: the CUDA backend on a real GPU, in one run that fits a short lease.
#
#   bash benchmarks/gpu_check.sh [all|env|tests|sanitize|bench]...   (default: all, in that order)
#
# Runs from the repository root without network access: corenet from the source tree through
# PYTHONPATH (the Cython extension is optional and not built: the cuda tests need only numba).
#   env       GPU, driver, CUDA, numba(-cuda), torch versions; one trivial kernel launch
#   tests     CORENET_TEST_CUDA=1 pytest tests/test_kernels_cuda*.py tests/test_cuda_training.py
#             -k "not simulator_run and not ptx" (the GPU-only test_gpu_* cases included); failed
#             tests are rerun with numba's own allocator (CORENET_CUDA_ALLOCATOR=numba) to tell
#             allocator faults from kernel faults
#   sanitize  a handful of conv, pool, LRN, batch-norm kernel tests under compute-sanitizer
#             memcheck, racecheck and synccheck (numba's allocator: exact-size allocations, so an
#             overrun is not hidden inside a cached block's rounding)
#   bench     benchmarks/bench_cuda.py: conv vs cuDNN fp32/TF32, bandwidth ops, ResNet-20 b128 and
#             LeNet-5 device-resident training vs PyTorch CUDA, copies and allocations per step
#
# Everything goes under $OUT (default /tmp/corenet_gpu_check): log.txt, summary.json, bench.json and
# gpu_check.tar.gz (all logs and junit files), rewritten after every step, so a run cut short
# keeps what it did. GPU_CHECK_BUDGET (seconds, default 540) bounds the whole run: each step's
# timeout is cut to what is left, and a step that cannot start in time is recorded as skipped.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/corenet_gpu_check}
WORK="$OUT/gpu_check"
mkdir -p "$WORK"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export NUMBA_CACHE_DIR=/tmp/corenet_numba_cache CORENET_TEST_CUDA=1
BUDGET=${GPU_CHECK_BUDGET:-540}
START=$(date +%s)
LOG="$OUT/log.txt"
SUMMARY="$WORK/steps.tsv"
: >>"$SUMMARY"

left() { echo $((BUDGET - ($(date +%s) - START))); }

pack() {  # the summary as JSON and every file of the run in one archive, after each step
    "$PY" - "$SUMMARY" "$OUT/summary.json" <<'EOF' || true
import json, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
steps = [dict(step=r[0], rc=int(r[1]), seconds=int(r[2]), note=r[3] if len(r) > 3 else "") for r in rows]
json.dump({"steps": steps}, open(sys.argv[2], "w"), indent=1)
EOF
    tar -czf "$OUT/gpu_check.tar.gz.tmp" -C "$OUT" gpu_check log.txt summary.json $(cd "$OUT" && ls bench.json 2>/dev/null) \
        && mv "$OUT/gpu_check.tar.gz.tmp" "$OUT/gpu_check.tar.gz"
}

# run NAME WANT_SECONDS CMD...: the command under `timeout`, its output in $WORK/NAME.log and log.txt
run() {
    local name=$1 want=$2 t rc t0
    shift 2
    t=$(left)
    if [ "$t" -lt 20 ]; then
        echo "== $name: skipped, ${t}s left of the ${BUDGET}s budget" | tee -a "$LOG"
        printf '%s\t%s\t%s\t%s\n' "$name" 125 0 "skipped: budget" >>"$SUMMARY"
        pack
        return 125
    fi
    [ "$want" -gt "$t" ] && want=$t
    echo "== $name (timeout ${want}s): $*" | tee -a "$LOG"
    t0=$(date +%s)
    timeout -k 10 "$want" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    tail -n 60 "$WORK/$name.log" >>"$LOG"
    echo "== $name: rc=$rc in $(($(date +%s) - t0))s" | tee -a "$LOG"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$([ $rc = 124 ] && echo timeout)" >>"$SUMMARY"
    pack
    return $rc
}

step_env() {
    cat >"$WORK/env_probe.py" <<'EOF'
import importlib.metadata as md
import sys

import numba
import numpy

print("python", sys.version.split()[0], "numpy", numpy.__version__, "numba", numba.__version__)
try:
    print("numba-cuda", md.version("numba-cuda"))
except md.PackageNotFoundError:
    print("numba-cuda: not installed (numba's built-in CUDA target)")
from corenet import kernels

print("cuda backend:", kernels.status().get("cuda") or "available")
from numba import cuda
from numba.cuda.cudadrv import driver, runtime

from corenet.kernels.cuda import _runtime, ops

dev = cuda.get_current_device()
print("device", dev.name, "cc", dev.compute_capability)
print("driver API", driver.driver.get_version(), "runtime", runtime.runtime.get_version())
print("memory manager", type(cuda.current_context().memory_manager).__name__)
b = _runtime.empty(10, numpy.float64)
ops.fill(b, 2.0)
print("launch ok", b.copy_to_host()[:3], _runtime.alloc_stats())
try:
    import torch

    print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.version.cuda,
          "cudnn", torch.backends.cudnn.version())
except Exception as exc:  # noqa: BLE001
    print("torch:", exc)
EOF
    run env 60 bash -c "nvidia-smi; command -v nvcc && nvcc --version | tail -2; command -v compute-sanitizer;
                        $PY $WORK/env_probe.py"
}

TESTS=(tests/test_kernels_cuda.py tests/test_kernels_cuda_act.py tests/test_kernels_cuda_memory.py
       tests/test_kernels_cuda_resample.py tests/test_kernels_cuda_train.py tests/test_cuda_training.py)

step_tests() {
    local files=()
    for f in "${TESTS[@]}"; do [ -f "$f" ] && files+=("$f"); done
    run tests 300 "$PY" -m pytest -q -rfE -o cache_dir=/tmp/corenet_pytest_cache --junitxml="$WORK/junit_tests.xml" \
        "${files[@]}" -k "not simulator_run and not ptx"
    local rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 125 ]; then  # were the failures the allocator's?
        CORENET_CUDA_ALLOCATOR=numba run tests_numba_allocator 120 "$PY" -m pytest -q -rfE --lf \
            -o cache_dir=/tmp/corenet_pytest_cache "${files[@]}" -k "not simulator_run and not ptx"
    fi
}

SANITIZE_CASES=(
    "tests/test_kernels_cuda.py::test_conv_forward_backward[float32-case0-False]"
    "tests/test_kernels_cuda.py::test_conv_forward_backward[float32-case1-False]"
    "tests/test_kernels_cuda.py::test_conv_forward_backward[float32-case3-False]"
    "tests/test_kernels_cuda.py::test_conv_forward_backward[float32-case5-True]"
    "tests/test_kernels_cuda.py::test_conv_gradients_asked_for_and_deterministic"
    "tests/test_kernels_cuda.py::test_pool_against_oracle_and_cpu[max-case0]"
    "tests/test_kernels_cuda.py::test_pool_against_oracle_and_cpu[avg-case1]"
    "tests/test_kernels_cuda.py::test_lrn[float32-5-0.75-across]"
    "tests/test_kernels_cuda.py::test_batch_norm_kernels[float32]"
)

step_sanitize() {
    if ! command -v compute-sanitizer >/dev/null; then
        echo "== sanitize: compute-sanitizer not on the PATH" | tee -a "$LOG"
        printf '%s\t%s\t%s\t%s\n' sanitize 127 0 "compute-sanitizer missing" >>"$SUMMARY"
        pack
        return
    fi
    for tool in memcheck racecheck synccheck; do
        CORENET_CUDA_ALLOCATOR=numba run "sanitize_$tool" 90 compute-sanitizer --tool "$tool" --error-exitcode 86 \
            --print-limit 20 --log-file "$WORK/sanitizer_$tool.txt" \
            "$PY" -m pytest -q -p no:cacheprovider "${SANITIZE_CASES[@]}"
    done
}

step_bench() {
    run bench 240 "$PY" benchmarks/bench_cuda.py --repeat 10 --json "$OUT/bench.json"
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
for s in "${steps[@]}"; do
    case $s in
        all) step_env; step_tests; step_sanitize; step_bench ;;
        env) step_env ;;
        tests) step_tests ;;
        sanitize) step_sanitize ;;
        bench) step_bench ;;
        *) echo "unknown step $s (all, env, tests, sanitize, bench)"; exit 2 ;;
    esac
done
pack
echo "== done in $(($(date +%s) - START))s; results in $OUT (summary.json, bench.json, log.txt, gpu_check.tar.gz)" | tee -a "$LOG"
