// An S3-backed store through the CLI, against the test radosgw (tests/util/s3_env.h):
// `snapfs init --data s3://...` checks every input before it creates anything; status
// and stats say where the data lives; packs land in the bucket and the spool empties on
// umount; every verb works; an orphaned pack object (a GC killed between its metadata
// commit and the object's deletion) is removed by the next GC. The mount suites that
// also run on S3 (flink, differential, remount + kill -9, export, gc) are the *S3
// fixtures in their own files.
#include <sys/stat.h>

#include <fstream>

#include "backends/s3_client.h"
#include "tests/util/mount_fixture.h"
#include "tests/util/mount_s3.h"

namespace snapfs::mounttest {
namespace {

bool Exits(const CmdResult& r, int code) {
  EXPECT_EQ(r.code, code) << r.Describe();
  return r.code == code;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool DirIsEmptyPath(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::is_empty(dir, ec) && !ec;
}

class MountS3 : public test::OnS3<MountFixture> {
 protected:
  std::unique_ptr<S3Client> Client() {
    auto c = S3Client::Create(test::S3TestClientOptions(env_));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  std::vector<S3Object> PackObjects() {
    auto c = Client();
    if (!c) return {};
    auto l = c->List(prefix_ + "/packs/");
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? *l : std::vector<S3Object>{};
  }
  std::string Cred(const std::string& name, const std::string& secret, mode_t mode) {
    const std::string f = tmp() + "/" + name;
    std::ofstream(f) << "aws_access_key_id = " << env_.access_key
                     << "\naws_secret_access_key = " << secret << "\n";
    EXPECT_EQ(::chmod(f.c_str(), mode), 0);
    return f;
  }
};

TEST_F(MountS3, InitChecksEveryInputBeforeCreatingAnything) {
  const std::string good = Cred("good.cred", env_.secret_key, 0600);
  const std::string s2 = tmp() + "/store2";
  const std::string fresh = "s3://" + env_.bucket + "/" + test::UniqueS3Prefix("init");
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string needle;
  };
  const std::string missing_bucket = "s3://no-such-bucket-" + std::to_string(::getpid()) + "/p";
  const std::vector<Case> cases = {
      {{"--data", "s3://BAD_bucket/p", "--s3-endpoint", env_.endpoint, "--s3-credentials", good},
       2, "bad bucket name"},
      {{"--data", "file:///x"}, 2, "s3://"},
      {{"--s3-endpoint", env_.endpoint}, 2, "need --data"},
      {{"--data", missing_bucket, "--s3-endpoint", env_.endpoint, "--s3-credentials", good},
       5, "does not exist"},
      {{"--data", fresh, "--s3-endpoint", env_.endpoint, "--s3-credentials",
        Cred("wrong.cred", "wrong-secret", 0600)},
       1, "access denied"},
      {{"--data", fresh, "--s3-endpoint", env_.endpoint, "--s3-credentials",
        Cred("open.cred", env_.secret_key, 0644)},
       1, "readable by others"},
      {{"--data", fresh, "--s3-endpoint", "http://127.0.0.1:1", "--s3-credentials", good},
       1, "connect"},
      {{"--data", fresh, "--s3-endpoint", "ftp://127.0.0.1:1", "--s3-credentials", good},
       2, "http://"},
      // Already holds this test's store's packs once something was written: below.
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"init", s2};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CmdResult r = Snapfs(args, 60);
    EXPECT_EQ(r.code, c.code) << ShellJoin(args) << "\n" << r.Describe();
    EXPECT_NE(r.err.find(c.needle), std::string::npos)
        << ShellJoin(args) << ": the message should say " << c.needle << "\n" << r.Describe();
    EXPECT_FALSE(Exists(s2)) << ShellJoin(args) << ": a refused init created the store";
  }

  // --create-bucket makes a missing bucket; the config records where, never the keys.
  const std::string made = "s3://snapfs-made-" + std::to_string(::getpid()) + "/p";
  CmdResult ok = Snapfs({"init", s2, "--data", made, "--s3-endpoint", env_.endpoint,
                         "--s3-credentials", good, "--create-bucket"});
  ASSERT_TRUE(Exits(ok, 0));
  const std::string conf = ReadText(s2 + "/snapfs.conf");
  EXPECT_NE(conf.find("data = " + made), std::string::npos) << conf;
  EXPECT_NE(conf.find("format_version = 2"), std::string::npos) << conf;
  EXPECT_NE(conf.find("s3_credentials_file = " + good), std::string::npos) << conf;
  EXPECT_EQ(conf.find(env_.secret_key), std::string::npos) << "the secret is in the config";
  EXPECT_EQ(conf.find(env_.access_key), std::string::npos) << "the key id is in the config";
  CmdResult st = Snapfs({"status", s2, "--json"});
  EXPECT_NE(st.out.find(made), std::string::npos) << st.Describe();

  // This test's own store: write, and its prefix is taken.
  ASSERT_EQ(WriteFile(Path("f"), RandomBytes(300 * kKiB, 1), true), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult taken = Snapfs({"init", tmp() + "/store3", "--data", data_url(), "--s3-endpoint",
                            env_.endpoint, "--s3-credentials", good});
  EXPECT_EQ(taken.code, 1) << taken.Describe();
  EXPECT_NE(taken.err.find("already holds packs"), std::string::npos) << taken.Describe();
  EXPECT_FALSE(Exists(tmp() + "/store3"));
}

TEST_F(MountS3, PacksLandInTheBucketAndEveryVerbWorks) {
  // (status may say degraded: parallel tests race for the metrics port.)
  CmdResult status = Snapfs({"status", mnt()});
  EXPECT_NE(status.out.find("data         " + data_url()), std::string::npos) << status.out;
  nlohmann::json stats = SnapfsJson({"stats", mnt()});
  EXPECT_EQ(stats.value("data", "").rfind(data_url(), 0), 0u) << stats.dump();

  std::map<std::string, std::string> files;
  ASSERT_EQ(::mkdir(Path("job").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(Path("job/chk-1").c_str(), 0755), 0);
  for (int i = 0; i < 6; ++i) {
    const std::string name = "job/chk-1/f" + std::to_string(i);
    files[name] = RandomBytes(700 * kKiB + static_cast<size_t>(i) * 1000, 10 + i);
    ASSERT_EQ(WriteFile(Path(name), files[name], true), 0);
  }
  ASSERT_EQ(WriteFile(Path("job/chk-1/_metadata"), "no references", true), 0);
  ASSERT_EQ(WriteFile(Path("stray"), RandomBytes(400 * kKiB, 99), true), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());

  // Umount sealed the open pack and uploaded it: the spool is empty.
  EXPECT_TRUE(DirIsEmptyPath(store() + "/spool")) << "packs left in the spool after umount";
  const auto objects = PackObjects();
  ASSERT_FALSE(objects.empty()) << "no pack objects under " << data_url();

  CmdResult fsck = Snapfs({"fsck", store(), "--verify"});
  EXPECT_TRUE(Exits(fsck, 0));
  ASSERT_NO_FATAL_FAILURE(Mount());
  for (const auto& [name, bytes] : files) EXPECT_TRUE(ReadFile(Path(name)) == bytes) << name;
  EXPECT_TRUE(Exits(Snapfs({"ls", Path("job")}), 0));
  EXPECT_TRUE(Exits(Snapfs({"orphans", mnt(), "--older-than", "0s"}), 0));
  EXPECT_TRUE(Exits(Snapfs({"export", Path("job/chk-1"), tmp() + "/exported"}), 0));
  EXPECT_TRUE(ReadText(tmp() + "/exported/f3") == files["job/chk-1/f3"]);
  EXPECT_TRUE(Exits(Snapfs({"rm", Path("job/chk-1")}), 0));
  ASSERT_EQ(::unlink(Path("stray").c_str()), 0);
  EXPECT_TRUE(Exits(Snapfs({"gc", mnt(), "--max-unused", "0%"}), 0));
  EXPECT_TRUE(Exits(Snapfs({"fsck", mnt(), "--verify"}), 0));
  ASSERT_NO_FATAL_FAILURE(Unmount());
  EXPECT_TRUE(PackObjects().size() <= 1u) << "gc left the freed packs in the bucket";
}

TEST_F(MountS3, TheNextGcRemovesAnOrphanedPackObject) {
  const std::string data = RandomBytes(2 * kMiB, 5);
  ASSERT_EQ(WriteFile(Path("f"), data, true), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  auto objects = PackObjects();
  ASSERT_EQ(objects.size(), 1u);
  // What a GC killed after its metadata commit leaves behind: a pack object that no index
  // entry points into. Made by copying the real pack under a higher, unused id.
  auto c = Client();
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> bytes(objects[0].size);
  ASSERT_TRUE(c->GetRange(objects[0].key, 0, bytes.size(), bytes.data()).ok());
  const std::string orphan = prefix_ + "/packs/40/0000000000000040.pack";
  ASSERT_TRUE(c->PutBytes(orphan, bytes, true).ok());

  ASSERT_NO_FATAL_FAILURE(Mount());
  nlohmann::json stats = SnapfsJson({"stats", mnt()});
  EXPECT_GE(StatU64(stats, "dead_bytes"), bytes.size() - 100) << stats.dump();
  EXPECT_TRUE(Exits(Snapfs({"gc", mnt()}), 0));
  EXPECT_TRUE(c->Head(orphan).status().Is(Code::kNotFound)) << "the orphan is still there";
  EXPECT_TRUE(ReadFile(Path("f")) == data);
  EXPECT_TRUE(Exits(Snapfs({"fsck", mnt(), "--verify"}), 0));
}

}  // namespace
}  // namespace snapfs::mounttest
