#!/usr/bin/env bash
# Flink-like checkpoint benchmark (issue 12, DESIGN.md §5): the native folder, a libfuse
# passthrough_ll mount with writeback (built from Debian's example source, see
# scripts/bench_passthrough.sh) and a snapfs mount, all on the same disk, side by side in one
# run. Prints every run, the medians and the ratios snapfs/native and snapfs/passthrough.
#   scripts/bench_flink.sh [BUILD_DIR]      (needs snapfs, snapfs_flink, snapfs_smallfiles)
#
# Measured (bench/flink_bench.cc describes the workload):
#   inc_MBps, full_MBps        checkpoint upload throughput, incremental (new bytes) and full
#                              (every checkpoint rewrites the whole state: bytes already stored)
#   inc_metadata_ms, full_...  median _metadata write (~110 tiny writes) + fsync + rename
#   inc_checkpoint_ms          median duration of one incremental checkpoint
#   inc_subsume_ms             median time to subsume (delete) one checkpoint, not in MBps
#   ls_cold_s, ls_warm_s       `ls -l` of a folder of LS_ENTRIES empty files: after a remount
#                              and dropping the page cache, then again at once
#   touch_ops                  creating those files (open O_CREAT + close), files/s, once
#
# Env:
#   RUNS=3                 repetitions (each target once per run, order rotated); medians
#   BENCH_DIR              folder on the disk under test (default ./var/bench-flink); emptied
#   FLINK_CHECKPOINTS=30   checkpoints per run
#   FLINK_FILES=3          new SST files per writer per checkpoint (full: files of the state)
#   FLINK_WRITERS=2        upload threads
#   FLINK_MIN_MB=0.3 FLINK_MAX_MB=50   SST sizes (log-uniform), FLINK_SEED=1
#   LS_ENTRIES=200000      entries of the `ls -l` folder (0: skip that test)
#   PASSTHROUGH=1          0: no passthrough_ll column
#   RESULTS_DIR            also write every value as "target key value" lines to
#                          RESULTS_DIR/flink.txt
#   FLINK_PROFILE=DIR      afterwards, one more snapfs incremental run with `perf record -a -g`
#                          (perf.data, reports) and the daemon's /metrics before and after in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/bench_passthrough.sh
source scripts/bench_passthrough.sh

BUILD=${1:-build}
SNAPFS=$PWD/$BUILD/snapfs
FLINK=$PWD/$BUILD/snapfs_flink
SMALL=$PWD/$BUILD/snapfs_smallfiles
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-$PWD/var/bench-flink}
LS_ENTRIES=${LS_ENTRIES:-200000}
PASSTHROUGH=${PASSTHROUGH:-1}
FLINK_ARGS=(--checkpoints "${FLINK_CHECKPOINTS:-30}" --files "${FLINK_FILES:-3}"
            --writers "${FLINK_WRITERS:-2}" --min-mb "${FLINK_MIN_MB:-0.3}"
            --max-mb "${FLINK_MAX_MB:-50}" --seed "${FLINK_SEED:-1}")

log() { echo "bench_flink: $*" >&2; }
die() { log "$*"; exit 1; }
for b in "$SNAPFS" "$FLINK" "$SMALL"; do [[ -x $b ]] || die "no $b (build it first)"; done

mkdir -p "$BENCH_DIR"
B=$(cd "$BENCH_DIR" && pwd)
[[ -z "$(ls -A "$B")" ]] || die "$B is not empty"
TARGETS=(native snapfs)
PT=""
if [[ $PASSTHROUGH == 1 ]]; then
  PT=$(passthrough_build "$BUILD") || die "cannot build passthrough_ll"
  TARGETS=(native passthrough snapfs)
fi

