#!/bin/sh
# Browser test of the web page (see test_page.js): Debian's headless Chromium
# driven by playwright-core from npm, against a real twd on a small generated
# checkpoint.
#
# usage: run.sh   (environment: TWD, TWD_SYNTH; ARTIFACTS: folder for screenshots)
#
# Installs playwright-core under tests/browser/node_modules and the page's
# plotly.js under static/vendor when they are missing (never saved to a
# package.json or lock file). Without CI set, the test is skipped (exit 77)
# only when /usr/bin/chromium is missing; with CI set it always runs or fails.
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
command -v node >/dev/null 2>&1 || { echo "FAIL: node is missing (scripts/deps.sh --test installs nodejs)"; exit 1; }

# The normal and the sanitizer build may run this test at once: npm-pin
# installs one at a time.
"$root/scripts/npm-pin" playwright-core "$want" "$here"
case $? in
    0) ;;
    3) echo "FAIL: npm is missing (scripts/deps.sh --test installs it)"; exit 1 ;;
    *) echo "FAIL: could not install playwright-core@$want with npm (see the npm output above)"; exit 1 ;;
esac

# the page's plotting library (normally installed by scripts/deps.sh)
"$root/scripts/deps.sh" --vendor || { echo "FAIL: could not install the page's plotly.js (scripts/deps.sh --vendor)"; exit 1; }

CHROMIUM="$CHROMIUM" exec node "$here/test_page.js"
