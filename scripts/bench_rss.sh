#!/usr/bin/env bash
# Daemon memory against what it has seen (issue 12: "daemon memory bounded by its
# caches"): one snapfs mount of a fresh local store; the daemon's VmRSS and VmHWM
# (/proc/PID/status) after each phase:
#   1. RSS_GIB (10) GiB of new checkpoint data, written by snapfs_flink (incremental
#      checkpoints, 2 writers, retention 3: Flink deletes the subsumed files as it goes);
#   2. RSS_FILES (1,000,000) empty files in RSS_DIRS (10) folders (snapfs_smallfiles touch);
#   3. `ls -l` of every one of those folders (the kernel then holds every inode, and the
#      daemon its lookup count), then again after a remount (cold caches).
# Memory is not timing: this runs on a busy machine too. Prints "phase VmRSS_MiB VmHWM_MiB".
#   scripts/bench_rss.sh [BUILD_DIR]     (needs snapfs, snapfs_flink, snapfs_smallfiles)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-release}
SNAPFS=$PWD/$BUILD/snapfs
FLINK=$PWD/$BUILD/snapfs_flink
SMALL=$PWD/$BUILD/snapfs_smallfiles
GIB=${RSS_GIB:-10}
FILES=${RSS_FILES:-1000000}
DIRS=${RSS_DIRS:-10}
W=${RSS_WORK:-$PWD/var/bench-rss}
for b in "$SNAPFS" "$FLINK" "$SMALL"; do [[ -x $b ]] || { echo "bench_rss: no $b" >&2; exit 1; }; done
mkdir -p "$W"
[[ -z "$(ls -A "$W")" ]] || { echo "bench_rss: $W is not empty" >&2; exit 1; }
cleanup() {
  mountpoint -q "$W/mnt" 2>/dev/null && "$SNAPFS" umount "$W/mnt" >/dev/null 2>&1
  rm -rf "${W:?}"/*
}
trap cleanup EXIT

mount_it() {
  "$SNAPFS" mount "$W/store" "$W/mnt" --metrics off >/dev/null
  PID=$(cat "$W/store/lock")
}
mem() {  # phase
  local rss hwm
  rss=$(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$PID/status")
  hwm=$(awk '/^VmHWM:/ { print int($2 / 1024) }' "/proc/$PID/status")
  printf '%-34s %8s %8s\n' "$1" "$rss" "$hwm"
}

mkdir -p "$W/mnt"
"$SNAPFS" init "$W/store" >/dev/null
mount_it
printf '%-34s %8s %8s\n' phase VmRSS_MiB VmHWM_MiB
mem "mounted, empty"

# ~57 MB of new SST bytes per checkpoint with the default sizes.
ckpts=$(awk -v g="$GIB" 'BEGIN { printf "%d", g * 1073741824 / 57e6 + 0.5 }')
mkdir "$W/mnt/job"
out=$("$FLINK" "$W/mnt/job" --mode incremental --checkpoints "$ckpts")
bytes=$(awk '$1 == "bytes" { print $2 }' <<<"$out")
mem "after $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1073741824 }') GiB of checkpoints"

per=$((FILES / DIRS))
for d in $(seq 1 "$DIRS"); do
  mkdir "$W/mnt/files$d"
  "$SMALL" touch "$W/mnt/files$d" "$per" >/dev/null
done
mem "after $((per * DIRS)) files"
for d in $(seq 1 "$DIRS"); do ls -l "$W/mnt/files$d" >/dev/null; done
mem "after ls -l of them all"
"$SNAPFS" umount "$W/mnt" >/dev/null
mount_it
mem "remounted"
for d in $(seq 1 "$DIRS"); do ls -l "$W/mnt/files$d" >/dev/null; done
mem "remounted, after ls -l of them all"
