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

# The page's plotting library, served by twd from static/vendor (git-ignored;
# never from a CDN): plotly.js built from its npm source package with only the
# trace types the page draws (scripts/plotly-bundle.js), 2.0 MB against the
# full bundle's 4.6 MB. The build's packages (plotly.js with its dependencies,
# esbuild, buffer) go to .cache/plotly-build (git-ignored, not installed with
# twd); exact versions, no package.json or lock file, and plotly's dependency
# ranges resolved as they stood the day after its release (NPM_PIN_BEFORE).
plotly_version=2.35.3
plotly_before=2025-04-13
esbuild_version=0.25.2
buffer_version=6.0.3
# the bundle's URL changes with its content (browsers keep /vendor/ a week):
# static/index.html and static/js/plot.js name the same file
plotly_bundle=static/vendor/plotly-$plotly_version-twd1.min.js
vendor_web() {
  local b=.cache/plotly-build
  NPM_PIN_BEFORE=$plotly_before scripts/npm-pin plotly.js "$plotly_version" "$b/plotly" lib/core.js build/plotcss.js
  scripts/npm-pin esbuild "$esbuild_version" "$b/esbuild"
  scripts/npm-pin buffer "$buffer_version" "$b/buffer"
  node scripts/plotly-bundle.js "$plotly_bundle" "$b/plotly" "$b/esbuild" "$b/buffer"
  # what earlier versions of this script put in static/vendor (the full
  # plotly.js-dist-min, other bundles): meson install would copy it along
  rm -rf static/vendor/node_modules
  find static/vendor -maxdepth 1 -name 'plotly-*.min.js' ! -name "${plotly_bundle##*/}" -delete
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
