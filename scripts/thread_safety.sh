#!/usr/bin/env bash
# Checks the thread-safety annotations (base/thread_annotations.h) with clang's
# -Wthread-safety over every source file of the core, the backends and the FUSE layer
# (where the mutexes are; tools/ has none). Syntax only: no objects are made, so it
# takes a couple of minutes, not a build. scripts/test.sh runs it after the build.
#   scripts/thread_safety.sh [BUILD_DIR]   (for generated headers; default build/)
# Exits non-zero if any file has a finding.
# Skips (exit 0, loudly) only when no clang++ is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

CXX=$(command -v clang++ || compgen -c clang++- | grep -E '^clang\+\+-[0-9]+$' | sort -t- -k2 -n | tail -n 1 || true)
if [[ -z "$CXX" ]]; then
  echo "###########################################################################" >&2
  echo "## WARNING: clang++ is not installed: thread-safety analysis SKIPPED     ##" >&2
  echo "###########################################################################" >&2
  exit 0
fi
FUSE_CFLAGS="$(pkg-config --cflags fuse3 2>/dev/null || true) $(pkg-config --cflags libpq 2>/dev/null || true)"
BUILD=${1:-build}
files=$(ls base/*.cc core/*.cc core/*/*.cc backends/*.cc fuse/*.cc daemon/*.cc)
echo "thread-safety: $(echo "$files" | wc -w) files with $("$CXX" --version | head -n 1)" >&2
# shellcheck disable=SC2086
printf '%s\n' $files | xargs -P "$(nproc)" -n 4 \
  "$CXX" -std=c++20 -fsyntax-only -Wthread-safety -Wthread-safety-beta -Werror=thread-safety \
  -Wno-unknown-warning-option -I. -I"$BUILD/generated" $FUSE_CFLAGS
echo "thread-safety: clean" >&2
