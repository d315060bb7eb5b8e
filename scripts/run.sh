#!/usr/bin/env bash
# The main job: build snapfs and open a store.
#   scripts/run.sh [STORE] [MOUNTPOINT]
# Installs what it needs (scripts/setup.sh), builds, creates the store if missing
# (default ./var/store) and shows its state.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${1:-var/store}
BUILD=$(bash scripts/build.sh | tail -n 1)
if [[ ! -e "$STORE/snapfs.conf" ]]; then
  mkdir -p "$(dirname "$STORE")"
  "$BUILD/snapfs" init "$STORE"
fi
"$BUILD/snapfs" stats "$STORE"
