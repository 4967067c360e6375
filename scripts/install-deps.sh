#!/usr/bin/env bash
# Installs the Debian 12 packages the build needs, and only those that are missing.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config
  libcaf-dev librocksdb-dev libsimdjson-dev libuv1-dev libspdlog-dev libfmt-dev
  libgtest-dev libhttp-parser-dev libssl-dev libcli11-dev libargon2-dev libjemalloc-dev
  curl wrk gnuplot-nox
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing missing packages: ${missing[*]}"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  # A stock Debian 12 has no sudo: say what to do rather than "command not found".
  if ! command -v sudo >/dev/null; then
    echo "install-deps: not root and no sudo; as root, run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  SUDO=(sudo)
fi
# `env` carries the variable through sudo, which resets the environment.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
