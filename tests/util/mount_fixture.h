// Integration-test fixture that mounts a real snapfs store with the CLI and drives it
// through plain syscalls on the mount point.
//
//   <tmp>/store   the store (`snapfs init`)
//   <tmp>/mnt     the mount point (`snapfs mount store mnt`, daemonised)
//
// <tmp> is a fresh mkdtemp folder under /tmp, so tests can run in parallel (ctest -j).
// TearDown always unmounts (`snapfs umount`, falling back to `fusermount3 -u -z` and a
// SIGKILL of a daemon that does not go away) and then removes <tmp>, also when the test
// body failed half-way. Test bodies should hold descriptors in UniqueFd / UniqueDir so
// that an early ASSERT return closes them before TearDown unmounts.
//
// Where /dev/fuse is missing the tests are skipped (GTEST_SKIP) with a loud message.
//
// Thread-safety: the fixture itself is not thread-safe (use its helpers from the test's
// main thread); the free functions that only take paths/descriptors are.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "daemon/mount_table.h"
#include "tests/util/random.h"

#ifndef SNAPFS_BINARY
#error "SNAPFS_BINARY (the path of the built snapfs CLI) must be defined by the build"
#endif

namespace snapfs::mounttest {

using test::kKiB;
using test::kMiB;
using test::RandomBytes;

// ---- Descriptors that close themselves ------------------------------------------------

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  // Closes now and returns close(2)'s result (0 if there was nothing to close).
  int Close() {
    if (fd_ < 0) return 0;
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void Reset() { (void)Close(); }
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

struct DirCloser {
  void operator()(DIR* d) const {
    if (d) ::closedir(d);
  }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

// ---- Running commands ----------------------------------------------------------------

struct CmdResult {
  int code = -1;  // exit code; 128+N when killed by signal N; -1 if it could not run
  std::string out, err;
  bool timed_out = false;
  std::string Describe() const {
    std::ostringstream s;
    s << "exit " << code << (timed_out ? " (TIMED OUT)" : "") << "\n--- stdout ---\n"
      << out << "--- stderr ---\n"
      << err;
    return s.str();
  }
};

inline std::string ShellJoin(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

// Resolves a program name through $PATH (before fork: execv only in the child).
inline std::string ResolveProgram(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return prog;
  const char* path = ::getenv("PATH");
  std::string p = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::stringstream ss(p);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string cand = (dir.empty() ? "." : dir) + "/" + prog;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
  }
  return prog;
}

// Runs argv (no shell) with stdin from /dev/null, capturing stdout and stderr. The child
// gets no descriptor of ours but 0/1/2: a daemon must never inherit an fd that points into
// its own mount. On timeout the child's process group is killed.
inline CmdResult RunCmd(const std::vector<std::string>& argv, int timeout_s = 120) {
  CmdResult r;
  if (argv.empty()) return r;
  std::string prog = ResolveProgram(argv[0]);
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  int outp[2], errp[2];
  if (::pipe2(outp, O_CLOEXEC) != 0) return r;
  if (::pipe2(errp, O_CLOEXEC) != 0) {
    ::close(outp[0]);
    ::close(outp[1]);
    return r;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {outp[0], outp[1], errp[0], errp[1]}) ::close(fd);
    return r;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(outp[1], 1);
    ::dup2(errp[1], 2);
    ::close_range(3, ~0U, 0);
    ::execv(prog.c_str(), cargv.data());
    _exit(127);
  }
  ::close(outp[1]);
  ::close(errp[1]);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::chrono::steady_clock::time_point drain_deadline{};
  bool exited = false;
  int status = 0;
  pollfd pf[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_pipes = 2;
  while (true) {
    if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      // A daemonised grandchild may hold the pipes a little longer: drain briefly only.
      drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    }
    auto now = std::chrono::steady_clock::now();
    if (open_pipes == 0 && exited) break;
    if (exited && now > drain_deadline) break;
    if (!exited && now > deadline) {
      r.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      exited = true;
      break;
    }
    if (open_pipes == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    int n = ::poll(pf, 2, 50);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (pf[i].fd < 0 || pf[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(pf[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(pf[i].fd);
        pf[i].fd = -1;
        open_pipes--;
      }
    }
  }
  for (auto& p : pf) {
    if (p.fd >= 0) ::close(p.fd);
  }
  if (WIFEXITED(status))
    r.code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    r.code = 128 + WTERMSIG(status);
  return r;
}

// ---- Files ---------------------------------------------------------------------------

// Writes all of `data` through `write_some(ptr, len, done)` (a write(2)-like call told how
// much is already written), retrying short writes and EINTR; returns 0 or the errno.
template <typename WriteSome>
int WriteAllWith(std::string_view data, WriteSome write_some) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write_some(data.data() + done, data.size() - done, done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

// Writes all of `data` at `off` with pwrite; returns 0 or the errno.
inline int PwriteAll(int fd, std::string_view data, off_t off) {
  return WriteAllWith(data, [&](const char* p, size_t n, size_t done) {
    return ::pwrite(fd, p, n, off + static_cast<off_t>(done));
  });
}

// Writes all of `data` at the current offset; returns 0 or the errno.
inline int WriteAllFd(int fd, std::string_view data) {
  return WriteAllWith(data, [&](const char* p, size_t n, size_t) { return ::write(fd, p, n); });
}

// Reads up to `n` bytes at `off` (short only at EOF). Sets *err to 0 or the errno.
inline std::string PreadAll(int fd, size_t n, off_t off, int* err = nullptr) {
  std::string out(n, '\0');
  size_t got = 0;
  if (err) *err = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, off + static_cast<off_t>(got));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (err) *err = errno;
      break;
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

// Reads a descriptor from offset 0 to EOF with pread.
inline std::string ReadFd(int fd, int* err = nullptr) {
  std::string out;
  if (err) *err = 0;
  char buf[256 * 1024];
  off_t off = 0;
  while (true) {
    ssize_t r = ::pread(fd, buf, sizeof buf, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (err) *err = errno;
      break;
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
    off += r;
  }
  return out;
}

// Creates/truncates `path` with `data` (open, write, optional fsync, close). 0 or errno.
inline int WriteFile(const std::string& path, std::string_view data, bool fsync_it = false,
                     mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return errno;
  int e = WriteAllFd(fd, data);
  if (e == 0 && fsync_it && ::fsync(fd) != 0) e = errno;
  if (::close(fd) != 0 && e == 0) e = errno;
  return e;
}

// Reads the whole file; *err (if given) gets 0 or the errno of open/read.
inline std::string ReadFile(const std::string& path, int* err = nullptr) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return {};
  }
  std::string s = ReadFd(fd, err);
  ::close(fd);
  return s;
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Names in a folder (without . and ..), via opendir/readdir.
inline std::vector<std::string> ListDir(const std::string& path, int* err = nullptr) {
  std::vector<std::string> names;
  if (err) *err = 0;
  UniqueDir d(::opendir(path.c_str()));
  if (!d) {
    if (err) *err = errno;
    return names;
  }
  errno = 0;
  while (dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
    errno = 0;
  }
  if (errno != 0 && err) *err = errno;
  return names;
}

inline std::string ErrnoName(int e) {
  if (e == 0) return "0 (success)";
  const char* n = ::strerrordesc_np(e);
  const char* abbr = ::strerrorname_np(e);
  return std::string(abbr ? abbr : "?") + " (" + (n ? n : "?") + ")";
}

// Does /proc/self/mounts list `mp` (with fs type fuse.snapfs if snapfs_only)?
inline bool IsMounted(const std::string& mp, bool snapfs_only = false) {
  for (const auto& m : fuse::ReadMountTable()) {
    if (m.point == mp && (!snapfs_only || m.type == "fuse.snapfs")) return true;
  }
  return false;
}

// The mount points strictly below `dir`, in the kernel's order.
inline std::vector<std::string> MountsBelow(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& m : fuse::ReadMountTable()) {
    if (m.point.starts_with(dir + "/")) out.push_back(m.point);
  }
  return out;
}

// A process is gone when kill(0) fails or it is a zombie nobody has reaped yet.
// A TCP port on 127.0.0.1 that nothing listened on a moment ago (for --metrics).
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool ProcessGone(int pid) {
  if (pid <= 0) return true;
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(f, stat);
  auto rp = stat.rfind(')');
  if (rp == std::string::npos || rp + 2 >= stat.size()) return true;
  return stat[rp + 2] == 'Z' || stat[rp + 2] == 'X';
}

// Threads of `pid` that have not exited (a killed process whose leader is a zombie can
// still have one the kernel holds).
inline int LiveThreads(int pid) {
  int n = 0;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(
           "/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream f(t.path() / "stat");
    std::string stat;
    std::getline(f, stat);
    auto rp = stat.rfind(')');
    if (rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] != 'Z' &&
        stat[rp + 2] != 'X') {
      n++;
    }
  }
  return n;
}

// After a kill -9 of a daemon: if a thread of it is still there after `grace`, aborts the
// daemon's FUSE connection (fusectl), as an operator would (docs/reliability.md, finding
// 32). A daemon thread sending the kernel a notification (the purger invalidating a name
// of the folder it purged) waits, uninterruptibly, for that folder's lock; if a request
// to the same daemon holds the lock, the killed daemon never exits (its /dev/fuse stays
// open) and the request never gets an answer: the process that made it hangs. Returns
// whether it had to abort.
inline bool AbortIfKilledDaemonHangs(int pid, uint64_t connection,
                                     std::chrono::milliseconds grace = std::chrono::seconds(2)) {
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (LiveThreads(pid) > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      if (connection == 0) return false;
      Status s = fuse::AbortConnection(connection);
      std::cout << "WARNING: killed daemon " << pid << " hung in the kernel (a notification "
                << "waiting on a request to itself); aborted FUSE connection " << connection
                << ": " << s.ToString() << std::endl;
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Waits until the pid has fully disappeared (reaped too: `snapfs mount` refuses a store
// whose lock names a pid that kill(0) still finds). True if it did within `timeout`.
inline bool WaitPidVanished(int pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pid > 0 && ::kill(pid, 0) == 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// ---- Syscall expectations ----

// Expects `expr` to return -1 with errno `err`.
#define EXPECT_ERRNO(expr, err)                                                                    \
  do {                                                                                             \
    errno = 0;                                                                                     \
    auto rc_ = (expr);                                                                             \
    int e_ = errno;                                                                                \
    EXPECT_EQ(rc_, -1) << #expr << " should fail with " << ErrnoName(err);                         \
    EXPECT_EQ(e_, (err)) << #expr << ": expected " << ErrnoName(err) << ", got " << ErrnoName(e_); \
  } while (0)

#define ASSERT_SYS(expr) ASSERT_NE((expr), -1) << #expr << ": " << ErrnoName(errno)
#define EXPECT_SYS(expr) EXPECT_NE((expr), -1) << #expr << ": " << ErrnoName(errno)

// ---- The fixture ---------------------------------------------------------------------

class MountFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      std::cerr << "\n"
                << "************************************************************\n"
                << "*** /dev/fuse is not usable (" << ErrnoName(errno) << "):\n"
                << "*** SKIPPING the snapfs MOUNT integration tests.\n"
                << "*** They did NOT run; nothing about the mount was verified.\n"
                << "************************************************************\n";
      GTEST_SKIP() << "/dev/fuse is not available: mount integration tests NOT run";
    }
    ::umask(022);  // modes asserted by the tests assume it (process-wide, test process only)
    char tmpl[] = "/tmp/snapfs-mnt-XXXXXX";
    char* d = ::mkdtemp(tmpl);
    ASSERT_NE(d, nullptr) << "mkdtemp: " << ErrnoName(errno);
    char* real = ::realpath(d, nullptr);
    tmp_ = real ? real : d;
    ::free(real);
    store_ = tmp_ + "/store";
    mnt_ = tmp_ + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0) << ErrnoName(errno);
    std::vector<std::string> init_args = {"init", store_};
    for (auto& a : InitExtraArgs()) init_args.push_back(a);
    if (HasFatalFailure()) return;
    CmdResult init = Snapfs(init_args);
    ASSERT_EQ(init.code, 0) << "snapfs init failed:\n" << init.Describe();
    ASSERT_NO_FATAL_FAILURE(AfterInit());
    ASSERT_NO_FATAL_FAILURE(Mount());
  }

  void TearDown() override {
    if (tmp_.empty()) return;
    CleanupMount();
    for (const auto& mp : MountsBelow(tmp_)) {
      std::cerr << "*** mount_fixture: still mounted below " << tmp_ << ": " << mp
                << "\n*** leaving " << tmp_ << " in place\n";
      ADD_FAILURE() << "could not unmount " << mp;
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
    if (ec) std::cerr << "mount_fixture: removing " << tmp_ << ": " << ec.message() << "\n";
  }

  // More `snapfs init` arguments, asked once tmp() exists (an S3-backed store:
  // tests/util/mount_s3.h).
  virtual std::vector<std::string> InitExtraArgs() { return {}; }

  // Runs between `snapfs init` and the first mount (the LazyFS power cut moves the
  // store's meta/ and packs/ elsewhere there: tests/torture_test.cc).
  virtual void AfterInit() {}

  // ---- Paths ----
  const std::string& tmp() const { return tmp_; }
  const std::string& store() const { return store_; }
  const std::string& mnt() const { return mnt_; }
  std::string Path(std::string_view rel) const {
    if (rel.empty()) return mnt_;
    return mnt_ + "/" + std::string(rel);
  }

  // ---- Commands ----
  static CmdResult Run(const std::vector<std::string>& argv, int timeout_s = 120) {
    return RunCmd(argv, timeout_s);
  }
  static CmdResult Snapfs(std::vector<std::string> args, int timeout_s = 120) {
    args.insert(args.begin(), SNAPFS_BINARY);
    return RunCmd(args, timeout_s);
  }

  // `snapfs mount store mnt [extra options]`; fatal failure unless it is live afterwards.
  void Mount(const std::vector<std::string>& extra = {}) {
    CmdResult r = TryMount(extra);
    ASSERT_EQ(r.code, 0) << "snapfs mount failed:\n" << r.Describe() << DaemonLog();
    ASSERT_TRUE(IsMounted(mnt_, true)) << mnt_ << " is not in /proc/self/mounts after mount";
    EXPECT_GT(daemon_pid_, 0) << "store/lock names no daemon pid after mount";
  }

  // `snapfs mount store mnt [extra options]` without assertions; on success the fixture
  // tracks the new daemon (its pid from store/lock).
  CmdResult TryMount(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"mount", store_, mnt_};
    args.insert(args.end(), extra.begin(), extra.end());
    CmdResult r = Snapfs(args, 60);
    if (r.code == 0) daemon_pid_ = DaemonPid();
    return r;
  }

  // `snapfs umount mnt`; fatal failure unless it exited 0, the mount is gone and the
  // store lock is released (the daemon flushed and exited).
  //
  // snapfs umount is meant to return only after the daemon has released the store. It
  // waits until store/lock no longer names the daemon, but the daemon empties that file a
  // moment before it drops the flock, so under load the flock can still be held for a
  // moment after umount returned (see MountRemount.UmountReturnsOnlyAfterStoreReleased,
  // which checks that strictly). Here a short grace keeps that race from failing every
  // test that remounts; it is reported on stderr when it happens.
  void Unmount() {
    CmdResult r = Snapfs({"umount", mnt_}, 60);
    ASSERT_EQ(r.code, 0) << "snapfs umount failed:\n" << r.Describe() << DaemonLog();
    ASSERT_FALSE(IsMounted(mnt_)) << mnt_ << " still in /proc/self/mounts after snapfs umount";
    if (!StoreLockFree()) {
      std::cerr << "*** mount_fixture: the store lock was still held when snapfs umount "
                << "returned (daemon pid " << daemon_pid_ << "); waiting for it\n";
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!StoreLockFree() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    ASSERT_TRUE(StoreLockFree()) << "store lock still held 10 s after snapfs umount returned";
    EXPECT_EQ(DaemonPid(), 0) << "store/lock still names a pid after a clean unmount";
    daemon_pid_ = 0;
  }

  void Remount() { RemountWith({}); }

  // Unmounts and mounts again with `extra` mount options (e.g. {"--metrics", "off"}); the
  // fixture then tracks the new daemon.
  void RemountWith(const std::vector<std::string>& extra) {
    ASSERT_NO_FATAL_FAILURE(Unmount());
    ASSERT_NO_FATAL_FAILURE(Mount(extra));
  }

  // The pid of the daemon the fixture mounted last (0 when it has unmounted or killed it).
  int daemon_pid() const { return daemon_pid_; }

  // The pid recorded in store/lock (0 if none).
  int DaemonPid() const {
    std::ifstream f(store_ + "/lock");
    int pid = 0;
    if (f >> pid) return pid;
    return 0;
  }

  // True if nobody holds the flock on store/lock.
  bool StoreLockFree() const {
    int fd = ::open((store_ + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    bool free_now = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    ::close(fd);  // also drops our flock
    return free_now;
  }

  // kill -9 of the daemon, waiting until it is gone (its store flock goes with it); the
  // mount stays listed, dead (ENOTCONN), as after an OOM kill.
  void KillDaemonLeaveDeadMount() {
    int pid = DaemonPid();
    ASSERT_GT(pid, 0) << "no daemon pid in " << store_ << "/lock";
    EXPECT_EQ(pid, daemon_pid_) << "store/lock names another pid than the daemon we mounted";
    const uint64_t connection = fuse::SnapfsConnection(mnt_);
    ASSERT_EQ(::kill(pid, SIGKILL), 0) << "kill -9 " << pid << ": " << ErrnoName(errno);
    (void)AbortIfKilledDaemonHangs(pid, connection);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!ProcessGone(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(ProcessGone(pid)) << "daemon " << pid << " survived SIGKILL";
    ASSERT_TRUE(IsMounted(mnt_, true)) << "the dead mount should still be listed";
  }

  // kill -9 of the daemon, then clears the dead mount with fusermount3 -u -z and waits
  // until the pid is gone for good.
  void KillDaemon9() {
    int pid = DaemonPid();
    ASSERT_NO_FATAL_FAILURE(KillDaemonLeaveDeadMount());
    CmdResult r = Run({"fusermount3", "-u", "-z", mnt_}, 30);
    EXPECT_EQ(r.code, 0) << "fusermount3 -u -z of the dead mount:\n" << r.Describe();
    ASSERT_FALSE(IsMounted(mnt_)) << "dead mount still listed after fusermount3 -u -z";
    // The dead daemon's pid stays in store/lock, and `snapfs mount` refuses the store while
    // kill(pid, 0) still finds that pid, which it does for an unreaped zombie (PID 1 here
    // reaps orphans only about once a second): wait until it is reaped. See
    // MountRemount.ZombieDaemonDoesNotBlockMount for that behaviour on its own.
    EXPECT_TRUE(WaitPidVanished(pid, std::chrono::seconds(20)))
        << "killed daemon " << pid << " was not reaped within 20 s";
    daemon_pid_ = 0;
  }

  // `snapfs ARGS... --json`, parsed; a failure unless it exits `want` and prints JSON
  // (returned as parsed: a discarded value when it printed none).
  nlohmann::json SnapfsJson(std::vector<std::string> args, int want = 0) {
    args.push_back("--json");
    CmdResult r = Snapfs(args);
    EXPECT_EQ(r.code, want) << ShellJoin(args) << ":\n" << r.Describe();
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << ShellJoin(args) << " printed no JSON:\n" << r.out;
    return j;
  }

  // The same, for verbs that print one JSON object: a failure unless they do, and an
  // empty object then, so that lookups in it fail softly.
  nlohmann::json SnapfsJsonObject(std::vector<std::string> args, int want = 0) {
    nlohmann::json j = SnapfsJson(args, want);
    EXPECT_TRUE(j.is_object()) << ShellJoin(args) << " printed no JSON object";
    return j.is_object() ? j : nlohmann::json::object();
  }

  // `snapfs stats store --json` (the store must not be mounted).
  nlohmann::json Stats() {
    CmdResult r = Snapfs({"stats", store_, "--json"});
    EXPECT_EQ(r.code, 0) << r.Describe();
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(j.is_object()) << "snapfs stats --json printed no JSON object:\n" << r.Describe();
    if (!j.is_object()) j = nlohmann::json::object();
    return j;
  }

  // One number from Stats() (0 if missing).
  static uint64_t StatU64(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) {
      ADD_FAILURE() << "snapfs stats --json has no number '" << key << "': " << j.dump();
      return 0;
    }
    return it->get<uint64_t>();
  }

  std::string DaemonLog() const {
    std::ifstream f(store_ + "/daemon.log");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    if (s.empty()) return "";
    if (s.size() > 4000) s = "..." + s.substr(s.size() - 4000);
    return "\n--- store/daemon.log ---\n" + s;
  }

 private:
  // Unmounts every mount below tmp_ (the fixture's own and any a test made elsewhere in
  // tmp_), deepest first, with snapfs umount or, failing that, a lazy fusermount3.
  void CleanupMount() {
    std::vector<std::string> mps = MountsBelow(tmp_);
    std::sort(mps.begin(), mps.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    mps.erase(std::unique(mps.begin(), mps.end()), mps.end());
    for (const auto& mp : mps) {
      if (!IsMounted(mp)) continue;
      CmdResult r = Snapfs({"umount", mp}, 60);
      if (r.code != 0 || IsMounted(mp)) {
        std::cerr << "*** mount_fixture: snapfs umount " << mp << " failed (" << r.Describe()
                  << "); falling back to fusermount3 -u -z\n";
        CmdResult f = Run({"fusermount3", "-u", "-z", mp}, 30);
        if (f.code != 0) std::cerr << "fusermount3 -u -z: " << f.Describe() << "\n";
      }
    }
    WaitDaemonOrKill();
  }

  // After an unmount the daemon flushes and exits; if it does not, kill it so that no
  // daemon outlives its test. Only the daemon this fixture started, and only while that
  // pid still is a snapfs process.
  void WaitDaemonOrKill() {
    int pid = daemon_pid_;
    daemon_pid_ = 0;
    if (pid <= 0 || pid == ::getpid()) return;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!ProcessGone(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (ProcessGone(pid)) return;
    std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find("snapfs") == std::string::npos || cmd.find(store_) == std::string::npos) return;
    std::cerr << "*** mount_fixture: daemon " << pid << " still running 20 s after unmount; "
              << "sending SIGKILL\n";
    ::kill(pid, SIGKILL);
  }

  std::string tmp_, store_, mnt_;
  int daemon_pid_ = 0;
};

}  // namespace snapfs::mounttest
