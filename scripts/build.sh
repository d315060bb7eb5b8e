#!/usr/bin/env bash
# Configures and builds snapfs into build/ (or build-sanitize/ with --sanitize).
# Prints the build directory on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

BUILD=build
FLAGS=()
for a in "$@"; do
  case "$a" in
    --sanitize) BUILD=build-sanitize; FLAGS+=(-DSNAPFS_SANITIZE=ON -DSNAPFS_BENCH=OFF) ;;
    --release) FLAGS+=(-DCMAKE_BUILD_TYPE=Release) ;;
    *) echo "build.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

cmake -S . -B "$BUILD" -G Ninja "${FLAGS[@]}" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >&2
echo "$BUILD"
