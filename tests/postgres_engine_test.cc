// What only a remote engine needs beyond KvEngineConformance (which runs on PostgreSQL
// too): round trips per call, the schema version, connections that die, statements that
// time out, compaction. Needs the test server of scripts/test.sh (SNAPFS_TEST_PG);
// without it every case skips, loudly.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "core/meta/postgres_engine.h"
#include "tests/util/pg_test_db.h"
#include "tests/util/status_matchers.h"

namespace snapfs::kv {
namespace {

using std::chrono::milliseconds;

class PostgresEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::PgTestServer()) GTEST_SKIP() << test::kNoPgServer;
    conninfo_ = test::NewPgTestDatabase();
    db_ = conninfo_.substr(conninfo_.rfind("dbname=") + 7);
  }
  std::unique_ptr<PostgresEngine> Make(PostgresEngine::Options opts = {}) {
    EXPECT_OK(PostgresEngine::CreateSchema(conninfo_, opts));
    auto e = PostgresEngine::Open(conninfo_, opts);
    EXPECT_OK(e.status());
    return e.ok() ? std::move(e).value() : nullptr;
  }
  // One statement on the test's own database, outside the engine.
  std::string Sql(const std::string& sql) {
    PGconn* c = PQconnectdb(conninfo_.c_str());
    PGresult* r = PQexec(c, sql.c_str());
    std::string out;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
    EXPECT_TRUE(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
        << sql << ": " << PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(c);
    return out;
  }
  // Ends every server session of the engine (as a restart of the server would).
  void KillEngineSessions() {
    test::PgAdmin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
                  db_ + "' AND application_name = 'snapfs'");
  }

  std::string conninfo_, db_;
};

TEST_F(PostgresEngineTest, RoundTripsPerCall) {
  auto e = Make();
  ASSERT_TRUE(e);
  auto rt = [&] { return e->round_trips(); };
  {
    // Warm: the pool holds a connection, so no connect is counted below.
    auto t = e->Begin();
    ASSERT_OK(t->Commit());
  }
  uint64_t r0 = rt();
  auto t = e->Begin();
  EXPECT_EQ(rt() - r0, 0u) << "Begin: the BEGIN waits for the first statement";
  r0 = rt();
  std::string v;
  EXPECT_CODE(t->Get(Cf::kInodes, "a", &v), Code::kNotFound);
  EXPECT_EQ(rt() - r0, 1u) << "the first Get, with the BEGIN in its round trip";
  r0 = rt();
  EXPECT_CODE(t->Get(Cf::kInodes, "b", &v), Code::kNotFound);
  EXPECT_EQ(rt() - r0, 1u) << "Get";
  r0 = rt();
  for (int i = 0; i < 50; i++) t->Put(Cf::kDentries, "d" + std::to_string(i), "x");
  t->Delete(Cf::kInodes, "gone");
  t->Add(Cf::kRefs, "r", 3);
  EXPECT_EQ(rt() - r0, 0u) << "Put/Delete/Add are buffered";
  ASSERT_OK(t->Commit());
  EXPECT_EQ(rt() - r0, 1u) << "Commit: reads checked, 52 writes and COMMIT in one pipeline";
  t.reset();

  r0 = rt();
  ASSERT_OK(e->Get(Cf::kDentries, "d1", &v));
  EXPECT_EQ(rt() - r0, 1u) << "Engine::Get";
  t = e->Begin();
  r0 = rt();
  {
    auto it = t->NewIterator(Cf::kDentries);
    it->Seek("");
    EXPECT_EQ(rt() - r0, 1u) << "Seek (with the BEGIN)";
    int n = 0;
    for (; it->Valid(); it->Next()) n++;
    EXPECT_EQ(n, 50);
    EXPECT_EQ(rt() - r0, 1u) << "50 rows are one page";
  }
  t.reset();  // ROLLBACK of an unfinished transaction: 1

  // A transaction that writes before it reads begins at its first write (its snapshot
  // must come before what it overwrites: KvEngineConformance.UncheckedWrite...), and one
  // that does nothing costs nothing.
  r0 = rt();
  t = e->Begin();
  t->Put(Cf::kDentries, "blind", "x");
  EXPECT_EQ(rt() - r0, 1u) << "a first write sends the BEGIN";
  t->Put(Cf::kDentries, "blind2", "x");
  ASSERT_OK(t->Commit());
  EXPECT_EQ(rt() - r0, 2u) << "then the commit";
  t.reset();  // its connection back to the pool, so that the next Begin connects nothing
  r0 = rt();
  t = e->Begin();
  ASSERT_OK(t->Commit());
  t.reset();
  EXPECT_EQ(rt() - r0, 0u) << "an empty transaction";

  // Times on this machine (Unix socket), for docs/scale-out.md.
  const int n = 200;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; i++) ASSERT_OK(e->Get(Cf::kDentries, "d1", &v));
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; i++) {
    ASSERT_OK(RunTxn(*e, [&](Txn& x) -> Status {
      std::string p;
      Status s = x.Get(Cf::kInodes, "parent", &p);
      if (!s.ok() && !s.Is(Code::kNotFound)) return s;
      x.Put(Cf::kInodes, "parent", "p");
      x.Put(Cf::kDentries, "new" + std::to_string(i), "e");
      x.Put(Cf::kInodes, "ino" + std::to_string(i), "i");
      return Status::OK();
    }));
  }
  auto t2 = std::chrono::steady_clock::now();
  auto us = [](auto d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); };
  std::printf("postgres: Engine::Get %lld us; create-like txn (Begin, Get, 3 Puts, Commit) %lld us\n",
              static_cast<long long>(us(t1 - t0) / n), static_cast<long long>(us(t2 - t1) / n));
}

