#!/usr/bin/env bash
# The FUSE baseline of the benchmarks (DESIGN.md §5, issue 12): libfuse's passthrough_ll,
# built at bench time from Debian's example source (libfuse3-dev ships it in
# /usr/share/doc/libfuse3-dev/examples) into the build folder. Neither the source nor the
# binary is committed. Sourced by scripts/bench_mount.sh and scripts/bench_flink.sh:
#   passthrough_build BUILD_DIR      prints the binary's path (builds it when missing or older
#                                    than the source); fails with the reason
#   passthrough_mount BIN SRC MNT    mounts SRC on MNT: -o writeback (kernel writeback
#                                    cache), -o source=SRC (libfuse 3.14), default cache=auto
#                                    (1 s attr/entry timeouts), multi-threaded, with as many
#                                    open files as the hard limit allows (up to 1,048,576);
#                                    returns once the mount is live
#   passthrough_umount MNT           unmounts (fusermount3 -u, retried while busy)

PASSTHROUGH_SRC_DIR=${PASSTHROUGH_SRC_DIR:-/usr/share/doc/libfuse3-dev/examples}

passthrough_build() {
  local build=$1 out src=$PASSTHROUGH_SRC_DIR tmp
  out=$(cd "$build" && pwd)/passthrough_ll
  tmp=$(dirname "$out")/passthrough_ll-src
  mkdir -p "$tmp"
  # Debian may ship the examples compressed.
  local f
  for f in passthrough_ll.c passthrough_helpers.h; do
    if [[ -f $src/$f ]]; then
      cp "$src/$f" "$tmp/$f"
    elif [[ -f $src/$f.gz ]]; then
      zcat "$src/$f.gz" >"$tmp/$f"
    else
      echo "passthrough_build: no $src/$f (apt-get install libfuse3-dev)" >&2
      return 1
    fi
  done
  if [[ ! -x $out || $tmp/passthrough_ll.c -nt $out ]]; then
    # shellcheck disable=SC2046  # pkg-config prints several words on purpose
    cc -O2 -w -I"$tmp" "$tmp/passthrough_ll.c" $(pkg-config --cflags --libs fuse3) -o "$out" ||
      { echo "passthrough_build: compiling passthrough_ll failed" >&2; return 1; }
  fi
  echo "$out"
}

passthrough_mount() {
  local bin=$1 src=$2 mnt=$3 i
  # passthrough_ll holds an O_PATH descriptor for every inode the kernel knows: a folder of
  # 200,000 files needs more than the usual 20,000 (root may raise the hard limit).
  (ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$bin" -o writeback -o source="$src" "$mnt") ||
    { echo "passthrough_mount: $bin failed to mount $src on $mnt" >&2; return 1; }
  for ((i = 0; i < 100; i++)); do
    mountpoint -q "$mnt" && return 0
    sleep 0.05
  done
  echo "passthrough_mount: $mnt is not a mount point after 5 s" >&2
  return 1
}

passthrough_umount() {
  local mnt=$1 i
  for ((i = 0; i < 50; i++)); do
    mountpoint -q "$mnt" || return 0
    fusermount3 -u "$mnt" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "passthrough_umount: $mnt stays busy; lazy unmount" >&2
  fusermount3 -uz "$mnt"
}
