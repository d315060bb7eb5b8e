// Security through a real mount (issue 13): a second uid (65534) under allow_other, the
// control socket against another uid, `snapfs export` against hostile symlinks, and the
// modes of what the store, the daemon and its logs create. Credentials (S3, PostgreSQL):
// mount_security_creds_test.cc.
//
// The second uid is a forked child of the test process that drops to uid/gid 65534 (no
// supplementary groups) and reports what it saw through a pipe: the tests run as root.
// Without root (setuid fails) they skip, loudly.
#include <grp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>

#include <atomic>
#include <functional>
#include <thread>

#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

constexpr uid_t kNobody = 65534;

// Runs `fn` in a child process as uid/gid 65534 and returns what it returned (its list of
// findings: "" when everything was as expected), or why the child failed.
std::string AsNobody(const std::function<std::string()>& fn) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "pipe: " + ErrnoName(errno);
  pid_t pid = ::fork();
  if (pid < 0) return "fork: " + ErrnoName(errno);
  if (pid == 0) {
    ::close(p[0]);
    std::string out;
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) {
      out = "cannot become uid 65534: " + ErrnoName(errno);
    } else {
      out = fn();
    }
    (void)WriteAllFd(p[1], out);
    _exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    out += "child died (status " + std::to_string(status) + ")";
  return out;
}

bool CanBecomeNobody() { return ::geteuid() == 0; }

#define SKIP_UNLESS_ROOT()                                                             \
  do {                                                                                 \
    if (!CanBecomeNobody()) {                                                          \
      GTEST_SKIP() << "\n########## SKIPPED: not root, so no second uid to test with " \
                      "(setuid 65534 needs root) ##########";                          \
    }                                                                                  \
  } while (0)

