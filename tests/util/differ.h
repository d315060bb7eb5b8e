// The random-operation differential machinery of the mount tests: a Differ applies one
// random syscall stream to a snapfs tree and a native folder and compares outcomes, paths
// and open handles after each step; CompareTrees compares two whole trees. Used by
// mount_differential_test.cc (one mount) and mount_shared_test.cc (three mounts of one
// shared store).
#pragma once

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
constexpr size_t kMaxWrite = 256 * kKiB;
constexpr uint64_t kMaxOffset = 1 * kMiB;  // keeps files around 1 MiB (fast comparisons)

inline uint64_t SeedFromEnv() {
  if (const char* s = ::getenv("SNAPFS_DIFF_SEED"); s && *s) return std::strtoull(s, nullptr, 0);
  return 0x5eedf5f5ull;
}

// The outcome of one syscall on one tree.
struct Res {
  long rc = 0;
  int err = 0;
};
inline std::string Show(Res r) { return r.rc < 0 ? "-1/" + ErrnoName(r.err) : std::to_string(r.rc); }

// What a comparison needs from lstat/fstat.
struct Meta {
  bool exists = false;
  int err = 0;
  mode_t mode = 0;  // type and permission bits
  off_t size = 0;
  nlink_t nlink = 0;
  ino_t ino = 0;
  std::string target;  // symlinks
};

inline Meta LstatMeta(const std::string& p) {
  Meta m;
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) {
    m.err = errno;
    return m;
  }
  m.exists = true;
  m.mode = st.st_mode;
  m.size = st.st_size;
  m.nlink = st.st_nlink;
  m.ino = st.st_ino;
  if (S_ISLNK(st.st_mode)) {
    char buf[PATH_MAX];
    ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
    if (n > 0) m.target.assign(buf, static_cast<size_t>(n));
  }
  return m;
}

// "" when equal, else a description. Directory sizes are file-system specific.
inline std::string DiffMeta(const Meta& a, const Meta& b) {
  std::ostringstream s;
  if (a.exists != b.exists || a.err != b.err) {
    s << "existence: snapfs " << (a.exists ? "exists" : ErrnoName(a.err)) << ", native "
      << (b.exists ? "exists" : ErrnoName(b.err));
    return s.str();
  }
  if (!a.exists) return "";
  if ((a.mode & S_IFMT) != (b.mode & S_IFMT))
    s << " type " << std::oct << (a.mode & S_IFMT) << " vs " << (b.mode & S_IFMT) << std::dec;
  if ((a.mode & 07777) != (b.mode & 07777))
    s << " mode " << std::oct << (a.mode & 07777) << " vs " << (b.mode & 07777) << std::dec;
  if (!S_ISDIR(a.mode) && a.size != b.size) s << " size " << a.size << " vs " << b.size;
  if (a.nlink != b.nlink) s << " nlink " << a.nlink << " vs " << b.nlink;
  if (a.target != b.target) s << " symlink '" << a.target << "' vs '" << b.target << "'";
  return s.str();
}

// Where two byte strings first differ.
inline std::string DiffBytes(const std::string& a, const std::string& b) {
  if (a == b) return "";
  size_t i = 0;
  size_t n = std::min(a.size(), b.size());
  while (i < n && a[i] == b[i]) i++;
  std::ostringstream s;
  s << "contents differ: snapfs " << a.size() << " bytes, native " << b.size()
    << " bytes, first difference at offset " << i;
  if (i < n) {
    s << " (snapfs 0x" << std::hex << (static_cast<unsigned>(a[i]) & 0xff) << ", native 0x"
      << (static_cast<unsigned>(b[i]) & 0xff) << std::dec << ")";
  }
  return s.str();
}

// Every entry under root (relative paths), via opendir/readdir and lstat.
inline void Walk(const std::string& root, const std::string& rel, std::map<std::string, Meta>* out) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  for (const auto& name : ListDir(dir)) {
    std::string r = rel.empty() ? name : rel + "/" + name;
    Meta m = LstatMeta(root + "/" + r);
    (*out)[r] = m;
    if (m.exists && S_ISDIR(m.mode)) Walk(root, r, out);
  }
}

