#!/usr/bin/env bash
# Writes the snapfs(1) man page from the program's own help texts (help2man), so the
# page and `--help` never disagree.
#   scripts/man.sh BINARY OUT.1
set -euo pipefail
BIN=$1
OUT=$2
if ! command -v help2man >/dev/null; then
  echo "man.sh: installing help2man" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends help2man >/dev/null
fi
INC=$(mktemp)
trap 'rm -f "$INC"' EXIT
{
  echo "[DESCRIPTION]"
  echo "snapfs is a FUSE file system for stream-processing checkpoints (Apache Flink)."
  echo "File contents are deduplicated chunks; completed snapshots (folders whose _metadata"
  echo "was committed) pin what they reference, so deleting around them never breaks them."
  echo
  echo "[COMMANDS]"
  for verb in $("$BIN" --help | awk '/^commands:/{on=1; next} on && /^  [a-z]/{print $1}'); do
    echo ".SS $verb"
    echo ".nf"
    "$BIN" "$verb" --help | sed 's/\\/\\\\/g; s/^\./\\\&./'
    echo ".fi"
  done
  echo
  echo "[FILES]"
  echo "STORE/snapfs.conf, STORE/daemon.log, STORE/control.sock"
  echo
  echo "[SEE ALSO]"
  echo "fusermount3(1), mount.fuse3(8)"
} >"$INC"
mkdir -p "$(dirname "$OUT")"
help2man --no-info --no-discard-stderr --name "checkpoint file system for stream processors" \
  --include "$INC" --output "$OUT" "$BIN"
