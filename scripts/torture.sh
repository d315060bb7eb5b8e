#!/usr/bin/env bash
# Crash torture: kill -9 of the daemon under a Flink-like load through a real mount (with a
# job restored in CLAIM mode and `snapfs orphans --delete` among the writer's steps)
# (Torture.*, tests/torture_test.cc) and simulated power cuts of the engine (PowerCut.*,
# tests/power_cut_test.cc). Both also run, short, in the normal ctest run.
#   scripts/torture.sh            CI sizes: 20 kills, 30 power cuts (about half a minute)
#   scripts/torture.sh --long     by hand: 1,000 kills and 500 power cuts (SNAPFS_TORTURE_KILLS
#                                 and SNAPFS_POWER_CUTS override either)
#   --shared                      the shared store instead (TortureShared.*,
#                                 tests/torture_shared_test.cc): two hosts on one PostgreSQL
#                                 store, either daemon killed; 8 kills (--long: 1,000, about
#                                 7 s each); starts and stops a test PostgreSQL
#   --s3                          the same with the packs in S3 (TortureSharedS3.*); also
#                                 starts and stops a Ceph radosgw (~25 s)
#   --seed N                      a fixed seed for all (default: the tests' own); a failure
#                                 prints the seed it ran with
#   --build-dir DIR               use an existing build (default: build/, built first)
# Needs /dev/fuse for the kill -9 part (it is skipped loudly without).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KILLS=20
CUTS=30
LONG=0
SHARED=0
S3=0
SEED=
BUILD=
while (($#)); do
  case "$1" in
    --long) LONG=1 ;;
    --shared) SHARED=1 ;;
    --s3) SHARED=1; S3=1 ;;
    --seed) SEED=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0" | cut -c3-; exit 0 ;;
    *) echo "torture.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if ((LONG)); then
  KILLS=1000
  CUTS=500
elif ((SHARED)); then
  KILLS=8
fi
if [[ -z "$BUILD" ]]; then
  BUILD=$(bash scripts/build.sh | tail -n 1)
fi
export SNAPFS_TORTURE_KILLS=${SNAPFS_TORTURE_KILLS:-$KILLS}
export SNAPFS_POWER_CUTS=${SNAPFS_POWER_CUTS:-$CUTS}
if [[ -n "$SEED" ]]; then
  export SNAPFS_TORTURE_SEED=$SEED SNAPFS_POWER_CUT_SEED=$SEED
fi
if ((!SHARED)); then
  echo "torture.sh: $SNAPFS_TORTURE_KILLS kills, $SNAPFS_POWER_CUTS power cuts" >&2
  exec "$BUILD/snapfs_tests" --gtest_filter='PowerCut.*:Torture.*' --gtest_brief=0
fi

# The servers of the shared store, as scripts/test.sh starts them; stopped on exit.
# shellcheck source=scripts/test_servers.sh
source "$ROOT/scripts/test_servers.sh"
start_test_pg torture.sh
FILTER='TortureShared.*'
if ((S3)); then
  FILTER='TortureSharedS3.*'
  start_test_s3 torture.sh
  export SNAPFS_TEST_S3_REQUIRED=1
fi
echo "torture.sh: $SNAPFS_TORTURE_KILLS kills on a shared store ($FILTER)" >&2
"$BUILD/snapfs_tests" --gtest_filter="$FILTER" --gtest_brief=0
