#!/usr/bin/env bash
# Benchmarks (DESIGN.md §5): builds a Release snapfs and measures, in one run,
#   native_baseline  dd bs=1M conv=fsync of a random file held in RAM (/dev/shm) into
#                    BENCH_DIR: the native sequential-write speed of the disk under test
#   engine_bench     bench/*_bench.cc through the engine API (no FUSE): chunking and
#                    hashing, 1 MiB-write ingest of unique and of already-stored data,
#                    16 KiB small files
# and prints the medians (and ratios to native) at the end.
#
#   scripts/bench.sh [--engine-only | --mount | --flink | --all | --s3 | --shared]
#       default --all: engine, then the mount benchmarks of scripts/bench_mount.sh (native,
#                      passthrough_ll, snapfs), then the Flink-like checkpoint benchmark of
#                      scripts/bench_flink.sh (native, passthrough_ll, snapfs; `ls -l` of a
#                      200,000-entry folder)
#       --mount:       only the mount benchmarks; --flink: only the Flink-like benchmark
#       --s3:          scripts/bench_s3.sh alone, snapfs on S3 vs a plain S3 client, own Ceph
#       --shared:      scripts/bench_shared.sh alone, a PostgreSQL store vs the local store
#   The passthrough_ll baseline is built at bench time from Debian's libfuse3-dev example
#   source (scripts/bench_passthrough.sh), never committed. bench_flink.sh's and
#   bench_mount.sh's own variables (FLINK_CHECKPOINTS, LS_ENTRIES, FILES, ...) pass through.
#
# Environment:
#   RUNS=3              repetitions; medians are reported
#   SNAPFS_BENCH_GIB=1  size of the sequential-write tests (fractions allowed: 0.25)
#   BENCH_DIR           folder on the disk under test (default $TMPDIR or /tmp); a
#                       temporary folder is made in it and removed afterwards
#   BUILD_DIR           Release build folder (default build-release)
#   SNAPFS_BENCH_BIN    use this snapfs_bench binary and skip the build
#   RESULTS_DIR         where JSON results go (default: the temporary folder, removed)
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

RUNS=${RUNS:-3}
GIB=${SNAPFS_BENCH_GIB:-1}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
BUILD_DIR=${BUILD_DIR:-build-release}

WORK=""          # temporary folder under BENCH_DIR (store, dd target, results)
SHM_SRC=""       # random source file in RAM for native_baseline
BUILD=""         # build folder with snapfs_bench
BENCH_BIN=""
declare -A RESULT=()  # name -> value, filled by the sections, printed by summary
declare -A UNIT=()
ORDER=()

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

