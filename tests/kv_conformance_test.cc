// KvEngineConformance: what core/meta/kv.h promises, held against every engine. A new
// engine joins by adding a factory to kEngines; nothing here may depend on which engine
// runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/meta/kv.h"
#include "core/meta/postgres_engine.h"
#include "core/meta/rocksdb_engine.h"
#include "tests/util/pg_test_db.h"
#include "tests/util/status_matchers.h"
#include "tests/util/temp_dir.h"

namespace snapfs::kv {
namespace {

struct EngineFactory {
  const char* name;
  std::function<std::unique_ptr<Engine>(const std::string& dir)> make;
  // kv.h lets an engine check *Unchecked writes anyway (PostgreSQL's row versions make
  // every write of a row changed after the snapshot a serialization failure).
  bool checks_unchecked_writes = false;
};

const EngineFactory kEngines[] = {
    {"memory", [](const std::string&) { return NewMemoryEngine(); }},
    {"rocksdb",
     [](const std::string& dir) -> std::unique_ptr<Engine> {
       auto e = RocksEngine::Open(dir + "/db", true);
       if (!e.ok()) throw std::runtime_error(e.status().ToString());
       return std::move(e).value();
     }},
    // A fresh database on the test server for each case; nullptr (skip) without one.
    {"postgres",
     [](const std::string&) -> std::unique_ptr<Engine> {
       std::string db = test::NewPgTestDatabase();
       if (db.empty()) return nullptr;
       Status s = PostgresEngine::CreateSchema(db);
       if (!s.ok()) throw std::runtime_error(s.ToString());
       auto e = PostgresEngine::Open(db);
       if (!e.ok()) throw std::runtime_error(e.status().ToString());
       return std::move(e).value();
     },
     /*checks_unchecked_writes=*/true},
};

void PrintTo(const EngineFactory& f, std::ostream* os) { *os << f.name; }

class KvEngineConformance : public ::testing::TestWithParam<EngineFactory> {
 protected:
  void SetUp() override {
    engine_ = GetParam().make(tmp_.path());
    if (!engine_) GTEST_SKIP() << test::kNoPgServer;
  }
  void TearDown() override { engine_.reset(); }

  void Commit(const std::function<void(Txn&)>& f) {
    auto t = engine_->Begin();
    f(*t);
    ASSERT_OK(t->Commit());
  }
  std::string Read(Cf c, const std::string& k) {
    std::string v;
    Status s = engine_->Get(c, k, &v);
    if (s.Is(Code::kNotFound)) return "<absent>";
    EXPECT_OK(s);
    return v;
  }
  std::vector<std::string> Keys(Iterator* it, const std::string& from = "") {
    std::vector<std::string> out;
    for (it->Seek(from); it->Valid(); it->Next()) out.emplace_back(it->key());
    EXPECT_OK(it->status());
    return out;
  }

  test::TempDir tmp_{"snapfs-kv"};
  std::unique_ptr<Engine> engine_;
};

TEST_P(KvEngineConformance, KeysAreOrderedByBytesWithinEachSpace) {
  std::vector<std::string> keys = {std::string("\x00", 1), std::string("\x00\x01", 2), "a", "ab",
                                   "b",  std::string("\x7f"), std::string("\x80"),
                                   std::string("\xff\xff", 2)};
  std::vector<std::string> shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(7));
  Commit([&](Txn& t) {
    for (const auto& k : shuffled) t.Put(Cf::kInodes, k, "v" + k);
    t.Put(Cf::kDentries, "only-in-dentries", "x");
  });
  auto it = engine_->NewIterator(Cf::kInodes);
  EXPECT_EQ(Keys(it.get()), keys);
  auto d = engine_->NewIterator(Cf::kDentries);
  EXPECT_EQ(Keys(d.get()), std::vector<std::string>{"only-in-dentries"});
  EXPECT_EQ(Read(Cf::kInodes, "ab"), "vab");
  EXPECT_EQ(Read(Cf::kDentries, "ab"), "<absent>");
}

TEST_P(KvEngineConformance, ScanHonoursRangeAndLimit) {
  Commit([&](Txn& t) {
    for (int i = 0; i < 100; i++) {
      char k[16];
      snprintf(k, sizeof k, "k%03d", i);
      t.Put(Cf::kExtents, k, std::to_string(i));
    }
  });
  auto t = engine_->Begin();
  std::vector<KeyValue> out;
  ASSERT_OK(t->Scan(Cf::kExtents, "k010", "k020", 100, &out));
  ASSERT_EQ(out.size(), 10u);
  EXPECT_EQ(out.front().key, "k010");
  EXPECT_EQ(out.back().key, "k019");
  EXPECT_EQ(out.back().value, "19");
  out.clear();
  ASSERT_OK(t->Scan(Cf::kExtents, "k095", "", 3, &out));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[2].key, "k097");
  out.clear();
  ASSERT_OK(t->Scan(Cf::kExtents, "k5", "k6", 100, &out));
  EXPECT_TRUE(out.empty());
  auto it = t->NewIterator(Cf::kExtents);
  it->Seek("k0105");
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "k011") << "Seek lands on the first key >= the target";
  it->Seek("zzz");
  EXPECT_FALSE(it->Valid());
  EXPECT_OK(it->status());
}

