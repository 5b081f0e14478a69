#!/bin/sh
# Page timings on the GPT-2 124M shape (synthetic weights; the page's draw
# times depend on the shapes, not the values): the first trajectory on screen
# after navigation with the UMAP layout cached, full draws and slider steps.
#
# usage: bench/page.sh BUILD_DIR [umap|pca]
# Writes the checkpoint (with GPT-2-sized tokenizer files) once into
# $TWD_BENCH_PAGE_MODEL (default /tmp/twd-bench-124M-page) and keeps twd's
# cache in $TWD_BENCH_PAGE_CACHE (default /tmp/twd-bench-124M-page-cache): the
# first run fits the UMAP layout (minutes), later runs read it from disk.
# TWD_BENCH_PAGE_STATIC: a page folder (static/ of another worktree) served
# instead of this tree's, for a before/after with the same daemon.
# Needs Debian's chromium and node (scripts/deps.sh --test) and playwright-core
# (installed by tests/browser/run.sh).
set -eu
build=${1:?usage: bench/page.sh BUILD_DIR [umap|pca]}
projection=${2:-umap}
here=$(cd "$(dirname "$0")" && pwd)
model=${TWD_BENCH_PAGE_MODEL:-/tmp/twd-bench-124M-page}
cache=${TWD_BENCH_PAGE_CACHE:-/tmp/twd-bench-124M-page-cache}
[ -x "$build/server/twd" ] && [ -x "$build/tools/twd-synth" ] || { echo "build first: ninja -C $build" >&2; exit 1; }
[ -d "$here/../tests/browser/node_modules/playwright-core" ] || { echo "playwright-core is missing: run tests/browser/run.sh once" >&2; exit 1; }
if [ ! -f "$model/model.safetensors" ]; then
    echo "writing the 124M-shaped checkpoint into $model"
    "$build/tools/twd-synth" --out "$model" --shape 124M
fi
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
TWD="$build/server/twd" MODEL="$model" CACHE="$cache" PROJECTION="$projection" STATIC="${TWD_BENCH_PAGE_STATIC:-}" exec node "$here/page_bench.js"
