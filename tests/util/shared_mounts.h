// A fixture for tests of one shared store (docs/scale-out.md) mounted by several "hosts":
// the metadata in a fresh database on the test PostgreSQL (tests/util/pg_test_db.h), the
// packs in a folder every host sees, or in the test radosgw (OnSharedS3). Set up as a user
// does: `snapfs init postgresql://... --data ...`, then `snapfs mount URL TMP/<host>` per
// host, each with its own state folder and log. TearDown unmounts whatever is mounted below
// the test's folder and waits for (or kills) the daemons it mounted.
//
// Thread-safety: the fixture's helpers from the test's main thread; Snapfs and Eventually
// from any thread.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/meta/postgres_engine.h"
#include "tests/util/mount_fixture.h"
#include "tests/util/mount_s3.h"
#include "tests/util/pg_test_db.h"

namespace snapfs::mounttest {

// Byte strings compared without printing megabytes of them.
inline ::testing::AssertionResult SameBytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) i++;
  return ::testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                       << "; first difference at byte " << i;
}

class SharedMounts : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "\n*** /dev/fuse is not available: shared-store MOUNT tests NOT run ***";
    }
    if (!test::PgTestServer()) GTEST_SKIP() << test::kNoPgServer;
    char tmpl[] = "/tmp/snapfs-shared-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    conninfo_ = NewDatabase();
    if (HasFatalFailure()) return;
    auto url = kv::PostgresEngine::PublicUrl(conninfo_);
    ASSERT_TRUE(url.ok()) << url.status().ToString();
    url_ = *url;
    std::vector<std::string> init = {"init", url_};
    for (const auto& a : DataArgs()) init.push_back(a);
    CmdResult r = Snapfs(init);
    ASSERT_EQ(r.code, 0) << r.Describe();
  }

  void TearDown() override {
    if (tmp_.empty()) return;
    for (const auto& mp : MountsBelow(tmp_)) {
      CmdResult r = Snapfs({"umount", mp}, 60);
      if (r.code != 0) (void)RunCmd({"fusermount3", "-u", "-z", mp}, 30);
    }
    for (int pid : pids_) {
      if (pid > 0 && !WaitPidVanished(pid, std::chrono::seconds(20))) ::kill(pid, SIGKILL);
    }
    if (!HasFailure()) {
      std::error_code ec;
      std::filesystem::remove_all(tmp_, ec);
    } else {
      std::cerr << "*** shared store test: logs kept in " << tmp_ << "\n";
    }
  }

  // The database of the store: a fresh one on the shared test server.
  virtual std::string NewDatabase() { return test::NewPgTestDatabase(); }

  // Where `snapfs init` puts the packs: a folder every "host" sees.
  virtual std::vector<std::string> DataArgs() { return {"--data", tmp_ + "/data"}; }

  static CmdResult Snapfs(std::vector<std::string> args, int timeout_s = 120) {
    args.insert(args.begin(), SNAPFS_BINARY);
    return RunCmd(args, timeout_s);
  }

  // Mounts the store at TMP/<host> as "host" <host> (its own state folder and log, or the
  // state folder of host `state`: a second mount on the same machine); the daemon's pid
  // is tracked.
  std::string MountHost(const std::string& host, std::vector<std::string> extra = {},
                        const std::string& state = "") {
    std::string mp = tmp_ + "/" + host;
    if (::mkdir(mp.c_str(), 0755) != 0) {
      EXPECT_EQ(errno, EEXIST) << mp;  // mounted again
    }
    std::vector<std::string> args = {"mount", url_, mp, "--state-dir",
                                     tmp_ + "/state-" + (state.empty() ? host : state),
                                     "--log", tmp_ + "/" + host + ".log"};
    if (std::find(extra.begin(), extra.end(), "--metrics") == extra.end()) {
      args.insert(args.end(), {"--metrics", "off"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    CmdResult r = Snapfs(args, 60);
    EXPECT_EQ(r.code, 0) << r.Describe() << Log(host);
    EXPECT_TRUE(IsMounted(mp, true)) << mp;
    int pid = DaemonPid(mp);
    EXPECT_GT(pid, 0) << "no live session of this host mounts " << mp;
    pids_.push_back(pid);
    return mp;
  }

  // The daemon's pid, as `snapfs status MOUNTPOINT` finds it in the sessions.
  int DaemonPid(const std::string& mp) {
    CmdResult r = Snapfs({"status", mp, "--json"});
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (!j.is_object() || !j.contains("pid")) {
      ADD_FAILURE() << "snapfs status " << mp << ":\n" << r.Describe();
      return 0;
    }
    return j["pid"].get<int>();
  }

  std::string Log(const std::string& host) const {
    std::ifstream f(tmp_ + "/" + host + ".log");
    std::stringstream ss;
    ss << f.rdbuf();
    return "\n--- " + host + ".log ---\n" + ss.str();
  }

  // Polls `cond` for up to `s` seconds (cached names expire after the entry timeout).
  static bool Eventually(const std::function<bool()>& cond, int s = 5) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(s);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  // Waits up to `s` seconds for `snapfs status MP --json` to list `n` sessions; `*j` is
  // the last answer.
  bool SessionsBecome(const std::string& mp, size_t n, nlohmann::json* j, int s = 20) {
    return Eventually(
        [&] {
          CmdResult st = Snapfs({"status", mp, "--json"});
          *j = nlohmann::json::parse(st.out, nullptr, false);
          return j->is_object() && (*j)["sessions"].size() == n;
        },
        s);
  }

  void ExpectFsckClean() {
    CmdResult r = Snapfs({"fsck", url_});
    EXPECT_EQ(r.code, 0) << r.Describe();
  }

  std::string tmp_, conninfo_, url_;
  std::vector<int> pids_;
};

// The same store with its packs in the test radosgw (a commit points only at uploaded
// packs): class MountSharedS3 : public OnSharedS3<MountShared> {};
template <class Base>
class OnSharedS3 : public Base {
 protected:
  void SetUp() override {
    SNAPFS_REQUIRE_S3_OR_SKIP();
    env_ = *test::GetS3TestEnv();
    Base::SetUp();
  }
  std::vector<std::string> DataArgs() override {
    return test::S3DataArgs(env_, this->tmp_, test::UniqueS3Prefix("shared"));
  }
  test::S3TestEnv env_;
};

}  // namespace snapfs::mounttest
