// kill -9 torture (DESIGN.md section 3, invariants 2-5, through a real mount): a Flink-like
// writer (several jobs, chk-N folders, shared/ files, `_metadata` by temp file + rename,
// retention subsuming old checkpoints, sometimes racing the shared-file deletes ahead;
// savepoints, whose `_metadata` is created in place and committed by its close; a job
// restored from another's retained checkpoint in CLAIM mode) plus `snapfs gc --max-unused
// 0`, `snapfs rm`, `snapfs prune --keep-last` and `snapfs orphans --older-than 0 --delete`
// through the daemon, while the daemon is SIGKILLed at a random moment. After each kill: the dead
// mount is cleared (fusermount3 -u -z), `snapfs fsck --verify` of the unmounted store must
// be clean, the store is mounted again, and every file whose fsync returned and every
// checkpoint whose `_metadata` rename returned (savepoint: whose close returned) must read
// back byte for byte (the writer records them only after the call returned). Then the
// jobs restart as Flink's do: from their last completed checkpoint, leaving the files of
// the interrupted one as orphans (no longer expected: orphans --delete may remove them).
//
// SNAPFS_TORTURE_KILLS=N sets the number of kills (default 20; scripts/torture.sh --long
// runs 1,000), SNAPFS_TORTURE_SEED the seed. LazyFsCut (at the end) runs the same with the
// store's meta/ and packs/ on LazyFS, whose unsynced data is dropped after each kill: a
// power cut through the mount (by hand, scripts/lazyfs_cut.sh).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/flink_sim.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoull(v) : dflt;
}

constexpr size_t kKeep = 3;  // checkpoints each job retains

class Torture : public MountFixture {
 protected:
  struct Job {
    std::unique_ptr<FlinkJob> flink;
    // Folders of the checkpoints whose marker rename returned, not dropped.
    std::set<std::string> expected;
    std::optional<std::string> dropping;  // the folder being subsumed when the kill came
    std::vector<std::string> dropping_files;
    bool interrupted = false;  // a checkpoint failed: restart from the last completed one
  };

  void NewJob() {
    auto job = std::make_unique<Job>();
    job->flink =
        std::make_unique<FlinkJob>(mnt(), "job-" + std::to_string(jobs_made_++), rng_(), &content_);
    std::string e = job->flink->Init();
    ASSERT_EQ(e, "") << e;
    jobs_.push_back(std::move(job));
  }

  // Takes `old` out of what must survive: its marker, private files and the shared files
  // no other retained checkpoint (nor the job's state) uses. Call before deleting it.
  void ForgetCheckpoint(Job& job, const FlinkJob::Checkpoint& old,
                        std::vector<std::string>* paths) {
    FlinkJob& f = *job.flink;
    job.expected.erase(f.CpDir(old));
    paths->push_back(f.CpPath(old, "_metadata"));
    for (const auto& p : old.priv) paths->push_back(f.CpPath(old, p));
    for (const auto& s : f.Unreferenced(old)) paths->push_back(s);
    for (const auto& p : *paths) content_.erase(p);
    std::string note = "forget " + f.CpDir(old) + ":";
    for (const auto& p : *paths) note += " " + p.substr(p.rfind('/') + 1);
    Note(note);
  }

  // What the writer did lately, printed when a check fails.
  void Note(const std::string& what) {
    history_.push_back(what);
    if (history_.size() > 300) history_.pop_front();
  }

  // Nothing is expected any more of what is under `dir`.
  void ForgetFolder(const std::string& dir) {
    std::erase_if(content_, [&](const auto& kv) { return kv.first.starts_with(dir + "/"); });
  }

  // Fails the test unless the daemon was killed on purpose; false either way.
  bool Ok(bool ok, const std::string& what) {
    if (ok) return true;
    if (!killing_.load()) {
      ADD_FAILURE() << what << " failed with the daemon alive";
    } else {  // where the kill landed: "checkpoint", "snapfs gc", ...
      std::string kind = what.substr(0, what.find(':'));
      if (kind.starts_with("snapfs rm")) kind = "snapfs rm";
      killed_in_[kind]++;
    }
    return false;
  }

