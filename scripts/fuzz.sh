#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, with AddressSanitizer and UndefinedBehaviorSanitizer)
# and runs each for a while on a corpus seeded with generated Flink-like markers:
#   - fuzz/marker_scan_fuzz.cc: the marker scan alone (compiled here directly);
#   - fuzz/snapshot_commit_fuzz.cc: whole snapshot commits into a store (CMake with
#     -DSNAPFS_FUZZ=ON in $FUZZ_BUILD_DIR/engine: the engine instrumented and linked).
# scripts/test.sh runs it after the normal (non-sanitize) tests.
#   FUZZ_BUILD_DIR        build folder (default build-fuzz/); the corpora live in it and grow
#   FUZZ_SECONDS          how long to fuzz the marker scan (default 20)
#   FUZZ_COMMIT_SECONDS   how long to fuzz snapshot commits (default 30)
# Exits non-zero on a crash, leak, timeout or broken invariant; the reproducer is left in
# the build folder (crash-*, timeout-*, ...): rerun it with `$FUZZ_BUILD_DIR/marker_scan_fuzz FILE`
# or `$FUZZ_BUILD_DIR/engine/snapfs_commit_fuzz FILE`.
# Skips (exit 0, loudly) only when no clang++ is installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_TO_RUN=${FUZZ_SECONDS:-20}
COMMIT_SECONDS=${FUZZ_COMMIT_SECONDS:-30}

find_clang() {
  if command -v clang++ >/dev/null 2>&1; then
    command -v clang++
    return
  fi
  # Versioned names only (Debian's clang-14 package without the clang meta package).
  local c
  c=$(compgen -c clang++- | grep -E '^clang\+\+-[0-9]+$' | sort -t- -k2 -n | tail -n 1 || true)
  [[ -n "$c" ]] && command -v "$c"
}

CXX=$(find_clang || true)
if [[ -z "$CXX" ]]; then
  # scripts/setup.sh installs clang; try it once before giving up.
  bash scripts/setup.sh >&2 || true
  CXX=$(find_clang || true)
fi
if [[ -z "$CXX" ]]; then
  echo "####################################################################" >&2
  echo "## WARNING: clang++ is not installed: marker-scan fuzzing SKIPPED ##" >&2
  echo "####################################################################" >&2
  exit 0
fi

mkdir -p "$BUILD/corpus"
BIN="$BUILD/marker_scan_fuzz"
echo "fuzz: building $BIN with $("$CXX" --version | head -n 1)" >&2
# marker_scan.cc needs only the inline parts of base/status.h; status.cc is linked so
# that Status::ToString and friends are there should the code start using them.
"$CXX" -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Wall -Wextra -Werror -Wno-unused-parameter -I. \
  fuzz/marker_scan_fuzz.cc core/snap/marker_scan.cc base/status.cc -o "$BIN"

# ---- Seeds: markers written like Java's DataOutputStream, and text markers ----------
# Byte-exact output: no locale-dependent lengths.
export LC_ALL=C
be() {  # be VALUE BYTES: big-endian integer
  local v=$1 n=$2 i
  for ((i = n - 1; i >= 0; i--)); do printf "\\x$(printf %02x $(((v >> (8 * i)) & 255)))"; done
}
wint() { be "$1" 4; }
wlong() { be "$1" 8; }
wutf() { be "${#1}" 2; printf '%s' "$1"; }
blob() {  # inline state: int length, then bytes (deterministic, all 256 values)
  local n=$1 i
  wint "$n"
  for ((i = 0; i < n; i++)); do printf "\\x$(printf %02x $(((i * 167 + 13) & 255)))"; done
}
uuid() { printf '%08x-%04x-%04x-%04x-%012x' "$1" $(($1 % 65536)) 16384 32768 $(($1 * 7919)); }

flink_marker() {
  local job=$1 op st
  wint $((0x4960672d)); wint 3; wlong 7; wint 0; wint 2
  for op in 1 2; do
    wlong $((op * 1000003)); wlong $((op * 7)); wint 2; wint 128; wint 2
    for st in 0 1; do
      wint "$st"
      wutf "org.apache.flink.runtime.state.IncrementalRemoteKeyedStateHandle"
      wlong 42
      wutf "file:/mnt/ckpt/$job/chk-7/$(uuid $((op * 10 + st)))"; wlong 1234
      wint 2
      wutf "file:/mnt/ckpt/$job/shared/$(uuid $((op + st)))"; wlong 4096
      wutf "file:/mnt/ckpt/$job/shared/$(uuid $((op + st + 1)))"; wlong 8192
      wint 1
      wutf "$(uuid $((op * 100 + st)))"; wlong 77
      blob $((op * 97 + st * 31))
    done
  done
  wutf "file:///mnt/old/$job/shared/$(uuid 99)"; wlong 1
  wutf "hdfs://namenode/mnt/ckpt/$job/shared/$(uuid 98)"; wlong 2
  wutf "file:/mnt/ckptX/$job/shared/$(uuid 97)"; wlong 3
  wutf "file:/mnt/ckpt/../etc/passwd"; wlong 4
}

