#!/usr/bin/env bash
# A throw-away single-node Ceph (one mon, one bluestore OSD on a sparse file) with a
# radosgw S3 gateway, for the S3 tests. Everything lives in DIR and listens on 127.0.0.1
# only, on free ports; no systemd, no /etc/ceph.
#
#   scripts/ceph-test-cluster.sh up DIR     start it; prints and writes DIR/env (sourceable):
#                                           SNAPFS_TEST_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY,
#                                           _BUCKET (a bucket made for the tests)
#   scripts/ceph-test-cluster.sh down DIR   stop every daemon `up` started (by recorded pid)
#   scripts/ceph-test-cluster.sh gateway-up DIR    start the spare gateway (below)
#   scripts/ceph-test-cluster.sh gateway-stop DIR  stop it (SIGTERM, then SIGKILL after 10 s)
#
# The spare gateway is a second radosgw (client.rgw.b) on the same cluster, on a port
# fixed at `up` (SNAPFS_TEST_S3_SPARE_ENDPOINT in DIR/env). It is not started by `up`: a
# test that takes "the object store" away under a mount starts it, stops it and starts it
# again on the same port, while every other test keeps the main gateway. Stopped, not
# SIGKILLed: a killed gateway's watch on the cluster's control objects stays until the
# OSD times it out (30 s), and meanwhile every bucket creation through the main gateway
# waits for it (a concurrent test's `snapfs init --create-bucket` timed out).
#
# Facts behind the settings: ../shared/notes/ceph-single-node.md. The packages come from
# scripts/setup.sh --with-ceph. Takes ~25 s to start, ~7 s to stop on the CI machine kind.
set -euo pipefail

usage() { echo "usage: $0 up|down|gateway-up|gateway-stop DIR" >&2; exit 2; }
(($# == 2)) || usage
CMD=$1
DIR=$(realpath -m "$2")

log() { echo "ceph-test-cluster: $*" >&2; }

stop_pid() {  # SIGTERM, then SIGKILL after 10 s
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "pid $pid ignored SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  [[ -d $DIR/pids ]] || return 0
  # radosgw first, the mon last: the others talk to it while they stop.
  for name in rgw-b rgw osd mon; do
    [[ -f $DIR/pids/$name ]] || continue
    stop_pid "$(cat "$DIR/pids/$name")"
    rm -f "$DIR/pids/$name"
  done
}

# start_gateway NAME ENDPOINT PIDFILE LOG: starts `radosgw -n client.rgw.NAME` and waits
# until ENDPOINT answers.
start_gateway() {
  local name=$1 endpoint=$2 pidfile=$3 out=$4
  setsid radosgw -c "$DIR/ceph.conf" -f -n "client.rgw.$name" >>"$out" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for i in $(seq 120); do
    if curl -s -o /dev/null --max-time 2 "$endpoint/"; then return 0; fi
    ((i < 120)) || { log "radosgw $name did not answer in 60 s"; return 1; }
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { log "radosgw $name exited"; return 1; }
    sleep 0.5
  done
}

case $CMD in
  down)
    down
    exit 0
    ;;
  gateway-up)
    [[ -f $DIR/env ]] || { log "no cluster in $DIR (run up first)"; exit 1; }
    if [[ -f $DIR/pids/rgw-b ]] && kill -0 "$(cat "$DIR/pids/rgw-b")" 2>/dev/null; then
      log "the spare gateway is already running"
      exit 1
    fi
    spare=$(sed -n 's/^export SNAPFS_TEST_S3_SPARE_ENDPOINT=//p' "$DIR/env")
    start_gateway b "$spare" "$DIR/pids/rgw-b" "$DIR/log/rgw-b.out"
    exit $?
    ;;
  gateway-stop)
    [[ -f $DIR/pids/rgw-b ]] || exit 0
    stop_pid "$(cat "$DIR/pids/rgw-b")"
    rm -f "$DIR/pids/rgw-b"
    exit 0
    ;;
esac
[[ $CMD == up ]] || usage

for tool in ceph-mon ceph-osd ceph radosgw radosgw-admin monmaptool ceph-authtool python3 curl; do
  command -v "$tool" >/dev/null || { log "$tool is missing (run scripts/setup.sh --with-ceph)"; exit 1; }
done
if [[ -e $DIR && -n $(ls -A "$DIR" 2>/dev/null) ]]; then
  log "$DIR exists and is not empty"
  exit 1
