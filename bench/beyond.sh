#!/bin/sh
# Speed of the MLP value vectors (docs/MATH.md §9.1) on the GPT-2 124M shape
# (synthetic weights: times do not depend on the values), as a ratio to a plain
# sgemm of the same size measured in the same process.
#
#   bench/beyond.sh [BUILD_DIR] [BLOCK]     (defaults: build, 11)
#
# /mlp/values of every neuron of one block is 3,072 value vectors against the
# 50,257 x 768 embedding matrix, top-5 and bottom-5 each: 2 * 3072 * 50257 *
# 768 = 237 GFLOP of screening GEMM (core/nn/topk.c) plus the exact
# certification. BUILD_DIR/tools/twd-analyses bench-mlp times, best of 3, with
# an empty block cache each time (cold: the value rows are copied and their
# norms computed), against one cblas_sgemm of C (3072, 50257) = Q (3072, 768)
# E^T with the same OpenBLAS threads. Target: ratio within 1.5. The machine may
# be shared: the load average is printed with the figures. Asserts nothing.
set -eu
build=${1:-build}
block=${2:-11}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
bench_setup "$build" twd-analyses
ana="$build/tools/twd-analyses"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$model/model.safetensors" >/dev/null   # warm page cache: measure compute, not disk

out=$(mktemp)
"$ana" bench-mlp --model "$model" --block "$block" --k 5 --reps 3 | tee "$out"
hint=$(sed -n 's/.*hint: OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p' "$out")
rm -f "$out"
if [ -n "$hint" ]; then
    echo "== again with OPENBLAS_CORETYPE=$hint"
    OPENBLAS_CORETYPE=$hint "$ana" bench-mlp --model "$model" --block "$block" --k 5 --reps 3
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
