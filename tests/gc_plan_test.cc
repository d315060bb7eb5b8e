// Which packs GC chooses to rewrite (the max-unused target, emptiest first), what
// MeasureSpace reports, and the pack being appended to: sealed and rewritten when the
// target needs it, without losing chunks committed into it after the plan.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/chunks/gc.h"
#include "core/chunks/pack_format.h"
#include "tests/util/test_fs.h"

namespace snapfs {
namespace {

using test::kKiB;
using test::kMiB;
using test::RandomBytes;

std::vector<PackId> Ids(const std::vector<PackUsage>& v) {
  std::vector<PackId> out;
  for (const auto& p : v) out.push_back(p.id);
  return out;
}

class GcPlanTest : public ::testing::Test {
 protected:
  GcPlanTest() : t(test::TestFsOptions{.memory_backend = true}) {}
  // One sealed pack: `live` bytes that stay and `dead` bytes that are unlinked later.
  PackId Pack(const std::string& name, size_t live, size_t dead) {
    if (live) keep_[t.WriteFile(kRootIno, name + "-live", RandomBytes(live, seed_++))] = {};
    if (dead) {
      t.WriteFile(kRootIno, name + "-dead", RandomBytes(dead, seed_++));
      drop_.push_back(name + "-dead");
    }
    PackId id = t.store().chunks().active_pack();
    t.Reopen();  // seals it: the next write starts a new pack
    return id;
  }
  void DropDead() {
    for (const auto& n : drop_) ASSERT_OK(t.fs().Unlink(kRootIno, n));
    drop_.clear();
  }
  void RememberContent() {
    for (auto& [ino, data] : keep_) data = t.ReadAll(ino);
  }
  void ExpectContentIntact() {
    for (const auto& [ino, data] : keep_) EXPECT_TRUE(t.ReadAll(ino) == data) << "inode " << ino;
  }
  GcPlan Plan(double max_unused, double below = 0) {
    GcOptions o;
    o.max_unused_fraction = max_unused;
    o.rewrite_below_live_fraction = below;
    return MUST(PlanGc(t.store(), o));
  }

