// Corruption through a mount (issue 13, "Faults and bad input"; DESIGN.md invariant 6):
// bytes of a local store's packs are flipped (while mounted, and while not), a pack is
// truncated or deleted, and RocksDB's own files (the table files of each key space, the
// manifest, CURRENT) are damaged while unmounted. Then, through the mount as a user
// meets it:
//   - a read of an affected file gives EIO, never other bytes than were written (every
//     pread that succeeds is compared), and every other file reads back byte for byte;
//   - a listing gives EIO or every name, never a listing that silently lacks some;
//   - `snapfs fsck --verify` (through the daemon and offline) exits 3 and names exactly
//     the affected files and the snapshots that hold them; damaged metadata makes it fail
//     (exit 1 or 3), never pass;
//   - `snapfs status` says degraded (exit 1) once a read failed or a verify found damage;
//   - the daemon keeps serving: a new checkpoint is written and restores, `snapfs gc`
//     does not take it down, and it unmounts cleanly.
#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <set>

#include "tests/util/flink_sim.h"
#include "tests/util/store_damage.h"

namespace snapfs::mounttest {
namespace {

class MountCorruption : public MountFixture {
 protected:
  // Session 1 (pack 1): job-a's chk-1 (shared A, B) and chk-2 (A, B, C), loose/x and
  // loose/y. Session 2 (pack 2): job-b's chk-1 and loose/z. Leaves the store unmounted,
  // with chunks_ holding where every file's chunks lie.
  void Populate() {
    job_a_.emplace(mnt(), "job-a", 1, &content_);
    ASSERT_EQ(job_a_->Init(), "");
    ASSERT_EQ(job_a_->TakeCheckpoint(2, 200 * kKiB, 0, 1), "");
    ASSERT_EQ(job_a_->TakeCheckpoint(1, 200 * kKiB, 0, 1), "");
    ASSERT_EQ(::mkdir(Path("loose").c_str(), 0755), 0);
    for (const char* n : {"loose/x", "loose/y"}) ASSERT_NO_FATAL_FAILURE(Loose(n, 300 * kKiB));
    ASSERT_NO_FATAL_FAILURE(Remount());
    job_b_.emplace(mnt(), "job-b", 2, &content_);
    ASSERT_EQ(job_b_->Init(), "");
    ASSERT_EQ(job_b_->TakeCheckpoint(2, 200 * kKiB, 0, 1), "");
    ASSERT_NO_FATAL_FAILURE(Loose("loose/z", 300 * kKiB));
    ASSERT_NO_FATAL_FAILURE(Unmount());
    std::vector<std::string> rels;
    for (const auto& [abs, bytes] : content_) rels.push_back(Rel(abs));
    chunks_ = ChunksOfFiles(store(), rels);
    ASSERT_EQ(chunks_.size(), content_.size());
    int code = -1;
    FsckJson({store(), "--verify"}, &code);
    ASSERT_EQ(code, 0) << "the store must be clean before the damage";
  }

  void Loose(const std::string& rel, size_t n) {
    std::string bytes = RandomBytes(n, std::hash<std::string>()(rel));
    ASSERT_EQ(WriteFile(Path(rel), bytes, true), 0) << rel;
    content_[Path(rel)] = bytes;
  }

  std::string Rel(const std::string& abs) const { return abs.substr(mnt().size() + 1); }

  // The files (relative paths) with a pack chunk for which `damaged` holds.
  std::set<std::string> Affected(const std::function<bool(const ChunkAt&)>& damaged) const {
    std::set<std::string> out;
    for (const auto& [rel, chunks] : chunks_) {
      for (const auto& c : chunks) {
        if (!c.loc.is_inline() && damaged(c)) out.insert(rel);
      }
    }
    return out;
  }

  // The snapshots (job/chk-N) holding any of `files`: their own files and references.
  std::set<std::string> SnapshotsOf(const std::set<std::string>& files) {
    std::set<std::string> out;
    for (FlinkJob* job : {&*job_a_, &*job_b_}) {
      for (const auto& cp : job->retained()) {
        std::vector<std::string> held = cp.refs;
        for (const auto& p : cp.priv) held.push_back(job->Path(cp.name + "/" + p));
        for (const auto& abs : held) {
          if (files.count(Rel(abs))) out.insert(job->job() + "/" + cp.name);
        }
      }
    }
    return out;
  }

