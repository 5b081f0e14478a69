#!/bin/sh
# Browser test of the web page (see test_page.js): Debian's headless Chromium
# driven by playwright-core from npm, against a real twd on a small generated
# checkpoint.
#
# usage: run.sh   (environment: TWD, TWD_SYNTH; ARTIFACTS: folder for screenshots)
#
# Installs playwright-core under tests/browser/node_modules (tests/support/
# npm_test.sh) and the page's plotly.js under static/vendor when they are
# missing (never saved to a package.json or lock file). Without CI set, the
# test is skipped (exit 77) when /usr/bin/chromium, node, npm or the registry
# is missing; with CI set it always runs or fails.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
want=1.65.1
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
    if [ -n "${CI:-}" ]; then
        echo "FAIL: $CHROMIUM is missing (CI is set, so this test must run: scripts/deps.sh --test installs chromium)"
        exit 1
    fi
    echo "SKIP: $CHROMIUM is missing (scripts/deps.sh --test installs chromium and chromium-driver)"
    exit 77
fi
# The normal and the sanitizer build may run this test at once: npm-pin
# installs one at a time.
. "$root/tests/support/npm_test.sh"
npm_need playwright-core "$want" "$here"

# the page's plotting library (normally installed by scripts/deps.sh)
"$root/scripts/deps.sh" --vendor || { echo "FAIL: could not install the page's plotly.js (scripts/deps.sh --vendor)"; exit 1; }

CHROMIUM="$CHROMIUM" exec node "$here/test_page.js"
