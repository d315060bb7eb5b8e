// The PostgreSQL engine: the metadata of one store in one PostgreSQL database (or
// schema), shared by every host that mounts the store (issue 11). docs/scale-out.md has
// the design and the reasons; this comment is the summary a caller needs.
//
// Tables (in the connection's current schema, made by CreateSchema):
//   snapfs_meta(key text primary key, value text)   'schema_version' = kSchemaVersion
//   kv_<space>(k bytea primary key, v bytea)        one per key space (spaces.h); bytea
//                                                   compares bytewise = memcmp order.
//                                                   v NULL is a tombstone (see Delete)
//   kv_deltas(space int2, k bytea, d int8)          counter increments (Add), insert-only
//
// Transactions run at SERIALIZABLE, with three additions that make PostgreSQL's
// serializability the contract's stricter "snapshot at Begin, conflict on any changed key
// read or written" (kv.h):
// - Begin() sends BEGIN and a statement, so the snapshot is taken at Begin (PostgreSQL
//   takes it at a transaction's first statement): 1 round trip.
// - Delete writes a tombstone instead of removing the row, and every Put/Delete is an
//   upsert, so two transactions writing one key always meet on one row: the later
//   committer gets a serialization failure even for blind writes, and even when the
//   key was absent at its snapshot. Compact() removes tombstones no snapshot can need.
// - Commit re-checks the keys read with Get and not written: `FOR SHARE NOWAIT` on the
//   rows (a row changed since the snapshot fails with a serialization failure), and a
//   tombstone inserted for a key that had no row (`ON CONFLICT DO NOTHING` fails when a
//   concurrent transaction inserted it).
// SQLSTATE 40001, 40P01 and 55P03 (lock not available) are Code::kConflict.
//
// Counters: Add inserts a row in kv_deltas (no row is ever updated by an Add, so two
// adds never conflict); a read sums base + deltas; Put/Delete of a key drops its deltas;
// Compact() folds them into the base row.
//
// Round trips (measured by PostgresEngineTest.RoundTripsPerCall; round_trips() counts
// them): Begin 1, Get 1, MultiGet 1 per kMultiGetBatch keys, Prefetch 1 (its Gets 0), Seek 1 (then 1 per page of kPageRows rows), Put/Delete/Add 0
// (buffered), Commit 1 (every buffered write, the read checks and COMMIT in one
// pipeline), plus 1 more only when the commit fails (ROLLBACK). Engine::Get 1; Engine::MultiGet
// 1 per kMultiGetBatch keys; engine
// iterators 1 to open their snapshot. A connection made for a call adds the connect and
// 1 round trip for its session settings. Statements with parameters are prepared the
// first time a connection sends them, in the same round trip (postgres_wire.h).
//
// Failures: every statement runs under statement_timeout and a client-side deadline
// (Options); a broken connection is an IOError naming the server, is dropped from the
// pool, and the next call connects again. A deadline that expires is Busy.
//
// Thread-safety: an engine is safe for concurrent use (a pool of connections under a
// mutex); a Txn or Iterator holds one connection and is used by one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "core/meta/kv.h"

typedef struct pg_conn PGconn;

namespace snapfs::kv {

struct PostgresOptions {
  // Server-side statement_timeout, and the client-side deadline of each round trip
  // (slightly longer, for a server that no longer answers at all).
  std::chrono::milliseconds statement_timeout{30000};
  // libpq connect_timeout when the conninfo sets none.
  int connect_timeout_s = 10;
  // Idle connections kept for reuse.
  size_t max_idle = 8;
  // Connections open at once (PostgreSQL's max_connections is shared by every host:
  // hosts x this must stay below it). A caller that finds them all busy waits up to
  // `connection_wait` for one, then opens one more anyway: a thread that holds a
  // transaction and needs a second connection (an iterator) must never wait for itself.
  size_t max_open = 16;
  std::chrono::milliseconds connection_wait{2000};
};

class PostgresEngine : public Engine {
 public:
  static constexpr int kSchemaVersion = 1;
  static constexpr size_t kPageRows = 256;  // rows per round trip of an iterator
  static constexpr size_t kMultiGetBatch = 256;  // keys per round trip of Txn::MultiGet