TEST_P(KvEngineConformance, TransactionReadsItsOwnWritesAndOthersDoNot) {
  Commit([&](Txn& t) {
    t.Put(Cf::kInodes, "a", "1");
    t.Put(Cf::kInodes, "c", "3");
  });
  auto t = engine_->Begin();
  t->Put(Cf::kInodes, "b", "2");
  t->Delete(Cf::kInodes, "c");
  t->Put(Cf::kInodes, "a", "1'");
  std::string v;
  ASSERT_OK(t->Get(Cf::kInodes, "b", &v));
  EXPECT_EQ(v, "2");
  ASSERT_OK(t->Get(Cf::kInodes, "a", &v));
  EXPECT_EQ(v, "1'");
  EXPECT_TRUE(t->Get(Cf::kInodes, "c", &v).Is(Code::kNotFound));
  {
    auto it = t->NewIterator(Cf::kInodes);
    EXPECT_EQ(Keys(it.get()), (std::vector<std::string>{"a", "b"}));
    it->Seek("a");
    ASSERT_TRUE(it->Valid());
    EXPECT_EQ(it->value(), "1'");
  }
  // Nobody else sees any of it before the commit.
  EXPECT_EQ(Read(Cf::kInodes, "b"), "<absent>");
  EXPECT_EQ(Read(Cf::kInodes, "c"), "3");
  auto other = engine_->Begin();
  EXPECT_TRUE(other->Get(Cf::kInodes, "b", &v).Is(Code::kNotFound));
  EXPECT_EQ(t->pending_writes(), 3u);
  ASSERT_OK(t->Commit());
  EXPECT_EQ(Read(Cf::kInodes, "a"), "1'");
  EXPECT_EQ(Read(Cf::kInodes, "b"), "2");
  EXPECT_EQ(Read(Cf::kInodes, "c"), "<absent>");
}

TEST_P(KvEngineConformance, TransactionSeesTheSnapshotOfItsFirstOperation) {
  // The snapshot is taken no later than the first operation (an engine may take it at
  // Begin: RocksDB does; PostgreSQL takes it with the first statement, kv.h).
  Commit([&](Txn& t) { t.Put(Cf::kInodes, "x", "old"); });
  auto reader = engine_->Begin();
  std::string v;
  EXPECT_TRUE(reader->Get(Cf::kInodes, "w", &v).Is(Code::kNotFound));  // its first operation
  Commit([&](Txn& t) {
    t.Put(Cf::kInodes, "x", "new");
    t.Put(Cf::kInodes, "y", "born");
  });
  ASSERT_OK(reader->Get(Cf::kInodes, "x", &v));
  EXPECT_EQ(v, "old");
  EXPECT_TRUE(reader->Get(Cf::kInodes, "y", &v).Is(Code::kNotFound));
  auto it = reader->NewIterator(Cf::kInodes);
  EXPECT_EQ(Keys(it.get()), std::vector<std::string>{"x"});
  EXPECT_EQ(Read(Cf::kInodes, "x"), "new");
}

TEST_P(KvEngineConformance, AScanAsTheFirstOperationTakesTheSnapshot) {
  Commit([&](Txn& t) { t.Put(Cf::kDentries, "a", "1"); });
  auto reader = engine_->Begin();
  auto it = reader->NewIterator(Cf::kDentries);
  it->Seek("");
  EXPECT_EQ(Keys(it.get()), std::vector<std::string>{"a"});
  Commit([&](Txn& t) { t.Put(Cf::kDentries, "b", "2"); });
  it->Seek("");
  EXPECT_EQ(Keys(it.get()), std::vector<std::string>{"a"});
  std::string v;
  EXPECT_TRUE(reader->Get(Cf::kDentries, "b", &v).Is(Code::kNotFound));
}

