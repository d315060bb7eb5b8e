#!/usr/bin/env bash
# Builds snapfs and runs every test with ctest. Installs what it needs first.
#   scripts/test.sh              normal build (RelWithDebInfo, -Werror)
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build
# Extra arguments after -- go to ctest (e.g. -- -R Chunker, -- -L s3 for the S3 tests alone).
#
# The S3 tests (ctest label s3) run against a single-node Ceph + radosgw that this script
# starts once around ctest (scripts/ceph-test-cluster.sh, ~25 s) and always stops. If it
# cannot start, the run fails with the reason: the S3 tests never skip here. Set
# SNAPFS_TEST_S3_ENDPOINT & co yourself (tests/util/s3_env.h) to use a running server.
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
# Every server started here is stopped on exit (scripts/test_servers.sh).
# shellcheck source=scripts/test_servers.sh
source "$ROOT/scripts/test_servers.sh"
start_test_pg test.sh
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Whether the selected tests include S3 ones: ask ctest (-N lists without running).
if [[ -z ${SNAPFS_TEST_S3_ENDPOINT:-} ]] &&
  (cd "$BUILD" && ctest -N -L s3 "${CTEST_ARGS[@]}" | grep '^  Test *#' >/dev/null); then
  start_test_s3 test.sh
fi
export SNAPFS_TEST_S3_REQUIRED=1
cd "$BUILD"
# ctest starts the longest tests first when it knows their times; a fresh build folder
# gets them from tests/ctest_costs.txt (name, runs, seconds; ctest's own format, no
# comments allowed), so that no long test starts last and runs alone at the end.
if [[ ! -s Testing/Temporary/CTestCostData.txt ]]; then
  mkdir -p Testing/Temporary
  cp "$ROOT/tests/ctest_costs.txt" Testing/Temporary/CTestCostData.txt
fi
# Normal build: two tests per core (most of a test's time is spent waiting: fsync, round
# trips to the servers, daemons starting and stopping; at one per core the CPUs were ~30%
# busy). The sanitizer build's tests use several times the CPU: one per core there, and
# the load tests (tests/util/load_run.h) run 10 s, not 30 and 15: the point there is every
# code path under ASan/UBSan, which a shorter run reaches too, and CI stays near 30 minutes.
JOBS=$(nproc)
if [[ " ${BUILD_ARGS[*]} " == *" --sanitize "* ]]; then
  export SNAPFS_LOAD_SECONDS=${SNAPFS_LOAD_SECONDS:-10}
else
  JOBS=$((JOBS * 2))
fi
ctest --output-on-failure -j "$JOBS" --timeout 900 "${CTEST_ARGS[@]}"
# The fuzzers, marker scan and whole snapshot commits (scripts/fuzz.sh has its own
# sanitizers and build), and clang's thread-safety analysis: normal runs only.
if [[ " ${BUILD_ARGS[*]} " != *" --sanitize "* ]]; then
  bash "$ROOT/scripts/fuzz.sh"
  (cd "$ROOT" && bash scripts/thread_safety.sh "$BUILD")
fi
