#!/usr/bin/env bash
# The scale run of issue 13: "a store with 1,000,000 files (100,000 in one folder) and
# 10,000 snapshots: mount time, `ls -l`, `snapfs ls`, `orphans`, `fsck`, `gc` time and
# daemon RSS; the targets: mount < 2 s, RSS < 512 MiB, verbs linear in what they report".
# By hand only (sizes 0.1 and 1 take ~25 minutes on a busy 2-core machine).
#
# Per size F (a fraction of the full store; each axis scales with it), through one mount
# of a fresh local store:
#   1. snapfs_scale writes the store (docs/reliability.md, "Scale"): 10 jobs of 1000*F
#      retained checkpoints, each with 80 private files of 512 B, 8 new shared files of
#      32 KiB and 1 orphan shared file, and a _metadata (renamed into place) naming its
#      private files and the shared files of its job's last 5 checkpoints; plus
#      100,000*F empty files in one folder (big/). F=1: 1,000,000 files, 10,000 snapshots.
#   2. RUNS times: unmount, mount (timed: the CLI call until the mount answers), `ls -l`
#      of big/ (timed, the kernel's caches cold after the remount).
#   3. RUNS times each: `snapfs ls`, `snapfs orphans --older-than 0`, `snapfs fsck`,
#      `snapfs du`, `snapfs stats` of the mount (timed: the whole CLI call; the daemon
#      does the work).
#   4. once: `snapfs orphans --delete --older-than 0`, then `snapfs gc --max-unused 0`
#      (the orphans' packs bytes are the garbage), then `snapfs gc` again (nothing to do).
# After every step the daemon's VmRSS and VmHWM (/proc/PID/status) and the load average.
# Prints one line per step: size, step, median seconds (all runs), lines of output, RSS,
# HWM, load; then the ratio of each median between consecutive sizes.
#
#   scripts/bench_scale.sh [--sizes "0.1 1"] [--runs 3] [--threads 4] [--drop-caches]
#                          [--verbs "ls du"] [--no-gc] [--keep] [--work DIR] [BUILD_DIR]
#   --sizes        the fractions F to run, in order (default "0.1 1"; a quick run: 0.01)
#   --verbs        only these of step 3's verbs (ls, orphans, fsck, du, stats), to time a
#                  change to one of them without the others' half hour
#   --no-gc        skip step 4
#   --keep         leave the last size's store mounted at WORK/mnt (to profile a verb:
#                  perf record -g -p "$(cat WORK/store/lock)"); unmount and remove it by hand
#   --drop-caches  drop the page cache before each mount (needs root; the machine's
#                  other users feel it), so that the mount reads the store from disk
#   BUILD_DIR      default build-release (built here: scripts/build.sh --release)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="0.1 1" RUNS=3 THREADS=4 DROP=0 KEEP=0 W=$PWD/var/bench-scale BUILD=build-release
VERBS="ls orphans fsck du stats" GC=1
while (($#)); do
  case "$1" in
    --sizes) SIZES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --drop-caches) DROP=1; shift ;;
    --verbs) VERBS=$2; shift 2 ;;
    --no-gc) GC=0; shift ;;
    --keep) KEEP=1; shift ;;
    --work) W=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench_scale: unknown option $1" >&2; exit 2 ;;
    *) BUILD=$1; shift ;;
  esac