  // One writer step; false once something failed (the daemon is gone).
  bool Step(std::mt19937_64& rng) {
    Job& job = *jobs_[rng() % jobs_.size()];
    FlinkJob& f = *job.flink;
    uint64_t r = rng() % 100;
    if (r < 72 || f.retained().size() < 2) {
      std::string e =
          f.TakeCheckpoint(1 + static_cast<int>(rng() % 2), 4 * kKiB + rng() % (160 * kKiB),
                           static_cast<int>(rng() % 2), 1 + static_cast<int>(rng() % 2));
      if (!e.empty()) {
        job.interrupted = true;
        return Ok(false, "checkpoint: " + e);
      }
      job.expected.insert(f.CpDir(f.retained().back()));
      Note(f.CpDir(f.retained().back()) + " completed, " +
           std::to_string(f.retained().back().refs.size()) + " shared");
      checkpoints_++;
      while (f.retained().size() > kKeep) {
        bool race = rng() % 4 == 0;
        job.dropping = f.CpDir(f.retained().front());
        job.dropping_files.clear();
        ForgetCheckpoint(job, f.retained().front(), &job.dropping_files);
        std::string e2 = f.Subsume(race);
        if (!Ok(e2.empty(), "subsume: " + e2)) return false;
        job.dropping.reset();
      }
      return true;
    }
    if (r < 77) {  // a savepoint: flat, its _metadata created in place (committed at close)
      std::string err;
      std::string name =
          f.TakeSavepoint(1 + static_cast<int>(rng() % 3), 4 * kKiB + rng() % (96 * kKiB), &err);
      if (!err.empty()) {
        failed_savepoints_.push_back(name);
        return Ok(false, "savepoint: " + err);
      }
      savepoints_.push_back(name);
      savepoints_made_++;
      if (savepoints_.size() > 2) {
        std::string old = savepoints_.front();
        savepoints_.erase(savepoints_.begin());
        ForgetFolder(Path(old));
        CmdResult rm = Snapfs({"rm", Path(old)}, 60);
        return Ok(rm.code == 0, "snapfs rm " + old + ": " + rm.Describe());
      }
      return true;
    }
    if (r < 82) {
      gcs_++;
      CmdResult gc = Snapfs({"gc", mnt(), "--max-unused", "0"}, 60);
      return Ok(gc.code == 0, "snapfs gc: " + gc.Describe());
    }
    // prune only sees the job's own folder, so a claimed checkpoint goes by rm
    if (r < 92 || !f.retained().front().dir.empty()) {
      rms_++;
      FlinkJob::Checkpoint old = f.retained().front();
      std::vector<std::string> paths;
      ForgetCheckpoint(job, old, &paths);
      f.retained().pop_front();
      CmdResult rm = Snapfs({"rm", f.CpDir(old)}, 60);
      return Ok(rm.code == 0, "snapfs rm: " + rm.Describe());
    }
    if (r < 95) {  // what no snapshot references: only the orphans of interrupted checkpoints
      orphan_runs_++;
      CmdResult o = Snapfs({"orphans", mnt(), "--older-than", "0", "--delete"}, 60);
      Note("orphans (exit " + std::to_string(o.code) + "):\n" + o.out + o.err);
      if (!Ok(o.code == 0, "snapfs orphans: " + o.Describe())) return false;
      std::erase_if(orphans_, [&](const std::string& p) {
        struct stat st;
        bool gone = ::stat(p.c_str(), &st) != 0 && errno == ENOENT;
        orphans_deleted_ += gone;
        return gone;
      });
      return true;
    }
    prunes_++;
    while (f.retained().size() > 1) {
      std::vector<std::string> paths;
      ForgetCheckpoint(job, f.retained().front(), &paths);
      f.retained().pop_front();
    }
    CmdResult pr = Snapfs({"prune", f.Dir(), "--keep-last", "1"}, 60);
    return Ok(pr.code == 0, "snapfs prune: " + pr.Describe());
  }

