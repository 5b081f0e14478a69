#!/bin/sh
# Weight-analysis timings and the numpy reference comparison on the GPT-2 124M
# shape (synthetic weights: times do not depend on the values).
#
#   bench/analyses.sh [BUILD_DIR] [--no-ref]     (default: build)
#
# Generates the checkpoint once with BUILD_DIR/tools/twd-synth into
# $TWD_BENCH_MODEL (default /tmp/twd-bench-124M, shared with bench/forward.sh).
# Then, with BUILD_DIR/tools/twd-analyses bench (core calls, no HTTP):
#   svd block 11, qk and vo, top 20, k 5     (target: cold < 1.5 s)
#   probe of 100 words on block 11, k 5      (target: cold < 3 s)
#   embeddings, all four schemes, k 5        (target: cold < 0.5 s)
#   normalization statistics, bias probes
# "cold" = empty block cache (the first request for that block after start:
# LN_b(E) and the SVD factors are computed), "warm-cache" = the same call
# again with them cached (the API layer's answer cache makes a true repeat
# cheaper still). Best of 3. First with OpenBLAS's own CPU detection, then,
# if the tool reports that OpenBLAS picked a slower core than the CPU
# supports, again with OPENBLAS_CORETYPE set as suggested.
# Finally the numpy reference (tests/ref/analyses_ref.py) on blocks 0, 5, 11
# with the same 100 ids: identical ids, values within 1e-4; id swaps between
# reference scores closer than 1e-6 of the list scale are reported, not failed.
# The machine is shared: the load average is printed with the figures.
set -eu
build=${1:-build}
ref=1
[ "${2:-}" = "--no-ref" ] && ref=0
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
bench_setup "$build" twd-analyses
ana="$build/tools/twd-analyses"
bench_warm

ids=$(awk 'BEGIN { for (w = 0; w < 100; w++) printf("%s%d", w ? "," : "", (w * 7919 + 13) % 50257) }')

bench_coretype "$ana" bench --model "$model" --block 11 --ids "$ids" --k 5 --top 20 --reps 3

if [ "$ref" = 1 ]; then
    echo "== numpy reference, blocks 0,5,11"
    ${hint:+env OPENBLAS_CORETYPE=$hint} /usr/bin/python3 "$here/tests/ref/analyses_ref.py" check \
        --driver "$ana" --model "$model" --blocks 0,5,11 --ids "$ids" --k 5 --top 20 \
        --near-tie 1e-6
fi
