// fsck --verify through the CLI on a real store, unmounted and through the daemon: bytes
// of chunks are flipped inside the pack files on disk, and fsck must name exactly the
// files (hidden ones marked, and a file only a snapshot still reaches) and the snapshots
// that hold each damaged chunk, exit 3, and re-hash the part --subset asks for
// (DESIGN.md invariant 6).
#include <cinttypes>

#include "tests/util/flink_sim.h"
#include "tests/util/store_damage.h"

namespace snapfs::mounttest {
namespace {

class MountFsck : public MountFixture {
 protected:
  std::vector<ChunkAt> ChunksOf(const std::string& rel) {
    return mounttest::ChunksOf(store(), rel);
  }
  void Corrupt(const ChunkAt& c) { FlipChunkByte(store(), c); }

  std::string Rel(const std::string& abs) const { return abs.substr(mnt().size() + 1); }

  ContentMap content_;
};

TEST_F(MountFsck, VerifyNamesTheFilesAndSnapshotsOfEachDamagedChunk) {
  FlinkJob job(mnt(), "job-f", 5, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(2, 256 * kKiB, 0, 1), "");  // chk-1: shared A, B
  ASSERT_EQ(job.TakeCheckpoint(1, 256 * kKiB, 0, 1), "");  // chk-2: A, B, C
  const std::string a = job.state()[0], c = job.state()[2];
  // Two names with the same bytes (deduplicated: one set of chunks), in no snapshot.
  ASSERT_EQ(::mkdir(Path("loose").c_str(), 0755), 0);
  const std::string twin = RandomBytes(300 * kKiB, 77);
  ASSERT_EQ(WriteFile(Path("loose/data"), twin, true), 0);
  ASSERT_EQ(WriteFile(Path("loose/twin"), twin, true), 0);
  // A is deleted, as Flink's shared-state cleanup may do early: hidden, kept for both.
  ASSERT_EQ(::unlink(a.c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());

  auto chunks_a = ChunksOf(Rel(a));
  auto chunks_c = ChunksOf(Rel(c));
  auto chunks_d = ChunksOf("loose/data");
  ASSERT_GE(chunks_a.size(), 2u);
  ASSERT_GE(chunks_c.size(), 1u);
  ASSERT_GE(chunks_d.size(), 2u);
  ASSERT_EQ(ChunksOf("loose/twin").at(1).hex, chunks_d[1].hex) << "the twin must share chunks";
  const ChunkAt bad_a = chunks_a[chunks_a.size() / 2], bad_c = chunks_c.back(), bad_d = chunks_d[1];

  int code = -1;
  FsckJson({store(), "--verify"}, &code);
  ASSERT_EQ(code, 0) << "the store must be clean before the damage";
  ASSERT_NO_FATAL_FAILURE(Corrupt(bad_a));
  ASSERT_NO_FATAL_FAILURE(Corrupt(bad_c));
  ASSERT_NO_FATAL_FAILURE(Corrupt(bad_d));

  // Without --verify only record headers are read: the damage is inside the bytes.
  nlohmann::json quick = FsckJson({store()}, &code);
  EXPECT_EQ(code, 0) << quick.dump(2);

  nlohmann::json j = FsckJson({store(), "--verify"}, &code);
  EXPECT_EQ(code, 3) << j.dump(2);
  auto damaged = Damaged(j);
  ASSERT_EQ(damaged.size(), 3u) << j.dump(2);
  const nlohmann::json& da = damaged[bad_a.hex];
  EXPECT_EQ(Files(da), (std::vector<std::string>{Rel(a) + " (hidden)"})) << da.dump(2);
  EXPECT_EQ(Snaps(da), (std::vector<std::string>{"job-f/chk-1", "job-f/chk-2"}));
  EXPECT_EQ(da["pack"].get<uint64_t>(), bad_a.loc.pack);
  EXPECT_EQ(da["offset"].get<uint64_t>(), bad_a.loc.offset);
  EXPECT_EQ(da["problem"], "hash mismatch");
  const nlohmann::json& dc = damaged[bad_c.hex];
  EXPECT_EQ(Files(dc), (std::vector<std::string>{Rel(c)})) << dc.dump(2);
  EXPECT_EQ(Snaps(dc), (std::vector<std::string>{"job-f/chk-2"})) << "C came after chk-1";
  const nlohmann::json& dd = damaged[bad_d.hex];
  EXPECT_EQ(Files(dd), (std::vector<std::string>{"loose/data", "loose/twin"})) << dd.dump(2);
  EXPECT_TRUE(Snaps(dd).empty());
  EXPECT_EQ(j["verify_fraction"].get<double>(), 1.0);
  EXPECT_EQ(j["verified_chunks"].get<uint64_t>(), j["chunks"].get<uint64_t>());

  // Human output: one PROBLEM line per damaged chunk, its users indented below.
  CmdResult h = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(h.code, 3) << h.Describe();
  size_t problem_lines = 0;
  for (size_t p = h.out.find("PROBLEM:"); p != std::string::npos;
       p = h.out.find("PROBLEM:", p + 1)) {
    problem_lines++;
  }
  EXPECT_EQ(problem_lines, 3u) << h.out;
  size_t at = h.out.find("PROBLEM: damaged chunk " + bad_a.hex + " (hash mismatch)");
  ASSERT_NE(at, std::string::npos) << h.out;
  std::string block = h.out.substr(at, h.out.find("PROBLEM:", at + 1) - at);
  EXPECT_NE(block.find("\n    file      " + Rel(a) + "  (hidden: kept for snapshots)\n"),
            std::string::npos)
      << block;
  EXPECT_NE(block.find("\n    snapshot  job-f/chk-1\n"), std::string::npos) << block;
  EXPECT_NE(block.find("\n    snapshot  job-f/chk-2\n"), std::string::npos) << block;
  EXPECT_NE(h.out.find("3 damaged chunk(s) in 4 file(s) and 2 snapshot(s)"), std::string::npos)
      << h.out;

  // --subset: 100% and a size larger than the store find it all, 0 checks nothing.
  for (const char* all : {"100%", "1", "1G"}) {
    nlohmann::json s = FsckJson({store(), "--verify", "--subset", all}, &code);
    EXPECT_EQ(code, 3) << all;
    EXPECT_EQ(Damaged(s).size(), 3u) << all;
    EXPECT_EQ(s["verify_fraction"].get<double>(), 1.0) << all;
  }
  nlohmann::json none = FsckJson({store(), "--subset", "0"}, &code);
  EXPECT_EQ(code, 0) << none.dump(2);
  EXPECT_EQ(none["verified_chunks"].get<uint64_t>(), 0u);
  EXPECT_EQ(none["verify_fraction"].get<double>(), 0.0);
  CmdResult zero = Snapfs({"fsck", store(), "--verify", "--subset", "0%"});
  EXPECT_EQ(zero.code, 0) << zero.Describe();
  EXPECT_NE(zero.out.find("re-hashed 0 of "), std::string::npos) << zero.out;
  EXPECT_NE(zero.out.find("a random 0% subset: --subset 0%"), std::string::npos) << zero.out;
  nlohmann::json part = FsckJson({store(), "--verify", "--subset", "10%"}, &code);
  EXPECT_EQ(part["verify_fraction"].get<double>(), 0.1);
  EXPECT_LE(part["verified_chunks"].get<uint64_t>(), part["chunks"].get<uint64_t>());
  EXPECT_EQ(code, Damaged(part).empty() ? 0 : 3);

  for (const char* bad : {"150%", "-5%", "banana", "2", "1.5G", "", "10%%", "0.5x", "nan"}) {
    CmdResult r = Snapfs({"fsck", store(), "--verify", "--subset", bad});
    EXPECT_EQ(r.code, 2) << "--subset '" << bad << "':\n" << r.Describe();
    EXPECT_NE(r.err.find("--subset"), std::string::npos) << r.err;
  }

  // Through the daemon: the same answer, and the damaged bytes are never read.
  ASSERT_NO_FATAL_FAILURE(Mount());
  nlohmann::json m = FsckJson({mnt(), "--verify"}, &code);
  EXPECT_EQ(code, 3) << m.dump(2);
  auto md = Damaged(m);
  ASSERT_EQ(md.size(), 3u) << m.dump(2);
  EXPECT_EQ(Files(md[bad_a.hex]), Files(da));
  EXPECT_EQ(Snaps(md[bad_a.hex]), Snaps(da));
  EXPECT_EQ(Files(md[bad_d.hex]), Files(dd));
  nlohmann::json m0 = FsckJson({mnt(), "--verify", "--subset", "0"}, &code);
  EXPECT_EQ(code, 0) << m0.dump(2);
  EXPECT_EQ(m0["verified_chunks"].get<uint64_t>(), 0u);
  nlohmann::json m1 = FsckJson({mnt(), "--subset", "100%"}, &code);
  EXPECT_EQ(code, 3);
  EXPECT_EQ(Damaged(m1).size(), 3u);
  int err = 0;
  std::string got = ReadFile(Path("loose/data"), &err);
  EXPECT_EQ(err, EIO) << "a damaged chunk must give EIO, got " << got.size() << " bytes";
}

TEST_F(MountFsck, AFileOnlyASnapshotReachesIsNamedByItsView) {
  FlinkJob job(mnt(), "job-r", 6, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(1, 256 * kKiB, 0, 1), "");
  const std::string a = job.state()[0];
  ASSERT_NO_FATAL_FAILURE(Unmount());
  auto old_chunks = ChunksOf(Rel(a));
  ASSERT_GE(old_chunks.size(), 2u);
  ASSERT_NO_FATAL_FAILURE(Mount());
  // Rewritten in place: chk-1 keeps the old bytes in a copy that has no name of its own.
  ASSERT_EQ(WriteFile(Path(Rel(a)), RandomBytes(100 * kKiB, 9), true), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Corrupt(old_chunks[0]));

  int code = -1;
  nlohmann::json j = FsckJson({store(), "--verify"}, &code);
  EXPECT_EQ(code, 3) << j.dump(2);
  auto damaged = Damaged(j);
  ASSERT_EQ(damaged.size(), 1u) << j.dump(2);
  const nlohmann::json& d = damaged[old_chunks[0].hex];
  std::string view = ".snapshots/job-r/chk-1/" + Rel(a).substr(std::string("job-r/").size());
  EXPECT_EQ(Files(d), (std::vector<std::string>{view + " (hidden)"})) << d.dump(2);
  EXPECT_EQ(Snaps(d), (std::vector<std::string>{"job-r/chk-1"}));
}

}  // namespace
}  // namespace snapfs::mounttest
