// Credentials never leave their place (issue 13, Security): the S3 secret key and a
// PostgreSQL password (in a URL) must not appear in the daemon's argv
// (/proc/PID/cmdline), its logs, `snapfs status` / `--json`, `stats`, /metrics, the
// mount table, the files snapfs writes, or error messages. Real servers: the test
// radosgw (SecurityS3, ctest label s3) and the test PostgreSQL (SecurityPostgres, label
// postgres), both started by scripts/test.sh. The daemon logs at trace level throughout.
#include <filesystem>

#include "core/meta/postgres_engine.h"
#include "tests/util/mount_fixture.h"
#include "tests/util/mount_s3.h"
#include "tests/util/pg_test_db.h"

namespace snapfs::mounttest {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Where `secret` shows up: "" when nowhere. `places` maps a description to its text.
std::string WhereSecretShows(const std::string& secret,
                             const std::vector<std::pair<std::string, std::string>>& places) {
  std::string out;
  for (const auto& [what, text] : places) {
    if (text.find(secret) != std::string::npos) out += "  " + what + "\n";
  }
  return out;
}

// Every regular file below `dir`, as (path, content) places.
void AddFilesBelow(const std::string& dir, std::vector<std::pair<std::string, std::string>>* p) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) p->emplace_back(it->path().string(), Slurp(it->path().string()));
  }
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

// ---- S3 ------------------------------------------------------------------------------

class SecurityS3 : public test::OnS3<MountFixture> {};

TEST_F(SecurityS3, SecretKeyNeverInArgvLogsStatusMetricsOrStore) {
  const std::string secret = env_.secret_key;
  ASSERT_GE(secret.size(), 8u);
  // The daemons started from here on get the key from the store's credentials file only
  // (the test harness's own variables would otherwise be in their environment).
  for (const char* v : {"SNAPFS_TEST_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"}) ::unsetenv(v);
  int port = FreePort();
  const std::string cache = tmp() + "/cache";
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--log-level", "trace", "--metrics",
                                       "127.0.0.1:" + std::to_string(port), "--cache-dir", cache}));
  // Packs uploaded, read back through the cache, collected.
  const std::string data = RandomBytes(3 * kMiB, 11);
  ASSERT_EQ(WriteFile(Path("f"), data, true), 0);
  ASSERT_NO_FATAL_FAILURE(Remount());
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--log-level", "trace", "--metrics",
                                       "127.0.0.1:" + std::to_string(port), "--cache-dir", cache}));
  EXPECT_EQ(ReadFile(Path("f")), data);
  ASSERT_SYS(::unlink(Path("f").c_str()));
  std::vector<std::pair<std::string, std::string>> places;
  auto run = [&](std::vector<std::string> args) {
    CmdResult r = Snapfs(args);
    places.emplace_back(ShellJoin(args) + " (stdout, stderr)", r.out + r.err);
    return r;
  };
  EXPECT_EQ(run({"gc", mnt()}).code, 0);
  EXPECT_EQ(run({"status", mnt()}).code, 0);
  run({"status", mnt(), "--json"});
  run({"stats", mnt(), "--json"});
  run({"fsck", mnt()});
  CmdResult m = Run(
      {"curl", "-sS", "--max-time", "30", "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
  EXPECT_EQ(m.code, 0) << m.Describe();
  EXPECT_NE(m.out.find("snapfs_"), std::string::npos) << m.out.substr(0, 400);
  places.emplace_back("/metrics", m.out);
  int pid = DaemonPid();
  ASSERT_GT(pid, 0);
  places.emplace_back("/proc/PID/cmdline", Slurp("/proc/" + std::to_string(pid) + "/cmdline"));
  places.emplace_back("/proc/PID/environ", Slurp("/proc/" + std::to_string(pid) + "/environ"));
  places.emplace_back("/proc/self/mounts", Slurp("/proc/self/mounts"));
  // Owner-only: the spool (fsync'd packs before upload) and the block cache.
  EXPECT_EQ(ModeOf(store() + "/spool"), 0700u);
  EXPECT_EQ(ModeOf(cache), 0700u);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  places.emplace_back("status STORE", Snapfs({"status", store()}).out);
  AddFilesBelow(store(), &places);  // config, logs, spool, metadata
  AddFilesBelow(cache, &places);
  EXPECT_NE(Slurp(store() + "/snapfs.conf").find("s3://"), std::string::npos) << "not an S3 store";

  // Failures: a wrong secret key is not echoed either (init checks the credentials).
  const std::string wrong = "Wr0ngSecretKeyThatMustNotShow";
  const std::string bad_cred = tmp() + "/bad.cred";
  std::ofstream(bad_cred) << "aws_access_key_id = " << env_.access_key
                          << "\naws_secret_access_key = " << wrong << "\n";
  ASSERT_SYS(::chmod(bad_cred.c_str(), 0600));
  CmdResult bad = Snapfs({"init", tmp() + "/store2", "--data", data_url() + "-2", "--s3-endpoint",
                          env_.endpoint, "--s3-credentials", bad_cred});
  EXPECT_NE(bad.code, 0) << bad.Describe();
  EXPECT_EQ(WhereSecretShows(wrong, {{"init with a wrong key", bad.out + bad.err}}), "")
      << bad.Describe();
  // And a credentials file others can read is refused without being read.
  ASSERT_SYS(::chmod(bad_cred.c_str(), 0644));
  bad = Snapfs({"init", tmp() + "/store3", "--data", data_url() + "-3", "--s3-endpoint",
                env_.endpoint, "--s3-credentials", bad_cred});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("readable by others"), std::string::npos) << bad.Describe();

  std::string found = WhereSecretShows(secret, places);
  EXPECT_EQ(found, "") << "the S3 secret key shows in:\n" << found;
}

