#!/usr/bin/env bash
# Instruction counts (valgrind callgrind) of the engine benchmarks, independent of the
# machine's load: docs/performance.md, "Engine CPU cost of transactions".
#   scripts/callgrind_bench.sh BENCH_BINARY OUT_DIR [BENCHMARK_REGEX...]
# Only the Filesystem calls a benchmark times are counted (Create, Write, Fsync, Release,
# with everything they call, in every thread), so store setup and data generation are
# not. BM_IngestDuplicate also counts its untimed first copy: its own cost is its count
# minus BM_IngestUnique's (same data, same size). SNAPFS_BENCH_GIB defaults to 1/16.
set -euo pipefail
bin=$(realpath "$1")
out=$2
shift 2
mkdir -p "$out"
export SNAPFS_BENCH_GIB=${SNAPFS_BENCH_GIB:-0.0625}
benches=("$@")
((${#benches[@]})) || benches=(BM_IngestUnique BM_IngestDuplicate BM_SmallFiles)
for b in "${benches[@]}"; do
  valgrind --tool=callgrind --callgrind-out-file="$out/$b.out" --collect-atstart=no \
    --toggle-collect='snapfs::Filesystem::Create(*' \
    --toggle-collect='snapfs::Filesystem::Write(*' \
    --toggle-collect='snapfs::Filesystem::Fsync(*' \
    --toggle-collect='snapfs::Filesystem::Release(*' \
    "$bin" --benchmark_filter="^$b(/|$)" >"$out/$b.log" 2>&1
  printf '%s %s\n' "$b" "$(awk '/^summary:/ {print $2}' "$out/$b.out")"
done
