// The load of MountLoad (tests/mount_load_test.cc) over one store through one mount or
// several (issue 13, "Load and scale"): 16 threads at once, while `snapfs gc --max-unused
// 0`, `snapfs ls` and `snapfs stats` run against the mounts in turn:
//   - 14 threads create, write (fresh and duplicate bytes), rewrite, extend, rename
//     (across folders and over their own files), hard-link, delete, read, stat and list
//     files, and set, remove and read their user.* xattrs, in four folders they all
//     share, plus folders of their own made and removed in them; they also read each
//     other's files as they come and go;
//   - 2 threads are Flink jobs: checkpoints (chk-N with _metadata by rename), subsumed as
//     Flink does or removed with `snapfs rm`, each restored byte for byte once taken.
// Thread i works through mount i % mounts (with two, the threads of one "host" and the
// other's share the folders). Every file belongs to one thread, which keeps a model of its
// files (names -> inode: bytes and xattrs; hard links share one), so whatever order the
// filesystem gives the threads' calls, the model stays exact: every read of an own file
// must match it (bytes, xattrs, link count), every listing must hold the thread's own
// names. CheckAll compares the whole tree with the models through any mount.
//
// Thread-safety: Init, Run and CheckAll from the test's thread, one at a time.
#pragma once

#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/flink_sim.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {

// SNAPFS_LOAD_SECONDS, else `otherwise` (what CI runs).
inline int LoadSeconds(int otherwise) {
  const char* s = ::getenv("SNAPFS_LOAD_SECONDS");
  return s && std::atoi(s) > 0 ? std::atoi(s) : otherwise;
}

struct Counts {
  std::atomic<uint64_t> create{0}, rewrite{0}, extend{0}, rename{0}, unlink{0}, read{0}, stat{0},
      list{0}, mkdir{0}, rmdir{0}, foreign_read{0}, link{0}, xattr{0}, checkpoints{0},
      subsumes{0}, snap_rm{0}, restores{0}, gc{0}, gc_busy{0}, cli{0};
  std::atomic<double> gc_slowest_s{0};  // the longest `snapfs gc`
};

class LoadRun {
 public:
  static constexpr int kThreads = 16, kJobs = 2, kShared = 4;

  // Thread i works through mounts[i % mounts.size()] (the jobs are threads 0 and 1).
  explicit LoadRun(std::vector<std::string> mounts) : roots_(std::move(mounts)) {}

  // The shared folders and the jobs' folders: "" or what failed.
  std::string Init() {
    for (int i = 0; i < kShared; i++) {
      std::string d = Path(0, "s" + std::to_string(i));
      if (::mkdir(d.c_str(), 0755) != 0) return "mkdir " + d + ": " + ErrnoName(errno);
    }
    for (int j = 0; j < kJobs; j++) {
      jobs_.push_back(std::make_unique<FlinkJob>(roots_[Mount(j)], "job-" + std::to_string(j),
                                                 50 + static_cast<uint64_t>(j), &job_content_[j]));
      if (std::string e = jobs_.back()->Init(); !e.empty()) return e;
    }
    return "";
  }

  // Runs the threads and the CLI loop for `seconds` (less if one fails); the errors.
  std::vector<std::string> Run(int seconds) {
    std::vector<std::thread> threads;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kThreads; i++) {
      if (i < kJobs) {
        threads.emplace_back([this, i] { Job(i); });
      } else {
        threads.emplace_back([this, i] { Worker(i, &models_[i]); });
      }
    }
    std::thread cli([this] { Cli(); });
    while (!stop_ && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(seconds)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    stop_ = true;
    for (auto& t : threads) t.join();
    cli.join();
    took_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return errors_;
  }

