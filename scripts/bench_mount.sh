#!/usr/bin/env bash
# Mount benchmarks: the native folder, a libfuse passthrough_ll mount with writeback (built
# from Debian's example source at bench time, scripts/bench_passthrough.sh) and a snapfs
# mount on the same disk, side by side, in one run. Prints MB/s or ops/s per run, the
# median, and the ratios snapfs/native and snapfs/passthrough.
#   scripts/bench_mount.sh [BUILD_DIR]
# Env: RUNS (default 3), SIZE_MIB (default 2048), FILES (default 10000),
#      BENCH_DIR (default ./var/bench: must be on the disk you want to measure),
#      PASSTHROUGH (default 1; 0: no passthrough_ll column).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench_passthrough.sh
source scripts/bench_passthrough.sh
BUILD=${1:-build}
SNAPFS=$PWD/$BUILD/snapfs
SMALL=$PWD/$BUILD/snapfs_smallfiles
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-2048}
FILES=${FILES:-10000}
BENCH_DIR=${BENCH_DIR:-$PWD/var/bench}
PASSTHROUGH=${PASSTHROUGH:-1}
PT=""
TARGETS=(native snapfs)
if [[ $PASSTHROUGH == 1 ]]; then
  PT=$(passthrough_build "$BUILD") || { echo "bench_mount: cannot build passthrough_ll" >&2; exit 1; }
  TARGETS=(native passthrough snapfs)