// Prefetch (kv.h): Gets of prefetched keys answer as Gets would (the transaction's own
// writes and adds first, the snapshot of the first operation, absent keys NotFound), and
// a prefetched key is a read that a concurrent write makes conflict.
TEST_P(KvEngineConformance, PrefetchedKeysReadAsGetsAndConflictAsReads) {
  Commit([&](Txn& t) {
    t.Put(Cf::kInodes, "i", "inode");
    t.Put(Cf::kDentries, "d", "entry");
    t.Add(Cf::kRefs, "n", 5);
  });
  auto a = engine_->Begin();
  a->Put(Cf::kDentries, "mine", "written here");
  a->Add(Cf::kRefs, "n", 2);
  ASSERT_OK(a->Prefetch({{Cf::kInodes, "i"},
                         {Cf::kDentries, "d"},
                         {Cf::kDentries, "absent"},
                         {Cf::kDentries, "mine"},
                         {Cf::kRefs, "n"}}));
  Commit([&](Txn& t) { t.Put(Cf::kInodes, "i", "changed"); });  // after a's snapshot
  std::string v;
  ASSERT_OK(a->Get(Cf::kInodes, "i", &v));
  EXPECT_EQ(v, "inode") << "a prefetched key is read at the transaction's snapshot";
  ASSERT_OK(a->Get(Cf::kDentries, "d", &v));
  EXPECT_EQ(v, "entry");
  EXPECT_TRUE(a->Get(Cf::kDentries, "absent", &v).Is(Code::kNotFound));
  ASSERT_OK(a->Get(Cf::kDentries, "mine", &v));
  EXPECT_EQ(v, "written here");
  ASSERT_OK(a->Get(Cf::kRefs, "n", &v));
  EXPECT_EQ(DecodeCounter(v).value(), 7) << "the transaction's add on the prefetched value";
  ASSERT_OK(a->Get(Cf::kInodes, "i", &v));  // a second Get of it, as the first
  EXPECT_EQ(v, "inode");
  a->Put(Cf::kDentries, "d2", "x");
  EXPECT_TRUE(a->Commit().Is(Code::kConflict)) << "\"i\" was read (prefetched) and changed";

  // Prefetch as the first operation takes the snapshot; an absent key created meanwhile
  // stays absent and makes the transaction conflict; a key deleted in an earlier commit
  // (a tombstone on some engines) reads NotFound; a prefetched key deleted by the
  // transaction itself reads NotFound.
  Commit([&](Txn& t) {
    t.Put(Cf::kDentries, "gone", "soon");
    t.Put(Cf::kInodes, "j", "j1");
  });
  Commit([&](Txn& t) { t.Delete(Cf::kDentries, "gone"); });
  auto c = engine_->Begin();
  ASSERT_OK(c->Prefetch({{Cf::kDentries, "born"}, {Cf::kDentries, "gone"}, {Cf::kInodes, "j"}}));
  Commit([&](Txn& t) {
    t.Put(Cf::kDentries, "born", "meanwhile");
    t.Put(Cf::kInodes, "j", "j2");
  });
  EXPECT_TRUE(c->Get(Cf::kDentries, "born", &v).Is(Code::kNotFound)) << "after the snapshot";
  EXPECT_TRUE(c->Get(Cf::kDentries, "gone", &v).Is(Code::kNotFound));
  c->Delete(Cf::kInodes, "j");
  EXPECT_TRUE(c->Get(Cf::kInodes, "j", &v).Is(Code::kNotFound)) << "its own delete first";
  c->Put(Cf::kDentries, "other", "x");
  EXPECT_TRUE(c->Commit().Is(Code::kConflict)) << "\"born\" was read absent and created";

  // Only a prefetched absent key created meanwhile (nothing else changed): a conflict too.
  auto d = engine_->Begin();
  ASSERT_OK(d->Prefetch({{Cf::kDentries, "born2"}}));
  Commit([&](Txn& t) { t.Put(Cf::kDentries, "born2", "meanwhile"); });
  EXPECT_TRUE(d->Get(Cf::kDentries, "born2", &v).Is(Code::kNotFound));
  d->Put(Cf::kDentries, "other2", "x");
  EXPECT_TRUE(d->Commit().Is(Code::kConflict)) << "\"born2\" was read absent and created";

  // Without a concurrent write the same transaction commits.
  auto b = engine_->Begin();
  ASSERT_OK(b->Prefetch({{Cf::kInodes, "i"}, {Cf::kDentries, "d"}}));
  ASSERT_OK(b->Get(Cf::kInodes, "i", &v));
  EXPECT_EQ(v, "changed");
  b->Put(Cf::kDentries, "d", "entry 2");
  ASSERT_OK(b->Commit());
  EXPECT_EQ(Read(Cf::kDentries, "d"), "entry 2");
}

TEST_P(KvEngineConformance, ReadThenWriteOfOneKeyConflicts) {
  Commit([&](Txn& t) { t.Put(Cf::kRefs, "n", "0"); });
  auto a = engine_->Begin();
  auto b = engine_->Begin();
  std::string v;
  ASSERT_OK(a->Get(Cf::kRefs, "n", &v));
  ASSERT_OK(b->Get(Cf::kRefs, "n", &v));
  a->Put(Cf::kRefs, "n", "a");
  b->Put(Cf::kRefs, "n", "b");
  ASSERT_OK(a->Commit());
  Status s = b->Commit();
  EXPECT_TRUE(s.Is(Code::kConflict)) << s.ToString();
  EXPECT_EQ(Read(Cf::kRefs, "n"), "a") << "the losing transaction wrote nothing";
}

TEST_P(KvEngineConformance, BlindWritesOfOneKeyConflict) {
  auto a = engine_->Begin();
  auto b = engine_->Begin();
  a->Put(Cf::kChunks, "k", "a");
  b->Delete(Cf::kChunks, "k");
  b->Put(Cf::kChunks, "other", "b");
  ASSERT_OK(a->Commit());
  EXPECT_TRUE(b->Commit().Is(Code::kConflict));
  EXPECT_EQ(Read(Cf::kChunks, "other"), "<absent>") << "all or nothing";
}

TEST_P(KvEngineConformance, UncheckedWritesDoNotConflictButOthersReadingThemDo) {
  auto t = engine_->Begin();
  Commit([&](Txn& o) { o.Put(Cf::kExtents, "k", "other"); });
  auto reader = engine_->Begin();
  std::string v;
  ASSERT_OK(reader->Get(Cf::kExtents, "k", &v));
  EXPECT_EQ(v, "other");
  t->PutUnchecked(Cf::kExtents, "k", "mine");
  t->DeleteUnchecked(Cf::kExtents, "gone");
  {
    auto it = t->NewIterator(Cf::kExtents);  // read-your-own-writes
    it->Seek("");
    ASSERT_TRUE(it->Valid());
    EXPECT_EQ(it->value(), "mine");
  }
  Status s = t->Commit();  // "k" was written after our Begin by another: no conflict
  if (GetParam().checks_unchecked_writes && s.Is(Code::kConflict)) {
    EXPECT_EQ(Read(Cf::kExtents, "k"), "other") << "all or nothing";
    return;  // allowed: checked anyway
  }
  ASSERT_OK(s);
  EXPECT_EQ(Read(Cf::kExtents, "k"), "mine");
  reader->Put(Cf::kInodes, "x", "1");
  EXPECT_TRUE(reader->Commit().Is(Code::kConflict));  // it read "k", which we changed
}

