#!/usr/bin/env bash
# Configures and builds snapfs into build/ (or build-sanitize/ with --sanitize).
# BUILD_DIR=dir overrides the folder (bench.sh keeps its Release build apart this way, so
# that --release does not leave build/'s cached build type at Release for test.sh).
#   --target NAME  build only that target (e.g. snapfs)
# Prints the build directory on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# ccache keys on paths relative to the checkout, so a fresh clone anywhere (CI's) reuses
# the objects an earlier build of the same sources made.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}

BUILD=${BUILD_DIR:-build}
FLAGS=()
TARGETS=()
while (($#)); do
  a=$1
  shift
  case "$a" in
    --target) TARGETS+=(--target "$1"); shift ;;
    --sanitize) BUILD=${BUILD_DIR:-build-sanitize}; FLAGS+=(-DSNAPFS_SANITIZE=ON -DSNAPFS_BENCH=OFF) ;;
    --release) FLAGS+=(-DCMAKE_BUILD_TYPE=Release) ;;
    *) echo "build.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

cmake -S . -B "$BUILD" -G Ninja "${FLAGS[@]}" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" "${TARGETS[@]}" >&2
echo "$BUILD"