// In the child: `expr` must fail with `want`; appends a line to `f` otherwise.
#define REFUSED(f, expr, want)                                                           \
  do {                                                                                   \
    errno = 0;                                                                           \
    long rc_ = static_cast<long>(expr);                                                  \
    int e_ = errno;                                                                      \
    if (rc_ != -1 || e_ != (want)) {                                                     \
      f += std::string(#expr) + ": want " + ErrnoName(want) + ", got " +                 \
           (rc_ == -1 ? ErrnoName(e_) : "success (" + std::to_string(rc_) + ")") + "\n"; \
    }                                                                                    \
  } while (0)

// In the child: `expr` must fail with EPERM, EACCES or EOPNOTSUPP.
#define REFUSED_ANY(f, expr)                                                             \
  do {                                                                                   \
    errno = 0;                                                                           \
    long rc_ = static_cast<long>(expr);                                                  \
    int e_ = errno;                                                                      \
    if (rc_ != -1 || (e_ != EPERM && e_ != EACCES && e_ != EOPNOTSUPP)) {                \
      f += std::string(#expr) + ": want a refusal, got " +                               \
           (rc_ == -1 ? ErrnoName(e_) : "success (" + std::to_string(rc_) + ")") + "\n"; \
    }                                                                                    \
  } while (0)

// In the child: `expr` must succeed.
#define ALLOWED(f, expr)                                                                       \
  do {                                                                                         \
    errno = 0;                                                                                 \
    long rc_ = static_cast<long>(expr);                                                        \
    if (rc_ == -1) f += std::string(#expr) + ": want success, got " + ErrnoName(errno) + "\n"; \
  } while (0)

// open(2) for the REFUSED/ALLOWED checks: closes what it opened (returns 0 then).
int TryOpen(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return -1;
  ::close(fd);
  return 0;
}

int TryOpendir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return -1;
  ::closedir(d);
  return 0;
}

int TryStat(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st);
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

class Security : public MountFixture {
 protected:
  // Lets uid 65534 reach the mount point (the fixture's folder is mkdtemp's 0700).
  void OpenTmpToOthers() { ASSERT_EQ(::chmod(tmp().c_str(), 0755), 0) << ErrnoName(errno); }

  // A folder with a marker: a snapshot. Its folder's mode is set last.
  void Snapshot(const std::string& dir, mode_t dir_mode, const std::string& file, mode_t file_mode,
                std::string_view data) {
    ASSERT_SYS(::mkdir(Path(dir).c_str(), 0755));
    std::string f = Path(dir + "/" + file);
    if (auto slash = file.rfind('/'); slash != std::string::npos) {
      ASSERT_SYS(::mkdir(Path(dir + "/" + file.substr(0, slash)).c_str(), 0755));
    }
    ASSERT_EQ(WriteFile(f, data, true, file_mode), 0);
    ASSERT_SYS(::chmod(f.c_str(), file_mode));
    ASSERT_EQ(WriteFile(Path(dir + "/_metadata"), "marker of " + dir, true), 0);
    ASSERT_SYS(::chmod(Path(dir).c_str(), dir_mode));
  }
};

// ---- A second uid under allow_other --------------------------------------------------

TEST_F(Security, SecondUidCannotReachAnotherUsersFilesUnderAllowOther) {
  SKIP_UNLESS_ROOT();
  ASSERT_NO_FATAL_FAILURE(RemountWith({"-o", "allow_other", "--metrics", "off"}));
  ASSERT_NO_FATAL_FAILURE(OpenTmpToOthers());
  // The mount root is shared like /tmp: anyone creates, only owners delete or rename.
  ASSERT_SYS(::chmod(mnt().c_str(), 01777));
  const std::string secret = Path("secret"), pub = Path("public");
  ASSERT_EQ(WriteFile(secret, "root's secret", true, 0600), 0);
  ASSERT_SYS(::setxattr(secret.c_str(), "user.k", "v", 1, 0));
  ASSERT_EQ(WriteFile(pub, "for everyone", true, 0644), 0);
  // Anyone may write this one: a write by another user drops its setuid and setgid bits.
  const std::string suid = Path("suid");
  ASSERT_EQ(WriteFile(suid, "#!/bin/sh\n", true, 0777), 0);
  ASSERT_SYS(::chmod(suid.c_str(), 06777));
  // A 0700 folder (with a 0644 file in a 0755 subfolder), and 0700 folders above, at and
  // below snapshots: their files must not be reachable through /.snapshots/ either.
  ASSERT_SYS(::mkdir(Path("priv").c_str(), 0755));
  ASSERT_NO_FATAL_FAILURE(Snapshot("priv/chk-1", 0755, "f", 0644, "under a 0700 job folder"));
  ASSERT_SYS(::chmod(Path("priv").c_str(), 0700));
  ASSERT_SYS(::mkdir(Path("open").c_str(), 0755));
  ASSERT_NO_FATAL_FAILURE(Snapshot("open/chk-2", 0700, "f", 0644, "in a 0700 snapshot folder"));
  ASSERT_NO_FATAL_FAILURE(Snapshot("open/chk-3", 0755, "sub/g", 0644, "in a 0700 subfolder"));
  ASSERT_SYS(::chmod(Path("open/chk-3/sub").c_str(), 0700));
  ASSERT_NO_FATAL_FAILURE(Snapshot("open/chk-4", 0755, "s", 0600, "a 0600 file"));
  ASSERT_NO_FATAL_FAILURE(Snapshot("open/chk-5", 0755, "pub", 0644, "readable by all"));
  // Kernel caches hold nothing that could answer for the daemon's modes: a fresh mount.
  ASSERT_NO_FATAL_FAILURE(RemountWith({"-o", "allow_other", "--metrics", "off"}));

  std::string found = AsNobody([&] {
    std::string f;
    // What another user may do: the test is not vacuous (allow_other works).
    ALLOWED(f, TryStat(mnt()));
    ALLOWED(f, TryOpendir(mnt()));
    if (ReadFile(pub) != "for everyone") f += "cannot read the 0644 public file\n";
    ALLOWED(f, TryOpen(Path("mine"), O_CREAT | O_WRONLY | O_EXCL, 0600));
    ALLOWED(f, ::truncate(Path("mine").c_str(), 3));
    if (ReadFile(Path(".snapshots/open/chk-5/pub")) != "readable by all") {
      f += "cannot read a 0644 file of a snapshot through its view\n";
    }
    {
      int fd = ::open(suid.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      ALLOWED(f, fd);
      if (fd >= 0) {
        ALLOWED(f, ::write(fd, "id\n", 3));
        ALLOWED(f, ::fsync(fd));
        ::close(fd);
      }
    }
    // The 0600 file: no read, no write, no truncate.
    REFUSED(f, TryOpen(secret, O_RDONLY), EACCES);
    REFUSED(f, TryOpen(secret, O_WRONLY), EACCES);
    REFUSED(f, TryOpen(secret, O_RDWR | O_TRUNC), EACCES);
    REFUSED(f, TryOpen(secret, O_WRONLY | O_APPEND), EACCES);
    REFUSED(f, ::truncate(secret.c_str(), 0), EACCES);
    // Not removed, renamed or replaced in a sticky folder; not re-owned or re-moded.
    REFUSED(f, ::unlink(secret.c_str()), EPERM);
    REFUSED(f, ::rename(secret.c_str(), Path("stolen").c_str()), EPERM);
    REFUSED(f, ::rename(Path("mine").c_str(), secret.c_str()), EPERM);
    REFUSED(f, ::chmod(secret.c_str(), 0666), EPERM);
    REFUSED(f, ::chown(secret.c_str(), kNobody, kNobody), EPERM);
    timespec ts[2] = {{1, 0}, {1, 0}};
    REFUSED(f, ::utimensat(AT_FDCWD, secret.c_str(), ts, 0), EPERM);
    REFUSED(f, ::utimensat(AT_FDCWD, secret.c_str(), nullptr, 0), EACCES);
    // xattrs: user.* follows the file's mode; trusted.*, security.* and system.* are not
    // another user's to set (the kernel checks the first two, snapfs the rest).
    char v[64];
    REFUSED(f, ::getxattr(secret.c_str(), "user.k", v, sizeof v), EACCES);
    REFUSED(f, ::setxattr(secret.c_str(), "user.k", "x", 1, 0), EACCES);
    REFUSED(f, ::setxattr(secret.c_str(), "user.new", "x", 1, 0), EACCES);
    REFUSED(f, ::removexattr(secret.c_str(), "user.k"), EACCES);
    REFUSED(f, ::setxattr(secret.c_str(), "trusted.x", "x", 1, 0), EPERM);
    REFUSED(f, ::setxattr(secret.c_str(), "security.x", "x", 1, 0), EPERM);
    REFUSED_ANY(f, ::setxattr(secret.c_str(), "system.x", "x", 1, 0));
    REFUSED_ANY(f, ::removexattr(secret.c_str(), "system.x"));
    REFUSED(f, ::setxattr(secret.c_str(), "noprefix", "x", 1, 0), EACCES);
    // The 0700 folder: not listed, not traversed, nothing created in it.
    REFUSED(f, TryOpendir(Path("priv")), EACCES);
    REFUSED(f, TryStat(Path("priv/chk-1")), EACCES);
    REFUSED(f, TryOpen(Path("priv/chk-1/f"), O_RDONLY), EACCES);
    REFUSED(f, ::mkdir(Path("priv/x").c_str(), 0777), EACCES);
    REFUSED(f, TryOpen(Path("priv/new"), O_CREAT | O_WRONLY), EACCES);
    REFUSED(f, TryOpen(Path("open/chk-3/sub/g"), O_RDONLY), EACCES);
    // Nor through the snapshots' views.
    REFUSED(f, TryOpen(Path(".snapshots/priv/chk-1/f"), O_RDONLY), EACCES);
    REFUSED(f, TryOpendir(Path(".snapshots/priv")), EACCES);
    REFUSED(f, TryOpen(Path(".snapshots/open/chk-2/f"), O_RDONLY), EACCES);
    REFUSED(f, TryOpen(Path(".snapshots/open/chk-3/sub/g"), O_RDONLY), EACCES);
    REFUSED(f, TryOpen(Path(".snapshots/open/chk-4/s"), O_RDONLY), EACCES);
    return f;
  });
  EXPECT_EQ(found, "") << "uid 65534 under allow_other:\n" << found << DaemonLog();

  // Nothing of root's changed; the second user's file is theirs.
  EXPECT_EQ(ModeOf(suid), 0777u) << "setuid/setgid kept after another user's write";
  EXPECT_EQ(ReadFile(suid), "#!/bin/sh\nid\n");
  // And a setuid file planted on the mount gives nothing: nosuid, nodev.
  std::ifstream mounts("/proc/self/mounts");
  bool listed = false;
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream in(line);
    std::string src, point, type, opts;
    in >> src >> point >> type >> opts;
    if (point != mnt()) continue;
    listed = true;
    EXPECT_NE(("," + opts + ",").find(",nosuid,"), std::string::npos) << line;
    EXPECT_NE(("," + opts + ",").find(",nodev,"), std::string::npos) << line;
    EXPECT_NE(("," + opts + ",").find(",default_permissions,"), std::string::npos) << line;
  }
  EXPECT_TRUE(listed);
  EXPECT_EQ(ReadFile(secret), "root's secret");
  EXPECT_EQ(ModeOf(secret), 0600u);
  char v[8] = {};
  EXPECT_EQ(::getxattr(secret.c_str(), "user.k", v, sizeof v), 1);
  EXPECT_EQ(::getxattr(secret.c_str(), "system.x", v, sizeof v), -1);
  EXPECT_FALSE(Exists(Path("stolen")));
  EXPECT_FALSE(Exists(Path("priv/x")));
  struct stat st;
  ASSERT_SYS(::stat(Path("mine").c_str(), &st));
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, kNobody);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 3);
}

