// Snapshots through the mount, the way Flink and a platform engineer meet them: a
// Flink-like writer (tests/util/flink_sim.h) takes incremental checkpoints, subsumes old ones
// (also in the order of Flink's delete race), restores from a CLAIM'd job, takes
// savepoints; the tests check recognition, pins, deferred delete, /.snapshots/ views,
// virtual xattrs, and that nothing leaks (fsck, GC), also across remount and kill -9.
#include <sys/xattr.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "tests/util/flink_sim.h"
#include "tests/util/java_data.h"

namespace snapfs::mounttest {
namespace {

class MountSnapshot : public MountFixture {
 protected:
  // Snapshot paths (relative to the mount) the daemon knows, from `snapfs ls`.
  std::vector<std::string> SnapshotPaths() {
    nlohmann::json j = SnapfsJson({"ls", mnt()});
    std::vector<std::string> out;
    const nlohmann::json& arr = j.is_array() ? j : j["snapshots"];
    for (const auto& s : arr) out.push_back(s["path"].get<std::string>());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string Xattr(const std::string& path, const std::string& name, int* err = nullptr) {
    char buf[65536];
    ssize_t n = ::getxattr(path.c_str(), name.c_str(), buf, sizeof buf);
    if (err) *err = n < 0 ? errno : 0;
    return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
  }
  // After the test body: unmounted, the store is consistent and pins match markers.
  void ExpectFsckClean(const char* when) {
    CmdResult fsck = Snapfs({"fsck", store()});
    EXPECT_EQ(fsck.code, 0) << "fsck " << when << ":\n" << fsck.Describe();
  }
  // Live hidden entries, from `snapfs ls --hidden`.
  std::vector<std::string> Hidden() {
    nlohmann::json j = SnapfsJson({"ls", "--hidden", mnt()});
    std::vector<std::string> out;
    const nlohmann::json& arr = j.is_array() ? j : j["hidden"];
    for (const auto& h : arr) out.push_back(h["path"].get<std::string>());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string Rel(const std::string& abs) const { return abs.substr(mnt().size() + 1); }
  // Where a checkpoint's referenced file appears in its view.
  ResolveFn ViewOf(const FlinkJob& job, const std::string& view_dir) {
    return [this, &job, view_dir](const std::string& p) -> std::pair<std::string, std::string> {
      if (p.starts_with(job.Dir() + "/"))
        return {view_dir + "/" + p.substr(job.Dir().size() + 1), p};
      return {view_dir + "/_other_jobs/" + Rel(p), p};
    };
  }

  ContentMap content_;
};

TEST_F(MountSnapshot, CheckpointsAreRecognisedPinnedAndBrowsable) {
  FlinkJob job(mnt(), "job-a", 11, &content_);
  ASSERT_EQ(job.Init(), "");
  for (int i = 0; i < 3; i++) ASSERT_EQ(job.TakeCheckpoint(2, 64 * kKiB, i ? 1 : 0, 2), "");
  ASSERT_EQ(job.Subsume(), "");  // Flink's order: _metadata first

  EXPECT_EQ(SnapshotPaths(), (std::vector<std::string>{"job-a/chk-2", "job-a/chk-3"}));
  // Recognised the moment rename(2) returned: no snapshot for a folder without _metadata.
  ASSERT_EQ(::mkdir(job.Path("chk-9").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(job.Path("chk-9/._metadata.inprogress.x"), "partial"), 0);
  EXPECT_EQ(SnapshotPaths().size(), 2u);

  // /.snapshots/ is there when asked for, not in listings of the root.
  std::vector<std::string> root = ListDir(mnt());
  EXPECT_EQ(std::count(root.begin(), root.end(), ".snapshots"), 0);
  std::vector<std::string> views = ListDir(Path(".snapshots/job-a"));
  std::sort(views.begin(), views.end());
  EXPECT_EQ(views, (std::vector<std::string>{"chk-2", "chk-3"}));

  for (const auto& cp : job.retained()) {
    SCOPED_TRACE(cp.name);
    size_t n = 0;
    EXPECT_EQ(Restore(job.Path(cp.name), job.Path(cp.name), content_, InPlace, &n), "");
    EXPECT_EQ(n, cp.refs.size() + cp.priv.size());
    std::string view = Path(".snapshots/job-a/" + cp.name);
    EXPECT_EQ(Restore(view, job.Path(cp.name), content_, ViewOf(job, view), &n), "");
    // The view holds exactly the marker, the private files and the shared files.
    std::vector<std::string> top = ListDir(view);
    EXPECT_EQ(top.size(), cp.priv.size() + 2) << "_metadata, private files, shared/";
    EXPECT_EQ(ListDir(view + "/shared").size(), cp.refs.size());
    // Read-only.
    errno = 0;
    EXPECT_EQ(::open((view + "/_metadata").c_str(), O_WRONLY), -1);
    EXPECT_EQ(errno, EROFS);
    errno = 0;
    EXPECT_EQ(::mkdir((view + "/x").c_str(), 0755), -1);
    EXPECT_EQ(errno, EROFS);
    errno = 0;
    EXPECT_EQ(::unlink((view + "/_metadata").c_str()), -1);
    EXPECT_EQ(errno, EROFS);
    // Virtual xattrs of the snapshot folder.
    int err = 0;
    std::string logical = Xattr(job.Path(cp.name), "user.snapfs.logical_bytes", &err);
    EXPECT_EQ(err, 0) << ErrnoName(err);
    uint64_t want = cp.metadata.size();
    for (const auto& r : cp.refs) want += content_[r].size();
    for (const auto& p : cp.priv) want += content_[job.Path(cp.name + "/" + p)].size();
    EXPECT_EQ(logical, std::to_string(want));
    EXPECT_FALSE(Xattr(job.Path(cp.name), "user.snapfs.exclusive_bytes", &err).empty());
    EXPECT_FALSE(Xattr(job.Path(cp.name), "user.snapfs.shared_bytes", &err).empty());
  }
  // A shared file used by both retained checkpoints is pinned by both.
  const std::string& both = job.retained().back().refs.front();
  std::string pinned_by = Xattr(both, "user.snapfs.pinned_by");
  EXPECT_NE(pinned_by.find("job-a/chk-3"), std::string::npos) << pinned_by;
  nlohmann::json why = SnapfsJson({"why", both});
  EXPECT_NE(why.dump().find("job-a/chk-3"), std::string::npos) << why.dump();
  // Not listed by listxattr (cp -a must not copy them), not settable.
  char names[4096];
  ssize_t ln = ::listxattr(both.c_str(), names, sizeof names);
  EXPECT_EQ(std::string(names, ln > 0 ? static_cast<size_t>(ln) : 0).find("snapfs"),
            std::string::npos);
  errno = 0;
  EXPECT_EQ(::setxattr(both.c_str(), "user.snapfs.pinned_by", "x", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);

  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after the checkpoints");
}

TEST_F(MountSnapshot, SharedFilesDeletedBeforeTheirMetadataAreFreedWithoutLeak) {
  // Flink's race: the asynchronous deleter unlinks shared files before the subsumed
  // checkpoint's _metadata. snapfs must not refuse (that would leak), must keep the old
  // checkpoint restorable while its marker exists, and must free all once it goes.
  FlinkJob job(mnt(), "job-r", 22, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(4, 256 * kKiB, 0, 1), "");
  ASSERT_EQ(job.TakeCheckpoint(2, 256 * kKiB, 3, 1), "");  // compaction dropped 3 files
  const FlinkJob::Checkpoint old = job.retained().front();
  std::vector<std::string> drop = job.Unreferenced(old);
  ASSERT_EQ(drop.size(), 3u);

  for (const auto& s : drop) ASSERT_EQ(::unlink(s.c_str()), 0) << s << ": " << ErrnoName(errno);
  std::vector<std::string> listed = ListDir(job.Path("shared"));
  for (const auto& s : drop) {
    EXPECT_EQ(std::count(listed.begin(), listed.end(), s.substr(s.rfind('/') + 1)), 0)
        << "a deleted file must leave listings";
    struct stat st;
    EXPECT_EQ(::stat(s.c_str(), &st), 0) << "its exact path still resolves: " << ErrnoName(errno);
    errno = 0;
    EXPECT_EQ(::open(s.c_str(), O_WRONLY), -1) << "kept read-only";
    EXPECT_EQ(errno, EROFS);
  }
  EXPECT_EQ(Restore(job.Path(old.name), job.Path(old.name), content_, InPlace), "")
      << "the subsumed checkpoint is still restorable in place until its _metadata goes";
  EXPECT_EQ(Hidden().size(), drop.size());
  // A new file of the same name replaces the hidden one; the old snapshot keeps its data.
  ASSERT_EQ(WriteFile(drop[0], "new content"), 0);
  EXPECT_EQ(ReadFile(drop[0]), "new content");
  std::string view = Path(".snapshots/job-r/" + old.name);
  EXPECT_EQ(ReadFile(view + "/shared/" + drop[0].substr(drop[0].rfind('/') + 1)),
            content_[drop[0]]);
  ASSERT_EQ(::unlink(drop[0].c_str()), 0);

  // Now the rest of discard(): the hidden files go with the marker.
  ASSERT_EQ(::unlink(job.Path(old.name + "/_metadata").c_str()), 0);
  for (const auto& p : old.priv) ASSERT_EQ(::unlink(job.Path(old.name + "/" + p).c_str()), 0);
  ASSERT_EQ(::rmdir(job.Path(old.name).c_str()), 0) << ErrnoName(errno);
  for (const auto& s : drop) {
    struct stat st;
    errno = 0;
    EXPECT_EQ(::stat(s.c_str(), &st), -1) << s << " should be gone with the last pin";
    EXPECT_EQ(errno, ENOENT);
  }
  EXPECT_TRUE(Hidden().empty());
  EXPECT_EQ(SnapshotPaths(), (std::vector<std::string>{"job-r/chk-2"}));
  EXPECT_EQ(Restore(job.Path("chk-2"), job.Path("chk-2"), content_, InPlace), "");

  // No leak: after GC the store holds what the live files hold.
  CmdResult gc = Snapfs({"gc", mnt(), "--rewrite-below", "1"});
  ASSERT_EQ(gc.code, 0) << gc.Describe();
  uint64_t live = 0;  // what chk-2 holds: its shared files, private files and _metadata
  const FlinkJob::Checkpoint& kept = job.retained().back();
  for (const auto& r : kept.refs) live += content_[r].size();
  for (const auto& p : kept.priv) live += content_[job.Path(kept.name + "/" + p)].size();
  live += kept.metadata.size();
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after the race");
  uint64_t stored = StatU64(Stats(), "stored_bytes");
  EXPECT_LE(stored, live + 64 * kKiB) << "freed shared files must not stay stored";
  EXPECT_GE(stored, live);
}

TEST_F(MountSnapshot, ClaimedJobSurvivesRecursiveDeleteOfTheJobItCameFrom) {
  FlinkJob a(mnt(), "job-a", 33, &content_);
  ASSERT_EQ(a.Init(), "");
  ASSERT_EQ(a.TakeCheckpoint(3, 128 * kKiB, 0, 1), "");
  ASSERT_EQ(a.TakeCheckpoint(1, 128 * kKiB, 0, 1), "");
  // Job B restored from A's chk-2 in CLAIM mode: its first checkpoint references A's
  // shared files by absolute path, plus its own new ones.
  FlinkJob b(mnt(), "job-b", 44, &content_);
  ASSERT_EQ(b.Init(), "");
  std::vector<std::string> inherited = a.retained().back().refs;
  ASSERT_EQ(b.TakeCheckpoint(1, 128 * kKiB, 0, 1, inherited), "");
  const FlinkJob::Checkpoint bcp = b.retained().front();

  // rm -rf of job A: no EBUSY anywhere, A leaves every listing.
  std::error_code ec;
  std::filesystem::remove_all(a.Dir(), ec);
  ASSERT_FALSE(ec) << "rm -rf " << a.Dir() << ": " << ec.message();
  std::vector<std::string> top = ListDir(mnt());
  EXPECT_EQ(std::count(top.begin(), top.end(), "job-a"), 0);
  EXPECT_EQ(SnapshotPaths(), (std::vector<std::string>{"job-b/chk-1"}));

  // B's checkpoint is restorable in place (A's files by their exact paths) and as a view.
  size_t n = 0;
  EXPECT_EQ(Restore(b.Path(bcp.name), b.Path(bcp.name), content_, InPlace, &n), "");
  EXPECT_EQ(n, bcp.refs.size() + bcp.priv.size());
  std::string view = Path(".snapshots/job-b/" + bcp.name);
  EXPECT_EQ(Restore(view, b.Path(bcp.name), content_, ViewOf(b, view)), "");
  EXPECT_EQ(ListDir(view + "/_other_jobs/job-a/shared").size(), inherited.size());
  // cp -r of the view is a complete copy.
  std::string copy = tmp() + "/copy";
  CmdResult cp = Run({"cp", "-r", view, copy});
  ASSERT_EQ(cp.code, 0) << cp.Describe();
  EXPECT_EQ(Restore(copy, b.Path(bcp.name), content_, ViewOf(b, copy)), "");

  // Once B moves on and subsumes that checkpoint, A's kept files go too.
  ASSERT_EQ(b.TakeCheckpoint(1, 128 * kKiB, 0, 1), "");
  ASSERT_EQ(b.Subsume(), "");
  for (const auto& s : inherited) {
    struct stat st;
    EXPECT_NE(::stat(s.c_str(), &st), 0) << s << " outlived the last checkpoint needing it";
  }
  struct stat st;
  EXPECT_NE(::stat(a.Dir().c_str(), &st), 0) << "job-a's hidden folder should be gone";
  EXPECT_TRUE(Hidden().empty());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after the CLAIM scenario");
}

TEST_F(MountSnapshot, SavepointCreatedInPlaceIsASnapshot) {
  FlinkJob job(mnt(), "job-s", 55, &content_);
  std::string error;
  std::string sp = job.TakeSavepoint(3, 32 * kKiB, &error);
  ASSERT_EQ(error, "");
  // Recognised when close(2) returned (no rename: _metadata written in place).
  EXPECT_EQ(SnapshotPaths(), (std::vector<std::string>{sp}));
  std::string view = Path(".snapshots/" + sp);
  size_t n = 0;
  EXPECT_EQ(Restore(view, Path(sp), content_, InPlace, &n), "");
  EXPECT_EQ(n, 3u);
  // Deleting a savepoint file the marker names hides it; the savepoint stays whole.
  std::vector<std::string> files = ListDir(Path(sp));
  std::string victim;
  for (const auto& f : files) {
    if (f != "_metadata") victim = f;
  }
  ASSERT_EQ(::unlink(Path(sp + "/" + victim).c_str()), 0);
  EXPECT_EQ(Restore(Path(sp), Path(sp), content_, InPlace), "");
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after the savepoint");
}

TEST_F(MountSnapshot, PinsAndHiddenEntriesSurviveKill9AndRemount) {
  FlinkJob job(mnt(), "job-k", 66, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(3, 64 * kKiB, 0, 1), "");
  ASSERT_EQ(job.TakeCheckpoint(1, 64 * kKiB, 2, 1), "");
  const FlinkJob::Checkpoint old = job.retained().front();
  std::vector<std::string> drop = job.Unreferenced(old);
  ASSERT_EQ(drop.size(), 2u);
  for (const auto& s : drop) ASSERT_EQ(::unlink(s.c_str()), 0);
  ::sync();
  ASSERT_NO_FATAL_FAILURE(KillDaemon9());
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(SnapshotPaths(), (std::vector<std::string>{"job-k/chk-1", "job-k/chk-2"}));
  EXPECT_EQ(Hidden().size(), 2u);
  EXPECT_EQ(Restore(job.Path(old.name), job.Path(old.name), content_, InPlace), "");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Restore(Path(".snapshots/job-k/" + old.name), job.Path(old.name), content_,
                    ViewOf(job, Path(".snapshots/job-k/" + old.name))),
            "");
  ASSERT_EQ(::unlink(job.Path(old.name + "/_metadata").c_str()), 0);
  EXPECT_TRUE(Hidden().empty());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after kill -9 and remount");
}

TEST_F(MountSnapshot, MovingAJobKeepsItsSnapshotsWhole) {
  FlinkJob job(mnt(), "job-m", 77, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(3, 64 * kKiB, 0, 1), "");
  ASSERT_EQ(job.TakeCheckpoint(1, 64 * kKiB, 0, 1), "");
  ASSERT_EQ(::mkdir(Path("archive").c_str(), 0755), 0);
  ASSERT_EQ(::rename(job.Dir().c_str(), Path("archive/job-m").c_str()), 0) << ErrnoName(errno);
  EXPECT_EQ(SnapshotPaths(),
            (std::vector<std::string>{"archive/job-m/chk-1", "archive/job-m/chk-2"}));
  // The markers still name the old paths; the views are complete all the same.
  for (const auto& cp : job.retained()) {
    std::string view = Path(".snapshots/archive/job-m/" + cp.name);
    EXPECT_EQ(Restore(view, job.Path(cp.name), content_, ViewOf(job, view)), "") << cp.name;
  }
  // Deleting the moved shared files keeps them for the snapshots (pins follow inodes).
  std::error_code ec;
  std::filesystem::remove_all(Path("archive/job-m/shared"), ec);
  ASSERT_FALSE(ec) << ec.message();
  for (const auto& cp : job.retained()) {
    std::string view = Path(".snapshots/archive/job-m/" + cp.name);
    EXPECT_EQ(Restore(view, job.Path(cp.name), content_, ViewOf(job, view)), "") << cp.name;
  }
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after the move");
}

TEST_F(MountSnapshot, RmAndPruneFreeWhatDuSaid) {
  FlinkJob job(mnt(), "job-p", 88, &content_);
  ASSERT_EQ(job.Init(), "");
  for (int i = 0; i < 4; i++) ASSERT_EQ(job.TakeCheckpoint(2, 128 * kKiB, i ? 1 : 0, 1), "");
  // Nothing is garbage before the removal, so GC's count afterwards is the removal's.
  ASSERT_EQ(Snapfs({"gc", mnt()}).code, 0);

  nlohmann::json du = SnapfsJson({"du", job.Dir()});
  ASSERT_EQ(du["snapshots"].size(), 4u) << du.dump();
  uint64_t freed1 = du["snapshots"][0]["freed_if_deleted"].get<uint64_t>();
  EXPECT_EQ(du["snapshots"][0]["path"], "job-p/chk-1");
  // chk-1 alone holds its private file, its _metadata and the shared file compaction
  // dropped at chk-2 (whichever that was).
  const FlinkJob::Checkpoint c1 = job.retained()[0];
  std::set<std::string> later;
  for (size_t i = 1; i < job.retained().size(); i++) {
    later.insert(job.retained()[i].refs.begin(), job.retained()[i].refs.end());
  }
  uint64_t want1 = c1.metadata.size() + content_[job.Path(c1.name + "/" + c1.priv[0])].size();
  std::vector<std::string> only1;
  for (const auto& r : c1.refs) {
    if (!later.count(r)) {
      want1 += content_[r].size();
      only1.push_back(r);
    }
  }
  EXPECT_EQ(freed1, want1);

  nlohmann::json dry = SnapfsJson({"rm", job.Path("chk-1"), "--dry-run"});
  EXPECT_EQ(dry["report"]["bytes_freed"].get<uint64_t>(), freed1) << dry.dump();
  EXPECT_EQ(SnapshotPaths().size(), 4u) << "--dry-run removed something";
  EXPECT_TRUE(Exists(job.Path("chk-1/_metadata")));

  CmdResult bad = Snapfs({"rm", job.Path("shared")});
  EXPECT_EQ(bad.code, 5) << "not found: not a snapshot\n" << bad.Describe();
  EXPECT_NE(bad.err.find("not a snapshot"), std::string::npos) << bad.err;

  // --wait: the purge is done when it returns (without, it runs in the background).
  nlohmann::json rm = SnapfsJson({"rm", job.Path("chk-1"), "--wait"});
  EXPECT_EQ(rm["report"]["snapshots"].get<int>(), 1);
  EXPECT_FALSE(Exists(job.Path("chk-1")));
  for (const auto& r : only1) EXPECT_FALSE(Exists(r)) << r << " only chk-1 used it";
  for (const auto& r : later) EXPECT_TRUE(Exists(r)) << r << " is still needed";
  nlohmann::json gc = SnapfsJson({"gc", mnt(), "--dry-run"});
  EXPECT_EQ(gc["dead_bytes"].get<uint64_t>(), freed1) << "GC must find exactly what rm freed";

  nlohmann::json prune = SnapfsJson({"prune", job.Dir(), "--keep-last", "1", "--wait"});
  EXPECT_EQ(prune["kept"].size(), 1u) << prune.dump();
  EXPECT_EQ(prune["removed"].size(), 2u);
  EXPECT_EQ(SnapshotPaths(), (std::vector<std::string>{"job-p/chk-4"}));
  const FlinkJob::Checkpoint& c4 = job.retained().back();
  EXPECT_EQ(Restore(job.Path(c4.name), job.Path(c4.name), content_, InPlace), "");
  std::vector<std::string> shared = ListDir(job.Path("shared"));
  EXPECT_EQ(shared.size(), c4.refs.size()) << "only what chk-4 needs stays in shared/";
  EXPECT_TRUE(Hidden().empty());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after rm and prune");
}

TEST_F(MountSnapshot, OrphansOfAFailedCheckpointAreFoundAndDeleted) {
  FlinkJob job(mnt(), "job-o", 99, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(2, 64 * kKiB, 0, 1), "");
  // A checkpoint that failed half-way: files uploaded, no _metadata ever written.
  ASSERT_EQ(::mkdir(job.Path("chk-2").c_str(), 0755), 0);
  std::vector<std::string> junk = {job.Path("chk-2/" + RandomUuid(job.rng())),
                                   job.Path("shared/" + RandomUuid(job.rng()))};
  uint64_t junk_bytes = 0;
  for (const auto& j : junk) {
    std::string bytes = RandomBytes(20 * kKiB + junk_bytes, job.rng()());
    ASSERT_EQ(job.Upload(j, bytes), "");
    junk_bytes += bytes.size();
  }
  nlohmann::json young = SnapfsJson({"orphans", job.Dir()});
  EXPECT_EQ(young["count"].get<int>(), 0) << "files younger than an hour are never orphans";

  nlohmann::json old = SnapfsJson({"orphans", job.Dir(), "--older-than", "0"});
  std::vector<std::string> found;
  for (const auto& o : old["orphans"]) found.push_back(mnt() + "/" + o["path"].get<std::string>());
  std::sort(found.begin(), found.end());
  std::sort(junk.begin(), junk.end());
  EXPECT_EQ(found, junk) << old.dump();
  EXPECT_EQ(old["bytes"].get<uint64_t>(), junk_bytes);

  CmdResult bad = Snapfs({"orphans", job.Dir(), "--older-than", "soon"});
  EXPECT_EQ(bad.code, 2) << bad.Describe();

  SnapfsJson({"orphans", job.Dir(), "--older-than", "0", "--delete"});
  for (const auto& j : junk) EXPECT_FALSE(Exists(j)) << j;
  const FlinkJob::Checkpoint& c1 = job.retained().front();
  EXPECT_EQ(Restore(job.Path(c1.name), job.Path(c1.name), content_, InPlace), "");
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after orphans --delete");
}

TEST_F(MountSnapshot, ExportIsSelfContainedAndRewritesReferences) {
  FlinkJob a(mnt(), "job-a", 101, &content_);
  ASSERT_EQ(a.Init(), "");
  ASSERT_EQ(a.TakeCheckpoint(2, 96 * kKiB, 0, 1), "");
  FlinkJob job(mnt(), "job-x", 102, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(2, 96 * kKiB, 0, 2), "");
  ASSERT_EQ(job.TakeCheckpoint(1, 96 * kKiB, 1, 1, a.retained().front().refs), "");
  const FlinkJob::Checkpoint cp = job.retained().back();
  std::string orig = job.Path(cp.name);

  // Plain export: the view's layout, outside the mount.
  std::string e1 = tmp() + "/export-plain";
  SnapfsJson({"export", orig, e1});
  ResolveFn plain = ViewOf(job, e1);  // the copy has the view's layout
  size_t n = 0;
  EXPECT_EQ(Restore(e1, orig, content_, plain, &n), "");
  EXPECT_EQ(n, cp.refs.size() + cp.priv.size());

  // With the job folder's prefix rewritten to the copy's location: restorable where it is.
  std::string e2 = tmp() + "/export-rewritten";
  nlohmann::json r = SnapfsJson(
      {"export", orig, e2, "--rewrite-prefix", "file:" + job.Dir() + "/=file:" + e2 + "/"});
  EXPECT_TRUE(r["verified"].get<bool>()) << r.dump();
  std::string md = ReadFile(e2 + "/_metadata");
  std::vector<MetadataRef> refs;
  ASSERT_TRUE(ParseMetadata(md, &refs)) << "the rewritten _metadata must still parse";
  size_t moved = 0;
  for (const auto& ref : refs) {
    if (ref.shared && ref.path.starts_with(e2 + "/")) moved++;
  }
  EXPECT_EQ(moved, job.state().size()) << "every own shared reference points into the copy";
  ResolveFn rewritten = [&](const std::string& p) -> std::pair<std::string, std::string> {
    if (p.starts_with(e2 + "/")) return {p, job.Dir() + "/" + p.substr(e2.size() + 1)};
    return {e2 + "/_other_jobs/" + Rel(p), p};  // other jobs' files keep their references
  };
  EXPECT_EQ(Restore(e2, orig, content_, rewritten), "");

  // A destination that is not empty is refused, and left as it was.
  CmdResult busy = Snapfs({"export", orig, e1});
  EXPECT_EQ(busy.code, 2) << busy.Describe();
  EXPECT_EQ(Restore(e1, orig, content_, plain), "");

  // The same from the unmounted store.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::string e3 = tmp() + "/export-unmounted";
  CmdResult un = Snapfs({"export", store() + "/job-x/" + cp.name, e3});
  ASSERT_EQ(un.code, 0) << un.Describe();
  EXPECT_EQ(Restore(e3, orig, content_, ViewOf(job, e3)), "");
  ExpectFsckClean("after exports");
}

// ---- snapfs rm in O(1), the purge in the background (docs/snapshots.md) ------------------

// job/chk-1 with `files` small own files (f0, f1, ...), shared/s0 and shared/s1 named by
// it; job/chk-2 naming chk-1/f5 by absolute path (as after a CLAIM restore) and s0.
// Markers by rename, as Flink on a local path.
void MakeLargeSnapshot(const std::string& job, int files, ContentMap* content) {
  auto put = [&](const std::string& path, const std::string& bytes) {
    ASSERT_EQ(WriteFile(path, bytes), 0) << path;
    (*content)[path] = bytes;
  };
  auto marker = [&](const std::string& dir, const std::vector<std::string>& refs) {
    test::JavaDataOutput o;
    o.WriteInt(0x4960672d);
    o.WriteInt(3);
    o.WriteLong(1);
    for (const auto& r : refs) o.WriteUTF(r);
    ASSERT_EQ(WriteFile(dir + "/._metadata.inprogress.x", o.bytes(), true), 0);
    ASSERT_EQ(::rename((dir + "/._metadata.inprogress.x").c_str(), (dir + "/_metadata").c_str()),
              0);
  };
  for (const char* d : {"", "/shared", "/chk-1", "/chk-2"}) {
    ASSERT_EQ(::mkdir((job + d).c_str(), 0755), 0) << job + d;
  }
  put(job + "/shared/s0", "shared zero");
  put(job + "/shared/s1", "shared one");
  std::vector<std::string> refs = {"file:" + job + "/shared/s0", "file:" + job + "/shared/s1"};
  for (int i = 0; i < files; i++) {
    std::string name = "f" + std::to_string(i);
    put(job + "/chk-1/" + name, "chk-1 " + name);
    refs.push_back(name);
  }
  marker(job + "/chk-1", refs);
  put(job + "/chk-2/own", "chk-2 own");
  marker(job + "/chk-2", {"own", "file:" + job + "/chk-1/f5", "file:" + job + "/shared/s0"});
}

class MountPurge : public MountSnapshot {
 protected:
  // `snapfs status --json`; exit 1 (degraded) is fine here: tests run in parallel, and
  // all but one find the default metrics port taken.
  nlohmann::json Status() {
    CmdResult r = Snapfs({"status", mnt(), "--json"});
    EXPECT_TRUE(r.code == 0 || r.code == 1) << r.Describe();
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("purge_backlog")) << r.Describe();
    return j.is_object() && j.contains("purge_backlog") ? j
                                                         : nlohmann::json{{"purge_backlog",
                                                                            {{"folders", 0}}}};
  }
  uint64_t Backlog() { return Status()["purge_backlog"]["folders"].get<uint64_t>(); }
  // Polls `snapfs status` until the purge queue is empty.
  void WaitForPurge() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (true) {
      nlohmann::json st = Status();
      if (st["purge_backlog"]["folders"].get<uint64_t>() == 0) return;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "purge never ended: " << st.dump();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // What must hold once chk-1's purge is over.
  void ExpectChk1Purged(const std::string& job) {
    std::vector<std::string> listed = ListDir(job);
    std::sort(listed.begin(), listed.end());
    EXPECT_EQ(listed, (std::vector<std::string>{"chk-2", "shared"}));
    EXPECT_EQ(ListDir(job + "/shared"), (std::vector<std::string>{"s0"})) << "s1 only chk-1 used";
    // chk-2 reads its whole state in place, chk-1/f5 included (hidden, kept).
    EXPECT_EQ(ReadFile(job + "/chk-1/f5"), content_[job + "/chk-1/f5"]);
    EXPECT_EQ(ReadFile(job + "/shared/s0"), content_[job + "/shared/s0"]);
    EXPECT_FALSE(Exists(job + "/chk-1/f6"));
    EXPECT_EQ(Hidden(), (std::vector<std::string>{"job-r/chk-1", "job-r/chk-1/f5"}));
  }
};

TEST_F(MountPurge, RmOfALargeSnapshotReturnsAtOnceAndPurgesInTheBackground) {
  const std::string job = Path("job-r");
  ASSERT_NO_FATAL_FAILURE(MakeLargeSnapshot(job, 3000, &content_));
  nlohmann::json rm = SnapfsJsonObject({"rm", job + "/chk-1"});
  EXPECT_EQ(rm["report"]["snapshots"].get<int>(), 1) << rm.dump();
  EXPECT_TRUE(rm["report"]["purging"].get<bool>()) << rm.dump();
  EXPECT_TRUE(rm["report"]["entries_removed"].is_null()) << rm.dump();
  // At once: gone from the listing and from `snapfs ls`, whatever the purge has done.
  std::vector<std::string> listed = ListDir(job);
  EXPECT_EQ(std::count(listed.begin(), listed.end(), "chk-1"), 0);
  nlohmann::json ls = SnapfsJson({"ls", mnt()});
  EXPECT_EQ(ls.dump().find("chk-1"), std::string::npos) << ls.dump();
  ASSERT_NO_FATAL_FAILURE(WaitForPurge());
  ExpectChk1Purged(job);
  // The human report says what happened.
  CmdResult rm2 = Snapfs({"rm", job + "/chk-2"});
  ASSERT_EQ(rm2.code, 0) << rm2.Describe();
  EXPECT_NE(rm2.out.find("purged in the background"), std::string::npos) << rm2.out;
  ASSERT_NO_FATAL_FAILURE(WaitForPurge());
  EXPECT_TRUE(Hidden().empty());
  EXPECT_TRUE(ListDir(job + "/shared").empty());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after rm and the purge");
}

TEST_F(MountPurge, Kill9WithAQueuedFolderLosesNothingAndLeaksNothing) {
  // No background purge: the removed folder certainly waits in the queue.
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--purge-batch", "0"}));
  const std::string job = Path("job-r");
  ASSERT_NO_FATAL_FAILURE(MakeLargeSnapshot(job, 3000, &content_));
  nlohmann::json rm = SnapfsJsonObject({"rm", job + "/chk-1"});
  ASSERT_TRUE(rm["report"]["purging"].get<bool>()) << rm.dump();
  EXPECT_EQ(Backlog(), 1u);
  std::vector<std::string> listed = ListDir(job);
  EXPECT_EQ(std::count(listed.begin(), listed.end(), "chk-1"), 0);
  EXPECT_EQ(Snapfs({"fsck", mnt()}).code, 0) << "fsck with a queued folder";
  ASSERT_NO_FATAL_FAILURE(KillDaemon9());
  ExpectFsckClean("after kill -9 with a queued folder");
  ASSERT_NO_FATAL_FAILURE(Mount());  // with the purger: it resumes by itself
  ASSERT_NO_FATAL_FAILURE(WaitForPurge());
  ExpectChk1Purged(job);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after the resumed purge");
}

TEST_F(MountPurge, Kill9DuringThePurgeLosesNothingAndLeaksNothing) {
  const std::string job = Path("job-r");
  ASSERT_NO_FATAL_FAILURE(MakeLargeSnapshot(job, 3000, &content_));
  nlohmann::json rm = SnapfsJsonObject({"rm", job + "/chk-1"});
  ASSERT_TRUE(rm["report"]["purging"].get<bool>()) << rm.dump();
  ASSERT_NO_FATAL_FAILURE(KillDaemon9());  // most likely in the middle of the purge
  ExpectFsckClean("after kill -9, the queue maybe not empty");
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_NO_FATAL_FAILURE(WaitForPurge());
  ExpectChk1Purged(job);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after the resumed purge");
}

TEST_F(MountPurge, GcPurgesWhatTheBackgroundPurgerHasNotYet) {
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--purge-batch", "0"}));
  const std::string job = Path("job-r");
  ASSERT_NO_FATAL_FAILURE(MakeLargeSnapshot(job, 300, &content_));
  ASSERT_TRUE(SnapfsJsonObject({"rm", job + "/chk-1"})["report"]["purging"].get<bool>());
  nlohmann::json gc = SnapfsJsonObject({"gc", mnt()});
  EXPECT_EQ(gc["purged_entries"].get<uint64_t>(), 301u) << "299 files, _metadata, s1";
  EXPECT_GT(gc["dead_bytes"].get<uint64_t>(), 0u) << gc.dump();
  EXPECT_EQ(Backlog(), 0u);
  ExpectChk1Purged(job);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after gc");
}

TEST_F(MountPurge, RmWaitReportsWhatItRemovedAndFreed) {
  const std::string job = Path("job-r");
  ASSERT_NO_FATAL_FAILURE(MakeLargeSnapshot(job, 200, &content_));
  nlohmann::json dry = SnapfsJsonObject({"rm", job + "/chk-1", "--dry-run"});
  nlohmann::json rm = SnapfsJsonObject({"rm", job + "/chk-1", "--wait"});
  EXPECT_FALSE(rm["report"]["purging"].get<bool>()) << rm.dump();
  for (const char* k : {"entries_removed", "entries_hidden", "bytes_freed"}) {
    EXPECT_EQ(rm["report"][k], dry["report"][k]) << k << "\n" << rm.dump() << "\n" << dry.dump();
  }
  EXPECT_EQ(rm["report"]["entries_removed"].get<uint64_t>(), 201u) << "199 files, _metadata, s1";
  EXPECT_EQ(Backlog(), 0u);
  ExpectChk1Purged(job);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectFsckClean("after rm --wait");
}

}  // namespace
}  // namespace snapfs::mounttest