cleanup() {
  local m
  for m in "$B"/*-mnt; do
    mountpoint -q "$m" 2>/dev/null || continue
    case $m in
      *-pt-mnt) passthrough_umount "$m" ;;
      *) "$SNAPFS" umount "$m" >/dev/null 2>&1 || true ;;
    esac
  done
  rm -rf "${B:?}"/*
}
trap cleanup EXIT

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
  if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# target_up T NAME: a fresh, empty folder of target T; prints where to write.
target_up() {
  local t=$1 n=$2
  case $t in
    native) mkdir -p "$B/$n"; echo "$B/$n" ;;
    passthrough)
      mkdir -p "$B/$n-src" "$B/$n-pt-mnt"
      passthrough_mount "$PT" "$B/$n-src" "$B/$n-pt-mnt" || return 1
      echo "$B/$n-pt-mnt" ;;
    snapfs)
      mkdir -p "$B/$n-mnt"
      "$SNAPFS" init "$B/$n-store" >/dev/null
      "$SNAPFS" mount "$B/$n-store" "$B/$n-mnt" --metrics off >/dev/null
      echo "$B/$n-mnt" ;;
  esac
}
# target_remount T NAME: empties the FUSE daemon's caches (native: nothing).
target_remount() {
  local t=$1 n=$2
  case $t in
    native) ;;
    passthrough) passthrough_umount "$B/$n-pt-mnt" && passthrough_mount "$PT" "$B/$n-src" "$B/$n-pt-mnt" ;;
    snapfs) "$SNAPFS" umount "$B/$n-mnt" >/dev/null &&
              "$SNAPFS" mount "$B/$n-store" "$B/$n-mnt" --metrics off >/dev/null ;;
  esac
}
target_down() {
  local t=$1 n=$2
  case $t in
    native) rm -rf "${B:?}/$n" ;;
    passthrough) passthrough_umount "$B/$n-pt-mnt"; rm -rf "${B:?}/$n-src" "${B:?}/$n-pt-mnt" ;;
    snapfs) "$SNAPFS" umount "$B/$n-mnt" >/dev/null; rm -rf "${B:?}/$n-store" "${B:?}/$n-mnt" ;;
  esac
}

declare -A RES
LOADS=()
add() { RES[$1,$2]+="$3 "; [[ -z "${RESULTS_DIR:-}" ]] || echo "$1 $2 $3" >>"$RESULTS_DIR/flink.txt"; }
[[ -z "${RESULTS_DIR:-}" ]] || { mkdir -p "$RESULTS_DIR"; : >"$RESULTS_DIR/flink.txt"; }

log "disk under test: $B ($(stat -f -c %T "$B"), $(df -P "$B" | awk 'NR == 2 { print $1 }')); targets ${TARGETS[*]}"
log "workload: ${FLINK_ARGS[*]}; $RUNS runs; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- Flink-like checkpoints ----------------------------------------------------------------
for run in $(seq 1 "$RUNS"); do
  # Rotate the order so that a target is not always the one after another's deletes.
  order=("${TARGETS[@]:$(((run - 1) % ${#TARGETS[@]}))}" "${TARGETS[@]:0:$(((run - 1) % ${#TARGETS[@]}))}")
  for mode in incremental full; do
    m=${mode:0:4}; [[ $m == incr ]] && m=inc
    for t in "${order[@]}"; do
      dir=$(target_up "$t" flink)
      drop_caches
      l0=$(loadavg)
      out=$("$FLINK" "$dir" --mode "$mode" "${FLINK_ARGS[@]}")
      l1=$(loadavg)
      LOADS+=("$l0" "$l1")
      target_down "$t" flink
      while read -r k v; do
        case $k in
          flink_MBps) add "$t" "${m}_MBps" "$v" ;;
          metadata_ms) add "$t" "${m}_metadata_ms" "$v" ;;
          checkpoint_ms | subsume_ms) [[ $m == inc ]] && add "$t" "${m}_$k" "$v" ;;
          flink_first_MBps) add "$t" full_first_MBps "$v" ;;
          bytes) bytes=$v ;;
        esac
      done <<<"$out"
      log "run $run $mode $t: $(echo "$out" | awk '$1 == "flink_MBps" || $1 == "metadata_ms" { printf "%s %s  ", $1, $2 }')($bytes bytes; load $l0 -> $l1)"
    done
  done
done

# --- ls -l of a big folder ---------------------------------------------------------------------
LS_TARGETS=("${TARGETS[@]}")
if [[ -n $PT ]] && ((LS_ENTRIES + 1000 > $(ulimit -Hn))); then
  # passthrough_ll keeps an O_PATH descriptor open for every inode the kernel holds, and
  # `ls -l` makes the kernel hold all of them: it would fail with EMFILE/EBADF.
  log "ls -l: no passthrough_ll column: $LS_ENTRIES entries need more open files than the hard limit $(ulimit -Hn)"
  LS_TARGETS=(native snapfs)
fi
if ((LS_ENTRIES > 0)); then
  declare -A LSDIR
  for t in "${LS_TARGETS[@]}"; do
    dir=$(target_up "$t" ls)
    mkdir "$dir/big"
    LSDIR[$t]=$dir/big
    ops=$("$SMALL" touch "$dir/big" "$LS_ENTRIES")
    add "$t" touch_ops "$ops"
    log "$t: $LS_ENTRIES files created ($ops/s)"
  done
  for run in $(seq 1 "$RUNS"); do
    for t in "${LS_TARGETS[@]}"; do
      target_remount "$t" ls
      drop_caches
      l0=$(loadavg)
      t0=$(now); n=$(ls -l "${LSDIR[$t]}" | wc -l); t1=$(now)
      ((n == LS_ENTRIES + 1)) || die "ls -l of ${LSDIR[$t]} listed $((n - 1)) entries, not $LS_ENTRIES"
      add "$t" ls_cold_s "$(elapsed "$t0" "$t1")"
      t0=$(now); ls -l "${LSDIR[$t]}" >/dev/null; t1=$(now)
      add "$t" ls_warm_s "$(elapsed "$t0" "$t1")"
      LOADS+=("$l0" "$(loadavg)")
      log "run $run ls -l $t: cold $(echo "${RES[$t,ls_cold_s]}" | awk '{ print $NF }') s, warm $(echo "${RES[$t,ls_warm_s]}" | awk '{ print $NF }') s"
    done
  done
  for t in "${LS_TARGETS[@]}"; do target_down "$t" ls; done
fi

# --- summary -----------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2fx", a / b; else print "-" }'; }
printf '\n%-18s' benchmark
for t in "${TARGETS[@]}"; do printf ' %34s' "$t (runs; median)"; done
printf ' %9s' "s/native"
[[ -n $PT ]] && printf ' %9s' "s/passth"
echo
for k in inc_MBps full_MBps full_first_MBps inc_metadata_ms full_metadata_ms inc_checkpoint_ms \
         inc_subsume_ms touch_ops ls_cold_s ls_warm_s; do
  [[ -v "RES[native,$k]" ]] || continue
  printf '%-18s' "$k"
  declare -A MED=()
  for t in "${TARGETS[@]}"; do
    if [[ -v "RES[$t,$k]" ]]; then
      # shellcheck disable=SC2086  # the runs are words
      MED[$t]=$(median ${RES[$t,$k]})
      printf ' %25s %8s' "${RES[$t,$k]}" "${MED[$t]}"
    else
      MED[$t]=""
      printf ' %25s %8s' "-" "-"
    fi
  done
  printf ' %9s' "$(ratio "${MED[snapfs]}" "${MED[native]}")"
  [[ -n $PT ]] && printf ' %9s' "$(ratio "${MED[snapfs]}" "${MED[passthrough]}")"
  echo
done
echo "(MBps: MB = 1e6 bytes, higher is better; *_ms and *_s are times, lower is better, so a"
echo " ratio below 1 there is faster; full_MBps leaves out the first checkpoint, full_first_MBps)"
echo "(workload ${FLINK_ARGS[*]}; ls -l of $LS_ENTRIES entries; $RUNS runs; $(date -u +%F);"
echo " load average at the start and end of each measurement: min $(printf '%s\n' "${LOADS[@]}" | sort -g | head -1)," \
     "median $(median "${LOADS[@]}"), max $(printf '%s\n' "${LOADS[@]}" | sort -g | tail -1))"

# --- profile of the snapfs incremental case ---------------------------------------------------
if [[ -n "${FLINK_PROFILE:-}" ]]; then
  P=$(mkdir -p "$FLINK_PROFILE" && cd "$FLINK_PROFILE" && pwd)
  port=$((20000 + RANDOM % 20000))
  mkdir -p "$B/prof-mnt"
  "$SNAPFS" init "$B/prof-store" >/dev/null
  "$SNAPFS" mount "$B/prof-store" "$B/prof-mnt" --metrics "127.0.0.1:$port" >/dev/null
  pid=$("$SNAPFS" status "$B/prof-mnt" --json | jq -r '.pid // .daemon.pid // empty' || true)
  curl -fsS "http://127.0.0.1:$port/metrics" >"$P/metrics-before.txt" || log "no metrics on port $port"
  drop_caches
  perf record -a -g -F 499 -o "$P/perf.data" -- \
    "$FLINK" "$B/prof-mnt" --mode incremental "${FLINK_ARGS[@]}" >"$P/flink.txt" 2>"$P/perf-record.log"
  curl -fsS "http://127.0.0.1:$port/metrics" >"$P/metrics-after.txt" || true
  "$SNAPFS" stats "$B/prof-mnt" >"$P/stats.txt" 2>&1 || true
  "$SNAPFS" umount "$B/prof-mnt" >/dev/null
  echo "daemon pid ${pid:-?}" >"$P/daemon.txt"
  # What the run changed in /metrics (counters and histogram sums).
  awk 'NR == FNR { if ($1 !~ /^#/) before[$1] = $2; next }
       $1 !~ /^#/ && $1 !~ /_bucket/ && $2 != before[$1] { printf "%s %.6g\n", $1, $2 - before[$1] }' \
    "$P/metrics-before.txt" "$P/metrics-after.txt" >"$P/metrics-diff.txt" 2>/dev/null || true
  # Self time (no call graphs: Release builds have no frame pointers): by process and
  # object, then the daemon's and the writer's hottest symbols (kernel ones included).
  { perf report -i "$P/perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null || true; } |
    grep -v '^$' | head -60 >"$P/by-comm-dso.txt" || true
  if [[ -n $pid ]]; then
    { perf report -i "$P/perf.data" --no-children --percentage relative --pid "$pid" --sort dso,sym --stdio -g none \
        2>/dev/null || true; } | grep -v '^$' | head -80 >"$P/daemon-symbols.txt" || true
  fi
  { perf report -i "$P/perf.data" --no-children --percentage relative --comm snapfs_flink --sort dso,sym --stdio -g none \
      2>/dev/null || true; } | grep -v '^$' | head -50 >"$P/writer-symbols.txt" || true
  rm -rf "${B:?}/prof-store" "${B:?}/prof-mnt"
  log "profile in $P: $(tr '\n' ' ' <"$P/flink.txt")"
fi
