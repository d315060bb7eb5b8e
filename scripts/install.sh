#!/usr/bin/env bash
# Installs snapfs: the binary, the mount(8) helper link, the man page, bash completion
# and the systemd unit. Builds a Release binary first unless --build-dir names a build.
#   scripts/install.sh                       # into /usr/local (root)
#   scripts/install.sh --prefix /opt/snapfs  # elsewhere
#   DESTDIR=/tmp/stage scripts/install.sh    # staged (packaging, tests)
#   scripts/install.sh --build-dir build     # install what build/ holds, no build
# What goes where (with PREFIX=/usr/local, DESTDIR empty):
#   PREFIX/bin/snapfs
#   /sbin/mount.fuse.snapfs -> PREFIX/bin/snapfs   (mount -t fuse.snapfs, fstab)
#   PREFIX/share/man/man1/snapfs.1                 (help2man, from the --help texts)
#   /usr/share/bash-completion/completions/snapfs
#   /etc/systemd/system/snapfs-mount@.service       (when systemd is installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/usr/local
BUILD=""
while (($#)); do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
D=${DESTDIR:-}
if [[ -z $BUILD ]]; then
  BUILD=$(BUILD_DIR=build-release bash scripts/build.sh --release --target snapfs | tail -n 1)
fi
BIN=$BUILD/snapfs
[[ -x $BIN ]] || { echo "install.sh: no snapfs binary in $BUILD" >&2; exit 1; }

install -D -m 0755 "$BIN" "$D$PREFIX/bin/snapfs"
# mount(8) runs /sbin/mount.<type> for `mount -t fuse.snapfs` and fstab lines; snapfs
# accepts the helper's argument order (STORE MOUNTPOINT -o OPTIONS) itself.
install -d "$D/sbin"
ln -sfn "$PREFIX/bin/snapfs" "$D/sbin/mount.fuse.snapfs"
bash scripts/man.sh "$BIN" "$D$PREFIX/share/man/man1/snapfs.1"
install -D -m 0644 packaging/snapfs.bash-completion "$D/usr/share/bash-completion/completions/snapfs"
if [[ -d /etc/systemd/system || -n $D ]]; then
  install -D -m 0644 packaging/snapfs-mount@.service "$D/etc/systemd/system/snapfs-mount@.service"
  sed -i "s|/usr/local/bin/snapfs|$PREFIX/bin/snapfs|" "$D/etc/systemd/system/snapfs-mount@.service"
fi
echo "installed snapfs into ${D}${PREFIX} (see README 'Operating snapfs')"
