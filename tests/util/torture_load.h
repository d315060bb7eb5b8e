// The kill -9 torture's load and checks (tests/torture_test.cc, tests/torture_shared_test.cc):
// a Flink-like writer on one mount (several jobs, chk-N folders, shared/ files, `_metadata`
// by temp file + rename, retention subsuming old checkpoints, sometimes racing the
// shared-file deletes ahead; savepoints, whose `_metadata` is created in place and
// committed by its close; a job restored from another's retained checkpoint in CLAIM mode)
// plus `snapfs gc --max-unused 0`, `snapfs rm`, `snapfs prune --keep-last` and `snapfs
// orphans --older-than 0 --delete` on that mount. It remembers what was acknowledged: every
// file whose fsync returned and every checkpoint whose `_metadata` rename returned
// (savepoint: whose close returned), recorded only after the call returned; Verify reads
// all of it back byte for byte, through this mount or another mount of the same store.
//
// The fixture owns the daemons: it runs the writer (Run) on a thread, kills daemons, sets
// killing() around a kill of this load's daemon (so that the writer's failures are counted,
// not reported), checks the store, mounts again, and calls Verify and Recover.
//
// Thread-safety: Run on one thread at a time; the rest (but killing()) only while Run is
// not running.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/util/flink_sim.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {

// A number from the environment (SNAPFS_TORTURE_KILLS, ...), or `dflt`.
inline uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoull(v) : dflt;
}

class TortureLoad {
 public:
  static constexpr size_t kKeep = 3;  // checkpoints each job retains

  // The writer works on `mnt`; its jobs are named `prefix`job-N (two loads on one store
  // keep apart by their prefixes).
  TortureLoad(std::string mnt, std::string prefix, uint64_t seed)
      : mnt_(std::move(mnt)), prefix_(std::move(prefix)), rng_(seed) {}

  // The first jobs; a fatal failure if their folders cannot be made.
  void Start() {
    for (int i = 0; i < 3; i++) ASSERT_NO_FATAL_FAILURE(NewJob());
  }

  const std::string& mnt() const { return mnt_; }
  // `snapfs orphans --older-than 0 --delete` on the job's folder instead of the whole
  // mount: with another writer on the store (another host's), the files of its checkpoint
  // in progress are orphans too until its _metadata commits, and --older-than 0 says take
  // them.
  void set_orphans_per_job(bool on) { orphans_per_job_ = on; }
  std::atomic<bool>& killing() { return killing_; }
  std::mt19937_64& rng() { return rng_; }

  // Writer steps until `stop` (then it finished its step: "between steps") or until a
  // step failed (its daemon is gone, or a failure was reported).
  void Run(const std::atomic<bool>& stop, uint64_t seed) {
    std::mt19937_64 wrng(seed);
    while (!stop.load()) {
      steps_++;
      if (!Step(wrng)) return;
    }
    if (killing_.load()) killed_in_["between steps"]++;  // the kill came after the last step
  }

  // Every acknowledged file and checkpoint is there, byte for byte, read through `via` (this
  // load's mount or another mount of the store), and listed by `snapfs ls via`. `round`
  // names the kill in messages.
  void Verify(const std::string& via, uint64_t round) {
    auto at = [&](const std::string& p) { return via + p.substr(mnt_.size()); };
    auto resolve = [&](const std::string& p) { return std::make_pair(at(p), p); };
    for (const auto& [path, bytes] : content_) {
      if (path.starts_with(kInlineKey)) continue;
      int err = 0;
      std::string got = ReadFile(at(path), &err);
      EXPECT_EQ(err, 0) << "fsync'd file " << at(path) << " lost after kill " << round << ": "
                        << ErrnoName(err);
      EXPECT_TRUE(err != 0 || got == bytes)
          << "fsync'd file " << at(path) << " differs after kill " << round << ": " << got.size()
          << " bytes, expected " << bytes.size();
      files_verified_++;
    }
    auto restore = [&](const std::string& dir, const char* what) {
      size_t n = 0;
      std::string e = Restore(at(dir), dir, content_, resolve, &n);
      EXPECT_EQ(e, "") << "completed " << what << " " << at(dir) << " after kill " << round;
      if (!e.empty()) snapshots_lost_++;
      snapshots_verified_++;
    };
    for (const auto& job : jobs_) {
      for (const auto& dir : job->expected) restore(dir, "checkpoint");
    }
    for (const auto& name : savepoints_) restore(Path(name), "savepoint");
    CheckListed(via, round);
  }