  // Reads one file in 64 KiB preads, going on after a failed one: every pread that
  // succeeds must return exactly the bytes written there. 0, or the first errno.
  int ReadChecked(const std::string& rel, const std::string& want) {
    int err = 0;
    UniqueFd fd(::open(Path(rel).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.ok()) return errno;
    constexpr size_t kStep = 64 * kKiB;
    for (size_t off = 0; off < want.size() + 1; off += kStep) {
      int e = 0;
      std::string got = PreadAll(fd.get(), kStep, static_cast<off_t>(off), &e);
      if (e != 0) {
        if (err == 0) err = e;
        continue;
      }
      std::string expect = off < want.size() ? want.substr(off, kStep) : "";
      if (got != expect) {
        bool zeros = got.find_first_not_of('\0') == std::string::npos;
        ADD_FAILURE() << rel << ": WRONG BYTES at offset " << off << " (" << got.size()
                      << " bytes read, " << expect.size() << " expected"
                      << (zeros ? ", all zeros" : "") << ")";
        return EILSEQ;
      }
    }
    return err;
  }

  // Reads every file written; a failure for wrong bytes or an errno other than EIO.
  // Returns the files (relative paths) that gave EIO.
  std::set<std::string> ReadAll() {
    std::set<std::string> eio;
    for (const auto& [abs, bytes] : content_) {
      int e = ReadChecked(Rel(abs), bytes);
      if (e == EIO) {
        eio.insert(Rel(abs));
      } else {
        EXPECT_EQ(e, 0) << Rel(abs) << ": " << ErrnoName(e);
      }
    }
    return eio;
  }

  // Every folder the test made lists all its names, or fails with EIO.
  void ListingsCompleteOrEio() {
    std::map<std::string, std::set<std::string>> want;
    for (const auto& [abs, bytes] : content_) {
      std::filesystem::path p(Rel(abs));
      want[p.parent_path().string()].insert(p.filename().string());
    }
    for (const auto& [dir, names] : want) {
      int err = 0;
      auto got = ListDir(Path(dir), &err);
      if (err == EIO) continue;
      ASSERT_EQ(err, 0) << dir << ": " << ErrnoName(err);
      std::set<std::string> have(got.begin(), got.end());
      for (const auto& n : names) {
        EXPECT_TRUE(have.count(n))
            << dir << " listed without " << n << " (a listing must fail, not leave names out)";
      }
    }
  }

  // fsck --verify of `target` exits 3 and names exactly `files` and their snapshots.
  void ExpectFsckNames(const std::string& target, const std::set<std::string>& files) {
    int code = -1;
    nlohmann::json j = FsckJson({target, "--verify"}, &code);
    EXPECT_EQ(code, 3) << j.dump(2);
    std::set<std::string> named, snaps;
    for (const auto& [id, d] : Damaged(j)) {
      for (const auto& f : d["files"]) named.insert(f["path"].get<std::string>());
      for (const auto& s : Snaps(d)) snaps.insert(s);
    }
    EXPECT_EQ(named, files) << j.dump(2);
    EXPECT_EQ(snaps, SnapshotsOf(files)) << j.dump(2);
  }

  // `snapfs status MNT --json` says degraded (exit 1) with a reason containing `why`.
  void ExpectDegraded(const std::string& why) {
    nlohmann::json s = SnapfsJsonObject({"status", mnt()}, 1);
    EXPECT_EQ(s.value("health", ""), "degraded") << s.dump(2);
    std::string reasons = s.value("reasons", nlohmann::json::array()).dump();
    EXPECT_NE(reasons.find(why), std::string::npos) << s.dump(2);
  }

  // The daemon still writes and reads: a new job's checkpoint restores byte for byte,
  // and `snapfs gc` neither crashes it nor hangs.
  void StillServes() {
    FlinkJob c(mnt(), "job-c-" + std::to_string(serve_round_++), 3, &content_);
    ASSERT_EQ(c.Init(), "");
    ASSERT_EQ(c.TakeCheckpoint(2, 100 * kKiB, 0, 1), "");
    std::string dir = c.Path(c.retained().back().name);
    EXPECT_EQ(Restore(dir, dir, content_,
                      [](const std::string& p) {
                        return std::pair{p, p};
                      }),
              "");
    CmdResult gc = Snapfs({"gc", mnt()});
    EXPECT_LT(gc.code, 2) << "snapfs gc on a damaged store:\n" << gc.Describe();
    EXPECT_TRUE(IsMounted(mnt(), true)) << "the daemon went away" << DaemonLog();
    EXPECT_FALSE(ProcessGone(daemon_pid())) << "the daemon died" << DaemonLog();
    EXPECT_EQ(ReadFile(dir + "/_metadata"), content_[dir + "/_metadata"]);
  }

  // Mounts the damaged store and checks all of the above for pack damage that affects
  // exactly `affected`.
  void MountAndCheckPackDamage(const std::set<std::string>& affected) {
    ASSERT_FALSE(affected.empty());
    ASSERT_LT(affected.size(), content_.size()) << "some files must stay unaffected";
    ASSERT_NO_FATAL_FAILURE(Mount());
    EXPECT_EQ(ReadAll(), affected);
    ASSERT_NO_FATAL_FAILURE(ListingsCompleteOrEio());
    ExpectDegraded("I/O error");
    ExpectFsckNames(mnt(), affected);
    ASSERT_NO_FATAL_FAILURE(StillServes());
    ASSERT_NO_FATAL_FAILURE(Unmount());
    ExpectFsckNames(store(), affected);
  }

  ContentMap content_;
  std::optional<FlinkJob> job_a_, job_b_;
  std::map<std::string, std::vector<ChunkAt>> chunks_;
  int serve_round_ = 0;
};

// A byte flipped in the pack while the daemon runs (the chunks were never read since the
// mount, so no cache holds them): the read gives EIO, the rest reads.
TEST_F(MountCorruption, FlippedPackBytesWhileMountedGiveEio) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::string a = Rel(job_a_->state()[0]), z = "loose/z";
  const ChunkAt bad_a = chunks_[a][chunks_[a].size() / 2], bad_z = chunks_[z][1];
  ASSERT_NO_FATAL_FAILURE(Mount());
  // First a verify that finds nothing: status stays ok.
  int code = -1;
  FsckJson({mnt(), "--verify"}, &code);
  EXPECT_EQ(code, 0);
  ASSERT_NO_FATAL_FAILURE(FlipChunkByte(store(), bad_a));
  ASSERT_NO_FATAL_FAILURE(FlipChunkByte(store(), bad_z));
  // A verify finds the damage before any read met it: status says so (degraded by
  // verify failures, not only by read errors).
  ExpectFsckNames(mnt(), {a, z});
  ExpectDegraded("the last fsck");
  EXPECT_EQ(ReadAll(), (std::set<std::string>{a, z}));
  ExpectDegraded("hash mismatch");
  ASSERT_NO_FATAL_FAILURE(StillServes());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckNames(store(), {a, z});
}

TEST_F(MountCorruption, FlippedPackBytesWhileUnmountedGiveEio) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  // One chunk of every second file.
  std::set<std::string> hit;
  int i = 0;
  for (const auto& [rel, chunks] : chunks_) {
    if (i++ % 2 || chunks.empty() || chunks.back().loc.is_inline()) continue;
    ASSERT_NO_FATAL_FAILURE(FlipChunkByte(store(), chunks.back()));
    hit.insert(rel);
  }
  ASSERT_NO_FATAL_FAILURE(MountAndCheckPackDamage(hit));
}

// The tail of the first pack cut off (a torn copy, a disk that lost its end): the files
// with a chunk past the cut give EIO, those before it read.
TEST_F(MountCorruption, TruncatedPackGivesEioForTheChunksPastTheCut) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const ChunkAt& at = chunks_["loose/x"].at(1);
  const uint64_t pack = at.loc.pack, cut = at.loc.offset + at.loc.length / 2;
  ASSERT_EQ(::truncate(PackPath(store(), pack).c_str(), static_cast<off_t>(cut)), 0)
      << ErrnoName(errno);
  auto affected = Affected(
      [&](const ChunkAt& c) { return c.loc.pack == pack && c.loc.offset + c.loc.length > cut; });
  EXPECT_TRUE(affected.count("loose/x") && affected.count("loose/y"));
  ASSERT_NO_FATAL_FAILURE(MountAndCheckPackDamage(affected));
}

