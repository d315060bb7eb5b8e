// snapfs prune through the mount and the CLI: --keep-within beside --keep-last (the union
// of both, with completion times set in the store, not waited for), several job folders
// at once through a shell glob (one transaction per store, folders without snapshots
// skipped), job folders in two stores, dry runs, and the refusals.
#include "base/coding.h"
#include "core/fs/filesystem.h"
#include "core/meta/meta_store.h"
#include "core/snap/snapshot_record.h"
#include "core/store.h"
#include "tests/util/flink_sim.h"

namespace snapfs::mounttest {
namespace {

constexpr int64_t kDayNs = 86400LL * 1000 * 1000 * 1000;

class MountPrune : public MountFixture {
 protected:
  std::vector<std::string> SnapshotPaths(const std::string& where) {
    nlohmann::json j = SnapfsJsonObject({"ls", where});
    std::vector<std::string> out;
    for (const auto& s : j["snapshots"]) out.push_back(s["path"].get<std::string>());
    std::sort(out.begin(), out.end());
    return out;
  }
  static std::vector<std::string> Paths(const nlohmann::json& list) {
    std::vector<std::string> out;
    for (const auto& s : list) out.push_back(s["path"].get<std::string>());
    std::sort(out.begin(), out.end());
    return out;
  }
  // Sets the completion time of snapshots of the unmounted store (path -> ns ago): the
  // engine's record, rewritten in this process, so the test never waits for a clock.
  void Backdate(const std::map<std::string, int64_t>& ago) {
    auto st = Store::Open(store());
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    auto fs = Filesystem::Open(st->get());
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    MetaStore& meta = (*st)->meta();
    int64_t now = NowNs();
    for (const auto& [path, ns] : ago) {
      auto dir = (*fs)->ResolvePath(path);
      ASSERT_TRUE(dir.ok()) << path;
      std::string v;
      ASSERT_TRUE(meta.Get(Cf::kSnapshots, keys::Ino(*dir), &v).ok()) << path;
      auto rec = SnapshotRecord::Decode(v);
      ASSERT_TRUE(rec.ok());
      rec->completed_ns = now - ns;
      ASSERT_TRUE(kv::RunTxn(meta.engine(), [&](kv::Txn& t) {
                    t.Put(Cf::kSnapshots, keys::Ino(*dir), rec->Encode());
                    return Status::OK();
                  }).ok());
    }
  }
  ContentMap content_;
};

TEST_F(MountPrune, KeepWithinKeepsRecentSnapshotsAndUnitesWithKeepLast) {
  FlinkJob job(mnt(), "job-w", 21, &content_);
  ASSERT_EQ(job.Init(), "");
  for (int i = 0; i < 4; i++) ASSERT_EQ(job.TakeCheckpoint(1, 64 * kKiB, i ? 1 : 0, 1), "");
  // Fresh snapshots are certainly younger than a day: --keep-within 1d keeps them all.
  nlohmann::json fresh = SnapfsJsonObject({"prune", job.Dir(), "--keep-within", "1d"});
  EXPECT_EQ(fresh["removed"].size(), 0u) << fresh.dump(2);
  EXPECT_EQ(fresh["kept"].size(), 4u);

  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Backdate({{"job-w/chk-1", 10 * kDayNs},
                                    {"job-w/chk-2", 5 * kDayNs},
                                    {"job-w/chk-3", 1 * kDayNs}}));  // chk-4: just now
  ASSERT_NO_FATAL_FAILURE(Mount());

  nlohmann::json within =
      SnapfsJsonObject({"prune", job.Dir(), "--keep-within", "2d", "--dry-run"});
  EXPECT_EQ(Paths(within["kept"]), (std::vector<std::string>{"job-w/chk-3", "job-w/chk-4"}))
      << within.dump(2);
  EXPECT_EQ(Paths(within["removed"]), (std::vector<std::string>{"job-w/chk-1", "job-w/chk-2"}));
  EXPECT_EQ(within["keep_within_ns"].get<int64_t>(), 2 * kDayNs);
  EXPECT_TRUE(within["keep_last"].is_null());
  EXPECT_TRUE(within["report"]["dry_run"].get<bool>());
  EXPECT_EQ(SnapshotPaths(mnt()).size(), 4u) << "--dry-run removed something";

  // Both rules: what either keeps stays (newest 3 = chk-2..4; within 2d = chk-3, chk-4).
  nlohmann::json both = SnapfsJsonObject(
      {"prune", job.Dir(), "--keep-within", "2d", "--keep-last", "3", "--dry-run"});
  EXPECT_EQ(Paths(both["removed"]), (std::vector<std::string>{"job-w/chk-1"})) << both.dump(2);
  ASSERT_EQ(both["jobs"].size(), 1u);
  std::map<std::string, nlohmann::json> kept_by;
  for (const auto& s : both["jobs"][0]["kept"]) kept_by[s["path"]] = s["kept_by"];
  EXPECT_EQ(kept_by["job-w/chk-2"], nlohmann::json({"last"}));
  EXPECT_EQ(kept_by["job-w/chk-3"], nlohmann::json({"last", "within"}));
  CmdResult human =
      Snapfs({"prune", job.Dir(), "--keep-within", "2d", "--keep-last", "3", "--dry-run"});
  EXPECT_EQ(human.code, 0) << human.Describe();
  EXPECT_NE(human.out.find(job.Dir() + ": keeping 3, would remove 1"), std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("(--keep-last, --keep-within)"), std::string::npos) << human.out;