// Compares two whole trees: names, types, modes, sizes, link counts, symlink targets,
// file contents, and which names are hard links of each other. "" when equal.
inline std::string CompareTrees(const std::string& a, const std::string& b) {
  std::map<std::string, Meta> ta, tb;
  Walk(a, "", &ta);
  Walk(b, "", &tb);
  std::ostringstream s;
  for (const auto& [name, m] : ta) {
    if (!tb.count(name)) s << "\n  only in snapfs: " << name;
  }
  for (const auto& [name, m] : tb) {
    if (!ta.count(name)) s << "\n  only in native: " << name;
  }
  std::map<ino_t, std::vector<std::string>> ga, gb;
  for (const auto& [name, ma] : ta) {
    auto it = tb.find(name);
    if (it == tb.end()) continue;
    const Meta& mb = it->second;
    std::string d = DiffMeta(ma, mb);
    if (!d.empty()) s << "\n  " << name << ":" << d;
    if (ma.exists && S_ISREG(ma.mode) && mb.exists && S_ISREG(mb.mode)) {
      int ea = 0, eb = 0;
      std::string ca = ReadFile(a + "/" + name, &ea), cb = ReadFile(b + "/" + name, &eb);
      if (ea != eb) s << "\n  " << name << ": read " << ErrnoName(ea) << " vs " << ErrnoName(eb);
      std::string dc = DiffBytes(ca, cb);
      if (!dc.empty()) s << "\n  " << name << ": " << dc;
      ga[ma.ino].push_back(name);
      gb[mb.ino].push_back(name);
    }
  }
  std::set<std::vector<std::string>> pa, pb;
  for (auto& [ino, v] : ga) pa.insert(v);
  for (auto& [ino, v] : gb) pb.insert(v);
  if (pa != pb) {
    s << "\n  hard-link groups differ:";
    for (const auto& g : pa) {
      if (!pb.count(g) && g.size() > 0) s << "\n    snapfs groups together: " << ShellJoin(g);
    }
    for (const auto& g : pb) {
      if (!pa.count(g) && g.size() > 0) s << "\n    native groups together: " << ShellJoin(g);
    }
  }
  return s.str();
}

// One random-operation stream over a fixed set of names, applied to both trees.
class Differ {
 public:
  Differ(std::string snap_root, std::string native_root, uint64_t seed, std::string label,
         std::vector<std::string> files, std::vector<std::string> dirs)
      : root_{std::move(snap_root), std::move(native_root)},
        rng_(seed),
        label_(std::move(label)),
        files_(std::move(files)),
        dirs_(std::move(dirs)) {}
  ~Differ() { CloseAll(); }
  // Movable (RunDiffersConcurrently makes one per thread), never copied: it owns fds.
  Differ(Differ&&) = default;
  Differ(const Differ&) = delete;
  Differ& operator=(const Differ&) = delete;

  // Runs one random operation and compares; returns "" or a description of the mismatch.
  std::string Step(int step) {
    step_ = step;
    std::string d = RandomOp();
    if (!d.empty()) {
      std::ostringstream s;
      s << label_ << " step " << step << ": " << d << "\n  recent operations:";
      for (const auto& l : log_) s << "\n    " << l;
      return s.str();
    }
    return "";
  }

  // Moves the snapfs side to another root (another mount of the same store). Only between
  // steps with no handle open: a handle belongs to the mount it was opened on.
  void SetSnapRoot(std::string root) {
    CloseAll();
    root_[0] = std::move(root);
  }

  // How many operations succeeded / failed (as expected) so far.
  std::string Summary() const {
    return std::to_string(succeeded_) + " syscalls succeeded, " + std::to_string(failed_) +
           " failed identically";
  }

  void CloseAll() {
    for (auto& h : handles_) {
      ::close(h.fd[0]);
      ::close(h.fd[1]);
    }
    handles_.clear();
  }