// A whole pack deleted: every file with a chunk in it gives EIO.
TEST_F(MountCorruption, DeletedPackGivesEioForItsFiles) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const uint64_t pack = chunks_["loose/z"].at(0).loc.pack;
  ASSERT_EQ(::unlink(PackPath(store(), pack).c_str()), 0) << ErrnoName(errno);
  auto affected = Affected([&](const ChunkAt& c) { return c.loc.pack == pack; });
  EXPECT_TRUE(affected.count("loose/z"));
  EXPECT_FALSE(affected.count("loose/x"));
  ASSERT_NO_FATAL_FAILURE(MountAndCheckPackDamage(affected));
}

// RocksDB's files damaged while unmounted, one damage at a time on a copy of the same
// store: every table file of one key space with a flipped block, a truncated or deleted
// table file, a deleted manifest, a garbage CURRENT. fsck must fail (never pass), mount
// must refuse with a message or serve without wrong bytes, silent omissions or a crash.
TEST_F(MountCorruption, DamagedMetadataFilesNeverGiveWrongAnswers) {
  ASSERT_NO_FATAL_FAILURE(Populate());
  const std::string pristine = tmp() + "/pristine";
  ASSERT_EQ(Run({"cp", "-a", store(), pristine}).code, 0);
  auto ssts = SstFilesByKeySpace(store());
  ASSERT_TRUE(ssts.count("inodes") && ssts.count("extents")) << "no table files to damage";
  auto relocate = [&](const std::string& p) { return store() + p.substr(store().size()); };

  struct Case {
    std::string name;
    std::function<void()> damage;
    bool fsck_must_fail;
  };
  std::vector<Case> cases;
  // The key spaces fsck scans (core/fsck.cc); damage elsewhere (xattrs, the counters in
  // "default") must still give no wrong answer through the mount.
  const std::set<std::string> scanned = {"inodes",  "dentries", "dirindex",
                                         "extents", "chunks",   "refs"};
  for (const auto& [cf, files] : ssts) {
    cases.push_back({"flip a block of every table of " + cf,
                     [&, files = files] {
                       for (const auto& f : files) {
                         off_t size = static_cast<off_t>(std::filesystem::file_size(f));
                         FlipFileBytes(relocate(f), std::min<off_t>(100, size / 4));
                       }
                     },
                     scanned.count(cf) > 0});
  }
  // Each table of inodes alone, too: one holds the records of some files only (those
  // flushed together), so their folders still open and list. (A table may hold only
  // records a newer one shadows, which fsck rightly never reads.)
  for (const auto& f : ssts["inodes"]) {
    cases.push_back({"flip a block of inodes table " + std::filesystem::path(f).filename().string(),
                     [&, f = f] {
                       off_t size = static_cast<off_t>(std::filesystem::file_size(f));
                       FlipFileBytes(relocate(f), std::min<off_t>(100, size / 4));
                     },
                     false});
  }
  const std::string ino_sst = ssts["inodes"].front(), ext_sst = ssts["extents"].front();
  cases.push_back({"truncate a table of inodes",
                   [&] {
                     auto size = std::filesystem::file_size(ino_sst);
                     ASSERT_EQ(::truncate(relocate(ino_sst).c_str(), size / 2), 0);
                   },
                   true});
  cases.push_back({"delete a table of extents",
                   [&] { ASSERT_EQ(::unlink(relocate(ext_sst).c_str()), 0); }, true});
  cases.push_back({"delete the manifest",
                   [&] {
                     for (const auto& e : std::filesystem::directory_iterator(store() + "/meta"))
                       if (e.path().filename().string().starts_with("MANIFEST-"))
                         std::filesystem::remove(e.path());
                   },
                   true});
  cases.push_back({"garbage in CURRENT",
                   [&] { ASSERT_EQ(WriteFile(store() + "/meta/CURRENT", "garbage\n"), 0); }, true});

  int refused = 0, served = 0, eio_reads = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::filesystem::remove_all(store());
    ASSERT_EQ(Run({"cp", "-a", pristine, store()}).code, 0);
    ASSERT_NO_FATAL_FAILURE(c.damage());

    CmdResult f = Snapfs({"fsck", store(), "--verify"});
    EXPECT_LT(f.code, 128) << "fsck crashed\n" << f.Describe();
    if (c.fsck_must_fail) {
      EXPECT_TRUE(f.code == 1 || f.code == 3) << "fsck passed a damaged store\n" << f.Describe();
      EXPECT_NE(f.out.find("PROBLEM") == std::string::npos ? f.err : f.out, "") << f.Describe();
    }

    CmdResult m = TryMount();
    ASSERT_TRUE(m.code == 0 || m.code == 1) << m.Describe() << DaemonLog();
    if (m.code == 1) {
      refused++;
      EXPECT_NE(m.err.find("metadata"), std::string::npos) << m.Describe();
      EXPECT_FALSE(IsMounted(mnt()));
      continue;
    }
    served++;
    std::set<std::string> eio = ReadAll();
    eio_reads += static_cast<int>(eio.size());
    ASSERT_NO_FATAL_FAILURE(ListingsCompleteOrEio());
    if (!eio.empty()) ExpectDegraded("I/O error");
    ASSERT_NO_FATAL_FAILURE(Unmount());
  }
  std::cout << cases.size() << " metadata damages: mount refused " << refused << ", served "
            << served << " (" << eio_reads << " file reads gave EIO)" << std::endl;
}

}  // namespace
}  // namespace snapfs::mounttest