  std::string Summary() const {
    uint64_t ops = n_.create + n_.rewrite + n_.extend + n_.rename + n_.unlink + n_.read +
                   n_.stat + n_.list + n_.mkdir + n_.rmdir + n_.foreign_read + n_.link + n_.xattr;
    std::ostringstream o;
    o << kThreads << " threads on " << roots_.size() << " mount(s) for " << took_ << " s: " << ops
      << " file operations (" << n_.create << " creates, " << n_.rewrite << " rewrites, "
      << n_.extend << " offset writes, " << n_.rename << " renames, " << n_.link
      << " hard links, " << n_.xattr << " xattr changes, " << n_.unlink << " unlinks, "
      << n_.read << " reads, " << n_.stat << " stats, " << n_.list << " listings, "
      << n_.foreign_read << " reads of others' files, " << n_.mkdir << " mkdirs, " << n_.rmdir
      << " rmdirs); " << n_.checkpoints << " checkpoints, " << n_.subsumes << " subsumed, "
      << n_.snap_rm << " snapfs rm, " << n_.restores << " restores; " << n_.gc
      << " snapfs gc (the slowest " << n_.gc_slowest_s << " s; " << n_.gc_busy
      << " answered busy: another GC held the lease), " << n_.cli << " ls/stats";
    return o.str();
  }
  const Counts& counts() const { return n_; }

  // Every thread's files and every retained checkpoint, read through mount `m` (gtest
  // failures).
  void CheckAll(size_t m) {
    for (int i = kJobs; i < kThreads; i++) ASSERT_NO_FATAL_FAILURE(CheckModel(i, models_[i], m));
    for (int j = 0; j < kJobs; j++) {
      const std::string& from = roots_[Mount(j)];
      auto rebase = [&](const std::string& p) {
        return p.starts_with(from + "/") ? roots_[m] + p.substr(from.size()) : p;
      };
      for (const auto& cp : jobs_[j]->retained()) {
        std::string dir = jobs_[j]->Path(cp.name);
        EXPECT_EQ(Restore(rebase(dir), dir, job_content_[j],
                          [&](const std::string& p) {
                            return std::pair{rebase(p), p};
                          }),
                  "")
            << "through mount " << m;
      }
    }
  }

 private:
  size_t Mount(int thread) const { return static_cast<size_t>(thread) % roots_.size(); }
  std::string Path(size_t m, const std::string& rel) const { return roots_[m] + "/" + rel; }

  void Fail(const std::string& what) {
    std::lock_guard l(mu_);
    if (errors_.size() < 20) errors_.push_back(what);
    stop_ = true;
  }

  struct Node {  // one inode: what every hard link of it reads
    std::string bytes;
    std::map<std::string, std::string> xattrs;  // user.* name -> value
  };
  struct Model {
    std::map<std::string, std::shared_ptr<Node>> files;  // path relative to the mount
    std::set<std::string> dirs;  // own folders (relative), all empty or not
    // The own names of `n`'s inode: its link count.
    nlink_t Links(const std::shared_ptr<Node>& n) const {
      nlink_t k = 0;
      for (const auto& [rel, node] : files) k += node == n;
      return k;
    }
  };
  // "" if `path`'s user.* xattrs are exactly `want`, else what differs.
  static std::string CompareXattrs(const std::string& path, const Node& want);
  // One file-writing thread: its files are t<i>-<k> (maybe inside an own folder
  // t<i>-d<k>) in the shared folders.
  void Worker(int id, Model* m);
  void Job(int id);
  void Cli();
  // Compares the tree, read through mount `mount`, with thread `id`'s model: every own
  // name where the model says, with its bytes, xattrs and link count, and no other own
  // name anywhere.
  void CheckModel(int id, const Model& m, size_t mount);

  const std::vector<std::string> roots_;
  std::vector<Model> models_ = std::vector<Model>(kThreads);
  double took_ = 0;
  Counts n_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> errors_;
  std::vector<std::unique_ptr<FlinkJob>> jobs_;
  std::vector<ContentMap> job_content_ = std::vector<ContentMap>(kJobs);
};

