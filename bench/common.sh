# Sourced by the bench/*.sh scripts: the 124M-shaped benchmark checkpoint.
#
#   bench_setup BUILD_DIR TOOL...   checks that BUILD_DIR/tools/TOOL exist,
#                                   writes the checkpoint into $model if absent
#                                   and prints the machine line.
# $model: $TWD_BENCH_MODEL, else $TWD_BENCH_DIR, else /tmp/twd-bench-124M.
model=${TWD_BENCH_MODEL:-${TWD_BENCH_DIR:-/tmp/twd-bench-124M}}

bench_setup() {
    _build=$1
    shift
    for _tool in twd-synth "$@"; do
        [ -x "$_build/tools/$_tool" ] || { echo "missing $_build/tools/$_tool: build first (ninja -C $_build)" >&2; exit 1; }
    done
    if [ ! -f "$model/config.json" ] || [ ! -f "$model/model.safetensors" ]; then
        echo "writing the 124M-shaped checkpoint into $model"
        "$_build/tools/twd-synth" --out "$model" --shape 124M --no-tokenizer
    fi
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
}
