// Load through one mount (issue 13, "Load and scale"): 16 threads at once for ~30 s
// (SNAPFS_LOAD_SECONDS=N for a long run), while `snapfs gc --max-unused 0`, `snapfs ls`
// and `snapfs stats` run against the same daemon:
//   - 14 threads create, write (fresh and duplicate bytes), rewrite, extend, rename
//     (across folders and over their own files), delete, read, stat and list files in
//     four folders they all share, plus folders of their own made and removed in them;
//     they also read each other's files as they come and go;
//   - 2 threads are Flink jobs: checkpoints (chk-N with _metadata by rename), subsumed as
//     Flink does or removed with `snapfs rm`, each restored byte for byte once taken.
// Every file belongs to one thread, which keeps a model of its files (folder, bytes), so
// whatever order the filesystem gives the threads' calls, the model stays exact: every
// read of an own file must match it, every listing must hold the thread's own names.
// At the end the whole tree is compared with the models, fsck --verify of the unmounted
// store must be clean, and after a remount the tree is compared again.
#include <sys/stat.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "tests/util/flink_sim.h"

namespace snapfs::mounttest {
namespace {

constexpr int kThreads = 16, kJobs = 2, kShared = 4;

int LoadSeconds() {
  const char* s = ::getenv("SNAPFS_LOAD_SECONDS");
  return s && std::atoi(s) > 0 ? std::atoi(s) : 30;
}

struct Counts {
  std::atomic<uint64_t> create{0}, rewrite{0}, extend{0}, rename{0}, unlink{0}, read{0}, stat{0},
      list{0}, mkdir{0}, rmdir{0}, foreign_read{0}, checkpoints{0}, subsumes{0}, snap_rm{0},
      restores{0}, gc{0}, cli{0};
};

class MountLoad : public MountFixture {
 protected:
  std::string Shared(int i) const { return Path("s" + std::to_string(i)); }

  void Fail(const std::string& what) {
    std::lock_guard l(mu_);
    if (errors_.size() < 20) errors_.push_back(what);
    stop_ = true;
  }

  // One file-writing thread: its files are t<i>-<k> (maybe inside an own folder
  // t<i>-d<k>) in the shared folders.
  struct Model {
    std::map<std::string, std::string> files;  // path relative to the mount -> bytes
    std::set<std::string> dirs;                // own folders (relative), all empty or not
  };
  void Worker(int id, Model* m);
  void Job(int id);
  void Cli();
  // Compares the tree with thread `id`'s model: every own name where the model says,
  // with its bytes, and no other own name anywhere.
  void CheckModel(int id, const Model& m);