fi

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
SRC=/dev/shm/snapfs-bench-src
cleanup() {
  mountpoint -q "$BENCH_DIR/mnt" 2>/dev/null && "$SNAPFS" umount "$BENCH_DIR/mnt" || true
  mountpoint -q "$BENCH_DIR/pt-mnt" 2>/dev/null && passthrough_umount "$BENCH_DIR/pt-mnt" || true
  rm -f "$SRC"
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

# Source data in RAM so the reader is never the bottleneck.
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$SRC"

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# One run of every measurement in folder $1. Prints "name value" lines.
# $2: a command that empties the daemon's caches (remount), or ":" for native.
# $3: native, passthrough or snapfs.
run_suite() {
  local dir=$1 recache=$2 kind=$3 t0 t1
  local bytes=$((SIZE_MIB << 20))
  drop_caches
  t0=$(now); dd if="$SRC" of="$dir/seq" bs=1M conv=fsync status=none; t1=$(now)
  echo "seq_write_MBps $(mbps "$bytes" "$(elapsed "$t0" "$t1")")"
  $recache; drop_caches
  t0=$(now); dd if="$dir/seq" of=/dev/null bs=1M status=none; t1=$(now)
  echo "seq_read_cold_MBps $(mbps "$bytes" "$(elapsed "$t0" "$t1")")"
  t0=$(now); dd if="$SRC" of="$dir/dup" bs=1M conv=fsync status=none; t1=$(now)
  echo "dup_write_MBps $(mbps "$bytes" "$(elapsed "$t0" "$t1")")"
  mkdir -p "$dir/small"
  drop_caches
  echo "small_create_ops $("$SMALL" create "$dir/small" "$FILES" 16384)"
  echo "small_delete_ops $("$SMALL" delete "$dir/small" "$FILES")"
  # Cleanup of a checkpoint: rm -rf of a folder of FILES small files.
  mkdir -p "$dir/rmrf"
  "$SMALL" create "$dir/rmrf" "$FILES" 4096 >/dev/null
  t0=$(now); rm -rf "$dir/rmrf"; t1=$(now)
  echo "rm_rf_files_per_s $(awk -v n="$FILES" -v s="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.1f", n / s }')"
  # snapfs rm of a FILES-file snapshot (native: rm -rf of the same folder).
  mkdir -p "$dir/job/chk-1"
  "$SMALL" create "$dir/job/chk-1" "$FILES" 4096 >/dev/null
  "$SMALL" marker "$dir/job/chk-1" "$FILES" >/dev/null
  if [[ $kind != snapfs ]]; then
    t0=$(now); rm -rf "$dir/job/chk-1"; t1=$(now)
  else
    t0=$(now); "$SNAPFS" rm "$dir/job/chk-1" >/dev/null; t1=$(now)
  fi
  echo "snapshot_rm_ms $(awk -v s="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.1f", s * 1000 }')"
}

declare -A RES
for run in $(seq 1 "$RUNS"); do
  rm -rf "$BENCH_DIR/native" "$BENCH_DIR/store" "$BENCH_DIR/mnt"
  mkdir -p "$BENCH_DIR/native" "$BENCH_DIR/mnt"
  while read -r k v; do RES[native,$k]+="$v "; done < <(run_suite "$BENCH_DIR/native" : native)
  rm -rf "$BENCH_DIR/native"
  if [[ -n $PT ]]; then
    rm -rf "$BENCH_DIR/pt-src" "$BENCH_DIR/pt-mnt"
    mkdir -p "$BENCH_DIR/pt-src" "$BENCH_DIR/pt-mnt"
    passthrough_mount "$PT" "$BENCH_DIR/pt-src" "$BENCH_DIR/pt-mnt"
    pt_remount() {
      passthrough_umount "$BENCH_DIR/pt-mnt" && passthrough_mount "$PT" "$BENCH_DIR/pt-src" "$BENCH_DIR/pt-mnt"
    }
    while read -r k v; do RES[passthrough,$k]+="$v "; done < <(run_suite "$BENCH_DIR/pt-mnt" pt_remount passthrough)
    passthrough_umount "$BENCH_DIR/pt-mnt"
    rm -rf "$BENCH_DIR/pt-src" "$BENCH_DIR/pt-mnt"
  fi
  "$SNAPFS" init "$BENCH_DIR/store" >/dev/null
  "$SNAPFS" mount "$BENCH_DIR/store" "$BENCH_DIR/mnt"
  remount() {
    "$SNAPFS" umount "$BENCH_DIR/mnt" && "$SNAPFS" mount "$BENCH_DIR/store" "$BENCH_DIR/mnt"
  }
  while read -r k v; do RES[snapfs,$k]+="$v "; done < <(run_suite "$BENCH_DIR/mnt" remount snapfs)
  "$SNAPFS" umount "$BENCH_DIR/mnt"
  echo "run $run/$RUNS done" >&2
done

printf '\n%-20s' benchmark
for t in "${TARGETS[@]}"; do printf ' %28s' "$t (runs; median)"; done
printf ' %9s' "s/native"
if [[ -n $PT ]]; then printf ' %9s' "s/passth"; fi
echo
for k in seq_write_MBps seq_read_cold_MBps dup_write_MBps small_create_ops small_delete_ops \
         rm_rf_files_per_s snapshot_rm_ms; do
  printf '%-20s' "$k"
  for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2086  # the runs are words
    printf ' %20s %7s' "${RES[$t,$k]}" "$(median ${RES[$t,$k]})"
  done
  n=$(median ${RES[native,$k]}); s=$(median ${RES[snapfs,$k]})
  printf ' %8.2fx' "$(awk -v a="$s" -v b="$n" 'BEGIN { print a / b }')"
  if [[ -n $PT ]]; then
    printf ' %8.2fx' "$(awk -v a="$s" -v b="$(median ${RES[passthrough,$k]})" 'BEGIN { print a / b }')"
  fi
  echo
done
echo "(sizes: ${SIZE_MIB} MiB sequential, ${FILES} x 16 KiB small files; $RUNS runs; $(date -u +%F))"
echo "(snapshot_rm_ms: native and passthrough = rm -rf of the checkpoint folder, snapfs = 'snapfs rm' of it, the"
echo " whole CLI call; lower is better there, so its ratio below 1 means faster than native)"