// The number of connections is bounded (every host's count adds up against the server's
// max_connections): a Begin that finds them all busy waits for one to come back.
// A fixed statement is parsed and planned once per connection, not once per call: the
// server's per-statement work is most of a create's cost over a local socket.
TEST_F(PostgresEngineTest, StatementsArePreparedOncePerConnection) {
  auto e = Make();
  ASSERT_TRUE(e);
  auto one = [&](int i) {
    return RunTxn(*e, [&](Txn& t) {
      std::string v;
      Status g = t.Get(Cf::kInodes, "k" + std::to_string(i % 7), &v);
      if (!g.ok() && !g.Is(Code::kNotFound)) return g;
      t.Put(Cf::kInodes, "k" + std::to_string((i + 1) % 7), std::to_string(i));
      t.Add(Cf::kDefault, "n", 1);
      return Status::OK();
    });
  };
  ASSERT_OK(one(0));
  const uint64_t first = e->statements_prepared();
  EXPECT_GT(first, 0u) << "the first transaction prepares its statements";
  for (int i = 1; i < 200; i++) ASSERT_OK(one(i));
  ASSERT_EQ(e->peak_connections(), 1u);
  // One connection, a handful of distinct statements: never one per call.
  EXPECT_LE(e->statements_prepared(), first + 8) << "statements were prepared again";
  std::string v;
  ASSERT_OK(e->Get(Cf::kDefault, "n", &v));
  EXPECT_EQ(DecodeCounter(v).value(), 200);

  // A new server session (the old ones were ended) has none of them: they are prepared
  // again there, never executed by a name it does not know.
  KillEngineSessions();
  ASSERT_OK(one(200));
  EXPECT_GT(e->statements_prepared(), first + 0) << "prepared again on the new connection";
  ASSERT_OK(one(201));
}