inline void LoadRun::Worker(int id, Model* m) {
  const size_t mount = Mount(id);
  auto path = [&](const std::string& rel) { return Path(mount, rel); };
  // Through two mounts, a name another host unlinked may still be in this one's cache.
  const bool shared = roots_.size() > 1;
  std::mt19937_64 rng(1000 + static_cast<uint64_t>(id));
  const std::string tag = "t" + std::to_string(id) + "-";
  uint64_t next = 0;
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  auto any_file = [&]() -> std::map<std::string, std::shared_ptr<Node>>::iterator {
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
    if (!m->files.empty() && rng() % 5 == 0) return any_file()->second->bytes;
    return RandomBytes(rng, 1 + pick(96 * kKiB));
  };
  while (!stop_) {
    int op = static_cast<int>(rng() % 100);
    auto f = any_file();
    if (op < 23 || f == m->files.end()) {  // create
      std::string rel = a_folder() + "/" + tag + std::to_string(next++);
      std::string b = bytes();
      if (int e = WriteFile(path(rel), b, rng() % 2 == 0); e != 0) {
        return Fail("create " + rel + ": " + ErrnoName(e));
      }
      m->files[rel] = std::make_shared<Node>(Node{std::move(b), {}});
      n_.create++;
    } else if (op < 32) {  // rewrite in place (O_TRUNC): every link of it sees it
      std::string b = bytes();
      if (int e = WriteFile(path(f->first), b, rng() % 2 == 0); e != 0) {
        return Fail("rewrite " + f->first + ": " + ErrnoName(e));
      }
      f->second->bytes = std::move(b);
      n_.rewrite++;
    } else if (op < 39) {  // write at an offset, maybe past the end (a hole)
      UniqueFd fd(::open(path(f->first).c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd.ok()) return Fail("open " + f->first + ": " + ErrnoName(errno));
      std::string& have = f->second->bytes;
      size_t off = pick(have.size() + 8 * kKiB);
      std::string b = RandomBytes(rng, 1 + pick(32 * kKiB));
      if (int e = PwriteAll(fd.get(), b, static_cast<off_t>(off)); e != 0) {
        return Fail("pwrite " + f->first + ": " + ErrnoName(e));
      }
      if (fd.Close() != 0) return Fail("close " + f->first + ": " + ErrnoName(errno));
      if (have.size() < off + b.size()) have.resize(off + b.size(), '\0');
      have.replace(off, b.size(), b);
      n_.extend++;
    } else if (op < 50) {  // rename: to another folder, or over another own file
      std::string to;
      auto over = any_file();
      if (rng() % 4 == 0 && over != f) {
        to = over->first;
      } else {
        to = a_folder() + "/" + f->first.substr(f->first.rfind('/') + 1);
      }
      if (to == f->first) continue;
      if (::rename(path(f->first).c_str(), path(to).c_str()) != 0) {
        return Fail("rename " + f->first + " -> " + to + ": " + ErrnoName(errno));
      }
      n_.rename++;
      auto at = m->files.find(to);
      // POSIX: onto another name of the same inode, rename does nothing; both stay.
      if (at != m->files.end() && at->second == f->second) continue;
      std::shared_ptr<Node> node = std::move(f->second);
      m->files.erase(f);
      m->files[to] = std::move(node);
    } else if (op < 58) {  // delete
      if (::unlink(path(f->first).c_str()) != 0) {
        return Fail("unlink " + f->first + ": " + ErrnoName(errno));
      }
      m->files.erase(f);
      n_.unlink++;
    } else if (op < 62) {  // a hard link, maybe in another folder
      std::string to = a_folder() + "/" + tag + std::to_string(next++);
      if (::link(path(f->first).c_str(), path(to).c_str()) != 0) {
        return Fail("link " + f->first + " -> " + to + ": " + ErrnoName(errno));
      }
      m->files[to] = f->second;
      n_.link++;
    } else if (op < 66) {  // set (or now and then remove) a user.* xattr: every link has it
      std::map<std::string, std::string>& xs = f->second->xattrs;
      std::string name = "user.k" + std::to_string(pick(4));
      if (xs.count(name) && rng() % 3 == 0) {
        if (::removexattr(path(f->first).c_str(), name.c_str()) != 0) {
          return Fail("removexattr " + f->first + " " + name + ": " + ErrnoName(errno));
        }
        xs.erase(name);
      } else {
        std::string v = RandomBytes(rng, 1 + pick(200));
        if (::setxattr(path(f->first).c_str(), name.c_str(), v.data(), v.size(), 0) != 0) {
          return Fail("setxattr " + f->first + " " + name + ": " + ErrnoName(errno));
        }
        xs[name] = std::move(v);
      }
      n_.xattr++;
    } else if (op < 78) {  // read an own file: exactly the model's bytes and xattrs
      int e = 0;
      std::string got = ReadFile(path(f->first), &e);
      if (e != 0) return Fail("read " + f->first + ": " + ErrnoName(e));
      if (got != f->second->bytes) {
        return Fail("read " + f->first + ": " + std::to_string(got.size()) + " bytes, not the " +
                    std::to_string(f->second->bytes.size()) + " written");
      }
      if (std::string d = CompareXattrs(path(f->first), *f->second); !d.empty()) {
        return Fail("xattrs of " + f->first + ": " + d);
      }
      n_.read++;
    } else if (op < 83) {  // stat
      struct stat st;
      if (::stat(path(f->first).c_str(), &st) != 0) {
        return Fail("stat " + f->first + ": " + ErrnoName(errno));
      }
      if (static_cast<size_t>(st.st_size) != f->second->bytes.size()) {
        return Fail("stat " + f->first + ": size " + std::to_string(st.st_size) + ", not " +
                    std::to_string(f->second->bytes.size()));
      }
      if (st.st_nlink != m->Links(f->second)) {
        return Fail("stat " + f->first + ": " + std::to_string(st.st_nlink) + " links, not " +
                    std::to_string(m->Links(f->second)));
      }
      n_.stat++;
    } else if (op < 91) {  // list a folder: own names there all listed; read a foreign file
      std::string dir = "s" + std::to_string(pick(kShared));
      int e = 0;
      auto names = ListDir(path(dir), &e);
      if (e != 0) return Fail("list " + dir + ": " + ErrnoName(e));
      std::set<std::string> have(names.begin(), names.end());
      for (const auto& [rel, node] : m->files) {
        if (rel.starts_with(dir + "/") && rel.find('/', dir.size() + 1) == std::string::npos &&
            !have.count(rel.substr(dir.size() + 1))) {
          return Fail("list " + dir + ": " + rel + " missing");
        }
      }
      n_.list++;
      for (const auto& name : names) {
        if (name.starts_with(tag) || name.find("-d") != std::string::npos) continue;
        ReadFile(path(dir + "/" + name), &e);  // others' files come and go meanwhile
        if (e != 0 && e != ENOENT && e != EISDIR && !(shared && e == ESTALE)) {
          return Fail("read foreign " + dir + "/" + name + ": " + ErrnoName(e));
        }
        n_.foreign_read++;
        break;
      }
    } else if (op < 95) {  // an own folder in a shared one
      std::string d =
          "s" + std::to_string(pick(kShared)) + "/" + tag + "d" + std::to_string(next++);
      if (::mkdir(path(d).c_str(), 0755) != 0) return Fail("mkdir " + d + ": " + ErrnoName(errno));
      m->dirs.insert(d);
      n_.mkdir++;
    } else if (!m->dirs.empty()) {  // remove an own folder with what is in it
      std::string d = *std::next(m->dirs.begin(), static_cast<long>(pick(m->dirs.size())));
      for (auto it = m->files.begin(); it != m->files.end();) {
        if (it->first.starts_with(d + "/")) {
          if (::unlink(path(it->first).c_str()) != 0) {
            return Fail("unlink " + it->first + ": " + ErrnoName(errno));
          }
          it = m->files.erase(it);
          n_.unlink++;
        } else {
          ++it;
        }
      }
      if (::rmdir(path(d).c_str()) != 0) return Fail("rmdir " + d + ": " + ErrnoName(errno));
      m->dirs.erase(d);
      n_.rmdir++;
    }
  }
}

inline void LoadRun::Job(int id) {
  FlinkJob& job = *jobs_[id];
  auto restore = [&](const FlinkJob::Checkpoint& cp) {
    std::string dir = job.Path(cp.name);
    std::string e = Restore(dir, dir, job_content_[id], InPlace);
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

inline void LoadRun::Cli() {
  for (size_t round = 0; !stop_; round++) {
    // Through each mount in turn.
    const std::string& mnt = roots_[round % roots_.size()];
    // --max-unused 0 copies every live byte of every pack with a dead one. On a shared
    // store (in its own process, as a session), 12 minutes into an hour's run with a build
    // beside it, one took over 120 s (the same store's gc idle: 14 s): the bound is
    // generous, and the slowest is reported.
    auto t0 = std::chrono::steady_clock::now();
    CmdResult gc = RunCmd({SNAPFS_BINARY, "gc", mnt, "--max-unused", "0"}, 600);
    if (gc.code == 4 && gc.err.find("GC is running") != std::string::npos) {
      // A daemon's periodic GC (every 600 s) holds the store-wide lease of a shared
      // store: busy is the answer (exit 4), as a user gets; the next round tries again.
      n_.gc_busy++;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      continue;
    }
    if (gc.code != 0) return Fail("snapfs gc: " + gc.Describe());
    n_.gc++;
    n_.gc_slowest_s = std::max(
        n_.gc_slowest_s.load(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (const char* verb : {"ls", "stats"}) {
      CmdResult r = RunCmd({SNAPFS_BINARY, verb, mnt}, 120);
      if (r.code != 0) return Fail(std::string("snapfs ") + verb + ": " + r.Describe());
      n_.cli++;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

inline std::string LoadRun::CompareXattrs(const std::string& path, const Node& want) {
  std::string names(4096, '\0');
  ssize_t n = ::listxattr(path.c_str(), names.data(), names.size());
  if (n < 0) return "listxattr: " + ErrnoName(errno);
  std::set<std::string> listed;
  for (size_t at = 0; at < static_cast<size_t>(n);) {
    std::string name(names.c_str() + at);
    at += name.size() + 1;
    if (name.starts_with("user.")) listed.insert(name);
  }
  std::set<std::string> expected;
  for (const auto& [name, value] : want.xattrs) expected.insert(name);
  if (listed != expected) {
    return "listed " + std::to_string(listed.size()) + " user.* names, the model has " +
           std::to_string(expected.size());
  }
  for (const auto& [name, value] : want.xattrs) {
    std::string got(256, '\0');
    ssize_t k = ::getxattr(path.c_str(), name.c_str(), got.data(), got.size());
    if (k < 0) return "getxattr " + name + ": " + ErrnoName(errno);
    got.resize(static_cast<size_t>(k));
    if (got != value) return name + " has " + std::to_string(k) + " bytes, not the set value";
  }
  return "";
}

inline void LoadRun::CheckModel(int id, const Model& m, size_t mount) {
  auto path = [&](const std::string& rel) { return Path(mount, rel); };
  const std::string tag = "t" + std::to_string(id) + "-";
  struct Found {
    std::string bytes;
    nlink_t links;
  };
  std::map<std::string, Found> found;  // own names in the tree
  std::vector<std::string> todo;
  for (int i = 0; i < kShared; i++) todo.push_back("s" + std::to_string(i));
  while (!todo.empty()) {
    std::string dir = todo.back();
    todo.pop_back();
    for (const auto& name : ListDir(path(dir))) {
      std::string rel = dir + "/" + name;
      struct stat st;
      ASSERT_EQ(::lstat(path(rel).c_str(), &st), 0) << rel;
      if (S_ISDIR(st.st_mode)) {
        if (name.starts_with(tag)) {
          EXPECT_TRUE(m.dirs.count(rel))
              << "folder " << rel << " is not in thread " << id << "'s model";
        }
        todo.push_back(rel);
      } else if (name.starts_with(tag)) {
        found[rel] = Found{ReadFile(path(rel)), st.st_nlink};
      }
    }
  }
  EXPECT_EQ(found.size(), m.files.size()) << "thread " << id;
  for (const auto& [rel, node] : m.files) {
    auto it = found.find(rel);
    if (it == found.end()) {
      ADD_FAILURE() << "thread " << id << ": " << rel << " is missing";
      continue;
    }
    if (it->second.bytes != node->bytes) {
      ADD_FAILURE() << "thread " << id << ": " << rel << " has " << it->second.bytes.size()
                    << " bytes, not the " << node->bytes.size() << " written";
    }
    EXPECT_EQ(CompareXattrs(path(rel), *node), "") << "thread " << id << ": " << rel;
    EXPECT_EQ(it->second.links, m.Links(node)) << "thread " << id << ": links of " << rel;
  }
  for (const auto& d : m.dirs) EXPECT_TRUE(Exists(path(d))) << d;
}

}  // namespace snapfs::mounttest
