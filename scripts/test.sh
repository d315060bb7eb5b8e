#!/usr/bin/env bash
# Builds snapfs and runs every test with ctest. Installs what it needs first.
#   scripts/test.sh              normal build (RelWithDebInfo, -Werror)
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build
# Extra arguments after -- go to ctest (e.g. -- -R Chunker).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD_ARGS=()
CTEST_ARGS=()
seen_dashes=0
for a in "$@"; do
  if ((seen_dashes)); then CTEST_ARGS+=("$a"); continue; fi
  case "$a" in
    --) seen_dashes=1 ;;
    *) BUILD_ARGS+=("$a") ;;
  esac
done

BUILD=$(bash scripts/build.sh "${BUILD_ARGS[@]}" | tail -n 1)
if [[ ! -e /dev/fuse ]]; then
  echo "##############################################################" >&2
  echo "## WARNING: /dev/fuse is absent: tests that mount will SKIP ##" >&2
  echo "##############################################################" >&2
fi
# A throwaway PostgreSQL for the `postgres`-labelled tests (the PostgreSQL metadata
# engine); stopped on exit. If it cannot start, the run fails here, with the reason.
PG_DIR=$(mktemp -d /tmp/snapfs-pg-XXXXXX)
trap 'bash "$ROOT/scripts/pg-test-server.sh" down "$PG_DIR" || true; rm -rf "$PG_DIR"' EXIT
if ! SNAPFS_TEST_PG=$(bash scripts/pg-test-server.sh up "$PG_DIR" | tail -n 1); then
  echo "test.sh: FAILED to start the PostgreSQL test server (see above)" >&2
  exit 1
fi
export SNAPFS_TEST_PG
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "${CTEST_ARGS[@]}"
# The marker-scan fuzzer (scripts/fuzz.sh has its own sanitizers) and clang's
# thread-safety analysis of the annotations: normal runs only.
if [[ " ${BUILD_ARGS[*]} " != *" --sanitize "* ]]; then
  bash "$ROOT/scripts/fuzz.sh"
  (cd "$ROOT" && bash scripts/thread_safety.sh "$BUILD")
fi