  // The jobs restart: a checkpoint the kill interrupted is abandoned (its files become
  // orphans), a subsume the kill interrupted is finished, and every few rounds the oldest
  // job is retired (its folder deleted through the mount) and a new one starts, every
  // second time restored in CLAIM mode from the retired job's latest checkpoint.
  void Recover(uint64_t round) {
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
    for (auto& job : jobs_) RestartJob(*job);
    for (const auto& name : failed_savepoints_) {  // never completed: deleted
      ForgetFolder(Path(name));
      std::error_code ec;
      std::filesystem::remove_all(Path(name), ec);
      EXPECT_FALSE(ec) << "rm -rf " << name << ": " << ec.message();
    }
    failed_savepoints_.clear();
    if (round % 6 == 5) {
      std::unique_ptr<Job> old = std::move(jobs_.front());
      jobs_.erase(jobs_.begin());
      if ((round / 6) % 2 == 0 && !old->flink->retained().empty()) {
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

  // What the writer did lately, printed when a check fails.
  void PrintHistory(const std::string& when) const {
    std::cout << "torture: the writer's last steps on " << mnt_ << " before " << when << ":\n";
    for (const auto& h : history_) std::cout << "  " << h << "\n";
  }
  void Note(const std::string& what) {
    history_.push_back(what);
    if (history_.size() > 300) history_.pop_front();
  }

  // The counts of the summary line: what the writer did and what Verify checked.
  std::string Summary() const {
    std::ostringstream s;
    s << steps_ << " writer steps, " << checkpoints_ << " checkpoints and " << savepoints_made_
      << " savepoints completed, " << gcs_ << " gc (" << gcs_busy_ << " found GC running), " << rms_
      << " rm, " << prunes_ << " prune, " << orphan_runs_ << " orphans --delete ("
      << orphans_deleted_ << " files of interrupted checkpoints deleted), " << claims_
      << " jobs restored in CLAIM mode, " << unacked_completed_
      << " interrupted checkpoints found complete; verified " << files_verified_
      << " fsync'd files and " << snapshots_verified_
      << " completed checkpoints and savepoints (byte for byte, and in snapfs ls), "
      << snapshots_lost_ << " lost; " << folders_remade_
      << " unacknowledged job folders made again; the kills landed in:";
    for (const auto& [kind, n] : killed_in_) s << " " << kind << " " << n << ",";
    return s.str();
  }

 private:
  struct Job {
    std::unique_ptr<FlinkJob> flink;
    // Folders of the checkpoints whose marker rename returned, not dropped.
    std::set<std::string> expected;
    std::optional<std::string> dropping;  // the folder being subsumed when the kill came
    std::vector<std::string> dropping_files;
    bool interrupted = false;  // a checkpoint failed: restart from the last completed one
  };

  static CmdResult Snapfs(std::vector<std::string> args, int timeout_s = 60) {
    args.insert(args.begin(), SNAPFS_BINARY);
    return RunCmd(args, timeout_s);
  }
  std::string Path(const std::string& rel) const { return mnt_ + "/" + rel; }

  void NewJob() {
    auto job = std::make_unique<Job>();
    job->flink = std::make_unique<FlinkJob>(mnt_, prefix_ + "job-" + std::to_string(jobs_made_++),
                                            rng_(), &content_);
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

  // Nothing is expected any more of what is under `dir`.
  void ForgetFolder(const std::string& dir) {
    std::erase_if(content_, [&](const auto& kv) { return kv.first.starts_with(dir + "/"); });
  }

  // Fails the test unless this load's daemon was killed on purpose; false either way.
  bool Ok(bool ok, const std::string& what) {
    if (ok) return true;
    if (!killing_.load()) {
      ADD_FAILURE() << what << " failed on " << mnt_ << " with its daemon alive";
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
        CmdResult rm = Snapfs({"rm", Path(old)});
        return Ok(rm.code == 0, "snapfs rm " + old + ": " + rm.Describe());
      }
      return true;
    }
    if (r < 82) {
      gcs_++;
      CmdResult gc = Snapfs({"gc", mnt_, "--max-unused", "0"});
      // On a shared store another session (a daemon's own GC, the other host's `snapfs
      // gc`) may hold the store's GC lease: it refuses, as it should.
      bool busy = gc.code != 0 && gc.err.find("GC is running") != std::string::npos;
      gcs_busy_ += busy;
      return Ok(gc.code == 0 || busy, "snapfs gc: " + gc.Describe());
    }
    // prune only sees the job's own folder, so a claimed checkpoint goes by rm
    if (r < 92 || !f.retained().front().dir.empty()) {
      rms_++;
      FlinkJob::Checkpoint old = f.retained().front();
      std::vector<std::string> paths;
      ForgetCheckpoint(job, old, &paths);
      f.retained().pop_front();
      CmdResult rm = Snapfs({"rm", f.CpDir(old)});
      return Ok(rm.code == 0, "snapfs rm: " + rm.Describe());
    }
    if (r < 95) {  // what no snapshot references: only the orphans of interrupted checkpoints
      orphan_runs_++;
      CmdResult o =
          Snapfs({"orphans", orphans_per_job_ ? f.Dir() : mnt_, "--older-than", "0", "--delete"});
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
    CmdResult pr = Snapfs({"prune", f.Dir(), "--keep-last", "1"});
    return Ok(pr.code == 0, "snapfs prune: " + pr.Describe());
  }

  // Every acknowledged checkpoint and savepoint is a snapshot (`snapfs ls via`).
  void CheckListed(const std::string& via, uint64_t round) {
    CmdResult r = Snapfs({"ls", via, "--json"}, 120);
    EXPECT_EQ(r.code, 0) << "snapfs ls " << via << ":\n" << r.Describe();
    auto ls = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (!ls.is_object()) ls = nlohmann::json::object();
    std::set<std::string> listed;
    for (const auto& snap : ls.value("snapshots", nlohmann::json::array())) {
      std::string p = snap.value("path", "");
      while (p.starts_with("/")) p.erase(0, 1);
      listed.insert(p);
    }
    auto expect = [&](const std::string& abs) {
      std::string rel = abs.substr(mnt_.size() + 1);
      if (listed.contains(rel)) return;
      ADD_FAILURE() << "completed " << rel << " is not in `snapfs ls " << via << "` after kill "
                    << round;
      snapshots_lost_++;
    };
    for (const auto& job : jobs_) {
      for (const auto& dir : job->expected) expect(dir);  // absolute (CpDir)
    }
    for (const auto& name : savepoints_) expect(Path(name));
  }

  // A job's restart after a kill: its interrupted checkpoint abandoned, its interrupted
  // subsume finished.
  void RestartJob(Job& job) {
    FlinkJob& f = *job.flink;
    if (job.interrupted) {
      std::vector<std::string> gone = f.Restart();
      for (const auto& p : gone) {
        if (content_.erase(p)) orphans_.insert(p);
        Note("restart of " + f.job() + " abandons " + p);
      }
      job.interrupted = false;
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
    if (!job.dropping) return;
    if (!f.retained().empty() && f.CpDir(f.retained().front()) == *job.dropping) {
      f.retained().pop_front();
    }
    std::error_code ec;
    for (const auto& p : job.dropping_files) std::filesystem::remove(p, ec);
    std::filesystem::remove_all(*job.dropping, ec);
    job.dropping.reset();
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
      CmdResult rm = Snapfs({"rm", of.CpDir(gone)});
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

  const std::string mnt_, prefix_;
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
  bool orphans_per_job_ = false;
  uint64_t steps_ = 0, checkpoints_ = 0, savepoints_made_ = 0, gcs_ = 0, gcs_busy_ = 0, rms_ = 0,
           prunes_ = 0, files_verified_ = 0, snapshots_verified_ = 0, snapshots_lost_ = 0,
           folders_remade_ = 0, orphan_runs_ = 0, orphans_deleted_ = 0, claims_ = 0,
           unacked_completed_ = 0;
};

}  // namespace snapfs::mounttest