 private:
  struct Handle {
    int fd[2];
    int flags;
    std::string name;
    int id;
  };

  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(int percent) { return Rand(100) < static_cast<uint64_t>(percent); }
  std::string P(int t, const std::string& rel) const { return root_[t] + "/" + rel; }

  // Mostly files, now and then a folder name (for the error cases).
  std::string PickName() {
    if (!dirs_.empty() && Chance(6)) return dirs_[Rand(dirs_.size())];
    return files_[Rand(files_.size())];
  }

  void Log(std::string s) {
    log_.push_back("#" + std::to_string(step_) + " " + std::move(s));
    if (log_.size() > 25) log_.pop_front();
  }

  // Runs fn on both trees (snapfs first) and compares the outcomes.
  template <typename Fn>
  std::string Both(const std::string& what, Fn fn, Res* out = nullptr) {
    Res r[2];
    for (int t = 0; t < 2; t++) {
      errno = 0;
      r[t].rc = fn(t);
      r[t].err = r[t].rc < 0 ? errno : 0;
    }
    Log(what + " -> " + Show(r[0]) +
        (r[0].rc == r[1].rc && r[0].err == r[1].err ? "" : " (native " + Show(r[1]) + ")"));
    if (out) *out = r[0];
    (r[0].rc < 0 ? failed_ : succeeded_)++;
    if (r[0].rc != r[1].rc || r[0].err != r[1].err) {
      return what + ": snapfs returned " + Show(r[0]) + ", native " + Show(r[1]);
    }
    return "";
  }

  // Compares one path: stat fields and, for regular files, the whole contents.
  std::string ComparePath(const std::string& rel) {
    Meta a = LstatMeta(P(0, rel)), b = LstatMeta(P(1, rel));
    std::string d = DiffMeta(a, b);
    if (!d.empty()) return "after the operation, " + rel + ":" + d;
    if (a.exists && S_ISREG(a.mode)) {
      int ea = 0, eb = 0;
      std::string ca = ReadFile(P(0, rel), &ea), cb = ReadFile(P(1, rel), &eb);
      if (ea != eb) return rel + ": reading gives " + ErrnoName(ea) + " vs " + ErrnoName(eb);
      d = DiffBytes(ca, cb);
      if (!d.empty()) return "after the operation, " + rel + ": " + d;
    }
    return "";
  }

  // Compares what an open handle sees: fstat and the whole contents (read through a fresh
  // read-only open of /proc/self/fd/N, so write-only and unlinked files are covered too).
  std::string CompareHandle(const Handle& h) {
    struct stat st[2];
    for (int t = 0; t < 2; t++) {
      if (::fstat(h.fd[t], &st[t]) != 0) return "fstat: " + ErrnoName(errno);
    }
    std::ostringstream s;
    bool dir = S_ISDIR(st[0].st_mode) && S_ISDIR(st[1].st_mode);  // sizes are fs-specific
    if (!dir && st[0].st_size != st[1].st_size)
      s << " size " << st[0].st_size << " vs " << st[1].st_size;
    if (st[0].st_nlink != st[1].st_nlink) {
      s << " nlink " << st[0].st_nlink << " vs " << st[1].st_nlink;
    }
    if (st[0].st_mode != st[1].st_mode) {
      s << " mode " << std::oct << st[0].st_mode << " vs " << st[1].st_mode << std::dec;
    }
    if (!s.str().empty()) {
      return "handle h" + std::to_string(h.id) + " (" + h.name + "): fstat" + s.str();
    }
    if (dir) return "";
    std::string c[2];
    int err[2] = {0, 0};
    for (int t = 0; t < 2; t++) {
      if ((h.flags & O_ACCMODE) != O_WRONLY) {
        c[t] = ReadFd(h.fd[t], &err[t]);
      } else {
        std::string proc = "/proc/self/fd/" + std::to_string(h.fd[t]);
        int fd = ::open(proc.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          err[t] = errno;
        } else {
          c[t] = ReadFd(fd, &err[t]);
          ::close(fd);
        }
      }
    }
    if (err[0] != err[1]) {
      return "handle h" + std::to_string(h.id) + " (" + h.name + "): reading gives " +
             ErrnoName(err[0]) + " vs " + ErrnoName(err[1]);
    }
    std::string d = DiffBytes(c[0], c[1]);
    if (!d.empty()) return "handle h" + std::to_string(h.id) + " (" + h.name + "): " + d;
    return "";
  }

