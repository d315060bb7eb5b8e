// Background sweeps of a whole key space (store gauges every minute, GC) must not take
// RocksDB's block cache from the lookups and listings a mount serves (finding 23 of
// docs/reliability.md): they read with fill_cache off (kv::Engine::NewScanIterator), as
// do the iterators of fsck's snapshot (kv::ReadView).
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdint>
#include <string>

#include "core/meta/rocksdb_engine.h"
#include "core/meta/spaces.h"
#include "tests/util/status_matchers.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {

class RocksScanCache : public ::testing::Test {
 protected:
  void SetUp() override {
    // Enough table data to matter (~6 MB of values in table files, not in the memtable).
    for (int batch = 0; batch < 20; batch++) {
      auto t = e_->Begin();
      for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%06d", batch * 1000 + i);
        t->Put(Cf::kChunks, k, std::string(300, static_cast<char>('a' + i % 26)));
      }
      ASSERT_OK(t->Commit());
    }
    ASSERT_TRUE(e_->db()->Flush(rocksdb::FlushOptions(), e_->cf(Cf::kChunks)).ok());
  }
  uint64_t CacheUsage() {
    uint64_t v = 0;
    EXPECT_TRUE(e_->db()->GetIntProperty(e_->cf(Cf::kChunks), "rocksdb.block-cache-usage", &v));
    return v;
  }
  static size_t Sweep(kv::Iterator* it) {
    size_t n = 0;
    for (it->Seek(""); it->Valid(); it->Next()) n++;
    EXPECT_OK(it->status());
    return n;
  }

  test::TempDir tmp_{"snapfs-scan-cache"};
  std::unique_ptr<kv::RocksEngine> e_ = MUST(kv::RocksEngine::Open(tmp_.path() + "/db", true));
};

TEST_F(RocksScanCache, ABackgroundSweepLeavesTheBlockCacheAlone) {
  const uint64_t before = CacheUsage();
  EXPECT_EQ(Sweep(e_->NewScanIterator(Cf::kChunks).get()), 20000u);
  EXPECT_LT(CacheUsage(), before + (256u << 10)) << "the sweep filled the block cache";
  auto view = MUST(e_->NewReadView());
  EXPECT_EQ(Sweep(view->NewIterator(Cf::kChunks).get()), 20000u);
  EXPECT_LT(CacheUsage(), before + (256u << 10)) << "fsck's sweep filled the block cache";
  // A plain iterator does fill it (what the two above avoid).
  EXPECT_EQ(Sweep(e_->NewIterator(Cf::kChunks).get()), 20000u);
  EXPECT_GT(CacheUsage(), before + (2u << 20));
}

}  // namespace
}  // namespace snapfs