cleanup() {
  if [[ -n "$SHM_SRC" ]]; then rm -f "$SHM_SRC"; fi
  if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# record NAME VALUE UNIT: a result for the summary.
record() {
  [[ -v "RESULT[$1]" ]] || ORDER+=("$1")
  RESULT[$1]=$2
  UNIT[$1]=$3
}

# median of the numbers on stdin
median() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bytes_total() { awk -v g="$GIB" 'BEGIN { b = int(g * 1073741824 / 1048576) * 1048576;
                                          if (b < 1048576) b = 1048576; printf "%d", b }'; }

build() {
  if [[ -n "${SNAPFS_BENCH_BIN:-}" ]]; then
    BENCH_BIN=$SNAPFS_BENCH_BIN
  else
    BUILD=$(BUILD_DIR="$BUILD_DIR" bash scripts/build.sh --release --target snapfs_bench \
      --target snapfs --target snapfs_smallfiles --target snapfs_flink | tail -n 1)
    BENCH_BIN=$BUILD/snapfs_bench
  fi
  [[ -x "$BENCH_BIN" ]] || die "no benchmark binary at $BENCH_BIN"
}

setup_workdir() {
  mkdir -p "$BENCH_DIR"
  WORK=$(mktemp -d "$BENCH_DIR/snapfs-bench.XXXXXX")
  local fstype
  fstype=$(stat -f -c %T "$WORK")
  log "disk under test: $BENCH_DIR ($fstype, $(df -P "$WORK" | awk 'NR == 2 { print $1 }'))"
  if [[ "$fstype" == tmpfs ]]; then
    log "WARNING: $BENCH_DIR is tmpfs: this measures RAM, not a disk"
  fi
  log "size ${GIB} GiB, $RUNS runs, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Native sequential write: dd of a random file in RAM into the disk under test, with one
# fsync at the end (conv=fsync), as the engine's 1 MiB writes + fsync.
native_baseline() {
  local bytes mbps=() t0 t1 i rate
  bytes=$(bytes_total)
  SHM_SRC=$(mktemp /dev/shm/snapfs-bench-src.XXXXXX)
  head -c "$bytes" /dev/urandom >"$SHM_SRC"
  # One untimed run first: the first write after a burst of deletes is often far slower.
  for ((i = 0; i <= RUNS; i++)); do
    rm -f "$WORK/x"
    sync
    t0=$(date +%s%N)
    dd if="$SHM_SRC" of="$WORK/x" bs=1M conv=fsync status=none
    t1=$(date +%s%N)
    rate=$(awk -v b="$bytes" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }')
    if ((i == 0)); then
      log "native dd warm-up: $rate MB/s (not counted)"
    else
      mbps+=("$rate")
      log "native dd run $i: $rate MB/s"
    fi
  done
  rm -f "$WORK/x" "$SHM_SRC"
  SHM_SRC=""
  record native_dd_write "$(printf '%s\n' "${mbps[@]}" | median)" MB/s
}

# The engine benchmarks (bench/*_bench.cc), RUNS repetitions, medians.
engine_bench() {
  local json=$WORK/engine.json
  mkdir -p "$WORK/engine"
  SNAPFS_BENCH_DIR=$WORK/engine SNAPFS_BENCH_GIB=$GIB "$BENCH_BIN" \
    --benchmark_repetitions="$RUNS" --benchmark_report_aggregates_only=true \
    --benchmark_out="$json" --benchmark_out_format=json >&2
  if [[ -n "${RESULTS_DIR:-}" ]]; then
    mkdir -p "$RESULTS_DIR"
    cp "$json" "$RESULTS_DIR/engine.json"
  fi
  # One line per median: name, MB/s, items/s (bytes_per_second is real time for the
  # ingest benchmarks, CPU time for the chunker ones, as Google Benchmark defines it).
  local name mb items
  while read -r name mb items; do
    if [[ "$mb" != null ]]; then
      record "$name" "$(awk -v v="$mb" 'BEGIN { printf "%.1f", v / 1e6 }')" MB/s
    fi
    if [[ "$items" != null ]]; then
      record "$name.items" "$(awk -v v="$items" 'BEGIN { printf "%.1f", v }')" items/s
    fi
  done < <(medians_of "$json")
}

# Prints "name bytes_per_second items_per_second" (null when absent) for each median in
# a Google Benchmark JSON file (each run when RUNS=1: no aggregates then).
medians_of() {
  if command -v jq >/dev/null; then
    jq -r --argjson runs "$RUNS" '.benchmarks[]
      | select(.aggregate_name == "median" or ($runs == 1 and .run_type == "iteration"))
      | [(.run_name | sub("/.*"; "")), (.bytes_per_second // null),
         (.items_per_second // null)] | map(tostring) | join(" ")' "$1"
  else
    python3 - "$1" "$RUNS" <<'PY'
import json, sys
runs = int(sys.argv[2])
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") == "median" or (runs == 1 and b.get("run_type") == "iteration"):
        vals = [b.get("bytes_per_second"), b.get("items_per_second")]
        print(b["run_name"].split("/")[0], *["null" if v is None else repr(v) for v in vals])
PY
  fi
}

# ratio A B: A / B with two decimals, or "-" when either is missing.
ratio() {
  if [[ -v "RESULT[$1]" && -v "RESULT[$2]" ]]; then
    awk -v a="${RESULT[$1]}" -v b="${RESULT[$2]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'
  else
    echo "-"
  fi
}

summary() {
  echo "== medians of $RUNS runs, ${GIB} GiB, disk $BENCH_DIR =="
  local n
  for n in "${ORDER[@]}"; do printf '%-28s %12s %s\n' "$n" "${RESULT[$n]}" "${UNIT[$n]}"; done
  echo "== ratios =="
  printf '%-28s %12s\n' "ingest unique / native dd" "$(ratio BM_IngestUnique native_dd_write)"
  printf '%-28s %12s\n' "ingest duplicate / native dd" "$(ratio BM_IngestDuplicate native_dd_write)"
}

main() {
  local mode=all
  for a in "$@"; do
    case "$a" in
      --engine-only) mode=engine ;;
      --mount) mode=mount ;;
      --flink) mode=flink ;;
      --all) mode=all ;;
      --s3) exec bash scripts/bench_s3.sh ;;
      --shared) exec bash scripts/bench_shared.sh ;;
      -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
      *) die "unknown option $a (use --engine-only, --mount, --flink or --all)" ;;
    esac
  done
  command -v jq >/dev/null || command -v python3 >/dev/null ||
    die "jq or python3 is needed to read benchmark results"
  build
  setup_workdir
  if [[ $mode == engine || $mode == all ]]; then
    native_baseline
    engine_bench
    summary
  fi
  if [[ $mode != engine ]]; then
    [[ -n "$BUILD" ]] || die "--$mode needs a build (unset SNAPFS_BENCH_BIN)"
  fi
  if [[ $mode == mount || $mode == all ]]; then
    # Through the mount: native folder, passthrough_ll and snapfs mount, side by side.
    BENCH_DIR="$WORK/mount" RUNS="$RUNS" \
      SIZE_MIB=$(awk -v g="$GIB" 'BEGIN { printf "%d", g * 1024 }') \
      bash scripts/bench_mount.sh "$BUILD"
  fi
  if [[ $mode == flink || $mode == all ]]; then
    # Flink-like checkpoints and `ls -l`: native, passthrough_ll and snapfs side by side.
    BENCH_DIR="$WORK/flink" RUNS="$RUNS" bash scripts/bench_flink.sh "$BUILD"
  fi
}

main "$@"