  // After a remount: every acknowledged file and checkpoint is there, byte for byte.
  void Verify() {
    for (const auto& [path, bytes] : content_) {
      if (path.starts_with(kInlineKey)) continue;
      int err = 0;
      std::string got = ReadFile(path, &err);
      EXPECT_EQ(err, 0) << "fsync'd file " << path << " lost after kill " << kills_ << ": "
                        << ErrnoName(err);
      EXPECT_TRUE(err != 0 || got == bytes)
          << "fsync'd file " << path << " differs after kill " << kills_ << ": " << got.size()
          << " bytes, expected " << bytes.size();
      files_verified_++;
    }
    for (const auto& job : jobs_) {
      for (const auto& dir : job->expected) {
        size_t n = 0;
        std::string e = Restore(dir, dir, content_, InPlace, &n);
        EXPECT_EQ(e, "") << "completed checkpoint " << dir << " after kill " << kills_;
        if (!e.empty()) snapshots_lost_++;
        snapshots_verified_++;
      }
    }
    for (const auto& name : savepoints_) {
      std::string e = Restore(Path(name), Path(name), content_, InPlace);
      EXPECT_EQ(e, "") << "completed savepoint " << name << " after kill " << kills_;
      if (!e.empty()) snapshots_lost_++;
      snapshots_verified_++;
    }
    CheckListed();
  }

  // Every acknowledged checkpoint and savepoint is a snapshot (`snapfs ls`).
  void CheckListed() {
    nlohmann::json ls = SnapfsJsonObject({"ls", mnt()});
    std::set<std::string> listed;
    for (const auto& snap : ls.value("snapshots", nlohmann::json::array())) {
      std::string p = snap.value("path", "");
      while (p.starts_with("/")) p.erase(0, 1);
      listed.insert(p);
    }
    auto expect = [&](const std::string& abs) {
      std::string rel = abs.substr(mnt().size() + 1);
      if (listed.contains(rel)) return;
      ADD_FAILURE() << "completed " << rel << " is not in `snapfs ls` after kill " << kills_;
      snapshots_lost_++;
    };
    for (const auto& job : jobs_) {
      for (const auto& dir : job->expected) expect(dir);  // absolute (CpDir)
    }
    for (const auto& name : savepoints_) expect(Path(name));
  }