  nlohmann::json real = SnapfsJsonObject({"prune", job.Dir(), "--keep-within", "7d"});
  EXPECT_EQ(Paths(real["removed"]), (std::vector<std::string>{"job-w/chk-1"})) << real.dump(2);
  EXPECT_EQ(real["report"]["snapshots"].get<int>(), 1);
  EXPECT_EQ(SnapshotPaths(mnt()),
            (std::vector<std::string>{"job-w/chk-2", "job-w/chk-3", "job-w/chk-4"}));
  for (const auto& cp : job.retained()) {
    if (cp.name == "chk-1") continue;
    EXPECT_EQ(Restore(job.Path(cp.name), job.Path(cp.name), content_, InPlace), "") << cp.name;
  }

  // A rule that keeps none of a job's snapshots needs --force; nothing is removed.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Backdate({{"job-w/chk-4", 2 * kDayNs}, {"job-w/chk-3", 3 * kDayNs}}));
  ASSERT_NO_FATAL_FAILURE(Mount());
  CmdResult refused = Snapfs({"prune", job.Dir(), "--keep-within", "1d"});
  EXPECT_NE(refused.code, 0) << refused.Describe();
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  EXPECT_EQ(SnapshotPaths(mnt()).size(), 3u);
  nlohmann::json dry_all =
      SnapfsJsonObject({"prune", job.Dir(), "--keep-within", "1d", "--dry-run"});
  EXPECT_EQ(dry_all["removed"].size(), 3u) << "a dry run shows it without --force";
  nlohmann::json forced = SnapfsJsonObject({"prune", job.Dir(), "--keep-within", "1d", "--force"});
  EXPECT_EQ(forced["removed"].size(), 3u) << forced.dump(2);
  EXPECT_TRUE(SnapshotPaths(mnt()).empty());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store()});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

TEST_F(MountPrune, SeveralJobFoldersThroughAGlobInOneTransaction) {
  FlinkJob a(mnt(), "job-a", 31, &content_), b(mnt(), "job-b", 32, &content_);
  ASSERT_EQ(a.Init(), "");
  ASSERT_EQ(b.Init(), "");
  for (int i = 0; i < 4; i++) ASSERT_EQ(a.TakeCheckpoint(1, 64 * kKiB, i ? 1 : 0, 1), "");
  for (int i = 0; i < 2; i++) ASSERT_EQ(b.TakeCheckpoint(1, 64 * kKiB, 0, 1), "");
  // A job that has not completed a checkpoint yet, and a savepoint (itself a snapshot,
  // holding none): both reported and skipped.
  FlinkJob c(mnt(), "job-c", 33, &content_);
  ASSERT_EQ(c.Init(), "");
  std::string err;
  std::string savepoint = a.TakeSavepoint(1, 8 * kKiB, &err);
  ASSERT_EQ(err, "");
  // The shell expands the glob, as a user's would.
  auto prune = [&](const std::string& opts) {
    return Run({"/bin/sh", "-c", std::string(SNAPFS_BINARY) + " prune " + mnt() + "/* " + opts});
  };
  CmdResult dry = prune("--keep-last 1 --dry-run --json");
  ASSERT_EQ(dry.code, 0) << dry.Describe();
  nlohmann::json dj = nlohmann::json::parse(dry.out, nullptr, false);
  ASSERT_TRUE(dj.is_object()) << dry.out;
  std::map<std::string, nlohmann::json> jobs;
  for (const auto& j : dj["jobs"]) jobs[j["path"].get<std::string>()] = j;
  ASSERT_EQ(jobs.size(), 4u) << dj.dump(2);
  EXPECT_EQ(Paths(jobs["job-a"]["removed"]),
            (std::vector<std::string>{"job-a/chk-1", "job-a/chk-2", "job-a/chk-3"}));
  EXPECT_EQ(Paths(jobs["job-b"]["removed"]), (std::vector<std::string>{"job-b/chk-1"}));
  EXPECT_TRUE(jobs["job-c"]["skipped"].get<bool>());
  EXPECT_TRUE(jobs[savepoint]["skipped"].get<bool>());
  EXPECT_EQ(jobs["job-a"]["store"], store());
  EXPECT_EQ(dj["report"]["snapshots"].get<int>(), 4) << "one measurement for all jobs";
  EXPECT_EQ(SnapshotPaths(mnt()).size(), 7u) << "--dry-run removed something";

  CmdResult human = prune("--keep-last 1 --dry-run");
  EXPECT_EQ(human.code, 0) << human.Describe();
  EXPECT_NE(human.out.find(Path("job-c") + ": no snapshots directly in it"), std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find(Path("job-a") + ": keeping 1, would remove 3"), std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("would remove 4 snapshots in total"), std::string::npos) << human.out;

  CmdResult real = prune("--keep-last 1 --json");
  ASSERT_EQ(real.code, 0) << real.Describe();
  nlohmann::json rj = nlohmann::json::parse(real.out, nullptr, false);
  EXPECT_EQ(rj["report"]["snapshots"].get<int>(), 4) << rj.dump(2);
  EXPECT_EQ(rj["stores"].size(), 1u);
  EXPECT_EQ(SnapshotPaths(mnt()),
            (std::vector<std::string>{"job-a/chk-4", "job-b/chk-2", savepoint}));
  for (FlinkJob* j : {&a, &b}) {
    const auto& last = j->retained().back();
    EXPECT_EQ(Restore(j->Path(last.name), j->Path(last.name), content_, InPlace), "") << j->job();
  }
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store()});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

