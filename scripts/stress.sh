#!/usr/bin/env bash
# stress-ng's filesystem and I/O stressors and xfstests' fsx against a snapfs mount, by hand
# (docs/reliability.md "stress-ng and fsx"). Mounts a fresh store under /tmp, runs each
# stressor alone for a bounded time with --temp-path on the mount, checks after each that
# the daemon still answers, then runs fsx (if given), and ends with fsck --verify through
# the daemon and of the unmounted store. Prints PASS / FAIL / SKIP per stressor.
#   scripts/stress.sh                    every stressor below, 10 s each
#   --seconds N                          seconds per stressor (default 10)
#   --stressors "a b c"                  only these
#   --instances N                        workers per stressor (default 2)
#   --fsx BIN                            also run fsx (built by hand from xfstests' ltp/fsx.c,
#                                        as the doc says) on a file in the mount:
#                                        fsx -c 100 -f -N OPS -S SEED
#   --fsx-ops N                          fsx operations (default 100000; --long: 1000000)
#   --fsx-seed N                         (default 1)
#   --no-stress-ng                       fsx only
#   --build-dir DIR                      use an existing snapfs build (default: build/, built first)
#   --keep                               keep the store and logs (printed) instead of deleting them
# Needs stress-ng (apt-get install stress-ng) and /dev/fuse. Exit 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=10
INSTANCES=2
FSX=
FSX_OPS=100000
FSX_SEED=1
RUN_STRESS=1
BUILD=
KEEP=0
# The filesystem and io classes of stress-ng 0.15, less those that need something other
# than a folder (rawdev: a block device; bind-mount, binderfs: namespaces; verity: fs-verity)
# and io-uring, which fails on native ext4 too with this kernel (IORING_OP_STATX: ENOENT).
STRESSORS="access chattr chdir chmod chown copy-file dentry dir dirdeep dirmany dnotify dup
eventfd fallocate fanotify fcntl fiemap file-ioctl filename flock fpunch fsize fstat getdent
handle hdd inode-flags inotify io iomix ioprio lease link locka lockf lockofd mknod open procfs
rename symlink sync-file touch utime xattr aio aiol readahead revio seek"
while (($#)); do
  case "$1" in
    --seconds) SECONDS_EACH=$2; shift ;;
    --stressors) STRESSORS=$2; shift ;;
    --instances) INSTANCES=$2; shift ;;
    --fsx) FSX=$2; shift ;;
    --fsx-ops) FSX_OPS=$2; shift ;;
    --fsx-seed) FSX_SEED=$2; shift ;;
    --long) FSX_OPS=1000000 ;;
    --no-stress-ng) RUN_STRESS=0 ;;
    --build-dir) BUILD=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,19p' "$0" | cut -c3-; exit 0 ;;
    *) echo "stress.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if ((RUN_STRESS)) && ! command -v stress-ng >/dev/null; then
  echo "stress.sh: stress-ng is not installed (apt-get install stress-ng)" >&2
  exit 2
fi
if [[ -n "$FSX" && ! -x "$FSX" ]]; then
  echo "stress.sh: --fsx $FSX is not an executable (build fsx as docs/reliability.md says)" >&2
  exit 2
fi
if [[ -z "$BUILD" ]]; then
  BUILD=$(bash scripts/build.sh --target snapfs | tail -n 1)
fi
SNAPFS=$BUILD/snapfs

WORK=$(mktemp -d /tmp/snapfs-stress-XXXXXX)
STORE=$WORK/store
MNT=$WORK/mnt
LOGS=$WORK/logs
mkdir "$MNT" "$LOGS"
cleanup() {
  if grep -qs " $MNT " /proc/self/mounts; then
    "$SNAPFS" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u -z "$MNT" || true
  fi
  if ((KEEP)); then echo "stress.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
"$SNAPFS" init "$STORE" >/dev/null
"$SNAPFS" mount "$STORE" "$MNT" --metrics off
echo "stress.sh: $(stress-ng --version 2>/dev/null || echo 'no stress-ng'); snapfs on $MNT" >&2

failed=0
alive() { "$SNAPFS" status "$MNT" >/dev/null 2>&1; }
declare -A RESULT
if ((RUN_STRESS)); then
  for s in $STRESSORS; do
    dir=$MNT/$s
    mkdir -p "$dir"
    rc=0
    timeout $((SECONDS_EACH + 120)) stress-ng --"$s" "$INSTANCES" --timeout "${SECONDS_EACH}s" \
      --temp-path "$dir" --verify --metrics-brief --log-file "$LOGS/$s.log" \
      >"$LOGS/$s.out" 2>&1 || rc=$?
    case $rc in
      0) r=PASS ;;
      3) r=SKIP ;;  # "stressor resources unavailable": not applicable here
      4) r=SKIP ;;  # not implemented on this system
      *) r="FAIL(exit $rc)"; failed=1 ;;
    esac
    if ! alive; then r="FAIL(daemon dead)"; failed=1; fi
    ops=$(awk -v s="$s" '$0 ~ "stress-ng: (metrc|info): .*\\] " s " " {print $5; exit}' "$LOGS/$s.out" || true)
    RESULT[$s]=$r
    printf '%-12s %-18s %s\n' "$s" "$r" "${ops:+bogo ops $ops}"
    if [[ $r != PASS && $r != SKIP ]]; then
      grep -E 'fail|error|FAIL' "$LOGS/$s.out" | head -5 | sed 's/^/    /'
    fi
    if [[ $r == SKIP ]]; then
      grep -Ei 'skipp|not (supported|implemented)|cannot|unavailable' "$LOGS/$s.out" | head -2 | sed 's/^/    /'
    fi
    rm -rf "$dir" 2>/dev/null || true
    if [[ $r == "FAIL(daemon dead)" ]]; then break; fi
  done
fi

if [[ -n "$FSX" ]] && alive; then
  rc=0
  start=$(date +%s)
  "$FSX" -c 100 -f -N "$FSX_OPS" -S "$FSX_SEED" -P "$LOGS" "$MNT/fsx.file" >"$LOGS/fsx.out" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))
  if ((rc == 0)) && grep -q 'completed A-OK' "$LOGS/fsx.out"; then
    echo "fsx          PASS               $FSX_OPS operations in ${secs} s (seed $FSX_SEED)"
  else
    echo "fsx          FAIL(exit $rc)     after ${secs} s (seed $FSX_SEED); logs in $LOGS"
    tail -20 "$LOGS/fsx.out" | sed 's/^/    /'
    failed=1
    KEEP=1
  fi
  grep 'does not support\|disabling' "$LOGS/fsx.out" | sed 's/^/    /' || true
fi

if alive; then
  if ! "$SNAPFS" fsck "$MNT" --verify >"$LOGS/fsck-mounted.out" 2>&1; then
    echo "fsck --verify through the daemon: FAIL"; cat "$LOGS/fsck-mounted.out"; failed=1
  else
    echo "fsck --verify through the daemon: clean"
  fi
  "$SNAPFS" umount "$MNT"
else
  echo "the daemon is dead"; failed=1
  fusermount3 -u -z "$MNT" || true
fi
if ! "$SNAPFS" fsck "$STORE" --verify --offline >"$LOGS/fsck.out" 2>&1; then
  echo "fsck --verify of the unmounted store: FAIL"; cat "$LOGS/fsck.out"; failed=1
else
  echo "fsck --verify of the unmounted store: clean"
fi
if ((failed)); then KEEP=1; fi
exit "$failed"
