// The CLI as scripts meet it (issue 8): help and usage lines, bad arguments (exit 2),
// the exit code table (4 busy, 5 not found / not a store), JSON errors with a schema
// number, and verbs on a mount whose daemon is dead (exit 1 unless --offline).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <signal.h>

#include <cctype>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

// "2026-12-01T19:23:09Z" (std::regex would do, but GCC 12 warns inside it under ASan).
bool IsRfc3339Utc(const std::string& s) {
  const std::string shape = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != shape.size()) return false;
  for (size_t i = 0; i < s.size(); i++) {
    if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(s[i])) : s[i] != shape[i]) {
      return false;
    }
  }
  return true;
}

class MountCli : public MountFixture {
 protected:
  // Exit code `code`, something on stderr, nothing but (optionally) JSON on stdout.
  ::testing::AssertionResult Exits(const CmdResult& r, int code) {
    if (r.code != code) {
      return ::testing::AssertionFailure() << "expected exit " << code << "\n" << r.Describe();
    }
    return ::testing::AssertionSuccess();
  }
  static nlohmann::json ParseJson(const std::string& s) {
    return nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
  }
};

TEST_F(MountCli, HelpNamesArgumentsNotOptions) {
  CmdResult h = Snapfs({"mount", "--help"});
  ASSERT_TRUE(Exits(h, 0));
  EXPECT_NE(h.out.find("usage: snapfs mount STORE MOUNTPOINT"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("arguments:"), std::string::npos) << h.out;
  EXPECT_EQ(h.out.find("--store"), std::string::npos) << "a positional shown as an option\n"
                                                      << h.out;
  EXPECT_EQ(h.out.find("--mountpoint"), std::string::npos) << h.out;
  for (const char* opt : {"--gc-interval", "--no-writeback", "-d [ --debug ]", "--threads"}) {
    EXPECT_NE(h.out.find(opt), std::string::npos) << "help should list " << opt << "\n" << h.out;
  }
  EXPECT_NE(h.out.find("exit codes:"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("examples:"), std::string::npos) << h.out;

  CmdResult missing = Snapfs({"mount", store()});
  ASSERT_TRUE(Exits(missing, 2));
  EXPECT_NE(missing.err.find("missing argument MOUNTPOINT"), std::string::npos) << missing.err;
  EXPECT_EQ(missing.err.find("'--mountpoint'"), std::string::npos) << missing.err;

  CmdResult extra = Snapfs({"du", mnt(), mnt()});
  ASSERT_TRUE(Exits(extra, 2));
  EXPECT_NE(extra.err.find("too many arguments"), std::string::npos) << extra.err;

  // Every verb has --help, exit 0, with a usage line.
  for (const char* verb : {"init", "mount", "umount", "ls", "du", "rm", "prune", "why", "orphans",
                           "export", "stats", "fsck", "gc", "status", "version"}) {
    CmdResult r = Snapfs({verb, "--help"});
    EXPECT_TRUE(Exits(r, 0)) << verb;
    EXPECT_NE(r.out.find(std::string("usage: snapfs ") + verb), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("--store "), std::string::npos) << verb << "\n" << r.out;
    EXPECT_EQ(r.out.find("--target "), std::string::npos) << verb << "\n" << r.out;
  }
}

TEST_F(MountCli, BadNumbersExitTwoAndChangeNothing) {
  const std::string other = tmp() + "/other";
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  struct Case {
    std::vector<std::string> args;
    const char* needle;
  };
  const std::string store2 = tmp() + "/store2";
  std::vector<Case> cases = {
      {{"mount", store(), other, "--gc-interval", "-5"}, "--gc-interval"},
      {{"mount", store(), other, "--gc-interval=-5"}, "--gc-interval"},
      {{"mount", store(), other, "--threads", "0"}, "--threads"},
      {{"mount", store(), other, "--threads", "-1"}, "--threads"},
      {{"mount", store(), other, "--threads", "many"}, "threads"},
      {{"init", store2, "--chunk-avg", "banana"}, "banana"},
      {{"init", store2, "--chunk-avg", "-64K"}, "-64K"},
      {{"orphans", mnt(), "--older-than", "-1h"}, "duration"},
  };
  for (const auto& c : cases) {
    CmdResult r = Snapfs(c.args);
    EXPECT_TRUE(Exits(r, 2)) << ShellJoin(c.args);
    EXPECT_NE(r.err.find(c.needle), std::string::npos)
        << ShellJoin(c.args) << ": the message should name " << c.needle << "\n"
        << r.Describe();
  }
  EXPECT_FALSE(IsMounted(other)) << "a refused mount mounted something";
  EXPECT_FALSE(Exists(store2)) << "a refused init created the store";
}

TEST_F(MountCli, ExitCodesAndJsonErrors) {
  // Not a store: 5, as text and as JSON on stdout.
  const std::string plain = tmp() + "/plain";
  ASSERT_EQ(::mkdir(plain.c_str(), 0755), 0);
  CmdResult ls = Snapfs({"ls", plain});
  ASSERT_TRUE(Exits(ls, 5));
  EXPECT_NE(ls.err.find("neither inside a snapfs mount nor inside a store"), std::string::npos);
  CmdResult lsj = Snapfs({"ls", plain, "--json"});
  ASSERT_TRUE(Exits(lsj, 5));
  nlohmann::json e = ParseJson(lsj.out);
  ASSERT_TRUE(e.is_object()) << "--json errors are JSON on stdout\n" << lsj.Describe();
  EXPECT_EQ(e.value("schema", 0), 1) << e.dump();
  EXPECT_EQ(e.value("code", 0), 5) << e.dump();
  EXPECT_EQ(e.value("error", ""), "not_found") << e.dump();
  EXPECT_NE(e.value("message", "").find(plain), std::string::npos) << e.dump();

  CmdResult st = Snapfs({"stats", tmp() + "/no-such-store", "--json"});
  ASSERT_TRUE(Exits(st, 5));
  EXPECT_EQ(ParseJson(st.out).value("code", 0), 5) << st.Describe();

  // A usage error with --json: JSON too, exit 2.
  CmdResult bad = Snapfs({"stats", "--json", "--no-such-option"});
  ASSERT_TRUE(Exits(bad, 2));
  nlohmann::json b = ParseJson(bad.out);
  EXPECT_EQ(b.value("error", ""), "usage") << bad.Describe();
  EXPECT_EQ(b.value("code", 0), 2) << bad.Describe();

  // Not a snapshot: 5.
  ASSERT_EQ(::mkdir(Path("job").c_str(), 0755), 0);
  CmdResult rm = Snapfs({"rm", Path("job")});
  ASSERT_TRUE(Exits(rm, 5));
  EXPECT_NE(rm.err.find("not a snapshot"), std::string::npos) << rm.err;

  // Busy: the store is locked by the daemon; a second mount of it is refused with 4.
  const std::string other = tmp() + "/other";
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  CmdResult busy = Snapfs({"mount", store(), other});
  EXPECT_TRUE(Exits(busy, 4));

  // Success documents carry the schema number too, and times are RFC 3339 UTC.
  CmdResult ok = Snapfs({"stats", mnt(), "--json"});
  ASSERT_TRUE(Exits(ok, 0));
  EXPECT_EQ(ParseJson(ok.out).value("schema", 0), 1) << ok.out;
  ASSERT_EQ(::mkdir(Path("job/chk-1").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(Path("job/chk-1/_metadata"), "no references", true), 0);
  CmdResult lj = Snapfs({"ls", Path("job"), "--json"});
  ASSERT_TRUE(Exits(lj, 0));
  nlohmann::json l = ParseJson(lj.out);
  ASSERT_EQ(l["snapshots"].size(), 1u) << lj.out;
  std::string when = l["snapshots"][0].value("completed", "");
  EXPECT_TRUE(IsRfc3339Utc(when)) << when;
}

// stats/fsck/gc (and the snapshot verbs) on a mount whose daemon was killed used to open
// the store directly and exit 0, as if all were well.
TEST_F(MountCli, DeadMountIsReportedUnlessOffline) {
  ASSERT_EQ(WriteFile(Path("f"), "data", true), 0);
  int pid = DaemonPid();
  ASSERT_NO_FATAL_FAILURE(KillDaemonLeaveDeadMount());
  ASSERT_TRUE(WaitPidVanished(pid, std::chrono::seconds(20)));

  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"stats", mnt()}, {"fsck", mnt()}, {"gc", mnt()}, {"ls", mnt()}}) {
    CmdResult r = Snapfs(args);
    EXPECT_TRUE(Exits(r, 1)) << ShellJoin(args);
    EXPECT_NE(r.err.find("is dead"), std::string::npos) << r.Describe();
    EXPECT_NE(r.err.find("--offline"), std::string::npos) << r.Describe();
    args.push_back("--offline");
    CmdResult o = Snapfs(args);
    EXPECT_TRUE(Exits(o, 0)) << ShellJoin(args);
  }
  CmdResult j = Snapfs({"stats", mnt(), "--json"});
  EXPECT_TRUE(Exits(j, 1));
  EXPECT_NE(ParseJson(j.out).value("message", "").find("is dead"), std::string::npos) << j.out;

  CmdResult u = Run({"fusermount3", "-u", "-z", mnt()}, 30);
  EXPECT_EQ(u.code, 0) << u.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(ReadFile(Path("f")), "data");
}