TEST_P(KvEngineConformance, UncheckedWriteOfACheckedKeyStaysChecked) {
  auto t = engine_->Begin();
  std::string v;
  EXPECT_TRUE(t->Get(Cf::kChunks, "c", &v).Is(Code::kNotFound));
  Commit([&](Txn& o) { o.Put(Cf::kChunks, "c", "other"); });
  t->PutUnchecked(Cf::kChunks, "c", "mine");
  EXPECT_TRUE(t->Commit().Is(Code::kConflict));
  t = engine_->Begin();
  t->Put(Cf::kChunks, "d", "1");
  Commit([&](Txn& o) { o.Put(Cf::kChunks, "d", "other"); });
  t->PutUnchecked(Cf::kChunks, "d", "2");
  EXPECT_TRUE(t->Commit().Is(Code::kConflict));
}

TEST_P(KvEngineConformance, AnIteratorSeesWritesMadeAfterItWasCreated) {
  auto t = engine_->Begin();
  auto it = t->NewIterator(Cf::kRefs);
  t->Put(Cf::kRefs, "a", "1");
  t->Add(Cf::kRefs, "b", 2);
  it->Seek("");
  EXPECT_EQ(Keys(it.get()), (std::vector<std::string>{"a", "b"}));
  t->Delete(Cf::kRefs, "a");
  it->Seek("");
  EXPECT_EQ(Keys(it.get()), (std::vector<std::string>{"b"}));
}

TEST_P(KvEngineConformance, AReadKeyChangedByAnotherConflictsEvenIfNotWritten) {
  // Write skew is prevented on keys that were read: GC reads a refcount and deletes the
  // chunk's index entry; a writer raises the refcount. One of them must lose.
  Commit([&](Txn& t) { t.Put(Cf::kChunks, "c", "loc"); });
  auto gc = engine_->Begin();
  auto writer = engine_->Begin();
  ASSERT_EQ(*gc->GetCounter(Cf::kRefs, "c"), 0);
  std::string v;
  ASSERT_OK(writer->Get(Cf::kChunks, "c", &v));
  writer->Add(Cf::kRefs, "c", 1);
  gc->Delete(Cf::kChunks, "c");
  ASSERT_OK(writer->Commit());
  EXPECT_TRUE(gc->Commit().Is(Code::kConflict));
  EXPECT_EQ(Read(Cf::kChunks, "c"), "loc");
}

TEST_P(KvEngineConformance, AWriterThatReadAKeyDeletedMeanwhileConflicts) {
  Commit([&](Txn& t) { t.Put(Cf::kChunks, "c", "loc"); });
  auto writer = engine_->Begin();
  std::string v;
  ASSERT_OK(writer->Get(Cf::kChunks, "c", &v));
  writer->Add(Cf::kRefs, "c", 1);
  Commit([&](Txn& t) { t.Delete(Cf::kChunks, "c"); });
  EXPECT_TRUE(writer->Commit().Is(Code::kConflict));
  EXPECT_EQ(Read(Cf::kRefs, "c"), "<absent>");
}

TEST_P(KvEngineConformance, MultiGetAnswersAsGetDoes) {
  Commit([&](Txn& t) {
    t.Put(Cf::kChunks, "a", "1");
    t.Put(Cf::kChunks, "b", "2");
    t.Put(Cf::kChunks, "gone", "x");
    t.Add(Cf::kRefs, "n", 4);
  });
  auto t = engine_->Begin();
  t->Put(Cf::kChunks, "b", "own");  // its own writes win
  t->Delete(Cf::kChunks, "gone");
  t->Add(Cf::kRefs, "n", 3);  // counters: committed + own adds
  std::vector<std::optional<std::string>> refs;
  ASSERT_OK(t->MultiGet(Cf::kRefs, {"n", "m"}, &refs));
  ASSERT_EQ(refs.size(), 2u);
  ASSERT_TRUE(refs[0].has_value());
  EXPECT_EQ(*DecodeCounter(*refs[0]), 7);
  EXPECT_FALSE(refs[1].has_value());
  std::vector<std::string> keys = {"a", "b", "gone", "absent", "a"};
  for (int i = 0; i < 300; i++) keys.push_back("k" + std::to_string(i));  // > one batch
  std::vector<std::optional<std::string>> got;
  ASSERT_OK(t->MultiGet(Cf::kChunks, keys, &got));
  ASSERT_EQ(got.size(), keys.size());
  for (size_t i = 0; i < keys.size(); i++) {
    std::string v;
    Status s = t->Get(Cf::kChunks, keys[i], &v);
    if (s.Is(Code::kNotFound)) {
      EXPECT_FALSE(got[i].has_value()) << keys[i];
    } else {
      ASSERT_OK(s);
      ASSERT_TRUE(got[i].has_value()) << keys[i];
      EXPECT_EQ(*got[i], v) << keys[i];
    }
  }
  EXPECT_EQ(*got[0], "1");
  EXPECT_EQ(*got[1], "own");
  EXPECT_FALSE(got[2].has_value());
  EXPECT_FALSE(got[3].has_value());
  EXPECT_EQ(*got[4], "1");
}