// A statement whose Parse failed (its table was missing) is not taken as prepared: once
// the table is back, the same connection prepares it again instead of executing a name
// the server never made.
TEST_F(PostgresEngineTest, AFailedPrepareIsNotRemembered) {
  auto e = Make();
  ASSERT_TRUE(e);
  const std::string t = PostgresEngine::TableName(Cf::kDentries);
  Sql("DROP TABLE " + t);
  std::string v;
  EXPECT_FALSE(e->Get(Cf::kDentries, "a", &v).ok());
  {
    auto txn = e->Begin();
    EXPECT_FALSE(txn->Get(Cf::kDentries, "a", &v).ok());
  }
  Sql("CREATE TABLE " + t + " (k bytea PRIMARY KEY, v bytea)");
  Sql("INSERT INTO " + t + " VALUES ('a'::bytea, 'x'::bytea)");
  ASSERT_OK(e->Get(Cf::kDentries, "a", &v));
  EXPECT_EQ(v, "x");
  auto txn = e->Begin();
  ASSERT_OK(txn->Get(Cf::kDentries, "a", &v));
  EXPECT_EQ(v, "x");
  EXPECT_EQ(e->peak_connections(), 1u) << "the same connection throughout";
}

// fsck's read view on a pooled connection that died while idle (a server restart):
// it opens on a new one instead of failing once.
TEST_F(PostgresEngineTest, AReadViewSurvivesAPooledConnectionThatDied) {
  auto e = Make();
  ASSERT_TRUE(e);
  ASSERT_OK(RunTxn(*e, [](Txn& t) {
    t.Put(Cf::kInodes, "a", "1");
    return Status::OK();
  }));
  KillEngineSessions();
  auto view = e->NewReadView();
  ASSERT_OK(view.status());
  std::string v;
  ASSERT_OK((*view)->Get(Cf::kInodes, "a", &v));
  EXPECT_EQ(v, "1");
}