// Without allow_other nobody but the mounting user gets in at all (the kernel's rule).
TEST_F(Security, WithoutAllowOtherASecondUidIsRefusedAtTheMountPoint) {
  SKIP_UNLESS_ROOT();
  ASSERT_NO_FATAL_FAILURE(OpenTmpToOthers());
  ASSERT_SYS(::chmod(mnt().c_str(), 0777));
  ASSERT_EQ(WriteFile(Path("public"), "x", true, 0644), 0);
  std::string found = AsNobody([&] {
    std::string f;
    REFUSED(f, TryStat(Path("public")), EACCES);
    REFUSED(f, TryOpen(Path("new"), O_CREAT | O_WRONLY), EACCES);
    return f;
  });
  EXPECT_EQ(found, "") << found;
}

// ---- The control socket ----------------------------------------------------------------

// Connects to a Unix socket and sends one request; the answer, or "error: ...".
std::string AskSocket(const std::string& path, const std::string& request) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "error: socket: " + ErrnoName(errno);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::string e = "error: connect: " + ErrnoName(errno);
    ::close(fd);
    return e;
  }
  std::string line = request + "\n";
  (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL);  // a refusing daemon reads nothing
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST_F(Security, ControlSocketRefusesAnotherUid) {
  SKIP_UNLESS_ROOT();
  const std::string sock = store() + "/control.sock";
  struct stat st;
  ASSERT_SYS(::lstat(sock.c_str(), &st));
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 077, 0u) << "control.sock mode " << std::oct << (st.st_mode & 07777);
  EXPECT_EQ(ModeOf(store()) & 077, 0u) << "store folder mode " << std::oct << ModeOf(store());
  ASSERT_EQ(WriteFile(Path("victim"), "keep me", true), 0);
  const std::string gc = "gc 0.5";
  // The owner is served (the request the others send below is a real one).
  std::string own = AskSocket(sock, gc);
  EXPECT_EQ(own.find("permission denied"), std::string::npos) << own;
  EXPECT_NE(own.find("\"pack_bytes\""), std::string::npos) << own;

  ASSERT_NO_FATAL_FAILURE(OpenTmpToOthers());
  // As the files are: the folder keeps another uid away from the socket.
  std::string found = AsNobody([&] { return AskSocket(sock, gc); });
  EXPECT_EQ(found, "error: connect: " + ErrnoName(EACCES)) << found;
  // With the folder and the socket opened up by mistake, the daemon itself refuses (it
  // reads the peer's uid with SO_PEERCRED), whatever the request.
  ASSERT_SYS(::chmod(store().c_str(), 0755));
  ASSERT_SYS(::chmod(sock.c_str(), 0777));
  for (const std::string& req : {gc, std::string("stats"), std::string("status"),
                                 std::string(R"(snap-rm {"paths":["victim"]})")}) {
    found = AsNobody([&] { return AskSocket(sock, req); });
    EXPECT_EQ(found, "{\"error\":\"permission denied\"}\n") << req;
  }
  ASSERT_SYS(::chmod(store().c_str(), 0700));
  EXPECT_EQ(ReadFile(Path("victim")), "keep me");
  // And the daemon still serves its owner.
  own = AskSocket(sock, "stats");
  EXPECT_NE(own.find("\"pack_bytes\""), std::string::npos) << own;
}

}  // namespace
}  // namespace snapfs::mounttest

