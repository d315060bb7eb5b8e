#!/usr/bin/env bash
# Installs every Debian 12 package snapfs needs to build, test and run. Idempotent: it
# does nothing when everything is already there.
#   --with-ceph   also the single-node Ceph + radosgw that the S3 tests run against
#                 (scripts/ceph-test-cluster.sh; scripts/test.sh passes it)
set -euo pipefail

PKGS=(
  g++ cmake ninja-build pkg-config make ccache
  libfuse3-dev fuse3
  librocksdb-dev libxxhash-dev
  libpq-dev postgresql-15
  libboost-program-options-dev
  nlohmann-json3-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  help2man man-db bsdextrautils curl
  libcurl4-openssl-dev libssl-dev
)
for a in "$@"; do
  case "$a" in
    --with-ceph) PKGS+=(ceph-mon ceph-osd ceph-common radosgw python3) ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
