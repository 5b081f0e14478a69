#!/usr/bin/env bash
# Installs the Debian 12 packages twd needs (as root; uses sudo otherwise).
#   scripts/deps.sh          build and run the daemon
#   scripts/deps.sh --test   also what the test suite needs
#   scripts/deps.sh --vendor only the web page's npm packages (static/vendor)
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(build-essential pkg-config meson ninja-build
            libmicrohttpd-dev libjansson-dev libopenblas-dev liblapacke-dev
            libpcre2-dev libcurl4-openssl-dev libssl-dev libarpack2-dev zlib1g-dev libisal-dev check curl)
# the web page's plotting library comes from the npm registry
web_pkgs=(nodejs npm)
# chromium drives the browser test (tests/browser)
test_pkgs=(python3 python3-numpy python3-pandas python3-requests python3-pip python3-torch nodejs npm chromium chromium-driver clang)

# The page's plotting library, served by twd from static/vendor/node_modules
# (git-ignored; never from a CDN). Exact version, no package.json or lock file.
plotly_version=2.35.3
vendor_web() {
  scripts/npm-pin plotly.js-dist-min "$plotly_version" static/vendor plotly.min.js
}
if [[ "${1:-}" == "--vendor" ]]; then vendor_web; exit 0; fi

want=("${build_pkgs[@]}" "${web_pkgs[@]}")
[[ "${1:-}" == "--test" ]] && want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere (e.g. a preinstalled Node.js): keep it
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]}")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
vendor_web