TEST_F(PostgresEngineTest, ConnectionsAreBoundedAndABeginWaitsForOne) {
  PostgresEngine::Options opts;
  opts.max_open = 2;
  opts.connection_wait = std::chrono::seconds(60);  // longer than the test can need
  auto e = Make(opts);
  ASSERT_NE(e, nullptr);
  auto t1 = e->Begin();
  auto t2 = e->Begin();
  t1->Put(Cf::kInodes, "a", "1");
  std::atomic<bool> began{false};
  std::thread third([&] {
    auto t3 = e->Begin();  // waits: both connections are in use
    began = true;
    t3->Put(Cf::kInodes, "c", "3");
    EXPECT_OK(t3->Commit());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(began.load()) << "a third connection was opened past the bound";
  ASSERT_OK(t1->Commit());
  t1.reset();  // its connection goes back to the pool: the third takes it
  third.join();
  EXPECT_TRUE(began.load());
  ASSERT_OK(t2->Commit());
  EXPECT_LE(e->peak_connections(), 2u);
  std::string v;
  EXPECT_OK(e->Get(Cf::kInodes, "c", &v));
}

// A thread that holds a transaction and needs a second connection (an iterator outside
// it) never waits for itself: past the wait, one more connection is opened.
TEST_F(PostgresEngineTest, TheBoundIsSoftSoNothingWaitsForItself) {
  PostgresEngine::Options opts;
  opts.max_open = 1;
  opts.connection_wait = std::chrono::milliseconds(100);
  auto e = Make(opts);
  ASSERT_NE(e, nullptr);
  auto t = e->Begin();
  t->Put(Cf::kInodes, "a", "1");
  auto it = e->NewIterator(Cf::kInodes);  // a second connection, after the wait
  it->Seek("");
  EXPECT_OK(it->status());
  it.reset();
  ASSERT_OK(t->Commit());
  EXPECT_EQ(e->peak_connections(), 2u);
}

TEST_F(PostgresEngineTest, SchemaIsCreatedOnceAndItsVersionChecked) {
  auto missing = PostgresEngine::Open(conninfo_);
  EXPECT_CODE(missing.status(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("init"), std::string::npos)
      << missing.status().ToString();
  auto e = Make();
  ASSERT_TRUE(e);
  Status again = PostgresEngine::CreateSchema(conninfo_);
  EXPECT_CODE(again, Code::kAlreadyExists);
  e.reset();
  Sql("UPDATE snapfs_meta SET value = '99' WHERE key = 'schema_version'");
  auto newer = PostgresEngine::Open(conninfo_);
  EXPECT_CODE(newer.status(), Code::kInvalidArgument);
  EXPECT_NE(newer.status().message().find("'99'"), std::string::npos) << newer.status().ToString();
}

TEST_F(PostgresEngineTest, DescribeShowsHostPortAndDatabaseOnly) {
  Make();
  auto e = PostgresEngine::Open(conninfo_ + " password=hunter2 application_name=x");
  ASSERT_OK(e.status());
  std::string d = (*e)->Describe();
  EXPECT_EQ(d.find("hunter2"), std::string::npos) << d;
  EXPECT_NE(d.find(db_), std::string::npos) << d;
  EXPECT_EQ(d.rfind("postgresql://", 0), 0u) << d;
  auto bad = PostgresEngine::Open("host=/nonexistent-snapfs port=1 password=hunter2 dbname=x");
  EXPECT_CODE(bad.status(), Code::kIOError);
  EXPECT_EQ(bad.status().message().find("hunter2"), std::string::npos) << bad.status().ToString();
}

TEST_F(PostgresEngineTest, ConnectionKilledMidTransactionFailsClearlyAndTheNextOneWorks) {
  auto e = Make();
  ASSERT_TRUE(e);
  ASSERT_OK(RunTxn(*e, [](Txn& t) {
    t.Put(Cf::kInodes, "a", "1");
    return Status::OK();
  }));
  auto t = e->Begin();
  std::string v;
  ASSERT_OK(t->Get(Cf::kInodes, "a", &v));
  t->Put(Cf::kInodes, "a", "2");
  KillEngineSessions();
  auto start = std::chrono::steady_clock::now();
  Status s = t->Get(Cf::kInodes, "b", &v);
  EXPECT_CODE(s, Code::kIOError);
  EXPECT_NE(s.message().find("PostgreSQL"), std::string::npos) << s.ToString();
  EXPECT_FALSE(t->Commit().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  t.reset();
  // Idle pooled connections died too: the next transaction connects again by itself.
  KillEngineSessions();
  ASSERT_OK(RunTxn(*e, [](Txn& t) {
    t.Put(Cf::kInodes, "b", "1");
    return Status::OK();
  }));
  ASSERT_OK(e->Get(Cf::kInodes, "a", &v));
  EXPECT_EQ(v, "1") << "the killed transaction wrote nothing";
  ASSERT_OK(e->Get(Cf::kInodes, "b", &v));
}

TEST_F(PostgresEngineTest, AStatementThatWaitsTooLongIsBusyNotAHang) {
  PostgresEngine::Options opts;
  opts.statement_timeout = milliseconds(300);
  auto e = Make(opts);
  ASSERT_TRUE(e);
  ASSERT_OK(RunTxn(*e, [](Txn& t) {
    t.Put(Cf::kInodes, "locked", "1");
    return Status::OK();
  }));
  // Another client holds the row's lock and does not let go.
  PGconn* other = PQconnectdb(conninfo_.c_str());
  PQclear(PQexec(other, "BEGIN"));
  PGresult* r = PQexec(other, "SELECT 1 FROM kv_inodes WHERE k = 'locked'::bytea FOR UPDATE");
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  PQclear(r);
  auto start = std::chrono::steady_clock::now();
  auto t = e->Begin();
  t->Put(Cf::kInodes, "locked", "2");
  Status s = t->Commit();
  EXPECT_CODE(s, Code::kBusy);
  EXPECT_NE(s.message().find("statement_timeout"), std::string::npos) << s.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  t.reset();
  PQclear(PQexec(other, "ROLLBACK"));
  PQfinish(other);
  ASSERT_OK(RunTxn(*e, [](Txn& t) {
    t.Put(Cf::kInodes, "locked", "3");
    return Status::OK();
  }));
}

TEST_F(PostgresEngineTest, AGetOfACounterConflictsWithAnAddCommittedMeanwhile) {
  auto e = Make();
  ASSERT_TRUE(e);
  ASSERT_OK(RunTxn(*e, [](Txn& t) {
    t.Add(Cf::kRefs, "r", 1);
    return Status::OK();
  }));
  for (bool read_only : {true, false}) {
    auto reader = e->Begin();
    ASSERT_EQ(*reader->GetCounter(Cf::kRefs, "r"), read_only ? 1 : 2);
    auto adder = e->Begin();
    adder->Add(Cf::kRefs, "r", 1);
    ASSERT_OK(adder->Commit());
    if (!read_only) reader->Put(Cf::kChunks, "elsewhere", "x");
    EXPECT_CODE(reader->Commit(), Code::kConflict) << "read_only=" << read_only;
  }
  // The other order: the reader commits first, then the add still commits.
  auto reader = e->Begin();
  ASSERT_EQ(*reader->GetCounter(Cf::kRefs, "r"), 3);
  auto adder = e->Begin();
  adder->Add(Cf::kRefs, "r", 1);
  ASSERT_OK(reader->Commit());
  ASSERT_OK(adder->Commit());
  std::string v;
  ASSERT_OK(e->Get(Cf::kRefs, "r", &v));
  EXPECT_EQ(*DecodeCounter(v), 4);
}

// Two engines on one database, as two daemons on two hosts: adds to one refcount from
// both, and a "GC" that deletes a chunk only when its count reads 0 while writers add
// references to chunks they first Get. No increment may be lost, and a chunk whose
// count is not 0 must survive.
TEST_F(PostgresEngineTest, TwoEnginesRaceAddsAndAGcWithoutLosingAnything) {
  auto a = Make();
  ASSERT_TRUE(a);
  auto b = PostgresEngine::Open(conninfo_);
  ASSERT_OK(b.status());
  const int chunks = 20, per_thread = 60;
  ASSERT_OK(RunTxn(*a, [&](Txn& t) {
    for (int c = 0; c < chunks; c++) t.Put(Cf::kChunks, "c" + std::to_string(c), "loc");
    return Status::OK();
  }));
  std::atomic<int> added{0};
  auto writer = [&](Engine* e, int seed) {
    for (int i = 0; i < per_thread; i++) {
      std::string c = "c" + std::to_string((i * 7 + seed) % chunks);
      bool linked = false;
      ASSERT_OK(RunTxn(*e, [&](Txn& t) -> Status {
        linked = false;
        std::string v;
        Status s = t.Get(Cf::kChunks, c, &v);
        if (s.Is(Code::kNotFound)) return Status::OK();  // collected: nothing to reference
        RETURN_IF_ERROR(s);
        t.Add(Cf::kRefs, c, 1);
        t.Add(Cf::kDefault, "total", 1);
        linked = true;
        return Status::OK();
      }));
      if (linked) added++;
    }
  };
  auto gc = [&](Engine* e) {
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < chunks; i++) {
        std::string c = "c" + std::to_string(i);
        ASSERT_OK(RunTxn(*e, [&](Txn& t) -> Status {
          ASSIGN_OR_RETURN(int64_t n, t.GetCounter(Cf::kRefs, c));
          if (n == 0) t.Delete(Cf::kChunks, c);
          return Status::OK();
        }));
      }
    }
  };
  std::thread w1(writer, a.get(), 0), w2(writer, b->get(), 3), g(gc, b->get());
  w1.join();
  w2.join();
  g.join();
  std::string v;
  ASSERT_OK(a->Get(Cf::kDefault, "total", &v));
  EXPECT_EQ(*DecodeCounter(v), added.load());
  int64_t sum = 0;
  for (int c = 0; c < chunks; c++) {
    std::string k = "c" + std::to_string(c);
    int64_t n = 0;
    if (a->Get(Cf::kRefs, k, &v).ok()) n = *DecodeCounter(v);
    sum += n;
    if (n > 0) {
      EXPECT_OK(a->Get(Cf::kChunks, k, &v)) << k << " has " << n << " references";
    }
  }
  EXPECT_EQ(sum, added.load());
}

TEST_F(PostgresEngineTest, CompactFoldsCountersAndDropsTombstones) {
  auto e = Make();
  ASSERT_TRUE(e);
  for (int i = 0; i < 5; i++) {
    ASSERT_OK(RunTxn(*e, [&](Txn& t) {
      t.Add(Cf::kRefs, "r", 2);
      t.Add(Cf::kRefs, "s", -1);
      t.Put(Cf::kInodes, "i" + std::to_string(i), "x");
      return Status::OK();
    }));
  }
  ASSERT_OK(RunTxn(*e, [](Txn& t) {
    t.Delete(Cf::kInodes, "i0");
    t.Delete(Cf::kInodes, "i1");
    return Status::OK();
  }));
  EXPECT_EQ(Sql("SELECT count(*) FROM kv_deltas"), "10");
  EXPECT_EQ(Sql("SELECT count(*) FROM kv_inodes WHERE v IS NULL"), "2");
  ASSERT_OK(e->Compact());
  EXPECT_EQ(Sql("SELECT count(*) FROM kv_deltas"), "0");
  // A tombstone goes once no snapshot could miss its writer; snapshots' xmin is
  // server-wide, so the other suites' transactions (ctest -j) may hold it back a while.
  for (int i = 0; i < 100 && Sql("SELECT count(*) FROM kv_inodes WHERE v IS NULL") != "0"; i++) {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_OK(e->Compact());
  }
  EXPECT_EQ(Sql("SELECT count(*) FROM kv_inodes WHERE v IS NULL"), "0");
  std::string v;
  ASSERT_OK(e->Get(Cf::kRefs, "r", &v));
  EXPECT_EQ(*DecodeCounter(v), 10);
  ASSERT_OK(e->Get(Cf::kRefs, "s", &v));
  EXPECT_EQ(*DecodeCounter(v), -5);
  auto it = e->NewIterator(Cf::kInodes);
  int n = 0;
  for (it->Seek(""); it->Valid(); it->Next()) n++;
  EXPECT_OK(it->status());
  EXPECT_EQ(n, 3);
}

TEST_F(PostgresEngineTest, IteratorsPageThroughTombstonesAndDeltaOnlyKeys) {
  auto e = Make();
  ASSERT_TRUE(e);
  const int n = static_cast<int>(PostgresEngine::kPageRows) * 3 + 7;
  ASSERT_OK(RunTxn(*e, [&](Txn& t) {
    for (int i = 0; i < n; i++) {
      char k[16];
      std::snprintf(k, sizeof k, "k%05d", i);
      t.Put(Cf::kRefs, k, EncodeCounter(i));
    }
    return Status::OK();
  }));
  // Two pages of tombstones in the middle, and counters that exist only as deltas.
  ASSERT_OK(RunTxn(*e, [&](Txn& t) {
    for (int i = 100; i < 100 + 2 * static_cast<int>(PostgresEngine::kPageRows); i++) {
      char k[16];
      std::snprintf(k, sizeof k, "k%05d", i);
      t.Delete(Cf::kRefs, k);
    }
    t.Add(Cf::kRefs, "k00100x", 7);
    t.Add(Cf::kRefs, "zz", 1);
    return Status::OK();
  }));
  auto it = e->NewIterator(Cf::kRefs);
  int count = 0;
  std::string last;
  for (it->Seek(""); it->Valid(); it->Next()) {
    EXPECT_LT(last, std::string(it->key()));
    last = it->key();
    count++;
  }
  EXPECT_OK(it->status());
  EXPECT_EQ(count, n - 2 * static_cast<int>(PostgresEngine::kPageRows) + 2);
  EXPECT_EQ(last, "zz");
}

}  // namespace
}  // namespace snapfs::kv
