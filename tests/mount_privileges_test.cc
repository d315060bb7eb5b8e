// Security xattrs through the mount, and what they cost in FUSE round trips.
//
// Dropping privileges on write, truncate, O_TRUNC open and chown. The daemon negotiates
// FUSE_HANDLE_KILLPRIV_V2 (fuse/kill_priv.h) so that the kernel stops asking for
// security.capability before every write(2); dropping S_ISUID, S_ISGID and file
// capabilities is then the daemon's job. Each case runs on the mount and on a native
// folder beside it, and the outcomes must be the same.
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

constexpr uid_t kNobody = 65534;

// Runs `op` in a child process as uid/gid 65534 with no supplementary groups; the errno it
// returns (0: success), or -1 if the child could not become that user.
int AsNobody(const std::function<int()>& op) {
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) {
      ::_exit(255);
    }
    ::_exit(op());
  }
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
  int code = WEXITSTATUS(st);
  return code == 255 ? -1 : code;
}

int AppendAs(const std::string& p, bool nobody) {
  auto op = [p] {
    int fd = ::open(p.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = ::write(fd, "more\n", 5) == 5 ? 0 : errno;
    ::close(fd);
    return e;
  };
  return nobody ? AsNobody(op) : op();
}

// struct vfs_cap_data, revision 2, effective, CAP_NET_BIND_SERVICE permitted.
std::string CapsBlob() {
  const uint32_t caps[5] = {0x02000001u, 1u << 10, 0, 0, 0};
  return std::string(reinterpret_cast<const char*>(caps), sizeof caps);
}

// One case: a file made by root with `mode` (and group `gid` if not 0, capabilities if
// `caps`), then `action`; returns "mode caps=yes|no content-size errno".
std::string Case(const std::string& dir, const std::string& name, mode_t mode, gid_t gid,
                 bool caps, const std::function<int(const std::string&)>& action) {
  const std::string p = dir + "/" + name;
  if (WriteFile(p, "start\n") != 0) return "create " + ErrnoName(errno);
  if (gid != 0 && ::chown(p.c_str(), 0, gid) != 0) return "chgrp " + ErrnoName(errno);
  if (::chmod(p.c_str(), mode) != 0) return "chmod " + ErrnoName(errno);
  if (caps) {
    const std::string blob = CapsBlob();
    if (::setxattr(p.c_str(), "security.capability", blob.data(), blob.size(), 0) != 0) {
      return "setxattr " + ErrnoName(errno);
    }
  }
  int e = action(p);
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return "stat " + ErrnoName(errno);
  char buf[64];
  bool has_caps = ::getxattr(p.c_str(), "security.capability", buf, sizeof buf) > 0;
  char out[128];
  std::snprintf(out, sizeof out, "%s: %04o caps=%s size=%lld errno=%d", name.c_str(),
                st.st_mode & 07777, has_caps ? "yes" : "no", static_cast<long long>(st.st_size),
                e);
  return out;
}

std::vector<std::string> AllCases(const std::string& dir) {
  std::vector<std::string> r;
  auto as_nobody_append = [](const std::string& p) { return AppendAs(p, true); };
  auto as_root_append = [](const std::string& p) { return AppendAs(p, false); };
  r.push_back(Case(dir, "suid-write", 06777, 0, false, as_nobody_append));
  r.push_back(Case(dir, "suid-write-root", 06777, 0, false, as_root_append));
  r.push_back(Case(dir, "suid-truncate", 06777, 0, false, [](const std::string& p) {
    return AsNobody([p] { return ::truncate(p.c_str(), 2) == 0 ? 0 : errno; });
  }));
  r.push_back(Case(dir, "suid-open-trunc", 06777, 0, false, [](const std::string& p) {
    return AsNobody([p] {
      int fd = ::open(p.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
      if (fd < 0) return errno;
      ::close(fd);
      return 0;
    });
  }));
  r.push_back(Case(dir, "suid-chown", 06777, 0, false, [](const std::string& p) {
    return ::chown(p.c_str(), kNobody, static_cast<gid_t>(-1)) == 0 ? 0 : errno;
  }));
  // S_ISGID without group execute: dropped for a writer outside the group only.
  r.push_back(Case(dir, "sgid-noexec-outside", 02767, 0, false, as_nobody_append));
  r.push_back(Case(dir, "sgid-noexec-in-group", 02766, kNobody, false, as_nobody_append));
  r.push_back(Case(dir, "sgid-exec", 02777, kNobody, false, as_nobody_append));
  r.push_back(Case(dir, "caps-write", 0777, 0, true, as_nobody_append));
  r.push_back(Case(dir, "caps-write-root", 0777, 0, true, as_root_append));
  r.push_back(Case(dir, "caps-chown", 0777, 0, true, [](const std::string& p) {
    return ::chown(p.c_str(), kNobody, static_cast<gid_t>(-1)) == 0 ? 0 : errno;
  }));
  // A second write after the first dropped nothing it should not have (S_NOSEC latched).
  r.push_back(Case(dir, "plain-twice", 0666, 0, false, [](const std::string& p) {
    int e = AppendAs(p, true);
    return e != 0 ? e : AppendAs(p, true);
  }));
  // A fifo's owner (not root) changes its group: its set-id bits go too (pjdfstest
  // chown/00.t checks fifos, devices and sockets).
  {
    const std::string p = dir + "/fifo";
    std::string out = "fifo: ";
    if (::mkfifo(p.c_str(), 0644) != 0 || ::chown(p.c_str(), kNobody, kNobody) != 0 ||
        ::chmod(p.c_str(), 06555) != 0) {
      out += "setup " + ErrnoName(errno);
    } else {
      int e = AsNobody([p] { return ::chown(p.c_str(), static_cast<uid_t>(-1), kNobody) == 0 ? 0 : errno; });
      struct stat st {};
      char m[32];
      std::snprintf(m, sizeof m, "%04o errno=%d", ::lstat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 07777u, e);
      out += m;
    }
    r.push_back(out);
  }
  return r;
}

class MountPrivileges : public MountFixture {};

TEST_F(MountPrivileges, SetIdBitsAndCapabilitiesDropAsOnTheNativeFolder) {
  ASSERT_NO_FATAL_FAILURE(RemountWith({"-o", "allow_other"}));  // uid 65534 must reach it
  ASSERT_SYS(::chmod(tmp().c_str(), 0755));
  ASSERT_SYS(::chmod(mnt().c_str(), 0777));
  const std::string native = tmp() + "/native";
  ASSERT_SYS(::mkdir(native.c_str(), 0777));
  ASSERT_SYS(::chmod(native.c_str(), 0777));
  ASSERT_EQ(AsNobody([] { return 0; }), 0) << "cannot run a child as uid 65534";

  const auto want = AllCases(native);
  const auto got = AllCases(mnt());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); i++) EXPECT_EQ(got[i], want[i]);
  // What the comparison is worth: natively, every kind of drop happened.
  EXPECT_EQ(want[0], "suid-write: 0777 caps=no size=11 errno=0");
  EXPECT_EQ(want[1], "suid-write-root: 6777 caps=no size=11 errno=0");
  EXPECT_EQ(want[5], "sgid-noexec-outside: 0767 caps=no size=11 errno=0");
  EXPECT_EQ(want[6], "sgid-noexec-in-group: 2766 caps=no size=11 errno=0");
  EXPECT_EQ(want[8], "caps-write: 0777 caps=no size=11 errno=0");
  EXPECT_EQ(want.back(), "fifo: 0555 errno=0");

  // The same after a remount: nothing was only in the kernel's caches.
  ASSERT_NO_FATAL_FAILURE(RemountWith({"-o", "allow_other"}));
  for (size_t i = 0; i + 1 < want.size(); i++) {  // the fifo's was checked by lstat
    const std::string name = want[i].substr(0, want[i].find(':'));
    struct stat a {}, b {};
    ASSERT_SYS(::stat((native + "/" + name).c_str(), &a));
    ASSERT_SYS(::stat(Path(name).c_str(), &b));
    EXPECT_EQ(b.st_mode, a.st_mode) << name;
  }
}

