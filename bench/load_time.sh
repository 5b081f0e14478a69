#!/bin/sh
# Checkpoint load time on the GPT-2 124M shape (the benchmark model).
#
#   bench/load_time.sh [BUILD_DIR]      (default: build)
#
# Writes the 124M-shaped synthetic checkpoint once (F32, with the attn.bias
# buffers, like the real openai-community/gpt2 model.safetensors: 548 MB)
# into $TWD_BENCH_MODEL (default /tmp/twd-bench-124M), then times
# gpt2_load with BUILD_DIR/tools/twd-loadbench:
#   cold: model.safetensors evicted from the page cache before each load
#         (fsync + posix_fadvise DONTNEED, no root needed);
#   warm: page cache warm (the figure "ready in well under a second" means);
# each also timing one read of every page afterwards (--touch), which is the
# cost the mmap defers to the first analyses.
set -eu
build=${1:-build}
. "$(dirname "$0")/common.sh"
bench_setup "$build" twd-loadbench
bench="$build/tools/twd-loadbench"
echo "model: $model ($(du -h "$model/model.safetensors" | cut -f1))"
echo "== cold page cache"
"$bench" --cold --touch --repeat 3 "$model"
echo "== warm page cache"
"$bench" --touch --repeat 1 "$model" >/dev/null   # warm it
"$bench" --touch --repeat 10 "$model"