  size_t WriteLen() {
    // Log-uniform-ish over 1 B .. 256 KiB.
    int bits = static_cast<int>(Rand(19));
    uint64_t hi = 1ull << bits;
    return std::min<size_t>(kMaxWrite, 1 + Rand(hi));
  }

  std::string OpOpen() {
    static const int kFlags[] = {O_RDWR,
                                 O_RDWR | O_CREAT,
                                 O_RDWR | O_CREAT,
                                 O_RDWR | O_CREAT | O_EXCL,
                                 O_RDWR | O_CREAT | O_TRUNC,
                                 O_WRONLY | O_CREAT,
                                 O_WRONLY | O_CREAT | O_TRUNC,
                                 O_RDONLY};
    if (handles_.size() >= 6) {
      std::string d = OpClose();
      if (!d.empty()) return d;
    }
    std::string name = PickName();
    int flags = kFlags[Rand(std::size(kFlags))];
    mode_t mode = Chance(50) ? 0644 : 0600;
    int fds[2] = {-1, -1};
    std::ostringstream what;
    what << "open(" << name << ", 0" << std::oct << flags << ", 0" << mode << std::dec << ")";
    std::string d = Both(what.str(), [&](int t) {
      fds[t] = ::open(P(t, name).c_str(), flags | O_CLOEXEC, mode);
      return fds[t] < 0 ? -1L : 0L;
    });
    if (fds[0] >= 0 && fds[1] >= 0) {
      handles_.push_back(Handle{{fds[0], fds[1]}, flags, name, next_id_++});
      log_.back() += " = h" + std::to_string(handles_.back().id);
    } else {
      if (fds[0] >= 0) ::close(fds[0]);
      if (fds[1] >= 0) ::close(fds[1]);
    }
    if (!d.empty()) return d;
    return ComparePath(name);
  }

  std::string OpClose() {
    if (handles_.empty()) return "";
    size_t i = Rand(handles_.size());
    Handle h = handles_[i];
    handles_.erase(handles_.begin() + static_cast<long>(i));
    std::string d = Both("close(h" + std::to_string(h.id) + ")",
                         [&](int t) { return static_cast<long>(::close(h.fd[t])); });
    if (!d.empty()) return d;
    return ComparePath(h.name);
  }

  // Close and open the same name again (read-write, no create).
  std::string OpReopen() {
    if (handles_.empty()) return OpOpen();
    size_t i = Rand(handles_.size());
    Handle& h = handles_[i];
    std::string d = Both("close(h" + std::to_string(h.id) + ") for reopen", [&](int t) {
      int rc = ::close(h.fd[t]);
      h.fd[t] = -1;
      return static_cast<long>(rc);
    });
    if (!d.empty()) {
      handles_.erase(handles_.begin() + static_cast<long>(i));
      return d;
    }
    int fds[2] = {-1, -1};
    d = Both("reopen(" + h.name + ", O_RDWR)", [&](int t) {
      fds[t] = ::open(P(t, h.name).c_str(), O_RDWR | O_CLOEXEC);
      return fds[t] < 0 ? -1L : 0L;
    });
    if (fds[0] >= 0 && fds[1] >= 0) {
      h.fd[0] = fds[0];
      h.fd[1] = fds[1];
      h.flags = O_RDWR;
      std::string r = CompareHandle(h);
      if (!r.empty()) return r;
    } else {
      if (fds[0] >= 0) ::close(fds[0]);
      if (fds[1] >= 0) ::close(fds[1]);
      std::string name = h.name;
      handles_.erase(handles_.begin() + static_cast<long>(i));
      if (!d.empty()) return d;
      return ComparePath(name);
    }
    return d;
  }