  using Options = PostgresOptions;

  // Connects with `conninfo` (a libpq URL "postgresql://user@host:port/db?sslmode=..." or
  // keyword form "host=... dbname=..."; the password comes from PGPASSFILE/~/.pgpass or
  // the conninfo itself and is never logged) and checks the schema version: an empty
  // database is NotFound ("run init"), another version InvalidArgument.
  static Result<std::unique_ptr<PostgresEngine>> Open(const std::string& conninfo,
                                                      Options opts = {});
  // Creates the tables in an empty schema; AlreadyExists if the schema holds any table.
  static Status CreateSchema(const std::string& conninfo, Options opts = {});

  ~PostgresEngine() override;

  std::unique_ptr<Txn> Begin() override;
  Status Get(Cf space, std::string_view key, std::string* value) override;
  Status MultiGet(Cf space, const std::vector<std::string>& keys,
                  std::vector<std::optional<std::string>>* values) override;
  std::unique_ptr<Iterator> NewIterator(Cf space) override;
  // The bound is part of each page's query ("AND k < bound").
  std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound) override;
  // Commits are durable when they return unless made with sync=false (then
  // synchronous_commit=off); Sync commits an empty transaction with synchronous commit,
  // which flushes the WAL over every earlier commit.
  Status Sync() override;
  // "postgresql://host:port/db": never the user's password or other options.
  std::string Describe() const override { return describe_; }

  // Removes tombstones that no open transaction can still need and folds counter deltas
  // into their base rows. Safe at any time, from any host; callers run it now and then
  // (it may make a concurrent transaction on the same keys retry).
  Status Compact() override;
  // A connection held in a read-only REPEATABLE READ transaction for the view's life.
  Result<std::unique_ptr<ReadView>> NewReadView() override;

  // Connections open now, and the most that were open at once.
  size_t open_connections() const { return open_.load(); }
  size_t peak_connections() const { return peak_.load(); }
  // Called by a connection when it closes.
  void ConnectionClosed();

  // Round trips made so far (every wait for the server counts one).
  uint64_t round_trips() const { return round_trips_.load(std::memory_order_relaxed); }
  // Statements prepared so far, over all connections: each fixed statement once per
  // connection (its server session), then only bound and executed.
  uint64_t statements_prepared() const { return prepared_.load(std::memory_order_relaxed); }
  // The conninfo as a "postgresql://user@host:port/db?key=value" URL without the password
  // (percent-encoded, so it holds no ',' or ' '): what a mount shows as its source and
  // what the CLI reconnects with (the password again from PGPASSFILE/.pgpass).
  // InvalidArgument if libpq cannot parse the conninfo.
  static Result<std::string> PublicUrl(const std::string& conninfo);
  // `location` as written, with the password of a URL's user part and every
  // `password=` value replaced by "***": for messages and logs, also when the location
  // does not parse.
  static std::string HidePassword(std::string_view location);
  // The table of a key space ("kv_inodes"), for tests and tools.
  static std::string TableName(Cf space);

  // Internal (the Txn and Iterator classes in the .cc): a pooled connection.
  struct Conn;
  Result<std::unique_ptr<Conn>> Acquire();
  void Release(std::unique_ptr<Conn> c);
  const Options& options() const { return opts_; }
  void CountRoundTrip() { round_trips_.fetch_add(1, std::memory_order_relaxed); }
  void CountPrepared() { prepared_.fetch_add(1, std::memory_order_relaxed); }

 private:
  PostgresEngine(std::string conninfo, Options opts);
  // "postgresql://host:port/db" from the conninfo alone (nothing else of it is shown).
  Result<std::unique_ptr<Conn>> Connect();

  const std::string conninfo_;
  const Options opts_;
  std::string describe_;
  std::atomic<uint64_t> round_trips_{0}, prepared_{0};
  // Declared before idle_: the pooled connections close (and count down) first.
  std::atomic<size_t> open_{0}, peak_{0};
  Mutex mu_;
  // Signalled when a connection closes or goes idle (a waiter also looks again every
  // 20 ms: a signal between its look and its wait is not lost for long).
  std::mutex freed_mu_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<Conn>> idle_ GUARDED_BY(mu_);
};

}  // namespace snapfs::kv