// GETXATTR requests the daemon answered so far, from its /metrics on `port`.
double GetxattrRequests(int port) {
  CmdResult r = RunCmd(
      {"curl", "-sS", "--max-time", "30", "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
  EXPECT_EQ(r.code, 0) << r.Describe();
  const std::string key = "snapfs_fuse_requests_total{op=\"getxattr\"} ";
  auto at = r.out.find(key);
  EXPECT_NE(at, std::string::npos) << r.out.substr(0, 2000);
  return at == std::string::npos ? -1 : std::stod(r.out.substr(at + key.size()));
}

// The point of FUSE_HANDLE_KILLPRIV_V2: a file written in many small pieces costs the
// kernel's capability check once, not once per write(2).
TEST_F(MountPrivileges, SmallWritesDoNotAskForCapabilitiesEachTime) {
  const int port = FreePort();
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "127.0.0.1:" + std::to_string(port)}));
  const double before = GetxattrRequests(port);
  UniqueFd fd(::open(Path("pieces").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
  const std::string piece(4096, 'x');
  for (int i = 0; i < 1000; i++) ASSERT_EQ(::write(fd.get(), piece.data(), piece.size()), 4096);
  ASSERT_SYS(::fsync(fd.get()));
  ASSERT_EQ(fd.Close(), 0);
  const double asked = GetxattrRequests(port) - before;
  EXPECT_LE(asked, 2) << "GETXATTR requests for 1,000 write(2) calls";
  EXPECT_EQ(ReadFile(Path("pieces")).size(), 4096u * 1000);
}

// snapfs does not label files for SELinux: "not supported" unless a label was set, so that
// `ls -l` (which asks for every file's label) gives up after the first file.
TEST_F(MountPrivileges, SelinuxLabelsAreNotSupportedUnlessSetAndLsAsksOnce) {
  const int port = FreePort();
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "127.0.0.1:" + std::to_string(port)}));
  ASSERT_SYS(::mkdir(Path("big").c_str(), 0755));
  for (int i = 0; i < 300; i++) ASSERT_EQ(WriteFile(Path("big/f" + std::to_string(i)), ""), 0);
  char buf[256];
  EXPECT_ERRNO(::lgetxattr(Path("big/f0").c_str(), "security.selinux", buf, sizeof buf),
               EOPNOTSUPP);
  // Other absent xattrs stay "absent", of every namespace.
  EXPECT_ERRNO(::lgetxattr(Path("big/f0").c_str(), "security.ima", buf, sizeof buf), ENODATA);
  EXPECT_ERRNO(::lgetxattr(Path("big/f0").c_str(), "user.x", buf, sizeof buf), ENODATA);
  // A label set explicitly (root may, without an SELinux policy) is kept and returned.
  const std::string label = "system_u:object_r:tmp_t:s0";
  ASSERT_SYS(::lsetxattr(Path("big/f1").c_str(), "security.selinux", label.data(), label.size(), 0));
  ssize_t n = ::lgetxattr(Path("big/f1").c_str(), "security.selinux", buf, sizeof buf);
  ASSERT_EQ(n, static_cast<ssize_t>(label.size())) << ErrnoName(errno);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), label);

  // A port of its own: the previous daemon may still hold the first one for a moment
  // after its unmount (seen in CI: the new daemon then serves no metrics).
  const int port2 = FreePort();
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "127.0.0.1:" + std::to_string(port2)}));
  const double before = GetxattrRequests(port2);
  CmdResult ls = RunCmd({"ls", "-l", Path("big")});
  ASSERT_EQ(ls.code, 0) << ls.Describe();
  EXPECT_EQ(std::count(ls.out.begin(), ls.out.end(), '\n'), 301) << ls.out.substr(0, 500);
  EXPECT_LE(GetxattrRequests(port2) - before, 3) << "GETXATTR requests for `ls -l` of 300 files";
}

}  // namespace
}  // namespace snapfs::mounttest
