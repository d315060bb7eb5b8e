#!/usr/bin/env bash
# Shared-store benchmarks (issue "One store, many hosts", docs/scale-out.md): a store whose
# metadata is in PostgreSQL (a throw-away server started here, with fsync ON as a real one
# runs) and whose packs are in a folder every mount sees, against the embedded local
# store, on the same disk, side by side in one run.
#
#   scripts/bench_shared.sh            (RUNS=3, FILES=10000, FLINK_CHECKPOINTS=10;
#                                       SNAPFS_BIN_DIR=dir uses its snapfs, snapfs_flink and
#                                       snapfs_smallfiles instead of building)
#
# Metadata, per target (local, shared), FILES files in one folder through one mount:
#   create    open(O_CREAT) + close, files/s (snapfs_smallfiles touch)
#   stat      lstat of each, files/s
#   readdir   the whole folder read 3 times, entries/s
#   unlink    files/s
#   rt_create / rt_unlink  database round trips per create / unlink (the daemon's
#             snapfs_metadata_round_trips_total before and after; shared only)
# Checkpoints (bench/flink_bench.cc, incremental, 2 writers, FLINK_CHECKPOINTS):
#   flink_1    MB/s through one mount (local and shared)
#   flink_2    MB/s of two jobs at once through two mounts of the shared store (two
#              daemons, as two TaskManager hosts): both jobs' bytes / the longer wall time
# Targets: shared create >= 1,000/s; flink_2 >= 1.7x flink_1 (shared).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export LC_ALL=C
RUNS=${RUNS:-3}
FILES=${FILES:-10000}
CKPTS=${FLINK_CHECKPOINTS:-10}

log() { echo "bench_shared: $*" >&2; }

bash scripts/setup.sh
if [[ -n ${SNAPFS_BIN_DIR:-} ]]; then
  BIN=$(realpath "$SNAPFS_BIN_DIR")
else
  BIN=$ROOT/$(BUILD_DIR=${BUILD_DIR:-build-release} bash scripts/build.sh --release --target snapfs \
    --target snapfs_flink --target snapfs_smallfiles | tail -n 1)
fi
SNAPFS=$BIN/snapfs

mkdir -p "$ROOT/var"
WORK=$(mktemp -d "$ROOT/var/bench-shared.XXXXXX")
PG=$(mktemp -d /tmp/snapfs-bench-pg-XXXXXX)
cleanup() {
  for mp in "$WORK"/mnt*; do
    if mountpoint -q "$mp" 2>/dev/null; then "$SNAPFS" umount "$mp" || fusermount3 -uz "$mp"; fi
  done
  bash "$ROOT/scripts/pg-test-server.sh" down "$PG" >/dev/null 2>&1 || true
  rm -rf "$WORK" "$PG"
}
trap cleanup EXIT

