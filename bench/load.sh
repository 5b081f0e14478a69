#!/bin/sh
# Load at 64 connections (wrk, Debian's package) against a twd this script
# starts on the 124M-shaped synthetic checkpoint (bench/common.sh):
#
#   bench/load.sh [BUILD_DIR] [SECONDS]      (defaults: build, 10)
#
# Three runs of SECONDS each, reporting requests/s, p50/p99/max latency and
# errors (socket errors, timeouts, non-2xx answers):
#   health   GET /health
#   cached   one answer-cache hit (/svd?block=5&top=5, warmed first)
#   mix      4 in 5 of the 12 warmed /svd answers, 1 in 5 cold (/trajectory
#            of a random phrase: computed by the 2 workers; the queue is
#            bounded by max_queue=64, so 503s with Retry-After may be part of
#            the answer). Closed loop: a connection waits for its answer, so
#            the cold requests set the pace.
# then the bytes of /umap/layout?projection=pca (the whole fitted cloud)
# plain and gzipped. Asserts nothing; the machine may be shared: the load
# average is printed with the figures.
set -eu
build=${1:-build}
secs=${2:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bench_setup "$build"
[ -x "$build/server/twd" ] || { echo "missing $build/server/twd" >&2; exit 1; }

run=$(mktemp -d)
stop() {
    pid=$(head -1 "$run/pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -rf "$run"
}
trap stop EXIT
# every wrk connection comes from 127.0.0.1: let one address hold the whole queue
"$build/server/twd" --model "$model" --port 0 --pid-file "$run/pid" --cache-dir "$run/cache" \
    --set umap=false --set access_log=false --set max_queue=64 --set max_queue_per_client=64 \
    2>"$run/log" &
i=0
while [ ! -s "$run/pid" ] || [ "$(sed -n 3p "$run/pid")" != listening ]; do
    sleep 0.1; i=$((i + 1))
    [ $i -lt 300 ] || { echo "twd did not start:" >&2; cat "$run/log" >&2; exit 1; }
done
url=$(sed -n 2p "$run/pid")
url=${url%/}
until curl -sf "$url/health" >/dev/null; do sleep 0.2; done
echo "twd $(sed -n 1p "$run/pid") on $url, model $model"
for b in 0 1 2 3 4 5 6 7 8 9 10 11; do curl -sf "$url/svd?block=$b&top=5" >/dev/null; done

for mode in health cached mix; do
    echo "load average before $mode: $(cut -d' ' -f1-3 /proc/loadavg)"
    TWD_LOAD_MODE=$mode wrk -t2 -c64 -d"${secs}s" --timeout 30s -s "$here/bench/load.lua" "$url" |
        sed -n 's/^RESULT //p'
done

# the mix's cold requests may still be draining from the queue
i=0
until curl -sf -o /dev/null "$url/umap/layout?projection=pca"; do
    sleep 1; i=$((i + 1))
    [ $i -lt 120 ] || { echo "/umap/layout does not answer" >&2; exit 1; }
done
plain=$(curl -sf -o /dev/null -w '%{size_download}' "$url/umap/layout?projection=pca")
gz=$(curl -sf -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: gzip' "$url/umap/layout?projection=pca")
echo "/umap/layout?projection=pca: $plain bytes plain, $gz bytes gzip ($(awk "BEGIN { printf \"%.1f\", $plain / $gz }")x smaller)"