  // The jobs restart: a checkpoint the kill interrupted is abandoned (its files become
  // orphans), a subsume the kill interrupted is finished, and every few rounds the oldest
  // job is retired (its folder deleted through the mount) and a new one starts, every
  // second time restored in CLAIM mode from the retired job's latest checkpoint.
  void Recover() {
    // A restarting Flink job makes its folders again (FileSystem.mkdirs, parents too): a
    // power cut takes the folders made since the metadata log's last sync (a mkdir is not
    // durable before an fsync; nothing in them was acknowledged, or Verify would have
    // failed). A kill -9 never does.
    for (auto& job : jobs_) {
      for (const char* d : {"", "/shared", "/taskowned"}) {
        std::string dir = job->flink->Dir() + d;
        if (::mkdir(dir.c_str(), 0755) == 0) {
          folders_remade_++;
        } else {
          EXPECT_EQ(errno, EEXIST) << "mkdir " << dir << ": " << ErrnoName(errno);
        }
      }
    }
    for (auto& job : jobs_) {
      FlinkJob& f = *job->flink;
      if (job->interrupted) {
        std::vector<std::string> gone = f.Restart();
        for (const auto& p : gone) {
          if (content_.erase(p)) orphans_.insert(p);
          Note("restart of " + f.job() + " abandons " + p);
        }
        job->interrupted = false;
        // The rename of its _metadata may have gone through unacknowledged: a snapshot
        // the job does not know of, newer than its last checkpoint, which `prune
        // --keep-last` would keep instead of the job's own (seen: a checkpoint the writer
        // relied on pruned away). Flink discards a checkpoint it did not see complete: the
        // folder goes recursively; its shared files stay, as orphans.
        struct stat st;
        if (!gone.empty() && ::stat(gone.back().c_str(), &st) == 0) {
          std::string dir = gone.back().substr(0, gone.back().rfind('/'));
          Note("the interrupted " + dir + " had completed: rm -rf");
          std::error_code ec;
          std::filesystem::remove_all(dir, ec);
          EXPECT_FALSE(ec) << "rm -rf " << dir << ": " << ec.message();
          unacked_completed_++;
        }
      }
      if (!job->dropping) continue;
      if (!f.retained().empty() && f.CpDir(f.retained().front()) == *job->dropping) {
        f.retained().pop_front();
      }
      std::error_code ec;
      for (const auto& p : job->dropping_files) std::filesystem::remove(p, ec);
      std::filesystem::remove_all(*job->dropping, ec);
      job->dropping.reset();
    }
    for (const auto& name : failed_savepoints_) {  // never completed: deleted
      ForgetFolder(Path(name));
      std::error_code ec;
      std::filesystem::remove_all(Path(name), ec);
      EXPECT_FALSE(ec) << "rm -rf " << name << ": " << ec.message();
    }
    failed_savepoints_.clear();
    if (kills_ % 6 == 5) {
      std::unique_ptr<Job> old = std::move(jobs_.front());
      jobs_.erase(jobs_.begin());
      if ((kills_ / 6) % 2 == 0 && !old->flink->retained().empty()) {
        ASSERT_NO_FATAL_FAILURE(ClaimFrom(*old));
      } else {
        std::vector<std::string> dirs = old->flink->claimed();
        dirs.push_back(old->flink->Dir());
        for (const auto& dir : dirs) {
          ForgetFolder(dir);
          std::error_code ec;
          std::filesystem::remove_all(dir, ec);
          EXPECT_FALSE(ec) << "rm -rf " << dir << ": " << ec.message();
        }
        ASSERT_NO_FATAL_FAILURE(NewJob());
      }
    }
  }

  // What a power cut adds to a kill: called once the killed daemon is gone and its mount
  // cleared, before anything opens the store again (LazyFsCut drops the unsynced data).
  virtual void AfterKill() {}

