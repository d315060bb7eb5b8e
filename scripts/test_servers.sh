# Sourced by scripts that run tests needing the test servers (test.sh, torture.sh): starts
# a throwaway PostgreSQL (scripts/pg-test-server.sh) and a single-node Ceph + radosgw
# (scripts/ceph-test-cluster.sh, ~25 s) and stops every server started here on exit,
# whatever happens (one trap, a list). Expects ROOT (the checkout) to be set; the caller's
# name for messages is $1 of each function.
CLEANUP=()
cleanup() {
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[i]}" || true; done
}
trap cleanup EXIT

# Exports SNAPFS_TEST_PG (tests/util/pg_test_db.h); exits if the server cannot start.
start_test_pg() {
  PG_DIR=$(mktemp -d /tmp/snapfs-pg-XXXXXX)
  CLEANUP+=('bash "$ROOT/scripts/pg-test-server.sh" down "$PG_DIR"; rm -rf "$PG_DIR"')
  if ! SNAPFS_TEST_PG=$(bash "$ROOT/scripts/pg-test-server.sh" up "$PG_DIR" | tail -n 1); then
    echo "$1: FAILED to start the PostgreSQL test server (see above)" >&2
    exit 1
  fi
  export SNAPFS_TEST_PG
}

# Exports the SNAPFS_TEST_S3_* variables (tests/util/s3_env.h); exits if it cannot start.
start_test_s3() {
  bash "$ROOT/scripts/setup.sh" --with-ceph
  CEPH_DIR=$(mktemp -d /tmp/snapfs-ceph-XXXXXX)
  CLEANUP+=('bash "$ROOT/scripts/ceph-test-cluster.sh" down "$CEPH_DIR/cluster"; rm -rf "$CEPH_DIR"')
  if ! bash "$ROOT/scripts/ceph-test-cluster.sh" up "$CEPH_DIR/cluster" >/dev/null; then
    echo "##################################################################" >&2
    echo "## FAILED: the S3 test server (Ceph + radosgw) did not start;   ##" >&2
    echo "## the S3 tests cannot run. Logs: $CEPH_DIR/cluster/log" >&2
    echo "##################################################################" >&2
    tail -n 20 "$CEPH_DIR"/cluster/log/*.log >&2 || true
    exit 1
  fi
  # shellcheck disable=SC1091
  source "$CEPH_DIR/cluster/env"
}
