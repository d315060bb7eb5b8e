#!/usr/bin/env bash
# `snapfs rm` of a FILES-file snapshot through a mount, and the background purge behind
# it (docs/snapshots.md, "Removal in the background"). Per run: a checkpoint folder of
# FILES files of 4 KiB named by its _metadata (as bench_mount.sh makes it), then the
# whole CLI call `snapfs rm` timed, then the purge until `snapfs status` shows no
# backlog, with the daemon's own figure from its log. Prints each run and the medians.
#   scripts/bench_rm.sh [BUILD_DIR]      (a Release build: scripts/build.sh --release)
# Env: RUNS (default 5), FILES (default 10000), BENCH_DIR (default ./var/bench-rm).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-release}
SNAPFS=$PWD/$BUILD/snapfs
SMALL=$PWD/$BUILD/snapfs_smallfiles
RUNS=${RUNS:-5}
FILES=${FILES:-10000}
BENCH_DIR=${BENCH_DIR:-$PWD/var/bench-rm}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
cleanup() {
  mountpoint -q "$BENCH_DIR/mnt" 2>/dev/null && "$SNAPFS" umount "$BENCH_DIR/mnt" || true
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
backlog() { { "$SNAPFS" status "$BENCH_DIR/mnt" --json || true; } | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["purge_backlog"]["folders"])'; }

"$SNAPFS" init "$BENCH_DIR/store" >/dev/null
mkdir -p "$BENCH_DIR/mnt"
"$SNAPFS" mount "$BENCH_DIR/store" "$BENCH_DIR/mnt" --metrics off
mkdir -p "$BENCH_DIR/mnt/job"
rms=() purges=() daemon=() detach=()
for run in $(seq "$RUNS"); do
  dir=$BENCH_DIR/mnt/job/chk-$run
  mkdir -p "$dir"
  "$SMALL" create "$dir" "$FILES" 4096 >/dev/null
  "$SMALL" marker "$dir" "$FILES" >/dev/null
  sync
  t0=$(now); "$SNAPFS" rm "$dir" >/dev/null; t1=$(now)
  while [[ $(backlog) != 0 ]]; do sleep 0.02; done
  t2=$(now)
  d=$(grep -o 'purged 1 removed folder(s): [0-9]* entries in [0-9]* batches, [0-9.]* s' \
        "$BENCH_DIR/store/daemon.log" | tail -n 1 | awk '{ printf "%.1f", $(NF-1) * 1000 }')
  q=$(grep -o 'queued for the purger in [0-9.]* ms' "$BENCH_DIR/store/daemon.log" | tail -n 1 |
        awk '{ printf "%.2f", $(NF-1) }')
  rms+=("$(ms "$t0" "$t1")") purges+=("$(ms "$t1" "$t2")") daemon+=("$d") detach+=("$q")
  echo "run $run: snapfs rm ${rms[-1]} ms (in the daemon: $q ms); purge done (status) after" \
    "${purges[-1]} ms; daemon's purge ${d} ms"
done
echo "median: snapfs rm $(median "${rms[@]}") ms (in the daemon $(median "${detach[@]}") ms);" \
  "purge (status) $(median "${purges[@]}") ms;" \
  "daemon's purge $(median "${daemon[@]}") ms ($FILES files, $RUNS runs)"