  // `kills` rounds of: the writer runs, the daemon is SIGKILLed at a random moment, the
  // store is checked unmounted (fsck --verify), mounted again and verified; `what` names a
  // kill in messages and the summary ("kill", "cut").
  void RunKills(uint64_t kills, uint64_t seed, const std::string& what) {
    rng_.seed(seed);
    for (int i = 0; i < 3; i++) ASSERT_NO_FATAL_FAILURE(NewJob());
    auto start = std::chrono::steady_clock::now();
    for (kills_ = 0; kills_ < kills; kills_++) {
      killing_ = false;
      std::mt19937_64 wrng(rng_());
      std::atomic<bool> stop{false};
      std::thread writer([&] {
        while (!stop.load()) {
          steps_++;
          if (!Step(wrng)) return;
        }
        killed_in_["between steps"]++;  // the kill came after the writer's last step
      });
      // A random moment: mostly within the first checkpoints, sometimes later.
      std::this_thread::sleep_for(
          std::chrono::milliseconds(rng_() % 4 == 0 ? 300 + rng_() % 900 : 20 + rng_() % 300));
      killing_ = true;
      stop = true;
      KillDaemonLeaveDeadMount();
      writer.join();  // its calls fail with ENOTCONN now, before the lazy unmount below
      if (HasFatalFailure()) return;
      CmdResult fu = Run({"fusermount3", "-u", "-z", mnt()}, 30);
      ASSERT_EQ(fu.code, 0) << fu.Describe();
      ASSERT_FALSE(IsMounted(mnt()));
      ASSERT_NO_FATAL_FAILURE(AfterKill());
      CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
      ASSERT_EQ(fsck.code, 0) << "fsck --verify after " << what << " " << kills_ << ":\n"
                              << fsck.Describe();
      // The killed daemon's pid stays in store/lock until it is reaped (see KillDaemon9).
      int pid = DaemonPid();
      if (pid > 0) WaitPidVanished(pid, std::chrono::seconds(20));
      ASSERT_NO_FATAL_FAILURE(Mount());
      killing_ = false;
      Verify();
      if (HasFailure()) {
        std::cout << "torture: the writer's last steps before " << what << " " << kills_
                  << ":\n";
        for (const auto& h : history_) std::cout << "  " << h << "\n";
        break;
      }
      Note("--- " + what + " " + std::to_string(kills_) + " verified");
      Recover();
      if (HasFailure()) break;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "torture: " << kills_ << " " << what << "s in " << static_cast<int>(secs)
              << " s, " << steps_ << " writer steps, " << checkpoints_ << " checkpoints and "
              << savepoints_made_ << " savepoints completed, " << gcs_ << " gc, " << rms_
              << " rm, " << prunes_ << " prune, " << orphan_runs_ << " orphans --delete ("
              << orphans_deleted_ << " files of interrupted checkpoints deleted), " << claims_
              << " jobs restored in CLAIM mode, " << unacked_completed_
              << " interrupted checkpoints found complete; verified " << files_verified_
              << " fsync'd files and " << snapshots_verified_
              << " completed checkpoints and savepoints (byte for byte, and in snapfs ls), "
              << snapshots_lost_ << " lost; " << folders_remade_
              << " unacknowledged job folders made again; seed " << seed << std::endl;
    std::cout << "torture: the " << what << "s landed in:";
    for (const auto& [kind, n] : killed_in_) std::cout << " " << kind << " " << n << ",";
    std::cout << std::endl;
  }

  // A new job restored in CLAIM mode from `old`'s latest retained checkpoint (old is
  // stopped). Its other retained checkpoints are removed with `snapfs rm` first (the user
  // cleaning up); the claimed one then belongs to the new job, which subsumes it in time
  // and deletes old's shared files once its own state no longer uses them. The new job's
  // checkpoints name those files by absolute path in old's folder.
  void ClaimFrom(Job& old) {
    FlinkJob& of = *old.flink;
    while (of.retained().size() > 1) {
      std::vector<std::string> paths;
      ForgetCheckpoint(old, of.retained().front(), &paths);
      FlinkJob::Checkpoint gone = of.retained().front();
      of.retained().pop_front();
      CmdResult rm = Snapfs({"rm", of.CpDir(gone)}, 60);
      ASSERT_EQ(rm.code, 0) << rm.Describe();
    }
    ASSERT_NO_FATAL_FAILURE(NewJob());
    Job& job = *jobs_.back();
    const FlinkJob::Checkpoint& cp = of.retained().back();
    std::vector<std::string> owners = of.claimed();
    owners.push_back(of.Dir());
    job.flink->Claim(cp, of.CpDir(cp), owners);
    job.expected.insert(of.CpDir(cp));
    claims_++;
  }

  std::mt19937_64 rng_;
  std::deque<std::string> history_;
  // Acknowledged files (path -> bytes): FlinkJob records them once their fsync returned;
  // a path deleted (or being deleted) on purpose leaves.
  ContentMap content_;
  std::vector<std::unique_ptr<Job>> jobs_;
  std::vector<std::string> savepoints_;         // completed (close of _metadata returned)
  std::vector<std::string> failed_savepoints_;  // interrupted by a kill
  // Files of interrupted checkpoints, no longer expected, not yet seen deleted by orphans.
  std::set<std::string> orphans_;
  std::atomic<bool> killing_{false};
  std::map<std::string, uint64_t> killed_in_;  // what the writer was doing at each kill
  int jobs_made_ = 0;
  uint64_t kills_ = 0, steps_ = 0, checkpoints_ = 0, savepoints_made_ = 0, gcs_ = 0, rms_ = 0,
           prunes_ = 0, files_verified_ = 0, snapshots_verified_ = 0, snapshots_lost_ = 0,
           folders_remade_ = 0, orphan_runs_ = 0, orphans_deleted_ = 0, claims_ = 0,
           unacked_completed_ = 0;
};

TEST_F(Torture, KillNineUnderFlinkLoadLosesNothingAcknowledged) {
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
  RunKills(EnvOr("SNAPFS_TORTURE_KILLS", 20), seed, "kill");
}

// The power cut through the mount, by hand (scripts/lazyfs_cut.sh, docs/reliability.md):
// the store's meta/ and packs/ live on a LazyFS mount (github.com/dsrhaslab/lazyfs), a FUSE
// file system that keeps written data in its own page cache until the file is fsync'd and
// drops whatever is unsynced on `lazyfs::clear-cache`. Each round SIGKILLs the daemon and
// clears that cache, so every byte snapfs (RocksDB, the pack writer) wrote to meta/ or
// packs/ without an fsync is gone, as in a power cut; then the checks of Torture. The store
// folder itself (snapfs.conf, lock, control.sock, logs) stays on the real disk: LazyFS has
// no Unix sockets. Skipped unless SNAPFS_LAZYFS_DIR (a folder on the LazyFS mount),
// SNAPFS_LAZYFS_FIFO (its faults FIFO) and SNAPFS_LAZYFS_LOG (its log file) are set.
// SNAPFS_LAZYFS_CUTS=N cuts (default 20), SNAPFS_TORTURE_SEED the seed.
class LazyFsCut : public Torture {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("SNAPFS_LAZYFS_DIR");
    const char* fifo = std::getenv("SNAPFS_LAZYFS_FIFO");
    const char* log = std::getenv("SNAPFS_LAZYFS_LOG");
    if (!dir || !*dir || !fifo || !*fifo || !log || !*log) {
      GTEST_SKIP() << "needs a LazyFS mount: run scripts/lazyfs_cut.sh (by hand)";
    }
    lazy_root_ = dir;
    fifo_ = fifo;
    log_ = log;
    Torture::SetUp();
  }