  Handle* PickHandle() {
    if (handles_.empty()) return nullptr;
    return &handles_[Rand(handles_.size())];
  }

  off_t NativeSize(const Handle& h) {
    struct stat st;
    if (::fstat(h.fd[1], &st) != 0) return 0;
    return st.st_size;
  }

  std::string OpPwrite() {
    Handle* h = PickHandle();
    if (!h) return OpOpen();
    uint64_t size = static_cast<uint64_t>(NativeSize(*h));
    size_t len = WriteLen();
    uint64_t off;
    if (Chance(15))
      off = size;  // append
    else if (Chance(15))
      off = std::min(size + Rand(300 * kKiB), kMaxOffset);  // past EOF
    else
      off = Rand(std::min<uint64_t>(size + 1, kMaxOffset));
    std::string data = RandomBytes(len, rng_());
    std::ostringstream what;
    what << "pwrite(h" << h->id << ", len=" << len << ", off=" << off << ") [size " << size << "]";
    std::string d = Both(what.str(), [&](int t) {
      return static_cast<long>(
          ::pwrite(h->fd[t], data.data(), data.size(), static_cast<off_t>(off)));
    });
    if (!d.empty()) return d;
    return CompareHandle(*h);
  }

  std::string OpPread() {
    Handle* h = PickHandle();
    if (!h) return OpOpen();
    uint64_t size = static_cast<uint64_t>(NativeSize(*h));
    size_t len = WriteLen();
    uint64_t off = Rand(size + 10 * kKiB);
    std::string buf[2] = {std::string(len, '\0'), std::string(len, '\0')};
    std::ostringstream what;
    what << "pread(h" << h->id << ", len=" << len << ", off=" << off << ") [size " << size << "]";
    std::string d = Both(what.str(), [&](int t) {
      return static_cast<long>(::pread(h->fd[t], buf[t].data(), len, static_cast<off_t>(off)));
    });
    if (!d.empty()) return d;
    if (buf[0] != buf[1]) return what.str() + ": " + DiffBytes(buf[0], buf[1]);
    return "";
  }

  std::string OpFtruncate() {
    Handle* h = PickHandle();
    if (!h) return OpOpen();
    uint64_t size = static_cast<uint64_t>(NativeSize(*h));
    uint64_t to = Chance(20) ? 0 : Chance(50) ? Rand(size + 1) : Rand(kMaxOffset + 1);
    std::string d = Both(
        "ftruncate(h" + std::to_string(h->id) + ", " + std::to_string(to) + ")",
        [&](int t) { return static_cast<long>(::ftruncate(h->fd[t], static_cast<off_t>(to))); });
    if (!d.empty()) return d;
    return CompareHandle(*h);
  }

  std::string OpTruncatePath() {
    std::string name = PickName();
    uint64_t to = Rand(kMaxOffset + 1);
    std::string d = Both("truncate(" + name + ", " + std::to_string(to) + ")", [&](int t) {
      return static_cast<long>(::truncate(P(t, name).c_str(), static_cast<off_t>(to)));
    });
    if (!d.empty()) return d;
    return ComparePath(name);
  }

  std::string OpFsync() {
    Handle* h = PickHandle();
    if (!h) return OpOpen();
    bool data_only = Chance(30);
    std::string d =
        Both(std::string(data_only ? "fdatasync" : "fsync") + "(h" + std::to_string(h->id) + ")",
             [&](int t) {
               return static_cast<long>(data_only ? ::fdatasync(h->fd[t]) : ::fsync(h->fd[t]));
             });
    if (!d.empty()) return d;
    return CompareHandle(*h);
  }

  std::string OpRename() {
    std::string a = PickName(), b = PickName();
    if (Chance(70)) b = files_[Rand(files_.size())];
    std::string d = Both("rename(" + a + ", " + b + ")", [&](int t) {
      return static_cast<long>(::rename(P(t, a).c_str(), P(t, b).c_str()));
    });
    if (!d.empty()) return d;
    d = ComparePath(a);
    if (!d.empty()) return d;
    return ComparePath(b);
  }

