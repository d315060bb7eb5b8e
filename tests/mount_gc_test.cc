// GC through the mount and the CLI, as an operator meets it: `snapfs rm` of a snapshot
// says how much it frees, and a default `snapfs gc` then gives that space back, also
// when it all sits in the pack the daemon is appending to (a small store has one);
// `snapfs stats` keeps dead bytes apart from live ones.
#include "tests/util/flink_sim.h"
#include "tests/util/mount_s3.h"

namespace snapfs::mounttest {
namespace {

class MountGc : public MountFixture {
 protected:
  void DefaultGcReclaimsWhatRmFreedFromTheActivePack();  // a TEST_F below runs it, on a local and on an S3 store
  static uint64_t U(const nlohmann::json& j, const char* key) { return StatU64(j, key); }

  // Every file the job wrote that should still be there reads back byte for byte.
  void ExpectContentIntact(const FlinkJob& job, const std::set<std::string>& gone) {
    for (const auto& [path, bytes] : content_) {
      if (gone.count(path)) continue;
      int err = 0;
      std::string got = ReadFile(path, &err);
      EXPECT_EQ(err, 0) << path << ": " << ErrnoName(err);
      EXPECT_TRUE(got == bytes) << path << " changed (" << got.size() << " bytes, want "
                                << bytes.size() << ")";
    }
    (void)job;
  }