  Counts n_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> errors_;
  std::vector<std::unique_ptr<FlinkJob>> jobs_;
  std::vector<ContentMap> job_content_ = std::vector<ContentMap>(kJobs);
};

void MountLoad::Worker(int id, Model* m) {
  std::mt19937_64 rng(1000 + id);
  const std::string tag = "t" + std::to_string(id) + "-";
  uint64_t next = 0;
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  auto any_file = [&]() -> std::map<std::string, std::string>::iterator {
    if (m->files.empty()) return m->files.end();
    return std::next(m->files.begin(), static_cast<long>(pick(m->files.size())));
  };
  auto a_folder = [&]() {  // a shared folder, or one of the thread's own in one
    if (!m->dirs.empty() && rng() % 3 == 0) {
      return *std::next(m->dirs.begin(), static_cast<long>(pick(m->dirs.size())));
    }
    return "s" + std::to_string(pick(kShared));
  };
  auto bytes = [&]() {
    // A fifth are bytes the thread wrote before (dedup hits on every layer).
    if (!m->files.empty() && rng() % 5 == 0) return any_file()->second;
    return RandomBytes(rng, 1 + pick(96 * kKiB));
  };
  while (!stop_) {
    int op = static_cast<int>(rng() % 100);
    auto f = any_file();
    if (op < 25 || f == m->files.end()) {  // create
      std::string rel = a_folder() + "/" + tag + std::to_string(next++);
      std::string b = bytes();
      if (int e = WriteFile(Path(rel), b, rng() % 2 == 0); e != 0) {
        return Fail("create " + rel + ": " + ErrnoName(e));
      }
      m->files[rel] = std::move(b);
      n_.create++;
    } else if (op < 35) {  // rewrite in place (O_TRUNC)
      std::string b = bytes();
      if (int e = WriteFile(Path(f->first), b, rng() % 2 == 0); e != 0) {
        return Fail("rewrite " + f->first + ": " + ErrnoName(e));
      }
      f->second = std::move(b);
      n_.rewrite++;
    } else if (op < 42) {  // write at an offset, maybe past the end (a hole)
      UniqueFd fd(::open(Path(f->first).c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd.ok()) return Fail("open " + f->first + ": " + ErrnoName(errno));
      size_t off = pick(f->second.size() + 8 * kKiB);
      std::string b = RandomBytes(rng, 1 + pick(32 * kKiB));
      if (int e = PwriteAll(fd.get(), b, static_cast<off_t>(off)); e != 0) {
        return Fail("pwrite " + f->first + ": " + ErrnoName(e));
      }
      if (fd.Close() != 0) return Fail("close " + f->first + ": " + ErrnoName(errno));
      if (f->second.size() < off + b.size()) f->second.resize(off + b.size(), '\0');
      f->second.replace(off, b.size(), b);
      n_.extend++;
    } else if (op < 54) {  // rename: to another folder, or over another own file
      std::string to;
      auto over = any_file();
      if (rng() % 4 == 0 && over != f) {
        to = over->first;
      } else {
        to = a_folder() + "/" + f->first.substr(f->first.rfind('/') + 1);
      }
      if (to == f->first) continue;
      if (::rename(Path(f->first).c_str(), Path(to).c_str()) != 0) {
        return Fail("rename " + f->first + " -> " + to + ": " + ErrnoName(errno));
      }
      std::string b = std::move(f->second);
      m->files.erase(f);
      m->files[to] = std::move(b);
      n_.rename++;
    } else if (op < 62) {  // delete
      if (::unlink(Path(f->first).c_str()) != 0) {
        return Fail("unlink " + f->first + ": " + ErrnoName(errno));
      }
      m->files.erase(f);
      n_.unlink++;
    } else if (op < 78) {  // read an own file: exactly the model's bytes
      int e = 0;
      std::string got = ReadFile(Path(f->first), &e);
      if (e != 0) return Fail("read " + f->first + ": " + ErrnoName(e));
      if (got != f->second) {
        return Fail("read " + f->first + ": " + std::to_string(got.size()) + " bytes, not the " +
                    std::to_string(f->second.size()) + " written");
      }
      n_.read++;
    } else if (op < 83) {  // stat
      struct stat st;
      if (::stat(Path(f->first).c_str(), &st) != 0) {
        return Fail("stat " + f->first + ": " + ErrnoName(errno));
      }
      if (static_cast<size_t>(st.st_size) != f->second.size()) {
        return Fail("stat " + f->first + ": size " + std::to_string(st.st_size) + ", not " +
                    std::to_string(f->second.size()));
      }
      n_.stat++;
    } else if (op < 91) {  // list a folder: own names there all listed; read a foreign file
      std::string dir = "s" + std::to_string(pick(kShared));
      int e = 0;
      auto names = ListDir(Path(dir), &e);
      if (e != 0) return Fail("list " + dir + ": " + ErrnoName(e));
      std::set<std::string> have(names.begin(), names.end());
      for (const auto& [rel, b] : m->files) {
        if (rel.starts_with(dir + "/") && rel.find('/', dir.size() + 1) == std::string::npos &&
            !have.count(rel.substr(dir.size() + 1))) {
          return Fail("list " + dir + ": " + rel + " missing");
        }
      }
      n_.list++;
      for (const auto& name : names) {
        if (name.starts_with(tag) || name.find("-d") != std::string::npos) continue;
        ReadFile(Path(dir + "/" + name), &e);  // others' files come and go meanwhile
        if (e != 0 && e != ENOENT && e != EISDIR) {
          return Fail("read foreign " + dir + "/" + name + ": " + ErrnoName(e));
        }
        n_.foreign_read++;
        break;
      }
    } else if (op < 95) {  // an own folder in a shared one
      std::string d =
          "s" + std::to_string(pick(kShared)) + "/" + tag + "d" + std::to_string(next++);
      if (::mkdir(Path(d).c_str(), 0755) != 0) return Fail("mkdir " + d + ": " + ErrnoName(errno));
      m->dirs.insert(d);
      n_.mkdir++;
    } else if (!m->dirs.empty()) {  // remove an own folder with what is in it
      std::string d = *std::next(m->dirs.begin(), static_cast<long>(pick(m->dirs.size())));
      for (auto it = m->files.begin(); it != m->files.end();) {
        if (it->first.starts_with(d + "/")) {
          if (::unlink(Path(it->first).c_str()) != 0) {
            return Fail("unlink " + it->first + ": " + ErrnoName(errno));
          }
          it = m->files.erase(it);
          n_.unlink++;
        } else {
          ++it;
        }
      }
      if (::rmdir(Path(d).c_str()) != 0) return Fail("rmdir " + d + ": " + ErrnoName(errno));
      m->dirs.erase(d);
      n_.rmdir++;
    }
  }
}

void MountLoad::Job(int id) {
  FlinkJob& job = *jobs_[id];
  auto restore = [&](const FlinkJob::Checkpoint& cp) {
    std::string dir = job.Path(cp.name);
    std::string e = Restore(dir, dir, job_content_[id], [](const std::string& p) {
      return std::pair{p, p};
    });
    if (!e.empty()) Fail(job.job() + " restore " + cp.name + ": " + e);
    n_.restores++;
  };
  while (!stop_) {
    if (auto e = job.TakeCheckpoint(1 + static_cast<int>(job.rng()() % 2), 64 * kKiB,
                                    static_cast<int>(job.rng()() % 2), 1);
        !e.empty()) {
      return Fail(job.job() + " checkpoint: " + e);
    }
    n_.checkpoints++;
    restore(job.retained().back());
    if (job.retained().size() <= 2) continue;
    if (job.rng()() % 3 == 0) {  // snapfs rm of the oldest
      std::string name = job.retained().front().name;
      job.retained().pop_front();
      CmdResult rm = RunCmd({SNAPFS_BINARY, "rm", job.Path(name)}, 60);
      if (rm.code != 0) return Fail("snapfs rm " + name + ": " + rm.Describe());
      n_.snap_rm++;
    } else {  // subsumed as Flink does (a quarter with the shared deletes first)
      if (auto e = job.Subsume(job.rng()() % 4 == 0); !e.empty()) {
        return Fail(job.job() + " subsume: " + e);
      }
      n_.subsumes++;
    }
    restore(job.retained().front());
  }
}

void MountLoad::Cli() {
  while (!stop_) {
    CmdResult gc = RunCmd({SNAPFS_BINARY, "gc", mnt(), "--max-unused", "0"}, 120);
    if (gc.code != 0) return Fail("snapfs gc: " + gc.Describe());
    n_.gc++;
    for (const char* verb : {"ls", "stats"}) {
      CmdResult r = RunCmd({SNAPFS_BINARY, verb, mnt()}, 120);
      if (r.code != 0) return Fail(std::string("snapfs ") + verb + ": " + r.Describe());
      n_.cli++;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

void MountLoad::CheckModel(int id, const Model& m) {
  const std::string tag = "t" + std::to_string(id) + "-";
  std::map<std::string, std::string> found;  // own names in the tree -> bytes
  std::vector<std::string> todo;
  for (int i = 0; i < kShared; i++) todo.push_back("s" + std::to_string(i));
  while (!todo.empty()) {
    std::string dir = todo.back();
    todo.pop_back();
    for (const auto& name : ListDir(Path(dir))) {
      std::string rel = dir + "/" + name;
      struct stat st;
      ASSERT_EQ(::lstat(Path(rel).c_str(), &st), 0) << rel;
      if (S_ISDIR(st.st_mode)) {
        if (name.starts_with(tag)) {
          EXPECT_TRUE(m.dirs.count(rel))
              << "folder " << rel << " is not in thread " << id << "'s model";
        }
        todo.push_back(rel);
      } else if (name.starts_with(tag)) {
        found[rel] = ReadFile(Path(rel));
      }
    }
  }
  EXPECT_EQ(found.size(), m.files.size()) << "thread " << id;
  for (const auto& [rel, bytes] : m.files) {
    auto it = found.find(rel);
    if (it == found.end()) {
      ADD_FAILURE() << "thread " << id << ": " << rel << " is missing";
    } else if (it->second != bytes) {
      ADD_FAILURE() << "thread " << id << ": " << rel << " has " << it->second.size()
                    << " bytes, not the " << bytes.size() << " written";
    }
  }
  for (const auto& d : m.dirs) EXPECT_TRUE(Exists(Path(d))) << d;
}

TEST_F(MountLoad, SixteenThreadsGcAndSnapshotsAgainstAModel) {
  for (int i = 0; i < kShared; i++) ASSERT_EQ(::mkdir(Shared(i).c_str(), 0755), 0);
  for (int j = 0; j < kJobs; j++) {
    jobs_.push_back(
        std::make_unique<FlinkJob>(mnt(), "job-" + std::to_string(j), 50 + j, &job_content_[j]));
    ASSERT_EQ(jobs_.back()->Init(), "");
  }
  const int seconds = LoadSeconds();
  std::vector<Model> models(kThreads);
  std::vector<std::thread> threads;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kThreads; i++) {
    if (i < kJobs) {
      threads.emplace_back([this, i] { Job(i); });
    } else {
      threads.emplace_back([this, i, &models] { Worker(i, &models[i]); });
    }
  }
  std::thread cli([this] { Cli(); });
  while (!stop_ && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(seconds)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop_ = true;
  for (auto& t : threads) t.join();
  cli.join();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& e : errors_) ADD_FAILURE() << e;
  ASSERT_TRUE(errors_.empty()) << DaemonLog();

  uint64_t ops = n_.create + n_.rewrite + n_.extend + n_.rename + n_.unlink + n_.read + n_.stat +
                 n_.list + n_.mkdir + n_.rmdir + n_.foreign_read;
  std::cout << kThreads << " threads for " << took << " s: " << ops << " file operations ("
            << n_.create << " creates, " << n_.rewrite << " rewrites, " << n_.extend
            << " offset writes, " << n_.rename << " renames, " << n_.unlink << " unlinks, "
            << n_.read << " reads, " << n_.stat << " stats, " << n_.list << " listings, "
            << n_.foreign_read << " reads of others' files, " << n_.mkdir << " mkdirs, " << n_.rmdir
            << " rmdirs); " << n_.checkpoints << " checkpoints, " << n_.subsumes << " subsumed, "
            << n_.snap_rm << " snapfs rm, " << n_.restores << " restores; " << n_.gc
            << " snapfs gc, " << n_.cli << " ls/stats" << std::endl;
  EXPECT_GT(n_.checkpoints.load(), 4u);
  EXPECT_GT(n_.gc.load(), 1u);

  auto check_all = [&] {
    for (int i = kJobs; i < kThreads; i++) ASSERT_NO_FATAL_FAILURE(CheckModel(i, models[i]));
    for (int j = 0; j < kJobs; j++) {
      for (const auto& cp : jobs_[j]->retained()) {
        std::string dir = jobs_[j]->Path(cp.name);
        EXPECT_EQ(Restore(dir, dir, job_content_[j],
                          [](const std::string& p) {
                            return std::pair{p, p};
                          }),
                  "");
      }
    }
  };
  check_all();
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult f = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(f.code, 0) << f.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  check_all();
}

}  // namespace
}  // namespace snapfs::mounttest
