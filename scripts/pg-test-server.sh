#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for the tests (facts: ../shared/notes/postgresql-test-server.md).
#   scripts/pg-test-server.sh up DIR     initdb into DIR/data, start it listening on a Unix
#                                         socket in DIR only (no TCP port, so it never meets a
#                                         developer's own server), print the libpq conninfo
#                                         (keyword form, no dbname) on the last line of stdout
#   scripts/pg-test-server.sh down DIR   stop the server of DIR/data (by its data folder)
#   scripts/pg-test-server.sh start DIR  start the stopped server of DIR/data again (tests
#                                         of a database that goes away and comes back)
# The server refuses to run as root: as root (CI) every server command runs as the
# `postgres` user that Debian's package creates, and DIR is handed to it.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  echo "usage: $0 up|down|start DIR" >&2
  exit 2
fi
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
# The socket file is DIR/.s.PGSQL.PORT; the number only names it (no TCP listener).
PORT=${PG_TEST_PORT:-54329}

# fsync off: a test server's data may die with it, and commits get cheap enough that
# the suites measure the engine, not the disk (PG_TEST_FSYNC=on: durable commits, as a
# real server; the benchmarks use that). A short deadlock_timeout so that the rare lock
# cycle between two commits is broken (and retried) quickly.
FSYNC=${PG_TEST_FSYNC:-off}
server_opts() {
  echo "-k $1 -c listen_addresses= -p $PORT -c fsync=$FSYNC -c full_page_writes=$FSYNC" \
    "-c deadlock_timeout=100ms -c max_connections=200"
}

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  up)
    if [[ ! -x $BIN/initdb ]]; then
      echo "pg-test-server: $BIN/initdb missing (apt-get install postgresql-15; scripts/setup.sh does)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; fi
    if ! as_pg "$BIN/initdb" -D "$dir/data" -A trust -U snapfs -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
      echo "pg-test-server: initdb failed:" >&2
      cat "$dir/initdb.log" >&2
      exit 1
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -o "$(server_opts "$dir")" -w -t 60 start >&2; then
      echo "pg-test-server: the server did not start; its log:" >&2
      cat "$dir/log" >&2 || true
      exit 1
    fi
    echo "host=$dir port=$PORT user=snapfs"
    ;;
  start)
    dir=$(cd "$dir" && pwd)
    if ! as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -o "$(server_opts "$dir")" -w -t 60 start >&2; then
      echo "pg-test-server: the server did not start again; its log:" >&2
      tail -n 30 "$dir/log" >&2 || true
      exit 1
    fi
    echo "host=$dir port=$PORT user=snapfs"
    ;;
  down)
    if [[ -f $dir/data/postmaster.pid ]]; then
      as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2
    fi
    ;;
  *)
    echo "usage: $0 up|down|start DIR" >&2
    exit 2
    ;;
esac
