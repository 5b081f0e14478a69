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

#   bench_warm                      prints the load average and reads the
#                                   checkpoint once (warm page cache: measure
#                                   compute, not disk).
bench_warm() {
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    cat "$model/model.safetensors" >/dev/null
}

#   bench_coretype CMD...           runs CMD; if its output suggests another
#                                   OPENBLAS_CORETYPE, runs it again with that
#                                   one. Sets $hint (empty when none) and prints
#                                   the load average afterwards.
bench_coretype() {
    _out=$(mktemp)
    "$@" | tee "$_out"
    hint=$(sed -n 's/.*hint: OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p' "$_out")
    rm -f "$_out"
    if [ -n "$hint" ]; then
        echo "== again with OPENBLAS_CORETYPE=$hint"
        OPENBLAS_CORETYPE=$hint "$@"
    fi
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}