  test::TestFs t;
  uint64_t seed_ = 1;
  std::map<uint64_t, std::string> keep_;
  std::vector<std::string> drop_;
};

// Four sealed packs: all dead, 10% dead, 50% dead, 1% dead.
TEST_F(GcPlanTest, EmptiestPacksFirstUntilTheTargetIsMet) {
  PackId a = Pack("a", 0, 512 * kKiB);
  PackId b = Pack("b", 900 * kKiB, 100 * kKiB);
  PackId c = Pack("c", 500 * kKiB, 500 * kKiB);
  PackId d = Pack("d", 990 * kKiB, 10 * kKiB);
  ASSERT_TRUE(a && b && c && d);
  RememberContent();
  DropDead();
  // A pack without live bytes always goes; then the emptiest until <= 5% is dead: after
  // a and c, 110 KiB of about 2.5 MiB is dead.
  EXPECT_EQ(Ids(Plan(0.05).rewrite), (std::vector<PackId>{a, c}));
  EXPECT_EQ(Ids(Plan(0.01).rewrite), (std::vector<PackId>{a, c, b}));
  EXPECT_EQ(Ids(Plan(0).rewrite), (std::vector<PackId>{a, c, b, d}));
  EXPECT_EQ(Ids(Plan(1).rewrite), (std::vector<PackId>{a})) << "empty packs go at any target";
  // The explicit rule adds packs below a live fraction, whatever the target.
  EXPECT_EQ(Ids(Plan(1, 0.6).rewrite), (std::vector<PackId>{a, c}));
  EXPECT_EQ(Ids(Plan(1, 0.95).rewrite), (std::vector<PackId>{a, c, b}));

  GcPlan plan = Plan(0.05);
  EXPECT_EQ(plan.active_pack, 0u) << "nothing written since the last reopen";
  EXPECT_GT(plan.before.dead_bytes, 1 * kMiB);
  EXPECT_LE(plan.dead_bytes_after * 20, plan.pack_bytes_after);
  GcResult r = MUST(ExecuteGc(t.store(), plan));
  EXPECT_EQ(r.packs_removed, 2u);
  EXPECT_EQ(r.packs_busy, 0u);
  EXPECT_FALSE(r.sealed_active);
  SpaceUsage after = MUST(MeasureSpace(t.store()));
  // The plan's forecast is what happened: c's live chunks went to one new pack.
  EXPECT_EQ(after.dead_bytes, plan.dead_bytes_after);
  EXPECT_EQ(after.pack_bytes, plan.pack_bytes_after + pack::kHeaderSize);
  EXPECT_LE(after.dead_bytes * 20, after.pack_bytes);
  // Net of the copies; the new pack's header is the only byte it does not count.
  EXPECT_EQ(r.bytes_freed, plan.before.pack_bytes - after.pack_bytes + pack::kHeaderSize);
  ExpectContentIntact();
  t.Reopen();
  ExpectContentIntact();
  EXPECT_TRUE(t.FsckClean(true));
  // Nothing more to do at the same target.
  EXPECT_TRUE(Plan(0.05).rewrite.empty());
}

TEST_F(GcPlanTest, MeasureSpaceSplitsLiveDeadAndUnreferenced) {
  Pack("a", 700 * kKiB, 300 * kKiB);
  Pack("b", 200 * kKiB, 0);
  RememberContent();
  SpaceUsage s0 = MUST(MeasureSpace(t.store()));
  EXPECT_EQ(s0.live_bytes, 1200 * kKiB) << "random data: nothing dedups";
  EXPECT_EQ(s0.dead_bytes, 0u);
  EXPECT_EQ(s0.unreferenced_bytes, 0u);
  EXPECT_EQ(s0.packs, 2u);
  DropDead();
  SpaceUsage s1 = MUST(MeasureSpace(t.store()));
  EXPECT_EQ(s1.live_bytes, 900 * kKiB);
  EXPECT_EQ(s1.unreferenced_bytes, 300 * kKiB);
  EXPECT_GT(s1.unreferenced_chunks, 0u);
  EXPECT_GE(s1.dead_bytes, 300 * kKiB - kKiB) << "all but an inline tail is in a pack";
  EXPECT_EQ(s1.pack_bytes, s1.live_pack_bytes + s1.dead_bytes + 2 * pack::kHeaderSize);
  EXPECT_EQ(s1.pack_bytes, s0.pack_bytes) << "unlink frees nothing by itself";
  MUST(RunGc(t.store()));
  SpaceUsage s2 = MUST(MeasureSpace(t.store()));
  EXPECT_EQ(s2.live_bytes, 900 * kKiB);
  EXPECT_EQ(s2.unreferenced_bytes, 0u);
  EXPECT_EQ(s2.unreferenced_chunks, 0u);
  EXPECT_LE(s2.dead_bytes * 20, s2.pack_bytes);
  EXPECT_EQ(s2.pack_bytes, s2.live_pack_bytes + s2.dead_bytes + s2.packs * pack::kHeaderSize);
  ExpectContentIntact();
}

// Everything in the pack being appended to, half of it then dead: a default GC seals it
// and rewrites it; new writes go to a new pack.
TEST_F(GcPlanTest, ActivePackIsSealedAndRewritten) {
  const std::string keep = RandomBytes(kMiB, 50);
  uint64_t k = t.WriteFile(kRootIno, "keep", keep);
  t.WriteFile(kRootIno, "drop", RandomBytes(kMiB, 51));
  const PackId active = t.store().chunks().active_pack();
  ASSERT_NE(active, 0u);
  ASSERT_OK(t.fs().Unlink(kRootIno, "drop"));
  GcPlan plan = Plan(0.05);
  EXPECT_EQ(plan.active_pack, active);
  ASSERT_EQ(Ids(plan.rewrite), (std::vector<PackId>{active}));
  GcResult r = MUST(ExecuteGc(t.store(), plan));
  EXPECT_TRUE(r.sealed_active);
  EXPECT_EQ(r.packs_removed, 1u);
  for (const auto& p : MUST(t.store().backend().List())) EXPECT_NE(p.id, active);
  EXPECT_GT(r.bytes_freed, kMiB - 16 * kKiB);
  EXPECT_EQ(t.ReadAll(k), keep);
  const std::string more = RandomBytes(256 * kKiB, 52);
  uint64_t m = t.WriteFile(kRootIno, "more", more);
  EXPECT_GT(t.store().chunks().active_pack(), active);
  t.Reopen();
  EXPECT_EQ(t.ReadAll(k), keep);
  EXPECT_EQ(t.ReadAll(m), more);
  EXPECT_TRUE(t.FsckClean(true));
  SpaceUsage s = MUST(MeasureSpace(t.store()));
  EXPECT_LE(s.dead_bytes * 20, s.pack_bytes);
}

// The plan sees the active pack at one size; before it executes, a file is committed
// into that pack. The rewrite must copy that file's chunks too (the pack is read to its
// end after the seal, not to the planned size).
TEST_F(GcPlanTest, ChunksCommittedIntoTheActivePackAfterThePlanSurvive) {
  t.WriteFile(kRootIno, "keep", RandomBytes(512 * kKiB, 60));
  t.WriteFile(kRootIno, "drop", RandomBytes(kMiB, 61));
  const PackId active = t.store().chunks().active_pack();
  ASSERT_OK(t.fs().Unlink(kRootIno, "drop"));
  GcPlan plan = Plan(0.05);
  ASSERT_EQ(Ids(plan.rewrite), (std::vector<PackId>{active}));
  const std::string late = RandomBytes(768 * kKiB, 62);
  uint64_t l = t.WriteFile(kRootIno, "late", late);
  ASSERT_EQ(t.store().chunks().active_pack(), active) << "the late file must land in that pack";
  GcResult r = MUST(ExecuteGc(t.store(), plan));
  EXPECT_EQ(r.packs_removed, 1u);
  EXPECT_GE(r.bytes_copied, 512 * kKiB + 768 * kKiB - 32 * kKiB);
  t.Reopen();  // no cache: the bytes come from the new pack
  EXPECT_EQ(t.ReadAll(l), late);
  EXPECT_TRUE(t.FsckClean(true));
}

}  // namespace
}  // namespace snapfs