// ---- PostgreSQL ----------------------------------------------------------------------

class SecurityPostgres : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      GTEST_SKIP()
          << "\n*** /dev/fuse is not available: PostgreSQL credential MOUNT tests NOT run ***";
    }
    if (!test::PgTestServer()) GTEST_SKIP() << test::kNoPgServer;
    char tmpl[] = "/tmp/snapfs-secpg-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    conninfo_ = test::NewPgTestDatabase();
    auto url = kv::PostgresEngine::PublicUrl(conninfo_);
    ASSERT_TRUE(url.ok()) << url.status().ToString();
    // The test server trusts local connections, so any password gets in; what matters
    // is where it shows.
    ASSERT_TRUE(url->starts_with("postgresql://snapfs@")) << *url;
    public_url_ = *url;
    url_ = "postgresql://snapfs:" + kPassword + "@" +
           url->substr(std::string("postgresql://snapfs@").size());
  }

  void TearDown() override {
    if (tmp_.empty()) return;
    for (const auto& mp : MountsBelow(tmp_)) {
      CmdResult r = Snapfs({"umount", mp}, 60);
      if (r.code != 0) (void)RunCmd({"fusermount3", "-u", "-z", mp}, 30);
    }
    if (pid_ > 0 && !WaitPidVanished(pid_, std::chrono::seconds(20))) ::kill(pid_, SIGKILL);
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
  }

  static CmdResult Snapfs(std::vector<std::string> args, int timeout_s = 120) {
    args.insert(args.begin(), SNAPFS_BINARY);
    return RunCmd(args, timeout_s);
  }

  const std::string kPassword = "PgPassw0rdThatMustNotShow";
  std::string tmp_, conninfo_, url_, public_url_;
  int pid_ = 0;
};

TEST_F(SecurityPostgres, PasswordNeverInArgvLogsStatusMetricsOrErrors) {
  std::vector<std::pair<std::string, std::string>> places;
  auto run = [&](std::vector<std::string> args, int want = -1) {
    CmdResult r = Snapfs(args);
    if (want >= 0) {
      EXPECT_EQ(r.code, want) << ShellJoin(args) << "\n" << r.Describe();
    }
    std::string what = ShellJoin(args);
    for (size_t at; (at = what.find(kPassword)) != std::string::npos;) {
      what.replace(at, kPassword.size(), "PW");
    }
    places.emplace_back(what + " (stdout, stderr)", r.out + r.err);
    return r;
  };
  run({"init", url_, "--data", tmp_ + "/data"}, 0);
  const std::string mp = tmp_ + "/mnt", state = tmp_ + "/state";
  ASSERT_SYS(::mkdir(mp.c_str(), 0755));
  int port = FreePort();
  // The state folder is made by mount: owner-only.
  run({"mount", url_, mp, "--state-dir", state, "--log-level", "trace", "--metrics",
       "127.0.0.1:" + std::to_string(port)},
      0);
  ASSERT_TRUE(IsMounted(mp, true));
  EXPECT_EQ(ModeOf(state), 0700u);
  ASSERT_EQ(WriteFile(mp + "/f", RandomBytes(256 * kKiB, 3), true), 0);
  CmdResult st = run({"status", mp, "--json"}, 0);
  auto j = nlohmann::json::parse(st.out, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("pid")) << st.Describe();
  pid_ = j["pid"].get<int>();
  run({"status", mp}, 0);
  run({"status", url_});
  run({"stats", url_, "--json"}, 0);
  run({"gc", url_}, 0);
  run({"fsck", url_}, 0);
  CmdResult m = RunCmd(
      {"curl", "-sS", "--max-time", "30", "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
  EXPECT_EQ(m.code, 0) << m.Describe();
  places.emplace_back("/metrics", m.out);
  places.emplace_back("/proc/PID/cmdline", Slurp("/proc/" + std::to_string(pid_) + "/cmdline"));
  places.emplace_back("/proc/self/mounts", Slurp("/proc/self/mounts"));
  // Errors naming the location: a database that does not exist, a store that is mounted
  // already, a second init.
  std::string missing = url_;
  missing.replace(missing.find(public_url_.substr(public_url_.rfind('/') + 1)),
                  public_url_.size() - public_url_.rfind('/') - 1, "no_such_db");
  run({"status", missing});
  run({"stats", missing});
  run({"init", url_, "--data", tmp_ + "/data"});
  const std::string mp2 = tmp_ + "/mnt2";
  ASSERT_SYS(::mkdir(mp2.c_str(), 0755));
  run({"mount", missing, mp2, "--state-dir", state});
  run({"mount", url_, mp, "--state-dir", state});  // already mounted there
  run({"mount", "postgresql://snapfs:" + kPassword + "@[bad", mp2});
  run({"umount", mp}, 0);
  AddFilesBelow(state, &places);  // logs and session state
  AddFilesBelow(tmp_ + "/data", &places);
  bool logged = false;
  for (const auto& [what, text] : places) {
    if (what.starts_with(state) && what.ends_with(".log") &&
        text.find("mounted on") != std::string::npos) {
      logged = true;
    }
  }
  EXPECT_TRUE(logged) << "no daemon log found in " << state;
  std::string found = WhereSecretShows(kPassword, places);
  EXPECT_EQ(found, "") << "the PostgreSQL password shows in:\n" << found;
}

}  // namespace
}  // namespace snapfs::mounttest