// Engine::MultiGet (outside a transaction): the latest committed values, counters with
// every committed add, in the order asked, over more than one PostgreSQL batch.
TEST_P(KvEngineConformance, AnEngineMultiGetAnswersAsEngineGetDoes) {
  Commit([&](Txn& t) {
    for (int i = 0; i < 600; i += 2) t.Put(Cf::kChunks, "k" + std::to_string(i), "v" + std::to_string(i));
    t.Put(Cf::kChunks, "gone", "x");
    t.Add(Cf::kRefs, "n", 4);
    t.Put(Cf::kRefs, "p", EncodeCounter(10));
  });
  Commit([&](Txn& t) {
    t.Add(Cf::kRefs, "n", 3);
    t.Add(Cf::kRefs, "p", -2);
    t.Add(Cf::kRefs, "fresh", 1);
    t.Delete(Cf::kChunks, "gone");
  });
  std::vector<std::optional<std::string>> refs;
  ASSERT_OK(engine_->MultiGet(Cf::kRefs, {"p", "absent", "n", "fresh"}, &refs));
  ASSERT_EQ(refs.size(), 4u);
  ASSERT_TRUE(refs[0] && refs[2] && refs[3]);
  EXPECT_EQ(*DecodeCounter(*refs[0]), 8);
  EXPECT_FALSE(refs[1].has_value());
  EXPECT_EQ(*DecodeCounter(*refs[2]), 7);
  EXPECT_EQ(*DecodeCounter(*refs[3]), 1);
  std::vector<std::string> keys = {"gone", "k7", "k4"};
  for (int i = 599; i >= 0; i--) keys.push_back("k" + std::to_string(i));  // > two batches, descending
  keys.push_back("k4");
  std::vector<std::optional<std::string>> got;
  ASSERT_OK(engine_->MultiGet(Cf::kChunks, keys, &got));
  ASSERT_EQ(got.size(), keys.size());
  size_t found = 0;
  for (size_t i = 0; i < keys.size(); i++) {
    std::string v;
    Status s = engine_->Get(Cf::kChunks, keys[i], &v);
    if (s.Is(Code::kNotFound)) {
      EXPECT_FALSE(got[i].has_value()) << keys[i];
      continue;
    }
    ASSERT_OK(s);
    ASSERT_TRUE(got[i].has_value()) << keys[i];
    EXPECT_EQ(*got[i], v) << keys[i];
    found++;
  }
  EXPECT_EQ(found, 302u);  // k0..k598 even, and k4 twice more
  EXPECT_FALSE(got[0].has_value());
  EXPECT_EQ(*got[2], "v4");
  ASSERT_OK(engine_->MultiGet(Cf::kChunks, {}, &got));
  EXPECT_TRUE(got.empty());
}

TEST_P(KvEngineConformance, KeysReadWithMultiGetAreCheckedAtCommit) {
  Commit([&](Txn& t) { t.Put(Cf::kChunks, "c", "loc"); });
  auto writer = engine_->Begin();
  std::vector<std::optional<std::string>> got;
  ASSERT_OK(writer->MultiGet(Cf::kChunks, {"c", "new"}, &got));
  writer->Put(Cf::kInodes, "w", "1");
  Commit([&](Txn& t) { t.Delete(Cf::kChunks, "c"); });
  EXPECT_TRUE(writer->Commit().Is(Code::kConflict));
  // An absent key read with MultiGet and created meanwhile conflicts too.
  auto w2 = engine_->Begin();
  ASSERT_OK(w2->MultiGet(Cf::kChunks, {"later"}, &got));
  EXPECT_FALSE(got[0].has_value());
  w2->Put(Cf::kInodes, "w", "2");
  Commit([&](Txn& t) { t.Put(Cf::kChunks, "later", "x"); });
  EXPECT_TRUE(w2->Commit().Is(Code::kConflict));
  EXPECT_EQ(Read(Cf::kInodes, "w"), "<absent>");
}

TEST_P(KvEngineConformance, ABoundedIteratorStopsBeforeItsBound) {
  Commit([&](Txn& t) {
    for (const char* k : {"a1", "a2", "b1", "c1"}) t.Put(Cf::kPinned, k, "v");
  });
  auto t = engine_->Begin();
  t->Delete(Cf::kPinned, "a2");  // the transaction's own writes count, deletes too
  t->Put(Cf::kPinned, "a3", "own");
  t->Delete(Cf::kPinned, "b1");
  auto it = t->NewBoundedIterator(Cf::kPinned, "b");
  std::vector<std::string> seen;
  for (it->Seek("a"); it->Valid(); it->Next()) seen.emplace_back(it->key());
  ASSERT_OK(it->status());
  EXPECT_EQ(seen, (std::vector<std::string>{"a1", "a3"}));
  it->Seek("b");
  EXPECT_FALSE(it->Valid());
  auto rest = t->NewBoundedIterator(Cf::kPinned, "d");
  seen.clear();
  for (rest->Seek("b"); rest->Valid(); rest->Next()) seen.emplace_back(rest->key());
  EXPECT_EQ(seen, (std::vector<std::string>{"c1"}));
}

