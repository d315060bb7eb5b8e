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
// runs 1,000), SNAPFS_TORTURE_SEED the seed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
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
        EXPECT_EQ(Restore(dir, dir, content_, InPlace, &n), "")
            << "completed checkpoint " << dir << " after kill " << kills_;
        snapshots_verified_++;
      }
    }
    for (const auto& name : savepoints_) {
      EXPECT_EQ(Restore(Path(name), Path(name), content_, InPlace), "")
          << "completed savepoint " << name << " after kill " << kills_;
      snapshots_verified_++;
    }
  }

  // The jobs restart: a checkpoint the kill interrupted is abandoned (its files become
  // orphans), a subsume the kill interrupted is finished, and every few rounds the oldest
  // job is retired (its folder deleted through the mount) and a new one starts, every
  // second time restored in CLAIM mode from the retired job's latest checkpoint.
  void Recover() {
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
           prunes_ = 0, files_verified_ = 0, snapshots_verified_ = 0, orphan_runs_ = 0,
           orphans_deleted_ = 0, claims_ = 0, unacked_completed_ = 0;
};

TEST_F(Torture, KillNineUnderFlinkLoadLosesNothingAcknowledged) {
  const uint64_t kills = EnvOr("SNAPFS_TORTURE_KILLS", 20);
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
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
    CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
    ASSERT_EQ(fsck.code, 0) << "fsck --verify after kill " << kills_ << ":\n" << fsck.Describe();
    // The killed daemon's pid stays in store/lock until it is reaped (see KillDaemon9).
    int pid = DaemonPid();
    if (pid > 0) WaitPidVanished(pid, std::chrono::seconds(20));
    ASSERT_NO_FATAL_FAILURE(Mount());
    killing_ = false;
    Verify();
    if (HasFailure()) {
      std::cout << "torture: the writer's last steps before kill " << kills_ << ":\n";
      for (const auto& h : history_) std::cout << "  " << h << "\n";
      break;
    }
    Note("--- kill " + std::to_string(kills_) + " verified");
    Recover();
    if (HasFailure()) break;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "torture: " << kills_ << " kills in " << static_cast<int>(secs) << " s, " << steps_
            << " writer steps, " << checkpoints_ << " checkpoints and " << savepoints_made_
            << " savepoints completed, " << gcs_ << " gc, " << rms_ << " rm, " << prunes_
            << " prune, " << orphan_runs_ << " orphans --delete (" << orphans_deleted_
            << " files of interrupted checkpoints deleted), " << claims_
            << " jobs restored in CLAIM mode, " << unacked_completed_
            << " interrupted checkpoints found complete; verified " << files_verified_
            << " fsync'd files and "
            << snapshots_verified_ << " completed checkpoints and savepoints (byte for byte); seed "
            << seed << std::endl;
  std::cout << "torture: the kills landed in:";
  for (const auto& [kind, n] : killed_in_) std::cout << " " << kind << " " << n << ",";
  std::cout << std::endl;
}

}  // namespace
}  // namespace snapfs::mounttest