log "starting PostgreSQL (fsync on)"
CONN=$(PG_TEST_FSYNC=on bash scripts/pg-test-server.sh up "$PG" | tail -n 1)
PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$CONN")
psql -q "$CONN dbname=postgres" -c "create database bench" >/dev/null
URL="postgresql://snapfs@/bench?host=$PG&port=$PORT"
"$SNAPFS" init "$URL" --data "$WORK/data" >/dev/null
"$SNAPFS" init "$WORK/local" >/dev/null
log "disk: $(df -P "$WORK" | awk 'NR == 2 { print $1 }'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A V  # "key" -> space-separated values, one per run
add() { V[$1]="${V[$1]:-} $2"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "nan"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

MPORT=$((20000 + RANDOM % 20000))
mount_it() {  # target mountpoint [metrics port]
  local store=$WORK/local extra=(--metrics off)
  [[ -n ${3:-} ]] && extra=(--metrics "127.0.0.1:$3")
  [[ $1 == shared ]] && store=$URL && extra+=(--state-dir "$WORK/state-$(basename "$2")")
  mkdir -p "$2"
  "$SNAPFS" mount "$store" "$2" "${extra[@]}" --log "$WORK/$(basename "$2").log"
}
round_trips() {  # metrics port
  curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "snapfs_metadata_round_trips_total" { print $2 }'
}

metadata() {  # target
  local t=$1 mp=$WORK/mnt-meta d r0 r1 r2
  mount_it "$t" "$mp" "$MPORT"
  d=$mp/m
  mkdir "$d"
  r0=$(round_trips "$MPORT")
  add "$t.create" "$("$BIN/snapfs_smallfiles" touch "$d" "$FILES")"
  r1=$(round_trips "$MPORT")
  add "$t.stat" "$("$BIN/snapfs_smallfiles" stat "$d" "$FILES")"
  add "$t.readdir" "$("$BIN/snapfs_smallfiles" list "$d" 3)"
  r2=$(round_trips "$MPORT")
  add "$t.unlink" "$("$BIN/snapfs_smallfiles" delete "$d" "$FILES")"
  if [[ $t == shared ]]; then
    add "$t.rt_create" "$(awk -v a="$r0" -v b="$r1" -v n="$FILES" 'BEGIN { printf "%.1f", (b - a) / n }')"
    add "$t.rt_unlink" "$(awk -v a="$r2" -v b="$(round_trips "$MPORT")" -v n="$FILES" 'BEGIN { printf "%.1f", (b - a) / n }')"
  fi
  rmdir "$d"
  "$SNAPFS" umount "$mp"
}

value() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

flink_one() {  # target run
  local mp=$WORK/mnt-a out=$WORK/flink.out
  mount_it "$1" "$mp"
  mkdir "$mp/one-$2"
  "$BIN/snapfs_flink" "$mp/one-$2" --checkpoints "$CKPTS" --writers 2 --seed "$2" >"$out"
  add "$1.flink_1" "$(value flink_MBps "$out")"
  rm -rf "${mp:?}/one-$2"
  "$SNAPFS" umount "$mp"
}

flink_two() {  # run: two daemons of the shared store, one job each, at once
  local a=$WORK/mnt-a b=$WORK/mnt-b
  mount_it shared "$a"
  mount_it shared "$b"
  mkdir "$a/two-a-$1" "$b/two-b-$1"
  "$BIN/snapfs_flink" "$a/two-a-$1" --checkpoints "$CKPTS" --writers 2 --seed "$((100 + $1))" >"$WORK/fa.out" &
  local pa=$!
  "$BIN/snapfs_flink" "$b/two-b-$1" --checkpoints "$CKPTS" --writers 2 --seed "$((200 + $1))" >"$WORK/fb.out"
  wait "$pa"
  add shared.flink_2 "$(awk -v ba="$(value bytes "$WORK/fa.out")" -v bb="$(value bytes "$WORK/fb.out")" \
    -v sa="$(value seconds "$WORK/fa.out")" -v sb="$(value seconds "$WORK/fb.out")" \
    'BEGIN { s = sa > sb ? sa : sb; printf "%.1f", (ba + bb) / 1e6 / s }')"
  rm -rf "${a:?}/two-a-$1" "${b:?}/two-b-$1"
  "$SNAPFS" umount "$a"
  "$SNAPFS" umount "$b"
}

for ((r = 1; r <= RUNS; r++)); do
  log "run $r/$RUNS: metadata, local"
  metadata local
  log "run $r/$RUNS: metadata, shared"
  metadata shared
  log "run $r/$RUNS: checkpoints, local, one mount"
  flink_one local "$r"
  log "run $r/$RUNS: checkpoints, shared, one mount"
  flink_one shared "$r"
  log "run $r/$RUNS: checkpoints, shared, two mounts at once"
  flink_two "$r"
done

m() { median <<<"${V[$1]:-}"; }
ratio() { awk -v a="$(m "$1")" -v b="$(m "$2")" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
echo
echo "Shared store (PostgreSQL fsync on + shared pack folder) vs local store, $RUNS runs, medians"
echo "(every run's values in brackets); $FILES files in one folder; $CKPTS checkpoints per job"
printf '%-26s %12s %12s %8s %s\n' "measure" "local" "shared" "ratio" "target"
for k in create stat readdir unlink; do
  printf '%-26s %12s %12s %8s %s\n' "$k (ops/s)" "$(m local.$k)" "$(m shared.$k)" "$(ratio shared.$k local.$k)" \
    "$([[ $k == create ]] && echo "shared >= 1000/s")"
done
printf '%-26s %12s %12s\n' "round trips per create" "-" "$(m shared.rt_create)"
printf '%-26s %12s %12s\n' "round trips per unlink" "-" "$(m shared.rt_unlink)"
printf '%-26s %12s %12s %8s\n' "checkpoints, 1 mount MB/s" "$(m local.flink_1)" "$(m shared.flink_1)" "$(ratio shared.flink_1 local.flink_1)"
printf '%-26s %12s %12s %8s %s\n' "checkpoints, 2 mounts MB/s" "-" "$(m shared.flink_2)" "$(ratio shared.flink_2 shared.flink_1)" ">= 1.7x one mount"
for k in "${!V[@]}"; do echo "  $k: [${V[$k]# }]"; done | sort
