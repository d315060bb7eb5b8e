#!/usr/bin/env bash
# S3 benchmarks (issue 10, DESIGN.md §5 "On S3"), against a throw-away single-node Ceph +
# radosgw (scripts/ceph-test-cluster.sh), as ratios measured in one run:
#   plain_put      curl --aws-sigv4 PUTs every file of the workload, 4 at a time
#   snapfs_new     the same files written through an S3-backed snapfs mount by 4 writers,
#                  fsync per file (dd conv=fsync), until umount returned (every pack stored)
#   snapfs_stored  the same bytes again under new names (a full checkpoint of stored data)
#   plain_get      curl GETs every object, 4 at a time
#   snapfs_cold    cold restore: caches dropped, STORE/cache emptied, a fresh mount, 4
#                  readers cat every file
# plus stored bytes / unique bytes and the requests radosgw served per GiB written (its
# perf counters): PUTs are what object stores bill.
#
#   scripts/bench_s3.sh            (SNAPFS_BENCH_S3_MIB=512 workload size; one run;
#                                   SNAPFS_BIN=path uses that snapfs instead of building)
#
# Targets: new >= 1.0x plain_put, stored >= 3x plain_put, cold read >= 0.8x plain_get,
# stored bytes <= 1.1x unique.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export LC_ALL=C
MIB=${SNAPFS_BENCH_S3_MIB:-512}

log() { echo "bench_s3: $*" >&2; }

bash scripts/setup.sh --with-ceph
if [[ -n ${SNAPFS_BIN:-} ]]; then
  SNAPFS=$(realpath "$SNAPFS_BIN")
else
  BUILD=$(BUILD_DIR=${BUILD_DIR:-build-release} bash scripts/build.sh --release --target snapfs | tail -n 1)
  SNAPFS=$ROOT/$BUILD/snapfs
fi

WORK=$(mktemp -d /tmp/snapfs-bench-s3-XXXXXX)
SRC=$(mktemp -d /dev/shm/snapfs-bench-src-XXXXXX)
cleanup() {
  if mountpoint -q "$WORK/mnt" 2>/dev/null; then "$SNAPFS" umount "$WORK/mnt" || fusermount3 -uz "$WORK/mnt"; fi
  bash "$ROOT/scripts/ceph-test-cluster.sh" down "$WORK/ceph" || true
  rm -rf "$WORK" "$SRC"
}
trap cleanup EXIT

log "starting Ceph + radosgw"
bash scripts/ceph-test-cluster.sh up "$WORK/ceph" >/dev/null
# shellcheck disable=SC1091
source "$WORK/ceph/env"
E=$SNAPFS_TEST_S3_ENDPOINT
B=$SNAPFS_TEST_S3_BUCKET
SIG=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$SNAPFS_TEST_S3_ACCESS_KEY:$SNAPFS_TEST_S3_SECRET_KEY"
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
CRED=$WORK/s3.cred
printf 'aws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$SNAPFS_TEST_S3_ACCESS_KEY" "$SNAPFS_TEST_S3_SECRET_KEY" >"$CRED"
chmod 600 "$CRED"

# Requests radosgw has served so far: "req put get".
rgw_counts() {
  ceph --admin-daemon "$WORK/ceph/run/client.rgw.a.asok" perf dump 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin).get("rgw", {})
print(d.get("req", 0), d.get("put", 0), d.get("get", 0))'
}

# The workload: files of 1-64 MiB (checkpoint-like), MIB in all, random bytes in RAM.
log "making ${MIB} MiB of files in $SRC"
total=0
i=0
while ((total < MIB)); do
  size=$((1 + (RANDOM * 7919 + i * 104729) % 64))
  ((total + size > MIB)) && size=$((MIB - total))
  head -c $((size << 20)) /dev/urandom >"$SRC/f$i"
  total=$((total + size))
  i=$((i + 1))
done
NFILES=$i
BYTES=$((MIB << 20))
log "$NFILES files"

now() { date +%s.%N; }
mbps() { python3 -c "print(f'{$BYTES / ($2 - $1) / 1048576:.1f}')"; }

declare -A R
run_phase() {  # name start end
  R[$1]=$(mbps "$2" "$3")
  log "$1: ${R[$1]} MiB/s"
}

