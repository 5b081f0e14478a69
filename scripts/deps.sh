#!/usr/bin/env bash
# Installs the Debian 12 packages twd needs (as root; uses sudo otherwise).
#   scripts/deps.sh          build and run the daemon
#   scripts/deps.sh --test   also what the test suite needs
set -euo pipefail

build_pkgs=(build-essential pkg-config meson ninja-build
            libmicrohttpd-dev libjansson-dev libopenblas-dev liblapacke-dev
            libpcre2-dev libcurl4-openssl-dev libssl-dev libarpack2-dev check curl)
test_pkgs=(python3 python3-numpy nodejs npm)

want=("${build_pkgs[@]}")
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
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