TEST_F(MountPrune, JobFoldersInTwoStores) {
  const std::string store2 = tmp() + "/store2", mnt2 = tmp() + "/mnt2";
  ASSERT_EQ(::mkdir(mnt2.c_str(), 0755), 0);
  ASSERT_EQ(Snapfs({"init", store2}).code, 0);
  CmdResult m = Snapfs({"mount", store2, mnt2}, 60);
  ASSERT_EQ(m.code, 0) << m.Describe();
  FlinkJob a(mnt(), "job-a", 41, &content_), x(mnt2, "job-x", 42, &content_);
  ASSERT_EQ(a.Init(), "");
  ASSERT_EQ(x.Init(), "");
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(a.TakeCheckpoint(1, 32 * kKiB, 0, 1), "");
    ASSERT_EQ(x.TakeCheckpoint(1, 32 * kKiB, 0, 1), "");
  }
  // A bad path in the second store: nothing is removed in the first either.
  CmdResult bad = Snapfs({"prune", a.Dir(), mnt2 + "/nope", "--keep-last", "1"});
  EXPECT_NE(bad.code, 0) << bad.Describe();
  EXPECT_NE(bad.err.find("nope"), std::string::npos) << bad.err;
  EXPECT_EQ(SnapshotPaths(mnt()).size(), 3u) << "the first store was pruned anyway";

  nlohmann::json j = SnapfsJsonObject({"prune", a.Dir(), x.Dir(), "--keep-last", "2"});
  ASSERT_EQ(j["stores"].size(), 2u) << j.dump(2);
  ASSERT_EQ(j["jobs"].size(), 2u);
  EXPECT_EQ(j["jobs"][0]["store"], store());
  EXPECT_EQ(j["jobs"][1]["store"], store2);
  EXPECT_EQ(Paths(j["removed"]), (std::vector<std::string>{"job-a/chk-1", "job-x/chk-1"}));
  EXPECT_EQ(j["report"]["snapshots"].get<int>(), 2);
  EXPECT_EQ(SnapshotPaths(mnt()), (std::vector<std::string>{"job-a/chk-2", "job-a/chk-3"}));
  EXPECT_EQ(SnapshotPaths(mnt2), (std::vector<std::string>{"job-x/chk-2", "job-x/chk-3"}));
  CmdResult u = Snapfs({"umount", mnt2}, 60);
  EXPECT_EQ(u.code, 0) << u.Describe();
}

TEST_F(MountPrune, BadRulesAreRefusedWithExit2) {
  FlinkJob job(mnt(), "job-e", 51, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(1, 16 * kKiB, 0, 1), "");
  for (const std::vector<std::string>& args : {std::vector<std::string>{"prune", job.Dir()},
                                               {"prune", job.Dir(), "--keep-last", "0"},
                                               {"prune", job.Dir(), "--keep-last", "-1"},
                                               {"prune", job.Dir(), "--keep-within", "banana"},
                                               {"prune", job.Dir(), "--keep-within", "-2d"},
                                               {"prune", job.Dir(), "--keep-within", "5"}}) {
    CmdResult r = Snapfs(args);
    EXPECT_EQ(r.code, 2) << ShellJoin(args) << ":\n" << r.Describe();
    EXPECT_FALSE(r.err.empty());
  }
  EXPECT_EQ(SnapshotPaths(mnt()).size(), 1u);
  // --keep-last 0 may be looked at, and --keep-within decides beside it.
  nlohmann::json dry = SnapfsJsonObject({"prune", job.Dir(), "--keep-last", "0", "--dry-run"});
  EXPECT_EQ(dry["removed"].size(), 1u);
  nlohmann::json with =
      SnapfsJsonObject({"prune", job.Dir(), "--keep-last", "0", "--keep-within", "1d"});
  EXPECT_EQ(with["removed"].size(), 0u) << with.dump(2);
  EXPECT_EQ(SnapshotPaths(mnt()).size(), 1u);
}

}  // namespace
}  // namespace snapfs::mounttest