// Writes buffered by the transaction after the iterator was made count as well, inside
// the bound (read-your-own-writes) and past it (never seen), deletes and counters too.
TEST_P(KvEngineConformance, ABoundedIteratorSeesItsTransactionsLaterWritesOnlyInsideTheBound) {
  Commit([&](Txn& t) {
    for (const char* k : {"a1", "a2", "a5", "b1"}) t.Put(Cf::kRefs, k, "old");
  });
  auto t = engine_->Begin();
  auto it = t->NewBoundedIterator(Cf::kRefs, "a5");
  t->Put(Cf::kRefs, "a1", "new");
  t->Delete(Cf::kRefs, "a2");
  t->Add(Cf::kRefs, "a3", 7);
  t->Put(Cf::kRefs, "a6", "past");  // past the bound, before the next committed key
  t->Delete(Cf::kRefs, "b1");
  std::vector<std::string> seen;
  for (it->Seek(""); it->Valid(); it->Next()) {
    seen.push_back(std::string(it->key()) + "=" +
                   (it->key() == "a3" ? std::to_string(*DecodeCounter(it->value()))
                                      : std::string(it->value())));
  }
  ASSERT_OK(it->status());
  EXPECT_EQ(seen, (std::vector<std::string>{"a1=new", "a3=7"}));
  it->Seek("a4");
  EXPECT_FALSE(it->Valid()) << "a5 is the bound itself";
  it->Seek("a6");
  EXPECT_FALSE(it->Valid()) << "Seek past the bound";
  EXPECT_OK(it->status());
}

// The engine's own iterators (latest committed state) take a bound too.
TEST_P(KvEngineConformance, AnEngineIteratorStopsBeforeItsBound) {
  Commit([&](Txn& t) {
    for (const char* k : {"a1", "a2", "a3", "b1", "c1"}) t.Put(Cf::kExtents, k, "v");
  });
  // Deleted keys inside and after the bound: the iterator neither shows nor needs them.
  Commit([&](Txn& t) {
    t.Delete(Cf::kExtents, "a2");
    t.Delete(Cf::kExtents, "b1");
  });
  auto it = engine_->NewBoundedIterator(Cf::kExtents, "b1");
  EXPECT_EQ(Keys(it.get()), (std::vector<std::string>{"a1", "a3"}));
  EXPECT_EQ(Keys(it.get(), "a2"), (std::vector<std::string>{"a3"}));
  it->Seek("b");
  EXPECT_FALSE(it->Valid()) << "b1 is the bound";
  it->Seek("c");
  EXPECT_FALSE(it->Valid()) << "Seek past the bound";
  EXPECT_OK(it->status());
  // A bound past every key is no bound; one before every key shows nothing.
  auto all = engine_->NewBoundedIterator(Cf::kExtents, "z");
  EXPECT_EQ(Keys(all.get()), (std::vector<std::string>{"a1", "a3", "c1"}));
  auto none = engine_->NewBoundedIterator(Cf::kExtents, "a");
  EXPECT_EQ(Keys(none.get()), std::vector<std::string>{});
}

TEST_P(KvEngineConformance, DisjointTransactionsBothCommit) {
  auto a = engine_->Begin();
  auto b = engine_->Begin();
  std::string v;
  (void)a->Get(Cf::kInodes, "a", &v);
  (void)b->Get(Cf::kInodes, "b", &v);
  a->Put(Cf::kInodes, "a", "1");
  b->Put(Cf::kInodes, "b", "2");
  ASSERT_OK(a->Commit());
  ASSERT_OK(b->Commit());
  EXPECT_EQ(Read(Cf::kInodes, "a"), "1");
  EXPECT_EQ(Read(Cf::kInodes, "b"), "2");
}

// Counters live in the spaces made for them (spaces.h CfHasCounters): an Add anywhere
// else is a caller's bug, and the commit says so instead of writing anything.
TEST_P(KvEngineConformance, AnAddOutsideTheCounterSpacesFailsTheCommit) {
  auto t = engine_->Begin();
  t->Put(Cf::kInodes, "i", "v");
  t->Add(Cf::kRefs, "r", 1);
  t->Add(Cf::kDentries, "d", 1);
  Status s = t->Commit();
  EXPECT_CODE(s, Code::kInvalidArgument);
  EXPECT_NE(s.message().find("dentries"), std::string::npos) << s.ToString();
  std::string v;
  EXPECT_CODE(engine_->Get(Cf::kInodes, "i", &v), Code::kNotFound) << "nothing was written";
  EXPECT_CODE(engine_->Get(Cf::kRefs, "r", &v), Code::kNotFound);
  Commit([&](Txn& x) { x.Add(Cf::kDefault, "n", 2); });
  EXPECT_EQ(*engine_->Begin()->GetCounter(Cf::kDefault, "n"), 2);
}

