#!/usr/bin/env bash
# The main job: mount a snapfs store in the foreground.
#   scripts/run.sh [STORE] [MOUNTPOINT]        (defaults: ./var/store ./var/mnt)
# Installs what it needs (scripts/setup.sh), builds, creates the store if missing and
# mounts it. Ctrl-C (or 'snapfs umount MOUNTPOINT' from another shell) unmounts cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${1:-var/store}
MNT=${2:-var/mnt}
BUILD=$(bash scripts/build.sh --target snapfs | tail -n 1)
SNAPFS="$PWD/$BUILD/snapfs"

if [[ ! -e "$STORE/snapfs.conf" ]]; then
  mkdir -p "$(dirname "$STORE")"
  "$SNAPFS" init "$STORE"
fi
mkdir -p "$MNT"
# A previous run killed hard leaves a dead mount behind: clear it.
if ! stat "$MNT" >/dev/null 2>&1; then fusermount3 -u -z "$MNT" 2>/dev/null || true; fi
MNT_ABS=$(cd "$MNT" && pwd)

cat <<MSG
snapfs: mounting $STORE on $MNT_ABS
  Flink:   state.checkpoints.dir: file://$MNT_ABS
           (savepoints: state.savepoints.dir: file://$MNT_ABS/savepoints)
  Inspect: $SNAPFS stats $STORE   (after unmount)   ·   Ctrl-C unmounts
MSG
exec "$SNAPFS" mount "$STORE" "$MNT_ABS" -f