C="$BUILD/corpus"
flink_marker job >"$C/seed-flink"
flink_marker 0f3a9c2d8e7b6a5f4e3d2c1b0a998877 >"$C/seed-flink-jobid"
{
  wint $((0x4960672d)); wint 3
  wutf "file://localhost/mnt/ckpt/job/shared/a%20b"; wlong 1
  wutf "file:/mnt/ckpt//job/./chk-1/../shared/%2e%2e/x"; wlong 2
  wutf "/mnt/old/job/y"; wlong 3
  wint 1; wutf "file:/mnt/ckpt/job/shared/$(printf 'd%.0s' {1..280})"; wlong 4
} >"$C/seed-uris"
printf '%s\n' '{"checkpoint": 7, "shared": ["/mnt/ckpt/job/shared/a", "file:///mnt/ckpt/job/shared/b"],' \
  '  "dir": "file://localhost/mnt/old/job/c", "remote": "hdfs://nn/mnt/ckpt/job/shared/z"}' >"$C/seed-json"
printf '%s\n' 'state.checkpoints.dir=/mnt/ckpt/job/chk-7' 'shared=file:/mnt/ckpt/job/shared/p' \
  'old = /mnt/old/job/q' >"$C/seed-properties"

cat >"$BUILD/marker.dict" <<'EOF'
"/mnt/ckpt/"
"/mnt/old/"
"/mnt/ckptX/"
"file:"
"file://"
"file:///"
"file://localhost/"
"hdfs://host"
"/../"
"/./"
"//"
"%2e%2e"
"%2F"
"%00"
"="
"\x49\x60\x67\x2d"
"\x00\x00\x00\x03"
EOF

# run_fuzzer NAME BIN CORPUS SECONDS ARGS...: runs one target, prints its stats; exits on failure.
run_fuzzer() {
  local name=$1 bin=$2 corpus=$3 secs=$4 log="$BUILD/$1.log" rc
  shift 4
  echo "fuzz: $name for ${secs}s on $corpus" >&2
  set +e
  "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$BUILD/" "$@" "$corpus" \
    2>"$log"
  rc=$?
  set -e
  grep -E '^(stat::|Done |INFO: Running with|#[0-9]+ +DONE)' "$log" >&2 || true
  if ((rc != 0)); then
    tail -n 60 "$log" >&2
    echo "fuzz: $name FAILED (exit $rc); log: $log; reproducer: $BUILD/crash-* / timeout-* / leak-* / oom-*" >&2
    exit "$rc"
  fi
}

run_fuzzer marker_scan "$BIN" "$C" "$SECONDS_TO_RUN" -timeout=10 -max_len=16384 \
  -dict="$BUILD/marker.dict"

# ---- Whole snapshot commits ---------------------------------------------------------
# The engine built with coverage and sanitizers (ccache keeps rebuilds short).
E="$BUILD/engine"
echo "fuzz: building $E/snapfs_commit_fuzz (the engine, instrumented)" >&2
CXX="$CXX" cmake -S . -B "$E" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSNAPFS_FUZZ=ON \
  -DSNAPFS_BENCH=OFF >"$BUILD/engine-cmake.log" 2>&1 || {
  tail -n 30 "$BUILD/engine-cmake.log" >&2
  exit 1
}
cmake --build "$E" --target snapfs_commit_fuzz >"$BUILD/engine-build.log" 2>&1 || {
  grep -E 'error|Error' "$BUILD/engine-build.log" | head -n 30 >&2
  exit 1
}

# Seeds: byte 0 picks how the marker is committed (fuzz/snapshot_commit_fuzz.cc), the rest
# is a Flink-like marker naming the store's shared files s0..s7 and the folder's own files.
commit_marker() {  # commit_marker FLAGS REF...
  local flags=$1 r
  shift
  printf "\\x$(printf %02x "$flags")"
  wint $((0x4960672d)); wint 3; wlong 7; wint 0; wint 1
  for r in "$@"; do wutf "$r"; wlong 4096; done
  blob 40
}
CC="$BUILD/commit-corpus"
mkdir -p "$CC"
commit_marker 1 file:/mnt/ckpt/job/shared/s1 file:/mnt/ckpt/job/shared/s2 own0 >"$CC/seed-rename"
commit_marker 8 file:/mnt/ckpt/job/shared/s3 own0 >"$CC/seed-in-place"
commit_marker 15 file:/mnt/ckpt/job/shared/s4 file:/mnt/ckpt/job/chk-1/own0 own1 >"$CC/seed-twice-unlink"
commit_marker 33 file:/mnt/ckpt/job/shared/s5 file:/mnt/ckpt/job/shared/s6 own0 >"$CC/seed-remove"
commit_marker 24 file:/mnt/old/job/shared/s7 file:/mnt/ckpt/job/shared/nope file:/mnt/ckpt/job >"$CC/seed-misses"
cp "$BUILD/marker.dict" "$BUILD/commit.dict"
cat >>"$BUILD/commit.dict" <<'EOF'
"file:/mnt/ckpt/job/shared/s"
"file:/mnt/ckpt/job/chk-"
"/own0"
"own1"
"_metadata"
EOF
# -detect_leaks=0: the store lives across inputs by design, so every input "allocates
# more than it frees" and libFuzzer would run LeakSanitizer's whole-heap scan after each
# (8 inputs a second instead of ~70); ASan still checks for leaks when the process exits.
run_fuzzer snapshot_commit "$E/snapfs_commit_fuzz" "$CC" "$COMMIT_SECONDS" -timeout=20 \
  -max_len=4096 -rss_limit_mb=3072 -detect_leaks=0 -dict="$BUILD/commit.dict"
echo "fuzz: OK" >&2