// A read view is one snapshot for all its reads, however long it lives: what commits
// after it was made (changed, new, deleted keys, counters) is not seen, by Get or by
// iterators made before or after the commit.
TEST_P(KvEngineConformance, AReadViewReadsOneSnapshot) {
  Commit([&](Txn& t) {
    t.Put(Cf::kInodes, "a", "1");
    t.Put(Cf::kInodes, "c", "3");
    t.Add(Cf::kRefs, "r", 5);
  });
  auto view = engine_->NewReadView();
  ASSERT_OK(view.status());
  auto early = (*view)->NewIterator(Cf::kInodes);
  Commit([&](Txn& t) {
    t.Put(Cf::kInodes, "a", "changed");
    t.Put(Cf::kInodes, "b", "new");
    t.Delete(Cf::kInodes, "c");
    t.Add(Cf::kRefs, "r", 2);
  });
  std::string v;
  ASSERT_OK((*view)->Get(Cf::kInodes, "a", &v));
  EXPECT_EQ(v, "1");
  EXPECT_CODE((*view)->Get(Cf::kInodes, "b", &v), Code::kNotFound);
  ASSERT_OK((*view)->Get(Cf::kInodes, "c", &v));
  ASSERT_OK((*view)->Get(Cf::kRefs, "r", &v));
  EXPECT_EQ(*DecodeCounter(v), 5);
  auto late = (*view)->NewIterator(Cf::kInodes);
  for (auto* it : {early.get(), late.get()}) {
    std::vector<std::string> seen;
    for (it->Seek(""); it->Valid(); it->Next()) seen.push_back(std::string(it->key()) + "=" + std::string(it->value()));
    EXPECT_OK(it->status());
    EXPECT_EQ(seen, (std::vector<std::string>{"a=1", "c=3"}));
  }
  // A view made now sees the commit.
  auto now = engine_->NewReadView();
  ASSERT_OK(now.status());
  ASSERT_OK((*now)->Get(Cf::kInodes, "b", &v));
  EXPECT_EQ(v, "new");
}

TEST_P(KvEngineConformance, ConcurrentAddsNeverConflictAndSum) {
  auto a = engine_->Begin();
  auto b = engine_->Begin();
  a->Add(Cf::kRefs, "r", 5);
  b->Add(Cf::kRefs, "r", -2);
  b->Add(Cf::kRefs, "r", 10);
  ASSERT_OK(a->Commit());
  ASSERT_OK(b->Commit());
  auto t = engine_->Begin();
  EXPECT_EQ(*t->GetCounter(Cf::kRefs, "r"), 13);
  EXPECT_EQ(*DecodeCounter(Read(Cf::kRefs, "r")), 13);
}

TEST_P(KvEngineConformance, AddIsVisibleToItsOwnTransaction) {
  Commit([&](Txn& t) { t.Add(Cf::kRefs, "r", 2); });
  auto t = engine_->Begin();
  t->Add(Cf::kRefs, "r", 3);
  EXPECT_EQ(*t->GetCounter(Cf::kRefs, "r"), 5);
  t->Add(Cf::kRefs, "fresh", -1);
  EXPECT_EQ(*t->GetCounter(Cf::kRefs, "fresh"), -1);
  auto it = t->NewIterator(Cf::kRefs);
  it->Seek("");
  ASSERT_TRUE(it->Valid()) << it->status().ToString();
  EXPECT_EQ(it->key(), "fresh");
  EXPECT_EQ(*DecodeCounter(it->value()), -1);
  it->Next();
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "r");
  EXPECT_EQ(*DecodeCounter(it->value()), 5);
  it.reset();
  // Put then Add, Delete then Add.
  t->Put(Cf::kDefault, "p", EncodeCounter(100));
  t->Add(Cf::kDefault, "p", 1);
  EXPECT_EQ(*t->GetCounter(Cf::kDefault, "p"), 101);
  t->Delete(Cf::kRefs, "r");
  t->Add(Cf::kRefs, "r", 7);
  EXPECT_EQ(*t->GetCounter(Cf::kRefs, "r"), 7);
  ASSERT_OK(t->Commit());
  EXPECT_EQ(*DecodeCounter(Read(Cf::kDefault, "p")), 101);
  EXPECT_EQ(*DecodeCounter(Read(Cf::kRefs, "r")), 7);
}

TEST_P(KvEngineConformance, LargeValuesAndManyKeys) {
  std::string big(3 << 20, '\0');
  std::mt19937_64 rng(1);
  for (auto& c : big) c = static_cast<char>(rng());
  Commit([&](Txn& t) { t.Put(Cf::kXattrs, "big", big); });
  EXPECT_EQ(Read(Cf::kXattrs, "big"), big);
  const int n = 20000;
  for (int batch = 0; batch < n; batch += 5000) {
    Commit([&](Txn& t) {
      for (int i = batch; i < batch + 5000; i++) {
        std::string k(8, '\0');
        const uint64_t u = static_cast<uint64_t>(i);
        for (int j = 0; j < 8; j++) k[7 - j] = static_cast<char>((u >> (8 * j)) & 0xff);
        t.Put(Cf::kDirIndex, k, std::to_string(i));
      }
    });
  }
  auto it = engine_->NewIterator(Cf::kDirIndex);
  int count = 0;
  for (it->Seek(""); it->Valid(); it->Next()) {
    ASSERT_EQ(it->value(), std::to_string(count));
    count++;
  }
  EXPECT_OK(it->status());
  EXPECT_EQ(count, n);
}