namespace snapfs::mounttest {
namespace {

// ---- export and hostile symlinks -------------------------------------------------------

// Java writeUTF of an ASCII string: how Flink's _metadata names files.
std::string Utf(const std::string& s) {
  return std::string(1, static_cast<char>(s.size() >> 8)) + static_cast<char>(s.size() & 0xff) + s;
}

// Every entry below `dir` (relative path -> "f <content>", "d" or "l -> <target>").
std::map<std::string, std::string> Tree(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = it->path().string().substr(dir.size() + 1);
    if (it->is_symlink()) {
      out[rel] = "l -> " + std::filesystem::read_symlink(it->path()).string();
    } else if (it->is_directory()) {
      out[rel] = "d";
    } else {
      out[rel] = "f " + ReadFile(it->path().string());
    }
  }
  return out;
}

class SecurityExport : public Security {
 protected:
  // tmp/outside/secret: what no export may copy or touch; job/chk-1: a snapshot with a
  // state file and symlinks out of the snapshot and the mount, all named by its marker.
  void MakeHostileSnapshot() {
    outside_ = tmp() + "/outside";
    ASSERT_SYS(::mkdir(outside_.c_str(), 0755));
    ASSERT_EQ(WriteFile(outside_ + "/secret", "outside secret", true, 0644), 0);
    ASSERT_SYS(::mkdir(Path("job").c_str(), 0755));
    ASSERT_SYS(::mkdir(Path("job/shared").c_str(), 0755));
    ASSERT_SYS(::mkdir(Path("job/chk-1").c_str(), 0755));
    ASSERT_EQ(WriteFile(Path("job/chk-1/state"), "state bytes", true), 0);
    ASSERT_EQ(WriteFile(Path("job/shared/s1"), "shared bytes", true, 0600), 0);
    const std::string c = Path("job/chk-1/");
    ASSERT_SYS(::symlink((outside_ + "/secret").c_str(), (c + "abs").c_str()));
    ASSERT_SYS(::symlink("../../../outside/secret", (c + "rel").c_str()));
    ASSERT_SYS(::symlink(outside_.c_str(), (c + "dir").c_str()));
    ASSERT_SYS(::symlink("../../../outside", (c + "reldir").c_str()));
    ASSERT_SYS(::symlink("/etc/passwd", (c + "passwd").c_str()));
    // In the job folder too (references relative to it are viewed under the snapshot).
    ASSERT_SYS(::symlink(outside_.c_str(), Path("job/shared/out").c_str()));
    ASSERT_SYS(::symlink((outside_ + "/secret").c_str(), Path("job/shared/s2").c_str()));
    std::string marker = "\x49\x60\x67\x2d";
    for (const char* bare : {"state", "abs", "rel", "dir", "reldir", "passwd"}) marker += Utf(bare);
    for (const std::string& p :
         {Path("job/chk-1/abs"), Path("job/chk-1/dir/secret"), Path("job/chk-1/reldir/secret"),
          Path("job/shared/s1"), Path("job/shared/s2"), Path("job/shared/out/secret"),
          Path("job/chk-1/../../../outside/secret"), outside_ + "/secret",
          std::string("/etc/passwd")}) {
      marker += Utf("file:" + p);
    }
    ASSERT_EQ(WriteFile(Path("job/chk-1/_metadata"), marker, true), 0);
    marker_ = marker;
    // A marker that is a symlink (made in place, and renamed onto the name) is no snapshot.
    ASSERT_SYS(::mkdir(Path("job/chk-2").c_str(), 0755));
    ASSERT_SYS(::symlink((outside_ + "/secret").c_str(), Path("job/chk-2/_metadata").c_str()));
    ASSERT_SYS(::mkdir(Path("job/chk-3").c_str(), 0755));
    ASSERT_SYS(::symlink((outside_ + "/secret").c_str(), Path("job/chk-3/m").c_str()));
    ASSERT_SYS(::rename(Path("job/chk-3/m").c_str(), Path("job/chk-3/_metadata").c_str()));
  }

