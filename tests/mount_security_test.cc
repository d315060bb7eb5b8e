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

#include <functional>

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
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) out += "child died (status " + std::to_string(status) + ")";
  return out;
}

bool CanBecomeNobody() { return ::geteuid() == 0; }

#define SKIP_UNLESS_ROOT()                                                                   \
  do {                                                                                       \
    if (!CanBecomeNobody()) {                                                                \
      GTEST_SKIP() << "\n########## SKIPPED: not root, so no second uid to test with "       \
                      "(setuid 65534 needs root) ##########";                                \
    }                                                                                        \
  } while (0)

// In the child: `expr` must fail with `want`; appends a line to `f` otherwise.
#define REFUSED(f, expr, want)                                                                 \
  do {                                                                                         \
    errno = 0;                                                                                 \
    long rc_ = static_cast<long>(expr);                                                        \
    int e_ = errno;                                                                            \
    if (rc_ != -1 || e_ != (want)) {                                                           \
      f += std::string(#expr) + ": want " + ErrnoName(want) + ", got " +                      \
           (rc_ == -1 ? ErrnoName(e_) : "success (" + std::to_string(rc_) + ")") + "\n";      \
    }                                                                                          \
  } while (0)

// In the child: `expr` must fail with EPERM, EACCES or EOPNOTSUPP.
#define REFUSED_ANY(f, expr)                                                                   \
  do {                                                                                         \
    errno = 0;                                                                                 \
    long rc_ = static_cast<long>(expr);                                                        \
    int e_ = errno;                                                                            \
    if (rc_ != -1 || (e_ != EPERM && e_ != EACCES && e_ != EOPNOTSUPP)) {                      \
      f += std::string(#expr) + ": want a refusal, got " +                                    \
           (rc_ == -1 ? ErrnoName(e_) : "success (" + std::to_string(rc_) + ")") + "\n";     \
    }                                                                                          \
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
  void Snapshot(const std::string& dir, mode_t dir_mode, const std::string& file,
                mode_t file_mode, std::string_view data) {
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
  (void)WriteAllFd(fd, request + "\n");
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