TEST_P(KvEngineConformance, RunTxnRetriesSoNoUpdateIsLost) {
  // Read-modify-write of a plain value from two threads: every increment must land.
  const int per_thread = 150;
  auto bump = [&] {
    for (int i = 0; i < per_thread; i++) {
      ASSERT_OK(RunTxn(*engine_, [](Txn& t) -> Status {
        std::string v;
        Status s = t.Get(Cf::kDefault, "n", &v);
        int n = s.ok() ? std::stoi(v) : 0;
        if (!s.ok() && !s.Is(Code::kNotFound)) return s;
        t.Put(Cf::kDefault, "n", std::to_string(n + 1));
        return Status::OK();
      }));
    }
  };
  std::thread a(bump), b(bump);
  a.join();
  b.join();
  EXPECT_EQ(Read(Cf::kDefault, "n"), std::to_string(2 * per_thread));
}

TEST_P(KvEngineConformance, RunTxnReturnsTheBodysErrorAndWritesNothing) {
  Status s = RunTxn(*engine_, [](Txn& t) -> Status {
    t.Put(Cf::kInodes, "never", "x");
    return Status::NoSpace("body failed");
  });
  EXPECT_TRUE(s.Is(Code::kNoSpace));
  EXPECT_EQ(Read(Cf::kInodes, "never"), "<absent>");
}

TEST_P(KvEngineConformance, AnAbandonedTransactionWritesNothing) {
  {
    auto t = engine_->Begin();
    t->Put(Cf::kInodes, "dropped", "x");
  }
  EXPECT_EQ(Read(Cf::kInodes, "dropped"), "<absent>");
  auto t = engine_->Begin();
  ASSERT_OK(t->Commit());
  EXPECT_FALSE(t->Commit().ok()) << "a transaction commits once";
}

TEST_P(KvEngineConformance, DeletedKeyCanBeWrittenAgain) {
  Commit([&](Txn& t) { t.Put(Cf::kOrphans, "k", "1"); });
  Commit([&](Txn& t) { t.Delete(Cf::kOrphans, "k"); });
  auto it = engine_->NewIterator(Cf::kOrphans);
  EXPECT_TRUE(Keys(it.get()).empty());
  Commit([&](Txn& t) { t.Put(Cf::kOrphans, "k", "2"); });
  EXPECT_EQ(Read(Cf::kOrphans, "k"), "2");
}

INSTANTIATE_TEST_SUITE_P(Engines, KvEngineConformance, ::testing::ValuesIn(kEngines),
                         [](const auto& info) { return std::string(info.param.name); });

// The RocksDB engine keeps what it committed across a reopen, with a store made before
// the engine interface (refs merged under the same operator name) still readable.
TEST(RocksEngine, CommitsSurviveReopen) {
  test::TempDir tmp("snapfs-kv");
  std::string dir = tmp.path() + "/db";
  {
    auto e = RocksEngine::Open(dir, true);
    ASSERT_OK(e.status());
    auto t = (*e)->Begin();
    t->Put(Cf::kInodes, "a", "1");
    t->Add(Cf::kRefs, "r", 4);
    ASSERT_OK(t->Commit(/*sync=*/true));
  }
  {
    EXPECT_FALSE(RocksEngine::Open(dir, true).ok()) << "create refuses an existing store";
    auto e = RocksEngine::Open(dir, false);
    ASSERT_OK(e.status());
    std::string v;
    ASSERT_OK((*e)->Get(Cf::kInodes, "a", &v));
    EXPECT_EQ(v, "1");
    ASSERT_OK((*e)->Get(Cf::kRefs, "r", &v));
    EXPECT_EQ(*DecodeCounter(v), 4);
  }
}

// Stores made before the engine interface were opened as a plain rocksdb::DB with the
// merge operator on `refs` only. Such a database opens as an OptimisticTransactionDB
// unchanged (no format change), its counters read and keep adding up.
TEST(RocksEngine, OpensADatabaseWrittenWithoutTransactions) {
  test::TempDir tmp("snapfs-kv");
  std::string dir = tmp.path() + "/db";
  {
    // As the previous MetaStore::Open did.
    rocksdb::Options opts;
    opts.create_if_missing = true;
    opts.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* name : kCfNames) {
      rocksdb::ColumnFamilyOptions co(opts);
      cfs.emplace_back(name, co);
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(opts), dir, cfs, &handles, &raw).ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), handles[static_cast<size_t>(Cf::kRefs)], "r",
                         EncodeCounter(3))
                    .ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), handles[static_cast<size_t>(Cf::kInodes)], "i", "x")
                    .ok());
    for (auto* h : handles) ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(raw->Close().ok());
    delete raw;
  }
  {
    auto e = RocksEngine::Open(dir, false);
    ASSERT_OK(e.status());
    auto t = (*e)->Begin();
    EXPECT_EQ(*t->GetCounter(Cf::kRefs, "r"), 3);
    t->Add(Cf::kRefs, "r", 2);
    ASSERT_OK(t->Commit());
    std::string v;
    ASSERT_OK((*e)->Get(Cf::kRefs, "r", &v));
    EXPECT_EQ(*DecodeCounter(v), 5);
    ASSERT_OK((*e)->Get(Cf::kInodes, "i", &v));
    EXPECT_EQ(v, "x");
  }
}

}  // namespace
}  // namespace snapfs::kv
