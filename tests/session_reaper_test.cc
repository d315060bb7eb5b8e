// SessionReaper decides that a session is dead by watching its row stay unchanged for
// longer than its timeout, on the watcher's own monotonic clock (core/sessions.h). Driven
// here with explicit times on the memory engine, so the decisions are exact.
#include <gtest/gtest.h>

#include "core/meta/kv.h"
#include "core/sessions.h"
#include "tests/util/status_matchers.h"

namespace snapfs {
namespace {

using std::chrono::milliseconds;

class SessionReaperTest : public ::testing::Test {
 protected:
  void Write(uint64_t id, uint64_t beat, uint64_t timeout_ms = 1000) {
    SessionValue v;
    v.timeout_ms = timeout_ms;
    v.beat = beat;
    v.host = "h";
    v.what = "mount /m";
    ASSERT_OK(kv::RunTxn(*engine_, [&](kv::Txn& t) {
      t.Put(Cf::kDefault, keys::Session(id), v.Encode());
      t.Put(Cf::kDefault, keys::OpenPack(100 + id), EncodeBE64(id));
      return Status::OK();
    }));
  }
  bool Listed(uint64_t id) {
    for (const auto& s : MUST(ListSessions(*engine_))) {
      if (s.id == id) return true;
    }
    return false;
  }
  std::unique_ptr<kv::Engine> engine_ = kv::NewMemoryEngine();
  SessionReaper::Clock::time_point t0 = SessionReaper::Clock::now();
};

TEST_F(SessionReaperTest, ReapsOnlyAfterWatchingASilentTimeout) {
  Write(1, 0);
  SessionReaper r(/*self=*/9);
  EXPECT_TRUE(MUST(r.Check(*engine_, t0)).empty());
  EXPECT_TRUE(MUST(r.Check(*engine_, t0 + milliseconds(900))).empty());
  Write(1, 1);  // a heartbeat: the watch starts again
  EXPECT_TRUE(MUST(r.Check(*engine_, t0 + milliseconds(1200))).empty());
  EXPECT_TRUE(MUST(r.Check(*engine_, t0 + milliseconds(2100))).empty());
  EXPECT_TRUE(Listed(1));
  EXPECT_EQ(MUST(r.Check(*engine_, t0 + milliseconds(2300))), std::vector<uint64_t>{1});
  EXPECT_FALSE(Listed(1));
  EXPECT_FALSE(MUST(ReadOpenPacks(*engine_)).open.count(101)) << "its open pack is released";
}

TEST_F(SessionReaperTest, AWatcherThatLostTheDatabaseStartsOver) {
  Write(1, 0);
  SessionReaper r(9);
  MUST(r.Check(*engine_, t0));
  r.Reset();  // the watcher could not reach the database: everyone was silent then
  EXPECT_TRUE(MUST(r.Check(*engine_, t0 + milliseconds(5000))).empty());
  EXPECT_TRUE(MUST(r.Check(*engine_, t0 + milliseconds(5500))).empty());
  EXPECT_EQ(MUST(r.Check(*engine_, t0 + milliseconds(6100))), std::vector<uint64_t>{1});
}

TEST_F(SessionReaperTest, NeverReapsItselfAndHonoursEachTimeout) {
  Write(9, 0);                        // the watcher's own session
  Write(2, 0, /*timeout_ms=*/10000);  // a long timeout
  Write(3, 0, /*timeout_ms=*/100);
  SessionReaper r(9);
  MUST(r.Check(*engine_, t0));
  EXPECT_EQ(MUST(r.Check(*engine_, t0 + milliseconds(5000))), std::vector<uint64_t>{3});
  EXPECT_TRUE(Listed(9));
  EXPECT_TRUE(Listed(2));
  EXPECT_EQ(MUST(r.Check(*engine_, t0 + milliseconds(10100))), std::vector<uint64_t>{2});
  EXPECT_TRUE(Listed(9));
}

// A session's health record (what its process answered with errors, for `snapfs status`
// on any host) goes with a heartbeat, only when it changed, and goes with the session.
TEST(SessionHealthTest, PublishedWithAHeartbeatOnlyWhenChangedAndGoneWithTheSession) {
  auto engine = kv::NewMemoryEngine();
  auto session = MUST(Session::Register(*engine, SessionOptions{milliseconds(1000), "mount /m"}));
  const uint64_t id = session->id();
  ASSERT_OK(session->Heartbeat());
  EXPECT_TRUE(MUST(ListSessionHealth(*engine)).empty()) << "nothing went wrong: no record";

  SessionHealth h{.io_errors = 2, .hash_mismatches = 1, .last_error_ms = 1234,
                  .last_error = "READ of /f: I/O error: GET ...: Couldn't connect"};
  session->SetHealth(h);
  EXPECT_TRUE(MUST(ListSessionHealth(*engine)).empty()) << "not before the next heartbeat";
  ASSERT_OK(session->Heartbeat());
  auto listed = MUST(ListSessionHealth(*engine));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed.at(id), h);

  // Unchanged: the next heartbeats do not write it again (removed behind its back, it
  // stays removed).
  ASSERT_OK(kv::RunTxn(*engine, [&](kv::Txn& t) {
    t.Delete(Cf::kDefault, keys::SessionHealth(id));
    return Status::OK();
  }));
  session->SetHealth(h);
  ASSERT_OK(session->Heartbeat());
  EXPECT_TRUE(MUST(ListSessionHealth(*engine)).empty());
  h.io_errors = 3;
  session->SetHealth(h);
  ASSERT_OK(session->Heartbeat());
  EXPECT_EQ(MUST(ListSessionHealth(*engine)).at(id).io_errors, 3u);

  ASSERT_OK(session->Close());
  EXPECT_TRUE(MUST(ListSessionHealth(*engine)).empty()) << "deleted with the session's row";
  EXPECT_FALSE(SessionHealth::Decode("\x02" + std::string(30, 'x')).ok());
  EXPECT_FALSE(SessionHealth::Decode("\x01short").ok());
}

}  // namespace
}  // namespace snapfs