# Plain client: PUT each file, 4 at a time.
t0=$(now)
ls "$SRC" | xargs -P 4 -I{} curl -sf -o /dev/null -X PUT -T "$SRC/{}" "${SIG[@]}" "$E/$B/plain/{}"
t1=$(now)
run_phase plain_put "$t0" "$t1"

# snapfs on S3: new data, 4 writers, fsync per file, until umount stored every pack.
STORE=$WORK/store
mkdir -p "$WORK/mnt"
"$SNAPFS" init "$STORE" --data "s3://$B/bench" --s3-endpoint "$E" --s3-credentials "$CRED" >/dev/null
"$SNAPFS" mount "$STORE" "$WORK/mnt" --metrics off
mkdir "$WORK/mnt/chk-1" "$WORK/mnt/chk-2"
read -r req0 put0 get0 < <(rgw_counts)
t0=$(now)
ls "$SRC" | xargs -P 4 -I{} dd if="$SRC/{}" of="$WORK/mnt/chk-1/{}" bs=1M conv=fsync status=none
"$SNAPFS" umount "$WORK/mnt"
t1=$(now)
read -r req1 put1 get1 < <(rgw_counts)
run_phase snapfs_new "$t0" "$t1"

# Already stored: the same bytes under new names.
"$SNAPFS" mount "$STORE" "$WORK/mnt" --metrics off
t0=$(now)
ls "$SRC" | xargs -P 4 -I{} dd if="$SRC/{}" of="$WORK/mnt/chk-2/{}" bs=1M conv=fsync status=none
"$SNAPFS" umount "$WORK/mnt"
t1=$(now)
read -r req2 put2 get2 < <(rgw_counts)
run_phase snapfs_stored "$t0" "$t1"

# Cold reads: plain GETs, then snapfs with every cache emptied.
sync
echo 3 >/proc/sys/vm/drop_caches || true
t0=$(now)
ls "$SRC" | xargs -P 4 -I{} curl -sf -o /dev/null "${SIG[@]}" "$E/$B/plain/{}"
t1=$(now)
run_phase plain_get "$t0" "$t1"
rm -rf "$STORE/cache"
echo 3 >/proc/sys/vm/drop_caches || true
"$SNAPFS" mount "$STORE" "$WORK/mnt" --metrics off
t0=$(now)
ls "$SRC" | xargs -P 4 -I{} sh -c 'cat "$1" >/dev/null' _ "$WORK/mnt/chk-1/{}"
t1=$(now)
run_phase snapfs_cold "$t0" "$t1"
PACK_BYTES=$("$SNAPFS" stats "$WORK/mnt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pack_bytes"])')
"$SNAPFS" umount "$WORK/mnt"

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
GIB=$(python3 -c "print($BYTES / 2**30)")
echo
echo "S3 benchmark: $NFILES files, $MIB MiB, radosgw on loopback (one OSD)"
printf '%-34s %10s %8s %s\n' "measure" "MiB/s" "ratio" "target"
printf '%-34s %10s %8s\n' "plain client PUT (curl, 4 at once)" "${R[plain_put]}" "1.00"
printf '%-34s %10s %8s %s\n' "snapfs new data (fsync, umount)" "${R[snapfs_new]}" \
  "$(ratio "${R[snapfs_new]}" "${R[plain_put]}")" ">= 1.0x plain PUT"
printf '%-34s %10s %8s %s\n' "snapfs already-stored data" "${R[snapfs_stored]}" \
  "$(ratio "${R[snapfs_stored]}" "${R[plain_put]}")" ">= 3x plain PUT"
printf '%-34s %10s %8s\n' "plain client GET (curl, 4 at once)" "${R[plain_get]}" "1.00"
printf '%-34s %10s %8s %s\n' "snapfs cold restore read" "${R[snapfs_cold]}" \
  "$(ratio "${R[snapfs_cold]}" "${R[plain_get]}")" ">= 0.8x plain GET"
echo "stored / unique bytes: $(ratio "$PACK_BYTES" "$BYTES") (pack bytes $PACK_BYTES; target <= 1.1)"
echo "requests per GiB written, new data:    $(ratio $((req1 - req0)) "$GIB") (PUTs $(ratio $((put1 - put0)) "$GIB"))"
echo "requests per GiB written, stored data: $(ratio $((req2 - req1)) "$GIB") (PUTs $(ratio $((put2 - put1)) "$GIB"))"
echo "plain client: $NFILES PUTs for $MIB MiB = $(ratio "$NFILES" "$GIB") PUTs per GiB"
