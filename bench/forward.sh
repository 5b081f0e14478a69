#!/bin/sh
# Forward-pass timings on the GPT-2 124M shape (synthetic weights: the time
# does not depend on the values).
#
#   bench/forward.sh [BUILD_DIR]      (default: build)
#
# Generates the checkpoint once with BUILD_DIR/tools/twd-synth into
# $TWD_BENCH_MODEL (default /tmp/twd-bench-124M), then times a 10-token and a
# 1024-token phrase with tools/twd-forward: the attention patterns kept (as
# /trajectory needs them) and skipped, with 1 and 2 OpenBLAS threads, with the
# OpenBLAS core as detected and as forced.
set -eu
build=${1:-build}
. "$(dirname "$0")/common.sh"
bench_setup "$build" twd-forward
fwd="$build/tools/twd-forward"
# OpenBLAS's DYNAMIC_ARCH may not recognise a virtual CPU and fall back to
# its generic "Prescott" (SSE3) kernels, 4-6x slower; OPENBLAS_CORETYPE
# (read when the library loads) selects the right ones.
if grep -qm1 ' avx512f' /proc/cpuinfo; then best=SkylakeX
elif grep -qm1 ' avx2' /proc/cpuinfo; then best=Haswell
else best=""; fi
for core in "" $best; do
    for threads in 1 2; do
        if [ -n "$core" ]; then export OPENBLAS_CORETYPE=$core; else unset OPENBLAS_CORETYPE || true; fi
        export OPENBLAS_NUM_THREADS=$threads
        echo "OPENBLAS_CORETYPE=${core:-(detected)} OPENBLAS_NUM_THREADS=$threads"
        "$fwd" --model "$model" --random 10 --bench 10
        "$fwd" --model "$model" --random 10 --bench 10 --gelu erf
        "$fwd" --model "$model" --random 1024 --bench 3
        "$fwd" --model "$model" --random 1024 --bench 3 --skip-attention
    done
done