// A hung daemon (stopped here with SIGSTOP; in finding 32 a killed one the kernel kept
// alive): a reader of the mount waits forever, and a plain umount cannot help. `snapfs
// umount --abort` aborts the FUSE connection: the reader gets an error, the mount goes,
// the daemon exits once it runs again, and everything fsync'd is there after a remount.
TEST_F(MountCli, UmountAbortFreesAHungDaemonsWaiters) {
  ASSERT_EQ(WriteFile(Path("f"), "kept", true), 0);
  int pid = DaemonPid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0) << ErrnoName(errno);
  // Every thread of the daemon stopped before the reader asks (the signal takes effect
  // thread by thread).
  auto all_stopped = [&] {
    std::error_code ec;
    for (const auto& t :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
      std::ifstream f(t.path() / "stat");
      std::string st;
      std::getline(f, st);
      auto rp = st.rfind(')');
      if (rp == std::string::npos || rp + 2 >= st.size() || st[rp + 2] != 'T') return false;
    }
    return !ec;
  };
  for (int i = 0; i < 500 && !all_stopped(); i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(all_stopped()) << "daemon " << pid << " did not stop";
  std::atomic<int> read_err{-1};
  std::thread reader([&] {
    int e = 0;
    (void)ReadFile(Path("g-not-cached"), &e);  // a lookup the kernel must ask the daemon
    read_err = e;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(read_err.load(), -1) << "the reader should be waiting on the stopped daemon, got "
                                 << ErrnoName(read_err.load());

  CmdResult u = Snapfs({"umount", mnt(), "--abort", "--wait", "0"}, 60);
  // The daemon may only notice (and exit) once it runs again.
  ::kill(pid, SIGCONT);
  reader.join();
  EXPECT_NE(read_err.load(), 0) << "the waiting reader got no error";
  EXPECT_NE(read_err.load(), -1);
  EXPECT_TRUE(u.code == 0 || u.code == 1) << u.Describe();
  EXPECT_FALSE(IsMounted(mnt())) << "still mounted after umount --abort:\n" << u.Describe();
  EXPECT_TRUE(WaitPidVanished(pid, std::chrono::seconds(20))) << "the daemon did not exit";

  CmdResult bad = Snapfs({"umount", mnt(), "--abort"});
  EXPECT_TRUE(Exits(bad, 5)) << "not a mount any more: " << bad.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(ReadFile(Path("f")), "kept");
}

// `why` of a path inside the views used to suggest "MOUNT/<snapshot>/shared/x", which does
// not exist; the hint names the live file the view entry shows.
TEST_F(MountCli, WhyOfAViewPathNamesTheLivePath) {
  ASSERT_EQ(::mkdir(Path("job").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(Path("job/shared").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(Path("job/chk-4").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(Path("job/shared/sst-1"), std::string(5000, 's'), true), 0);
  ASSERT_EQ(WriteFile(Path("job/chk-4/own-1"), std::string(100, 'o'), true), 0);
  std::string marker = "refs file:" + Path("job/shared/sst-1") + " own-1\n";
  ASSERT_EQ(WriteFile(Path("job/chk-4/_metadata"), marker, true), 0);
  ASSERT_TRUE(Exists(Path(".snapshots/job/chk-4/shared/sst-1")));

  CmdResult r = Snapfs({"why", Path(".snapshots/job/chk-4/shared/sst-1")});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_NE(r.err.find("(" + Path("job/shared/sst-1") + ")"), std::string::npos) << r.err;
  CmdResult own = Snapfs({"why", Path(".snapshots/job/chk-4/own-1")});
  EXPECT_TRUE(Exits(own, 2));
  EXPECT_NE(own.err.find("(" + Path("job/chk-4/own-1") + ")"), std::string::npos) << own.err;
  // And the hint is right: `why` of the live path answers.
  CmdResult live = Snapfs({"why", Path("job/shared/sst-1")});
  EXPECT_TRUE(Exits(live, 0));
  EXPECT_NE(live.out.find("job/chk-4"), std::string::npos) << live.out;
}

}  // namespace
}  // namespace snapfs::mounttest