  std::string OpLink() {
    std::string a = PickName(), b = PickName();
    std::string d = Both("link(" + a + ", " + b + ")", [&](int t) {
      return static_cast<long>(::link(P(t, a).c_str(), P(t, b).c_str()));
    });
    if (!d.empty()) return d;
    d = ComparePath(a);
    if (!d.empty()) return d;
    return ComparePath(b);
  }

  std::string OpUnlink() {
    std::string a = PickName();
    // Prefer a name that is open right now (unlink while open).
    if (!handles_.empty() && Chance(40)) a = handles_[Rand(handles_.size())].name;
    std::string d = Both("unlink(" + a + ")",
                         [&](int t) { return static_cast<long>(::unlink(P(t, a).c_str())); });
    if (!d.empty()) return d;
    d = ComparePath(a);
    if (!d.empty()) return d;
    for (const auto& h : handles_) {
      if (h.name == a) return CompareHandle(h);
    }
    return "";
  }

  std::string OpChmod() {
    static const mode_t kModes[] = {0600, 0644, 0640, 0755, 0444, 0700};
    std::string a = PickName();
    mode_t m = kModes[Rand(std::size(kModes))];
    std::ostringstream what;
    what << "chmod(" << a << ", 0" << std::oct << m << ")";
    std::string d =
        Both(what.str(), [&](int t) { return static_cast<long>(::chmod(P(t, a).c_str(), m)); });
    if (!d.empty()) return d;
    return ComparePath(a);
  }

  std::string OpMkdirRmdir() {
    if (dirs_.empty()) return OpPwrite();
    // Only the last folder in the list comes and goes; the others stay.
    const std::string& dname = dirs_.back();
    bool mk = Chance(50);
    std::string d = Both((mk ? "mkdir(" : "rmdir(") + dname + ")", [&](int t) {
      return static_cast<long>(mk ? ::mkdir(P(t, dname).c_str(), 0755)
                                  : ::rmdir(P(t, dname).c_str()));
    });
    if (!d.empty()) return d;
    return ComparePath(dname);
  }

  std::string RandomOp() {
    uint64_t r = Rand(100);
    if (r < 10) return OpOpen();
    if (r < 14) return OpClose();
    if (r < 19) return OpReopen();
    if (r < 45) return OpPwrite();
    if (r < 55) return OpPread();
    if (r < 62) return OpFtruncate();
    if (r < 64) return OpTruncatePath();
    if (r < 69) return OpFsync();
    if (r < 78) return OpRename();
    if (r < 85) return OpLink();
    if (r < 93) return OpUnlink();
    if (r < 97) return OpChmod();
    return OpMkdirRmdir();
  }

  std::string root_[2];
  std::mt19937_64 rng_;
  std::string label_;
  std::vector<std::string> files_, dirs_;
  std::vector<Handle> handles_;
  std::deque<std::string> log_;
  int step_ = 0;
  int next_id_ = 0;
  int succeeded_ = 0, failed_ = 0;
};

// The concurrent phase of a differential test: one Differ per thread, made by `make(t)`
// on its own names, `ops` steps each (a thread stops at its first mismatch). Returns the
// mismatches; prints each thread's summary.
inline std::vector<std::string> RunDiffersConcurrently(int threads, int ops,
                                                        const std::function<Differ(int)>& make) {
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> running;
  for (int t = 0; t < threads; t++) {
    running.emplace_back([&, t] {
      Differ diff = make(t);
      for (int i = 1; i <= ops; i++) {
        std::string d = diff.Step(i);
        if (!d.empty()) {
          std::lock_guard<std::mutex> l(mu);
          failures.push_back(d);
          break;
        }
      }
      diff.CloseAll();
      std::lock_guard<std::mutex> l(mu);
      std::cerr << "[ stats ] thread " << t << ": " << diff.Summary() << "\n";
    });
  }
  for (auto& th : running) th.join();
  return failures;
}

}  // namespace snapfs::mounttest