done
BUILD_DIR=$BUILD bash scripts/build.sh --release --target snapfs --target snapfs_scale >/dev/null
SNAPFS=$PWD/$BUILD/snapfs
GEN=$PWD/$BUILD/snapfs_scale
mkdir -p "$W"
W=$(cd "$W" && pwd)
[[ -z "$(ls -A "$W")" ]] || { echo "bench_scale: $W is not empty" >&2; exit 1; }
cleanup() {
  ((KEEP)) && { echo "bench_scale: kept $W/store, mounted at $W/mnt" >&2; return; }
  mountpoint -q "$W/mnt" 2>/dev/null && "$SNAPFS" umount "$W/mnt" >/dev/null 2>&1
  rm -rf "${W:?}"/*
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
mib() { awk -v k="^$1:" '$0 ~ k { print int($2 / 1024) }' "/proc/$PID/status"; }
declare -A MED
row() {  # size step lines seconds...
  local size=$1 step=$2 lines=$3
  shift 3
  local m
  m=$(median "$@")
  MED[$size/$step]=$m
  printf '%-5s %-22s %9s %9s %8s %8s  %s   (%s)\n' "$size" "$step" "$m" "$lines" \
    "${RSS_AT:-$(mib VmRSS)}" "${HWM_AT:-$(mib VmHWM)}" "$(load)" "$*"
}
mount_it() {
  ((DROP)) && { sync; echo 3 >/proc/sys/vm/drop_caches; }
  local t0 t1
  t0=$(now)
  "$SNAPFS" mount "$W/store" "$W/mnt" --metrics off >/dev/null
  t1=$(now)
  PID=$(cat "$W/store/lock")
  T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}
timed() {  # OUTFILE cmd...: T = seconds, LINES = lines of output
  local out=$1 t0 t1
  shift
  t0=$(now)
  "$@" >"$out"
  t1=$(now)
  T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  LINES=$(wc -l <"$out")
}

printf '%-5s %-22s %9s %9s %8s %8s  %s\n' size step median_s lines RSS_MiB HWM_MiB load
for F in $SIZES; do
  rm -rf "${W:?}"/*
  mkdir -p "$W/mnt"
  "$SNAPFS" init "$W/store" >/dev/null
  mount_it
  row "$F" "mount (empty)" - "$T"
  ckpts=$(awk -v f="$F" 'BEGIN { printf "%d", 1000 * f + 0.5 }')
  big=$(awk -v f="$F" 'BEGIN { printf "%d", 100000 * f + 0.5 }')
  timed "$W/gen.out" "$GEN" "$W/mnt" --checkpoints "$ckpts" --big "$big" --threads "$THREADS"
  sync
  row "$F" "write the store" "$(awk '$1 == "files" { print $2 }' "$W/gen.out")" "$T"
  sed 's/^/      /' "$W/gen.out"

  ts=() ls_ts=()
  for r in $(seq "$RUNS"); do
    "$SNAPFS" umount "$W/mnt" >/dev/null
    mount_it
    ts+=("$T")
    M_RSS=$(mib VmRSS) M_HWM=$(mib VmHWM)
    timed "$W/ls.out" ls -l "$W/mnt/big"
    ls_ts+=("$T")
  done
  RSS_AT=$M_RSS HWM_AT=$M_HWM row "$F" "mount (remount)" - "${ts[@]}"
  row "$F" "ls -l big/ (cold)" "$LINES" "${ls_ts[@]}"

  for verb in "ls" "orphans --older-than 0" "fsck" "du" "stats"; do
    [[ " $VERBS " == *" ${verb%% *} "* ]] || continue
    ts=()
    for r in $(seq "$RUNS"); do
      # shellcheck disable=SC2086
      timed "$W/verb.out" "$SNAPFS" $verb "$W/mnt"
      ts+=("$T")
    done
    row "$F" "snapfs ${verb%% *}" "$LINES" "${ts[@]}"
  done
  if ((GC)); then
    timed "$W/verb.out" "$SNAPFS" orphans --older-than 0 --delete "$W/mnt"
    row "$F" "snapfs orphans --delete" "$LINES" "$T"
    timed "$W/verb.out" "$SNAPFS" gc --max-unused 0 "$W/mnt"
    row "$F" "snapfs gc --max-unused 0" "$LINES" "$T"
    sed 's/^/      /' "$W/verb.out"
    timed "$W/verb.out" "$SNAPFS" gc "$W/mnt"
    row "$F" "snapfs gc (again)" "$LINES" "$T"
  fi
  if ((KEEP)) && [[ $F == "${SIZES##* }" ]]; then
    printf '%-5s kept mounted   (store: %s)\n' "$F" "$(du -sh "$W/store" | cut -f1)"
    continue
  fi
  t0=$(now)
  "$SNAPFS" umount "$W/mnt" >/dev/null
  T=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
  printf '%-5s %-22s %9s   (store: %s)\n' "$F" "umount" "$T" "$(du -sh "$W/store" | cut -f1)"
done

# Linear in what they report: the ratio of each median between consecutive sizes (the
# sizes' ratio is what a linear verb shows).
prev=
for F in $SIZES; do
  if [[ -n $prev ]]; then
    echo "ratio $F / $prev (sizes: $(awk -v a="$F" -v b="$prev" 'BEGIN { printf "%.1f", a / b }')):"
    for step in "mount (remount)" "ls -l big/ (cold)" "snapfs ls" "snapfs orphans" "snapfs fsck" \
      "snapfs du" "snapfs stats" "snapfs orphans --delete" "snapfs gc --max-unused 0"; do
      [[ -n ${MED[$F/$step]:-} ]] || continue
      awk -v s="$step" -v a="${MED[$F/$step]}" -v b="${MED[$prev/$step]}" \
        'BEGIN { printf "  %-26s %8.3f s / %8.3f s = %6.1f\n", s, a, b, (b > 0 ? a / b : 0) }'
    done
  fi
  prev=$F
done