fi
mkdir -p "$DIR"/{pids,run,log,mon,osd,rgw,rgw-b}
# Whatever fails from here on, nothing stays running.
trap 'rc=$?; if ((rc != 0)); then log "start failed (logs in $DIR/log)"; down; fi' EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
MON_PORT=$(free_port)
RGW_PORT=$(free_port)
RGW_B_PORT=$(free_port)
FSID=$(python3 -c 'import uuid; print(uuid.uuid4())')
OSD_UUID=$(python3 -c 'import uuid; print(uuid.uuid4())')
CONF=$DIR/ceph.conf

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon allow pool delete = true
[mon]
mon data = $DIR/mon/\$cluster-\$id
[osd]
osd data = $DIR/osd/\$cluster-\$id
keyring = $DIR/osd/\$cluster-\$id/keyring
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 21474836480
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore fsck on umount = false
# A CI machine has little memory to spare (the default target is 4 GiB).
osd memory target = 939524096
[client.rgw.a]
rgw data = $DIR/rgw
# Without tcp_nodelay each small response waited ~40 ms for a delayed ACK.
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw thread pool size = 64
[client.rgw.b]
rgw data = $DIR/rgw-b
rgw frontends = beast endpoint=127.0.0.1:$RGW_B_PORT tcp_nodelay=1
rgw thread pool size = 64
EOF

C=(ceph -c "$CONF" --connect-timeout 15)

ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
  --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" 2>>"$DIR/log/setup.log"
setsid ceph-mon -c "$CONF" -f -i a >>"$DIR/log/mon.out" 2>&1 </dev/null &
echo $! >"$DIR/pids/mon"

"${C[@]}" osd new "$OSD_UUID" >/dev/null 2>>"$DIR/log/setup.log"
mkdir -p "$DIR/osd/ceph-0"
ceph-osd -c "$CONF" -i 0 --mkfs --mkkey --no-mon-config --osd-uuid "$OSD_UUID" >>"$DIR/log/setup.log" 2>&1
"${C[@]}" auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
  -i "$DIR/osd/ceph-0/keyring" >/dev/null 2>>"$DIR/log/setup.log"
setsid ceph-osd -c "$CONF" -f -i 0 >>"$DIR/log/osd.out" 2>&1 </dev/null &
echo $! >"$DIR/pids/osd"

for i in $(seq 120); do
  if "${C[@]}" osd stat 2>/dev/null | grep -q '1 up'; then break; fi
  ((i < 120)) || { log "the OSD did not come up in 60 s"; exit 1; }
  kill -0 "$(cat "$DIR/pids/osd")" 2>/dev/null || { log "ceph-osd exited"; exit 1; }
  sleep 0.5
done

for gw in a b; do
  "${C[@]}" auth get-or-create "client.rgw.$gw" mon 'allow rw' osd 'allow rwx' >>"$DIR/keyring" \
    2>>"$DIR/log/setup.log"
done
ENDPOINT=http://127.0.0.1:$RGW_PORT
start_gateway a "$ENDPOINT" "$DIR/pids/rgw" "$DIR/log/rgw.out"

ACCESS=$(python3 -c 'import secrets; print(secrets.token_hex(10).upper())')
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
radosgw-admin -c "$CONF" -n client.admin user create --uid=snapfs-test --display-name="snapfs tests" \
  --access-key="$ACCESS" --secret="$SECRET" >/dev/null 2>>"$DIR/log/setup.log"
BUCKET=snapfs-test
# radosgw wants x-amz-content-sha256 on every signed request (403 without it).
code=$(curl -s -o "$DIR/log/bucket.out" -w '%{http_code}' -X PUT --max-time 30 \
  --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS:$SECRET" \
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$ENDPOINT/$BUCKET")
[[ $code == 200 ]] || { log "creating bucket $BUCKET: HTTP $code"; exit 1; }

cat >"$DIR/env" <<EOF
export SNAPFS_TEST_S3_ENDPOINT=$ENDPOINT
export SNAPFS_TEST_S3_ACCESS_KEY=$ACCESS
export SNAPFS_TEST_S3_SECRET_KEY=$SECRET
export SNAPFS_TEST_S3_BUCKET=$BUCKET
export SNAPFS_TEST_S3_SPARE_ENDPOINT=http://127.0.0.1:$RGW_B_PORT
export SNAPFS_TEST_CEPH_DIR=$DIR
EOF
chmod 600 "$DIR/env"
cat "$DIR/env"
trap - EXIT