  ContentMap content_;
};

void MountGc::DefaultGcReclaimsWhatRmFreedFromTheActivePack() {
  FlinkJob job(mnt(), "job-g", 4242, &content_);
  ASSERT_EQ(job.Init(), "");
  // Four checkpoints of distinct data; each compacts the previous state away, so every
  // checkpoint alone holds its two shared files. About 6 MiB: all in one (active) pack.
  for (int i = 0; i < 4; i++) ASSERT_EQ(job.TakeCheckpoint(2, 768 * kKiB, i ? 2 : 0, 1), "");
  nlohmann::json s0 = SnapfsJsonObject({"stats", mnt()});
  ASSERT_EQ(U(s0, "packs"), 1u) << "the test needs everything in the active pack: " << s0.dump();
  EXPECT_EQ(U(s0, "dead_bytes"), 0u) << s0.dump();

  const FlinkJob::Checkpoint c1 = job.retained().front();
  std::set<std::string> gone;
  for (const auto& r : c1.refs) gone.insert(r);
  for (const auto& p : c1.priv) gone.insert(job.Path(c1.name + "/" + p));
  gone.insert(job.Path(c1.name + "/_metadata"));
  nlohmann::json rm = SnapfsJsonObject({"rm", job.Path(c1.name), "--wait"});
  const uint64_t freed = rm["report"]["bytes_freed"].get<uint64_t>();
  ASSERT_GT(freed, 1 * kMiB) << rm.dump();

  // stats: the freed bytes are dead, not stored; dedup is computed on what is live.
  nlohmann::json s1 = SnapfsJsonObject({"stats", mnt()});
  const uint64_t pack0 = U(s1, "pack_bytes");
  EXPECT_EQ(U(s1, "live_bytes"), U(s1, "stored_bytes")) << s1.dump();
  EXPECT_GE(U(s1, "dead_bytes") + 64 * kKiB, freed)
      << "rm's bytes must show up as dead: " << s1.dump();
  EXPECT_LE(U(s1, "live_bytes") + U(s1, "dead_bytes"), pack0 + 64 * kKiB) << s1.dump();
  EXPECT_GE(s1["dedup_ratio"].get<double>(), 1.0)
      << "garbage must not lower the ratio: " << s1.dump();

  // The human output of a dry run names the plan, including the active pack.
  CmdResult dry = Snapfs({"gc", mnt(), "--dry-run"});
  ASSERT_EQ(dry.code, 0) << dry.Describe();
  EXPECT_NE(dry.out.find("would rewrite 1 packs, the active one included"), std::string::npos)
      << dry.out;
  EXPECT_EQ(U(SnapfsJsonObject({"stats", mnt()}), "pack_bytes"), pack0)
      << "--dry-run changed the packs";

  // A default gc: no options.
  nlohmann::json gc = SnapfsJsonObject({"gc", mnt()});
  EXPECT_GE(U(gc, "packs_removed"), 1u) << gc.dump();
  EXPECT_TRUE(gc["sealed_active_pack"].get<bool>()) << gc.dump();
  nlohmann::json s2 = SnapfsJsonObject({"stats", mnt()});
  const uint64_t pack1 = U(s2, "pack_bytes");
  ASSERT_LT(pack1, pack0) << "gc freed nothing: " << gc.dump();
  // Pack bytes dropped by what rm said (less what lived inline in the metadata log:
  // _metadata, the private file, short file tails), not by more than record headers.
  EXPECT_GE(pack0 - pack1 + 64 * kKiB, freed) << gc.dump() << s2.dump();
  EXPECT_LE(pack0 - pack1, freed + 16 * kKiB) << gc.dump() << s2.dump();
  EXPECT_EQ(U(gc, "pack_bytes_after"), pack1) << gc.dump();
  EXPECT_LE(U(s2, "dead_bytes") * 20, pack1)
      << "more than 5% dead after a default gc: " << s2.dump();
  EXPECT_EQ(U(gc, "dead_pack_bytes_after"), U(s2, "dead_bytes")) << gc.dump() << s2.dump();
  EXPECT_GE(U(gc, "bytes_freed") + 64 * kKiB, freed) << gc.dump();
  EXPECT_GE(s2["dedup_ratio"].get<double>(), 1.0) << s2.dump();
  EXPECT_EQ(U(s2, "live_bytes"), U(s1, "live_bytes")) << "gc changed the live bytes";

  // Everything still there reads back, through the daemon and after a remount.
  ExpectContentIntact(job, gone);
  for (const auto& g : gone) EXPECT_FALSE(Exists(g)) << g;
  // Writes after the seal go to a new pack and survive the next gc too.
  ASSERT_EQ(job.TakeCheckpoint(2, 256 * kKiB, 2, 1), "");
  nlohmann::json gc2 = SnapfsJsonObject({"gc", mnt()});
  EXPECT_EQ(U(gc2, "bytes_freed"), 0u) << "nothing was dead: " << gc2.dump();
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectContentIntact(job, gone);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
  nlohmann::json s3 = Stats();
  EXPECT_LE(U(s3, "dead_bytes") * 20, U(s3, "pack_bytes")) << s3.dump();
}

TEST_F(MountGc, MaxUnusedIsValidatedAndHonoured) {
  for (const char* bad : {"banana", "5", "-1%", "101%", "0.05x", "", "nan"}) {
    CmdResult r = Snapfs({"gc", mnt(), "--max-unused", bad});
    EXPECT_EQ(r.code, 2) << "--max-unused " << bad << ":\n" << r.Describe();
    EXPECT_NE(r.err.find("--max-unused"), std::string::npos) << r.err;
  }
  for (const char* bad : {"1.5", "-0.1", "x"}) {
    CmdResult r = Snapfs({"gc", mnt(), "--rewrite-below", bad});
    EXPECT_EQ(r.code, 2) << "--rewrite-below " << bad << ":\n" << r.Describe();
  }
  // 3 MiB in the active pack, one third of it then dead: 100% tolerates it, 5% does not.
  std::vector<std::string> data;
  for (int i = 0; i < 3; i++) {
    data.push_back(RandomBytes(kMiB, 900 + i));
    ASSERT_EQ(WriteFile(Path("f" + std::to_string(i)), data.back(), true), 0);
  }
  ASSERT_EQ(::unlink(Path("f1").c_str()), 0);
  nlohmann::json lax = SnapfsJsonObject({"gc", mnt(), "--max-unused", "100%"});
  EXPECT_EQ(U(lax, "packs_to_rewrite"), 0u) << lax.dump();
  EXPECT_GE(U(lax, "dead_pack_bytes_after"), kMiB) << lax.dump();
  nlohmann::json strict = SnapfsJsonObject({"gc", mnt(), "--max-unused", "0.05", "--dry-run"});
  EXPECT_EQ(U(strict, "packs_to_rewrite"), 1u) << strict.dump();
  EXPECT_DOUBLE_EQ(strict["max_unused"].get<double>(), 0.05);
  nlohmann::json pct = SnapfsJsonObject({"gc", mnt(), "--max-unused", "5%"});
  EXPECT_EQ(U(pct, "packs_removed"), 1u) << pct.dump();
  EXPECT_LE(U(pct, "dead_pack_bytes_after") * 20, U(pct, "pack_bytes_after")) << pct.dump();
  EXPECT_TRUE(ReadFile(Path("f0")) == data[0]);
  EXPECT_TRUE(ReadFile(Path("f2")) == data[2]);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

TEST_F(MountGc, DefaultGcReclaimsWhatRmFreedFromTheActivePack) { DefaultGcReclaimsWhatRmFreedFromTheActivePack(); }

// The same on an S3-backed store (test radosgw; ctest label s3).
class MountGcS3 : public test::OnS3<MountGc> {};
TEST_F(MountGcS3, DefaultGcReclaimsWhatRmFreedFromTheActivePack) { DefaultGcReclaimsWhatRmFreedFromTheActivePack(); }

}  // namespace
}  // namespace snapfs::mounttest
