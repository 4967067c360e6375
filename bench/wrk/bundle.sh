#!/usr/bin/env bash
# Packs shopd, wrk, curl and taskset (and wal-sync-bench, when built), with every shared library they load (the C
# library and its loader included), into one folder, so that bench/wrk/run.sh runs
# on a borrowed x86-64 Linux machine that lacks this project's Debian packages.
# Usage: bench/wrk/bundle.sh DIR   (after a Release build), then on that machine:
#   PATH=$PWD/DIR/bin:$PATH SHOPD=DIR/bin/shopd SHOPD_CPUS=0-7 WRK_CPUS=8-15 \
#     WRK_THREADS=4 bench/wrk/run.sh sync 64 10
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:?usage: bench/wrk/bundle.sh DIR}
[ -x build/cluster/shopd ] || { echo "build shopd first (make build)"; exit 1; }
rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/libexec" "$DIR/lib"
exes=(build/cluster/shopd "$(command -v wrk)" "$(command -v curl)" "$(command -v taskset)")
# The disk's fsync with and without prepared WAL files: a lease's first figure.
[ -x build/bench/wal-sync-bench ] && exes+=(build/bench/wal-sync-bench)
# SHOPD_OLD=<binary>: a second build, as bin/shopd-old, for an A/B there
# (bench/wrk/loop_ab.sh, or run.sh with SHOPD=... alternating).
[ -n "${SHOPD_OLD:-}" ] && exes+=("$SHOPD_OLD=shopd-old")
for spec in "${exes[@]}"; do
  exe=${spec%%=*}
  name=$(basename "$exe")
  [ "$spec" != "$exe" ] && name=${spec#*=}
  cp -L "$exe" "$DIR/libexec/$name"
  # "libx.so => /path (addr)" lines, and the loader's own "/path (addr)" line.
  ldd "$exe" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do cp -Ln "$lib" "$DIR/lib/"; done
  # Each program runs under the bundled loader and libraries, not the machine's.
  cat >"$DIR/bin/$name" <<WRAPPER
#!/bin/sh
D=\$(cd "\$(dirname "\$0")/.." && pwd)
exec "\$D/lib/ld-linux-x86-64.so.2" --library-path "\$D/lib" "\$D/libexec/$name" "\$@"
WRAPPER
  chmod +x "$DIR/bin/$name"
done
echo "$DIR: $(du -sh "$DIR" | cut -f1) ($(ls "$DIR/lib" | wc -l) libraries)"