  // What an export of chk-1 must hold: its marker, its state file and the shared file
  // it names: no symlink, nothing from outside.
  void ExpectCleanCopy(const std::string& dest) {
    auto t = Tree(dest);
    std::map<std::string, std::string> want = {{"_metadata", "f " + marker_},
                                               {"state", "f state bytes"},
                                               {"shared", "d"},
                                               {"shared/s1", "f shared bytes"}};
    if (t != want) {
      std::string got;
      for (auto& [k, v] : t) got += "  " + k + ": " + v.substr(0, 40) + "\n";
      ADD_FAILURE() << dest << " holds:\n" << got;
    }
  }

  // The copy does not open to others what the snapshot keeps owner-only.
  void ExpectModes(const std::string& dest) {
    EXPECT_EQ(ModeOf(dest + "/shared/s1"), 0600u) << "a 0600 file exported";
    EXPECT_EQ(ModeOf(dest + "/state"), 0644u);
  }

  void ExpectOutsideUntouched() {
    auto t = Tree(outside_);
    EXPECT_EQ(t, (std::map<std::string, std::string>{{"secret", "f outside secret"}}));
  }

  std::string outside_, marker_;
};

TEST_F(SecurityExport, ExportNeverFollowsASymlinkOutOfTheSnapshot) {
  ASSERT_NO_FATAL_FAILURE(MakeHostileSnapshot());
  // Mounted (read through the views) and unmounted (read in-process).
  CmdResult r = Snapfs({"export", Path("job/chk-1"), tmp() + "/e1"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  ExpectCleanCopy(tmp() + "/e1");
  ExpectModes(tmp() + "/e1");
  r = Snapfs({"export", Path("job/chk-1"), tmp() + "/e2", "--relocate"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  EXPECT_EQ(Tree(tmp() + "/e2").size(), 4u);
  for (const char* chk : {"job/chk-2", "job/chk-3"}) {
    r = Snapfs({"export", Path(chk), tmp() + "/e-" + std::string(chk).substr(4)});
    EXPECT_EQ(r.code, 5) << chk << " has a symlink for a marker: not a snapshot\n" << r.Describe();
    EXPECT_FALSE(Exists(tmp() + "/e-" + std::string(chk).substr(4)));
  }
  // The views show no symlink either.
  auto names = ListDir(Path(".snapshots/job/chk-1"));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"_metadata", "shared", "state"}));
  ASSERT_NO_FATAL_FAILURE(Unmount());
  r = Snapfs({"export", store() + "/job/chk-1", tmp() + "/e3"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  ExpectCleanCopy(tmp() + "/e3");
  ExpectModes(tmp() + "/e3");
  ExpectOutsideUntouched();
}

TEST_F(SecurityExport, ExportNeverWritesOutsideDest) {
  ASSERT_NO_FATAL_FAILURE(MakeHostileSnapshot());
  const std::string elsewhere = tmp() + "/elsewhere";
  ASSERT_SYS(::mkdir(elsewhere.c_str(), 0755));
  // DEST is a symlink: to an empty folder, to a folder that does not exist, to a file.
  const std::string d1 = tmp() + "/d1", d2 = tmp() + "/d2", d3 = tmp() + "/d3";
  ASSERT_SYS(::symlink(elsewhere.c_str(), d1.c_str()));
  ASSERT_SYS(::symlink((tmp() + "/not-there").c_str(), d2.c_str()));
  ASSERT_SYS(::symlink((outside_ + "/secret").c_str(), d3.c_str()));
  for (const auto& d : {d1, d2, d3, d1 + "/"}) {
    CmdResult r = Snapfs({"export", Path("job/chk-1"), d});
    EXPECT_NE(r.code, 0) << "export to a symlink " << d << " must be refused\n" << r.Describe();
  }
  EXPECT_TRUE(Tree(elsewhere).empty()) << "written through the DEST symlink";
  EXPECT_FALSE(Exists(tmp() + "/not-there"));
  // DEST holds symlinks where the copy's files and folders go: refused, not followed.
  const std::string d4 = tmp() + "/d4";
  ASSERT_SYS(::mkdir(d4.c_str(), 0755));
  ASSERT_SYS(::symlink((outside_ + "/secret").c_str(), (d4 + "/state").c_str()));
  ASSERT_SYS(::symlink(elsewhere.c_str(), (d4 + "/shared").c_str()));
  ASSERT_SYS(::symlink((outside_ + "/secret").c_str(), (d4 + "/_metadata").c_str()));
  CmdResult r = Snapfs({"export", Path("job/chk-1"), d4});
  EXPECT_EQ(r.code, 2) << r.Describe();
  EXPECT_TRUE(Tree(elsewhere).empty());
  ExpectOutsideUntouched();
  // A path through a symlinked parent is the user's own choice: it works (the symlink is
  // above DEST, not DEST).
  const std::string via = tmp() + "/via";
  ASSERT_SYS(::symlink(elsewhere.c_str(), via.c_str()));
  r = Snapfs({"export", Path("job/chk-1"), via + "/copy"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  ExpectCleanCopy(elsewhere + "/copy");
  ExpectOutsideUntouched();
}

// A symlink planted in DEST while the copy runs (another user's, in a shared folder) is
// not followed: the copy fails instead of writing where it points.
TEST_F(SecurityExport, ExportDoesNotFollowASymlinkPlantedWhileItRuns) {
  ASSERT_NO_FATAL_FAILURE(MakeHostileSnapshot());
  const std::string elsewhere = tmp() + "/elsewhere", dest = tmp() + "/dest";
  ASSERT_SYS(::mkdir(elsewhere.c_str(), 0755));
  // As soon as export has made DEST, "shared" in it becomes a link to elsewhere (export
  // writes _metadata first, then shared/s1).
  std::atomic<bool> stop{false}, planted{false};
  std::thread attacker([&] {
    while (!stop && !planted) {
      if (::symlink(elsewhere.c_str(), (dest + "/shared").c_str()) == 0) planted = true;
    }
  });
  CmdResult r = Snapfs({"export", Path("job/chk-1"), dest});
  stop = true;
  attacker.join();
  if (!planted) GTEST_SKIP() << "the link was never planted (export made shared/ first)";
  EXPECT_EQ(r.code, 1) << r.Describe();
  EXPECT_NE(r.err.find("symbolic link"), std::string::npos) << r.err;
  EXPECT_TRUE(Tree(elsewhere).empty()) << "written through a link planted in DEST";
  ExpectOutsideUntouched();
}

// ---- modes of what snapfs creates -------------------------------------------------------

// The permission bits of everything below `dir` that group or others have.
std::string OpenToOthers(const std::string& dir) {
  std::string out;
  std::error_code ec;
  if ((ModeOf(dir) & 077) != 0) out += dir + " " + std::to_string(ModeOf(dir)) + "\n";
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    mode_t m = ModeOf(it->path().string());
    if (m & 077) {
      char b[16];
      std::snprintf(b, sizeof b, "%04o", m);
      out += it->path().string() + " " + b + "\n";
    }
  }
  return out;
}

TEST_F(Security, StoreConfigLogsAndSocketAreOwnerOnlyEvenUnderUmaskZero) {
  // A store made and mounted under umask 0 (the modes must not depend on it).
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::filesystem::remove_all(store());
  ::umask(0);
  CmdResult init = Snapfs({"init", store()});
  ASSERT_EQ(init.code, 0) << init.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount({"--metrics", "off"}));
  ASSERT_EQ(WriteFile(Path("f"), RandomBytes(300 * kKiB, 7), true), 0);
  ASSERT_EQ(Snapfs({"status", mnt()}).code, 0);
  ASSERT_EQ(Snapfs({"gc", mnt()}).code, 0);
  EXPECT_EQ(ModeOf(store()), 0700u);
  EXPECT_EQ(ModeOf(store() + "/snapfs.conf"), 0600u);
  EXPECT_EQ(ModeOf(store() + "/lock"), 0600u);
  EXPECT_EQ(ModeOf(store() + "/daemon.log"), 0600u);
  EXPECT_EQ(ModeOf(store() + "/packs"), 0700u);
  EXPECT_EQ(ModeOf(store() + "/meta"), 0700u);
  EXPECT_EQ(ModeOf(store() + "/control.sock") & 077, 0u);
  // The whole store: folders owner-only; RocksDB's own files inside meta/ are 0644 (it
  // sets their mode itself), unreachable behind meta/ and the store folder.
  std::string open = OpenToOthers(store());
  std::string unexpected;
  for (size_t i = 0, j; i < open.size(); i = j + 1) {
    j = open.find('\n', i);
    std::string line = open.substr(i, j - i);
    if (!line.starts_with(store() + "/meta/") || !line.ends_with(" 0644"))
      unexpected += line + "\n";
  }
  EXPECT_EQ(unexpected, "") << "open to group or others";
  // A log named with --log, and the daemon's stderr file.
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "off", "--log", tmp() + "/my.log"}));
  EXPECT_EQ(ModeOf(tmp() + "/my.log"), 0600u);
  if (Exists(store() + "/daemon.stderr")) {
    EXPECT_EQ(ModeOf(store() + "/daemon.stderr"), 0600u);
  }
  // Another uid reaches none of it.
  if (CanBecomeNobody()) {
    ASSERT_NO_FATAL_FAILURE(OpenTmpToOthers());
    std::string found = AsNobody([&] {
      std::string f;
      REFUSED(f, TryOpendir(store()), EACCES);
      REFUSED(f, TryOpen(store() + "/snapfs.conf", O_RDONLY), EACCES);
      REFUSED(f, TryOpen(store() + "/daemon.log", O_RDONLY), EACCES);
      REFUSED(f, TryOpen(store() + "/meta/CURRENT", O_RDONLY), EACCES);
      REFUSED(f, TryOpen(tmp() + "/my.log", O_RDONLY), EACCES);
      return f;
    });
    EXPECT_EQ(found, "") << found;
  }
}

}  // namespace
}  // namespace snapfs::mounttest
