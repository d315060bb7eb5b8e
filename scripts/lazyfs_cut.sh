#!/usr/bin/env bash
# Power cuts through the mount with LazyFS, by hand (LazyFsCut.*, tests/torture_test.cc;
# docs/reliability.md "Power cuts through the mount (LazyFS)" says how to build LazyFS).
# Mounts LazyFS on a fresh folder under /tmp, runs the kill -9 torture with the store's
# meta/ and packs/ on it, and clears LazyFS's cache (`lazyfs::clear-cache`: every unsynced
# byte dropped) after every SIGKILL of the daemon, before the store is checked and mounted
# again. Prints cuts tried, checkpoints verified and acknowledged checkpoints lost.
#   scripts/lazyfs_cut.sh --lazyfs DIR   DIR: a LazyFS checkout built as the doc says
#                                        (its binary is DIR/lazyfs/build/lazyfs), or the
#                                        binary itself; LAZYFS=DIR does the same
#   --cuts N                             number of cuts (default 20)
#   --seed N                             the writer's seed (default: the test's own)
#   --build-dir DIR                      use an existing snapfs build (default: build/, built first)
# Needs root (or /dev/fuse and fusermount3 for the user). Unmounts LazyFS on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
LAZYFS=${LAZYFS:-}
CUTS=20
SEED=
BUILD=
while (($#)); do
  case "$1" in
    --lazyfs) LAZYFS=$2; shift ;;
    --cuts) CUTS=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0" | cut -c3-; exit 0 ;;
    *) echo "lazyfs_cut.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$LAZYFS" ]]; then
  echo "lazyfs_cut.sh: needs a LazyFS build: --lazyfs DIR (or LAZYFS=DIR); LazyFS is not part" >&2
  echo "of snapfs, build it by hand as docs/reliability.md says (\"Power cuts through the mount\")" >&2
  exit 2
fi
BIN=$LAZYFS
[[ -d "$BIN" ]] && BIN=$LAZYFS/lazyfs/build/lazyfs
if [[ ! -x "$BIN" ]]; then
  echo "lazyfs_cut.sh: no LazyFS binary at $BIN (build it as docs/reliability.md says)" >&2
  exit 2
fi
if [[ -z "$BUILD" ]]; then
  BUILD=$(bash scripts/build.sh | tail -n 1)
fi

WORK=$(mktemp -d /tmp/snapfs-lazyfs-XXXXXX)
mkdir "$WORK/root" "$WORK/mnt"
cat >"$WORK/lazyfs.toml" <<EOF
[faults]
fifo_path="$WORK/faults.fifo"
[cache]
apply_eviction=false
[cache.simple]
custom_size="2gb"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile="$WORK/lazyfs.log"
EOF
LPID=
cleanup() {
  if grep -qs " $WORK/mnt " /proc/self/mounts; then fusermount3 -u "$WORK/mnt" || fusermount3 -u -z "$WORK/mnt"; fi
  if [[ -n "$LPID" ]]; then wait "$LPID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" "$WORK/mnt" --config-path "$WORK/lazyfs.toml" -o modules=subdir -o subdir="$WORK/root" -f \
  >"$WORK/lazyfs.out" 2>&1 &
LPID=$!
for _ in $(seq 100); do
  grep -qs " $WORK/mnt " /proc/self/mounts && [[ -p "$WORK/faults.fifo" ]] && break
  sleep 0.1
done
if ! grep -qs " $WORK/mnt " /proc/self/mounts || [[ ! -p "$WORK/faults.fifo" ]]; then
  echo "lazyfs_cut.sh: LazyFS did not mount on $WORK/mnt:" >&2
  cat "$WORK/lazyfs.out" "$WORK/lazyfs.log" >&2 2>/dev/null || true
  exit 1
fi
echo "lazyfs_cut.sh: LazyFS ($BIN) on $WORK/mnt; $CUTS cuts" >&2
export SNAPFS_LAZYFS_DIR=$WORK/mnt SNAPFS_LAZYFS_FIFO=$WORK/faults.fifo
export SNAPFS_LAZYFS_LOG=$WORK/lazyfs.log SNAPFS_LAZYFS_CUTS=$CUTS
if [[ -n "$SEED" ]]; then export SNAPFS_TORTURE_SEED=$SEED; fi
rc=0
"$BUILD/snapfs_tests" --gtest_filter='LazyFsCut.*' --gtest_brief=0 || rc=$?
echo "lazyfs_cut.sh: LazyFS cleared its cache $(grep -c 'cache is cleared' "$WORK/lazyfs.log" || true) times" >&2
exit "$rc"
