#!/bin/sh
# Checkpoints a researcher has, on the GPT-2 124M shape (issue 10's figures):
#   1. a nanoGPT ckpt.pt (trained-from-scratch layout: padded vocabulary,
#      optimizer state, out x in weights) loaded warm: gpt2_load's time, to
#      compare with the same shape as a Hugging Face snapshot;
#   2. both served by one daemon: its resident size after one analysis on
#      each model, against the two checkpoints' tensors plus the budgets.
#
#   bench/models.sh [BUILD_DIR]      (default: build; needs python3-torch)
set -eu
build=${1:-build}
. "$(dirname "$0")/common.sh"
bench_setup "$build" twd-loadbench
here=$(cd "$(dirname "$0")" && pwd)
nano=${TWD_BENCH_NANOGPT:-$(dirname "$model")/twd-bench-nanogpt-124M}
if [ ! -f "$nano/out/ckpt.pt" ]; then
    echo "writing the 124M-shaped nanoGPT checkpoint into $nano (torch)"
    /usr/bin/python3 "$here/nanogpt_ckpt.py" "$nano"
fi
echo "nanoGPT: $nano/out/ckpt.pt ($(du -h "$nano/out/ckpt.pt" | cut -f1), optimizer state included)"
echo "HF:      $model/model.safetensors ($(du -h "$model/model.safetensors" | cut -f1))"
echo "load: $(uptime | sed 's/.*load average/load average/')"
echo "== gpt2_load, warm page cache (median of 10)"
"$build/tools/twd-loadbench" --repeat 2 "$nano" >/dev/null
printf 'nanoGPT ckpt.pt:   '; "$build/tools/twd-loadbench" --repeat 10 "$nano" | tail -1
"$build/tools/twd-loadbench" --repeat 2 "$model" >/dev/null
printf 'HF safetensors:    '; "$build/tools/twd-loadbench" --repeat 10 "$model" | tail -1

echo "== two 124M models in one daemon"
port=${TWD_BENCH_PORT:-18642}
cache=$(mktemp -d)
"$build/server/twd" --port "$port" --no-fetch --cache-dir "$cache" --set umap=false --set access_log=false \
    --model "$model" --model "$nano" 2>"$cache/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$cache"' EXIT
i=0
until curl -sf "localhost:$port/health" >/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { cat "$cache/log"; exit 1; }; sleep 0.1
done
/usr/bin/python3 - "$port" "$model" "$nano" <<'PY'
import json, os, sys, urllib.request
port, hf, nano = sys.argv[1:]
base = "http://localhost:%s" % port
get = lambda p: urllib.request.urlopen(base + p).read()
models = json.loads(get("/models"))["models"]
def metric(name):
    for line in get("/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
rss0 = metric("process_resident_memory_bytes")
for m in models:
    get("/svd?block=0&top=3&model=" + urllib.request.quote(m["name"]))
    get("/probe?block=5&k=5&model=" + urllib.request.quote(m["name"]))
rss1 = metric("process_resident_memory_bytes")
cfg = {}
for line in get("/metrics").decode().splitlines():
    pass
tensors = sum(4 * m["n_params"] for m in models)
files = os.path.getsize(os.path.join(hf, "model.safetensors")) + os.path.getsize(os.path.join(nano, "out", "ckpt.pt"))
print("models: %s" % ", ".join("%s (%s, %.0f M params)" % (m["name"], m["origin"], m["n_params"] / 1e6) for m in models))
print("resident after start: %.0f MiB; after /svd and /probe on each: %.0f MiB" % (rss0 / 2**20, rss1 / 2**20))
print("the two models' f32 tensors: %.0f MiB (files on disk %.0f MiB, the nanoGPT one with its optimizer state)"
      % (tensors / 2**20, files / 2**20))
print("bound: tensors + 2 x (cache_mb 2048 + answer_cache_mb 256) MiB = %.0f MiB; within: %s"
      % (tensors / 2**20 + 2 * 2304, rss1 <= tensors + 2 * 2304 * 2**20))
PY
