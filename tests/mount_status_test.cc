// `snapfs status` on a live mount, a dead one (daemon SIGKILLed, mount left behind) and
// an unmounted store, through the CLI as a script would use it (exit codes, --json).
// GCC 12 reports std::regex internals as maybe-uninitialized when building with the
// sanitizers (a false positive inside libstdc++, not in this file).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <signal.h>

#include <regex>

#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

class MountStatus : public MountFixture {
 protected:
  // `snapfs status ARG --json`: the exit code and the document.
  std::pair<int, nlohmann::json> StatusJson(const std::string& arg) {
    CmdResult r = Snapfs({"status", arg, "--json"});
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.Describe();
    if (!j.is_object()) j = nlohmann::json::object();
    return {r.code, j};
  }
};

bool IsRfc3339Utc(const nlohmann::json& v) {
  return v.is_string() &&
         std::regex_match(v.get<std::string>(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"));
}

TEST_F(MountStatus, LiveMount) {
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "off"}));
  int pid = DaemonPid();
  auto [code, j] = StatusJson(mnt());
  EXPECT_EQ(code, 0) << j.dump(2);
  EXPECT_EQ(j["schema"], 1);
  EXPECT_EQ(j["mounted"], true);
  EXPECT_EQ(j["health"], "ok") << j.dump(2);
  EXPECT_TRUE(j["reasons"].empty());
  EXPECT_EQ(j["pid"], pid);
  EXPECT_EQ(j["store"], store());
  EXPECT_EQ(j["mountpoint"], mnt());
  EXPECT_TRUE(IsRfc3339Utc(j["started"])) << j["started"];
  EXPECT_GE(j["uptime_seconds"].get<int64_t>(), 0);
  EXPECT_TRUE(j["last_gc"].is_null());
  EXPECT_TRUE(j["metrics"]["address"].is_null());
  EXPECT_EQ(j["snapshots"], 0);
  EXPECT_EQ(j["io_errors"], 0);
  EXPECT_GT(j["disk"]["size_bytes"].get<uint64_t>(), 0u);

  // A snapshot, and a GC: both show up. The store folder names the same daemon.
  ASSERT_EQ(::mkdir(Path("chk-1").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(Path("chk-1/state"), RandomBytes(64 * kKiB, 1), true), 0);
  // A marker naming its file as Flink does (Java writeUTF: u16 length, then the bytes).
  ASSERT_EQ(WriteFile(Path("chk-1/_metadata"), std::string("\x00\x05state", 7), true), 0);
  CmdResult gc = Snapfs({"gc", mnt()});
  ASSERT_EQ(gc.code, 0) << gc.Describe();
  auto [code2, j2] = StatusJson(store());
  EXPECT_EQ(code2, 0) << j2.dump(2);
  EXPECT_EQ(j2["pid"], pid);
  EXPECT_EQ(j2["snapshots"], 1) << j2.dump(2);
  EXPECT_GE(j2["pins"].get<uint64_t>(), 1u) << j2.dump(2);
  ASSERT_TRUE(j2["last_gc"].is_object()) << j2.dump(2);
  EXPECT_TRUE(IsRfc3339Utc(j2["last_gc"]["time"])) << j2.dump(2);
  EXPECT_TRUE(j2["last_gc"]["error"].is_null());
  EXPECT_NE(DaemonLog().find("snapshot recognised: /chk-1"), std::string::npos) << DaemonLog();

  CmdResult human = Snapfs({"status", mnt()});
  EXPECT_EQ(human.code, 0) << human.Describe();
  EXPECT_NE(human.out.find("health       ok"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("daemon pid " + std::to_string(pid)), std::string::npos) << human.out;
}

TEST_F(MountStatus, MetricsAddressShown) {
  // The default address; another mount of this machine may hold it, so either answer is
  // right as long as it is said.
  auto [code, j] = StatusJson(mnt());
  EXPECT_EQ(j["metrics"]["address"], "127.0.0.1:9567") << j.dump(2);
  if (j["metrics"]["listening"] == true) {
    EXPECT_EQ(code, 0) << j.dump(2);
    EXPECT_EQ(j["health"], "ok") << j.dump(2);
  } else {
    EXPECT_EQ(code, 1) << j.dump(2);
    EXPECT_EQ(j["health"], "degraded") << j.dump(2);
    EXPECT_FALSE(j["metrics"]["error"].get<std::string>().empty());
  }
}

TEST_F(MountStatus, DeadMount) {
  int pid = DaemonPid();
  ASSERT_NO_FATAL_FAILURE(KillDaemonLeaveDeadMount());

  for (const std::string& arg : {mnt(), store()}) {
    auto [code, j] = StatusJson(arg);
    EXPECT_EQ(code, 1) << arg << "\n" << j.dump(2);
    EXPECT_EQ(j["schema"], 1);
    EXPECT_EQ(j["health"], "dead") << arg << "\n" << j.dump(2);
    EXPECT_EQ(j["mountpoint"], mnt());
    EXPECT_EQ(j["store"], store());
  }
  CmdResult human = Snapfs({"status", mnt()});
  EXPECT_EQ(human.code, 1);
  EXPECT_NE(human.out.find("health       dead"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("snapfs umount " + mnt()), std::string::npos) << human.out;

  CmdResult u = Run({"fusermount3", "-u", "-z", mnt()}, 30);
  EXPECT_EQ(u.code, 0) << u.Describe();
  EXPECT_TRUE(WaitPidVanished(pid, std::chrono::seconds(20)));
}

TEST_F(MountStatus, UnmountedStore) {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  auto [code, j] = StatusJson(store());
  EXPECT_EQ(code, 0) << j.dump(2);
  EXPECT_EQ(j["schema"], 1);
  EXPECT_EQ(j["mounted"], false);
  EXPECT_EQ(j["health"], "ok");
  EXPECT_EQ(j["snapshots"], 0);
  CmdResult human = Snapfs({"status", store()});
  EXPECT_EQ(human.code, 0) << human.Describe();
  EXPECT_NE(human.out.find("mounted      no"), std::string::npos) << human.out;

  // Not a store, not a mount: a failure with a message; no argument: usage.
  CmdResult notstore = Snapfs({"status", tmp()});
  EXPECT_EQ(notstore.code, 5) << "not a store: 5\n" << notstore.Describe();
  EXPECT_NE(notstore.err.find("neither a snapfs mount point nor a store"), std::string::npos)
      << notstore.Describe();
  CmdResult none = Snapfs({"status"});
  EXPECT_EQ(none.code, 2) << none.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
}

}  // namespace
}  // namespace snapfs::mounttest