  void TearDown() override {
    Torture::TearDown();
    std::error_code ec;
    if (!lazy_dir_.empty()) std::filesystem::remove_all(lazy_dir_, ec);
  }

  // meta/ and packs/ move to LazyFS (copied, every file fsync'd there so that the first
  // cut keeps what init wrote) and are replaced by symbolic links.
  void AfterInit() override {
    namespace fs = std::filesystem;
    lazy_dir_ = lazy_root_ + "/" + fs::path(tmp()).filename().string();
    ASSERT_TRUE(fs::create_directory(lazy_dir_)) << lazy_dir_;
    for (const char* sub : {"meta", "packs"}) {
      std::string from = store() + "/" + sub, to = lazy_dir_ + "/" + sub;
      std::error_code ec;
      fs::copy(from, to, fs::copy_options::recursive, ec);
      ASSERT_FALSE(ec) << "copy " << from << " to " << to << ": " << ec.message();
      for (const auto& e : fs::recursive_directory_iterator(to)) {
        if (!e.is_regular_file()) continue;
        int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0) << e.path() << ": " << ErrnoName(errno);
        EXPECT_EQ(::fsync(fd), 0) << e.path() << ": " << ErrnoName(errno);
        ::close(fd);
      }
      fs::remove_all(from, ec);
      ASSERT_FALSE(ec) << ec.message();
      fs::create_directory_symlink(to, from, ec);
      ASSERT_FALSE(ec) << ec.message();
    }
  }

  // What the cut drops: LazyFS's report of the unsynced bytes first (what the cut loses:
  // counted per kind of file), then the cache cleared.
  void AfterKill() override {
    std::vector<std::string> report;
    ASSERT_NO_FATAL_FAILURE(Command("lazyfs::unsynced-data-report",
                                    {"all data blocks are synced", "bytes un-fsynced"}, &report));
    for (const auto& line : report) {
      if (size_t at = line.find("total number of bytes un-fsynced: "); at != std::string::npos) {
        uint64_t bytes = std::stoull(line.substr(at + 34));
        dropped_bytes_ += bytes;
        cuts_dropping_ += bytes > 0;
      }
      if (size_t at = line.find("=> file: '"); at != std::string::npos) {
        std::string file = line.substr(at + 10);
        file = file.substr(0, file.find('\''));
        std::string kind = file.find("/packs/") != std::string::npos ? "pack"
                           : file.ends_with(".log")                   ? "RocksDB log"
                           : file.find("/MANIFEST-") != std::string::npos ? "RocksDB manifest"
                           : file.ends_with(".sst")                   ? "RocksDB table"
                           : file.ends_with("/LOG")                   ? "RocksDB info LOG"
                           : file.find("/OPTIONS-") != std::string::npos ? "RocksDB options"
                                                                      : "";
        if (kind.empty()) {  // named by its base name without digits ("MANIFEST-.dbtmp")
          kind = file.substr(file.rfind('/') + 1);
          std::erase_if(kind, [](char c) { return c >= '0' && c <= '9'; });
        }
        dropped_files_[kind]++;
      }
    }
    ASSERT_NO_FATAL_FAILURE(Command("lazyfs::clear-cache", {"cache is cleared."}, nullptr));
  }

  // Writes `cmd` to LazyFS's FIFO and waits until its log, past where it was, has a line
  // holding one of `done`; the new lines go to `lines`. One command at a time: LazyFS reads
  // its FIFO in 100-byte pieces, so two commands sent together would be read as one.
  void Command(const std::string& cmd, const std::vector<std::string>& done,
               std::vector<std::string>* lines) {
    std::error_code ec;
    uintmax_t from = std::filesystem::file_size(log_, ec);
    if (ec) from = 0;
    int fd = ::open(fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // LazyFS holds it open
    ASSERT_GE(fd, 0) << "open " << fifo_ << " (is LazyFS running?): " << ErrnoName(errno);
    const std::string line = cmd + "\n";
    ssize_t n = ::write(fd, line.data(), line.size());
    ::close(fd);
    ASSERT_EQ(n, static_cast<ssize_t>(line.size())) << "write " << fifo_;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      std::ifstream f(log_);
      f.seekg(static_cast<std::streamoff>(from));
      std::vector<std::string> got;
      bool finished = false;
      for (std::string l; std::getline(f, l);) {
        got.push_back(l);
        for (const auto& d : done) finished |= l.find(d) != std::string::npos;
      }
      if (finished) {
        if (lines) *lines = std::move(got);
        return;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "LazyFS did not finish " << cmd << " within 60 s (" << log_ << ")";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::string lazy_root_, fifo_, log_, lazy_dir_;
  uint64_t dropped_bytes_ = 0, cuts_dropping_ = 0;
  std::map<std::string, uint64_t> dropped_files_;  // unsynced files at a cut, by kind
};

TEST_F(LazyFsCut, PowerCutsThroughTheMountLoseNothingAcknowledged) {
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
  RunKills(EnvOr("SNAPFS_LAZYFS_CUTS", 20), seed, "cut");
  std::cout << "lazyfs: " << cuts_dropping_ << " cuts dropped unsynced data, " << dropped_bytes_
            << " bytes in all, in files:";
  for (const auto& [kind, n] : dropped_files_) std::cout << " " << kind << " " << n << ",";
  std::cout << std::endl;
}

}  // namespace
}  // namespace snapfs::mounttest
