#!/bin/sh
# The OpenAPI tests (tests/integration/test_openapi.py) against a real twd:
#
#   run.sh lint          the document passes @apidevtools/swagger-parser's
#                        validation and `redocly lint` (recommended-strict)
#   run.sh answers       every route's answers, in every format, and its
#                        errors, validated against the document with ajv
#   run.sh --install-only  only install the npm packages (scripts/test)
#
# Environment: TWD, TWD_SYNTH (as the other integration tests).
#
# The npm packages, at exact versions, go under tests/openapi/npm/<name>
# (one prefix each: npm removes what a prefix's last install did not ask
# for), never into a package.json or lock file. When they cannot be had the
# test FAILS if CI is set, and is skipped (exit 77) only when CI is unset and
# node, npm or the npm registry is unavailable.
set -u

mode=${1:?usage: run.sh lint|answers|--install-only}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
npm_dir="$here/npm"

swagger_parser=12.1.0 # 13 needs Node.js 22
redocly=2.77.0
ajv=8.20.0

unavailable() {
    if [ -n "${CI:-}" ]; then
        echo "FAIL: $1 (CI is set, so this test must run; scripts/deps.sh --test installs nodejs and npm)"
        exit 1
    fi
    echo "SKIP: $1"
    exit 77
}

command -v node >/dev/null 2>&1 || unavailable "node is not installed"

# pin PACKAGE VERSION NAME FILE...: installs PACKAGE under $npm_dir/NAME
pin() {
    pkg=$1 ver=$2 name=$3
    shift 3
    "$root/scripts/npm-pin" "$pkg" "$ver" "$npm_dir/$name" "$@"
    case $? in
        0) return 0 ;;
        3) unavailable "npm is not installed" ;;
    esac
    npm ping >/dev/null 2>&1 || unavailable "the npm registry cannot be reached"
    echo "FAIL: could not install $pkg@$ver with npm (see the npm output above)"
    exit 1
}

case $mode in
    lint | --install-only)
        pin @apidevtools/swagger-parser "$swagger_parser" swagger-parser package.json
        pin @redocly/cli "$redocly" redocly bin/cli.js ;;
esac
case $mode in
    answers | --install-only) pin ajv "$ajv" ajv dist/ajv.js ;;
esac

export TWD_NPM="$npm_dir"
cd "$root/tests/integration" || exit 1
case $mode in
    --install-only) exit 0 ;;
    lint) exec /usr/bin/python3 -m unittest -v test_openapi.DocumentTest ;;
    answers) exec /usr/bin/python3 -m unittest -v test_openapi.AnswersTest test_openapi.SeveralModelsTest ;;
    *) echo "usage: run.sh lint|answers|--install-only" >&2; exit 2 ;;
esac
