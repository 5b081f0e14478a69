#!/bin/sh
# Trajectory statistics (docs/MATH.md §14) on the GPT-2 124M shape (synthetic
# weights: times do not depend on the values).
#
#   bench/stats.sh [BUILD_DIR] [TEXTS] [TOKENS]     (default: build 50 20)
#
# Generates the checkpoint once with BUILD_DIR/tools/twd-synth into
# $TWD_BENCH_MODEL (default /tmp/twd-bench-124M, shared with the other
# benchmarks), then with BUILD_DIR/tools/twd-stats bench (core calls, no HTTP)
# times, best of 3, in the same run:
#   the forward passes alone (one per text),
#   traj_stats (forward passes + logit lens of every state + summaries),
#   a plain float sgemm of the same state rows against wte, in the blocks
#   traj_stats uses and as one call (rows x V floats: 2.9 GB at 50 x 20),
# and prints the ratios: logit lens / plain sgemm (target: within 1.5) and the
# whole statistic / plain sgemm. 50 texts of 20 tokens are 14,250 state rows,
# 1.1 TFLOP of logits. The machine is shared: the load average is printed
# with the figures, and the ratio is only meaningful within one run.
set -eu
build=${1:-build}
texts=${2:-50}
tokens=${3:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
bench_setup "$build" twd-stats
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$model/model.safetensors" >/dev/null   # warm page cache: measure compute, not disk
"$build/tools/twd-stats" bench --model "$model" --random "$texts" --len "$tokens" --k 5 --reps 3
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
