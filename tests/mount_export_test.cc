// `snapfs export` of checkpoints shaped like real Flink RocksDB ones: _metadata carries
// inline state handles whose names are path-like (file:MNT/<job>/chk-N/<uuid>,
// file:MNT/<job>/shared/<uuid>) for files that never exist, next to shared files, private
// files named by absolute path and files of another job. Each export (plain,
// --rewrite-prefix, --relocate, --relocate --as) must verify, and the copy must restore
// byte for byte the way a job would read it (tests/util/flink_sim.h Restore).
#include "tests/util/flink_sim.h"
#include "tests/util/mount_s3.h"

namespace snapfs::mounttest {
namespace {

class MountExport : public MountFixture {
 protected:
  void FlinkCheckpointWithNamedInlineStateExportsEveryWay();  // a TEST_F below runs it, on a local and on an S3 store
  std::string Rel(const std::string& abs) const { return abs.substr(mnt().size() + 1); }

  // The view path of an absolute path a checkpoint of `job` references (the views' rule).
  std::string ViewPath(const FlinkJob& job, const std::string& chk, const std::string& p) const {
    if (p.starts_with(job.Path(chk) + "/")) return p.substr(job.Path(chk).size() + 1);
    if (p.starts_with(job.Dir() + "/")) return p.substr(job.Dir().size() + 1);
    return "_other_jobs/" + Rel(p);
  }
  // The inverse: where a view path came from.
  std::string Origin(const FlinkJob& job, const std::string& chk, const std::string& v) const {
    if (v.starts_with("_other_jobs/")) return mnt() + "/" + v.substr(12);
    if (v.starts_with("shared/") || v.starts_with("taskowned/")) return job.Dir() + "/" + v;
    return job.Path(chk) + "/" + v;
  }
  // Restore of a plain copy in `dir`: the references still name the mount, the files are
  // at their view paths.
  ResolveFn PlainCopy(const FlinkJob& job, const std::string& chk, const std::string& dir) {
    return [=, this, &job](const std::string& p) -> std::pair<std::string, std::string> {
      return {dir + "/" + ViewPath(job, chk, p), p};
    };
  }
  // Restore of a relocated copy: references name `root`/<view path>, the files are read
  // from `dir` (where the copy is now).
  ResolveFn RelocatedCopy(const FlinkJob& job, const std::string& chk, const std::string& root,
                          const std::string& dir) {
    return [=, this, &job](const std::string& p) -> std::pair<std::string, std::string> {
      if (!p.starts_with(root + "/")) return {"(not relocated) " + p, p};
      std::string v = p.substr(root.size() + 1);
      return {dir + "/" + v, Origin(job, chk, v)};
    };
  }

  ContentMap content_;
};

// The references a _metadata makes, parsed; empty (and a failure) if it does not parse.
std::vector<MetadataRef> RefsOf(const std::string& md_path) {
  std::vector<MetadataRef> refs;
  EXPECT_TRUE(ParseMetadata(ReadFile(md_path), &refs)) << md_path << " must parse";
  return refs;
}

void MountExport::FlinkCheckpointWithNamedInlineStateExportsEveryWay() {
  FlinkJob other(mnt(), "job-a", 201, &content_);
  ASSERT_EQ(other.Init(), "");
  ASSERT_EQ(other.TakeCheckpoint(2, 48 * kKiB), "");
  FlinkJob job(mnt(), "job-x", 202, &content_);
  ASSERT_EQ(job.Init(), "");
  job.set_inline_handles(4, 2);  // MANIFEST, CURRENT, OPTIONS, meta state; small shared state
  ASSERT_EQ(job.TakeCheckpoint(2, 64 * kKiB, 0, 2), "");
  job.set_absolute_private(true);
  ASSERT_EQ(job.TakeCheckpoint(1, 64 * kKiB, 1, 2, other.retained().front().refs), "");
  const FlinkJob::Checkpoint cp = job.retained().back();
  const std::string orig = job.Path(cp.name);
  ASSERT_EQ(cp.inline_names.size(), 6u);
  for (const auto& n : cp.inline_names) ASSERT_FALSE(Exists(n.substr(5))) << n;
  const size_t files = cp.refs.size() + cp.priv.size();  // what a restore reads
  ASSERT_EQ(Restore(orig, orig, content_, InPlace), "");

  // Plain: the view's layout; the inline names are reported, not failed.
  CmdResult human = Snapfs({"export", orig, tmp() + "/plain-human"});
  ASSERT_EQ(human.code, 0) << human.Describe();
  EXPECT_NE(human.out.find("6 references name no file"), std::string::npos) << human.out;
  std::string e1 = tmp() + "/plain";
  nlohmann::json j1 = SnapfsJson({"export", orig, e1, "--verbose"});
  EXPECT_TRUE(j1.value("verified", false)) << j1.dump();
  EXPECT_EQ(j1.value("unresolved_references", 0u), 6u) << j1.dump();
  std::set<std::string> unresolved;
  for (const auto& u : j1["unresolved"]) unresolved.insert(u.get<std::string>());
  std::set<std::string> want_unresolved;
  for (const auto& n : cp.inline_names) want_unresolved.insert(Rel(n.substr(5)));
  EXPECT_EQ(unresolved, want_unresolved);
  EXPECT_EQ(ReadFile(e1 + "/_metadata"), cp.metadata) << "a plain export copies the marker";
  size_t n = 0;
  EXPECT_EQ(Restore(e1, orig, content_, PlainCopy(job, cp.name, e1), &n), "");
  EXPECT_EQ(n, files);

  // --rewrite-prefix of the job folder's file: URIs: the inline names move under NEW
  // too (chk-2/<uuid>, shared/<uuid>, no such files in the copy), and are still no
  // failure. Own files named by plain path and other jobs' files stay in the mount.
  std::string e2 = tmp() + "/rewritten";
  nlohmann::json j2 = SnapfsJson(
      {"export", orig, e2, "--rewrite-prefix", "file:" + job.Dir() + "/=file:" + e2 + "/"});
  EXPECT_TRUE(j2.value("verified", false)) << j2.dump();
  EXPECT_EQ(j2.value("unresolved_references", 0u), 6u) << j2.dump();
  EXPECT_EQ(j2.value("rewritten", 0u), job.state().size() + 6) << j2.dump();
  EXPECT_EQ(j2.value("references_checked", 0u), job.state().size()) << j2.dump();
  EXPECT_EQ(j2.value("references_outside_new", 0u), cp.priv.size() + other.state().size())
      << j2.dump();
  ResolveFn rewritten = [&](const std::string& p) -> std::pair<std::string, std::string> {
    if (p.starts_with(e2 + "/")) return {p, job.Dir() + "/" + p.substr(e2.size() + 1)};
    return {p, p};  // own files by absolute path and other jobs' files: still in the mount
  };
  EXPECT_EQ(Restore(e2, orig, content_, rewritten), "");

  // --relocate: every reference to a file goes to where the copy holds it (own files by
  // absolute path too), in its own form; inline names stay as written.
  std::string e3 = tmp() + "/relocated";
  nlohmann::json j3 = SnapfsJson({"export", orig, e3, "--relocate"});
  EXPECT_TRUE(j3.value("verified", false)) << j3.dump();
  EXPECT_EQ(j3.value("relocated", 0u), files) << j3.dump();
  EXPECT_EQ(j3.value("unresolved_references", 0u), 6u) << j3.dump();
  std::vector<MetadataRef> refs3 = RefsOf(e3 + "/_metadata");
  size_t abs_paths = 0, uris = 0, inl = 0;
  for (const auto& r : refs3) {
    if (r.inline_data) {
      inl++;
      EXPECT_TRUE(r.path.starts_with("file:" + job.Dir() + "/")) << "left as written: " << r.path;
    } else if (r.shared) {
      EXPECT_TRUE(r.path.starts_with(e3 + "/")) << r.raw;
      (r.raw.starts_with("file:") ? uris : abs_paths)++;
    }
  }
  EXPECT_EQ(inl, 6u);
  EXPECT_EQ(abs_paths, cp.priv.size()) << "plain paths stay plain paths";
  EXPECT_EQ(uris, cp.refs.size()) << "file: URIs stay file: URIs";
  n = 0;
  EXPECT_EQ(Restore(e3, orig, content_, RelocatedCopy(job, cp.name, e3, e3), &n), "");
  EXPECT_EQ(n, files);

  // --relocate --as: DEST is a staging folder, moved afterwards.
  std::string staging = tmp() + "/staging", final_dir = tmp() + "/backup-chk";
  nlohmann::json j4 =
      SnapfsJson({"export", orig, staging, "--relocate", "--as", "file://" + final_dir});
  EXPECT_TRUE(j4.value("verified", false)) << j4.dump();
  EXPECT_EQ(j4.value("relocated", 0u), files) << j4.dump();
  ASSERT_EQ(::rename(staging.c_str(), final_dir.c_str()), 0) << ErrnoName(errno);
  EXPECT_EQ(Restore(final_dir, orig, content_, RelocatedCopy(job, cp.name, final_dir, final_dir)),
            "");

  // --as another filesystem's URI: URI + "/" + view path.
  std::string e5 = tmp() + "/to-hdfs";
  const std::string hdfs = "hdfs:///backup/job-x/" + cp.name;
  nlohmann::json j5 = SnapfsJson({"export", orig, e5, "--relocate", "--as", hdfs + "/"});
  EXPECT_EQ(j5.value("relocate_to", ""), hdfs) << j5.dump();
  EXPECT_EQ(Restore(e5, orig, content_, RelocatedCopy(job, cp.name, hdfs, e5)), "");

  // The same from the unmounted store.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::string e6 = tmp() + "/relocated-unmounted";
  CmdResult un = Snapfs({"export", store() + "/job-x/" + cp.name, e6, "--relocate", "--json"});
  ASSERT_EQ(un.code, 0) << un.Describe();
  EXPECT_EQ(Restore(e6, orig, content_, RelocatedCopy(job, cp.name, e6, e6)), "");
  CmdResult fsck = Snapfs({"fsck", store()});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

TEST_F(MountExport, RelocateOptionsAreCheckedBeforeAnythingIsWritten) {
  FlinkJob job(mnt(), "job-y", 203, &content_);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(1, 16 * kKiB), "");
  std::string orig = job.Path(job.retained().back().name), dest = tmp() + "/never";
  const std::vector<std::vector<std::string>> bad = {
      {"--relocate", "--rewrite-prefix", "file:/a/=file:/b/"},
      {"--as", "/backup/chk-1"},
      {"--relocate", "--as", "backup/chk-1"},  // relative
      {"--relocate", "--as", "/"},
      {"--relocate", "--as", "file://otherhost/backup"},
      {"--relocate", "--as", "hdfs:///"},
  };
  for (const auto& extra : bad) {
    std::vector<std::string> args = {"export", orig, dest};
    args.insert(args.end(), extra.begin(), extra.end());
    CmdResult r = Snapfs(args);
    EXPECT_EQ(r.code, 2) << ShellJoin(args) << ":\n" << r.Describe();
    EXPECT_FALSE(r.err.empty()) << ShellJoin(args);
    EXPECT_FALSE(Exists(dest)) << ShellJoin(args) << " wrote " << dest;
  }
}

TEST_F(MountExport, FlinkCheckpointWithNamedInlineStateExportsEveryWay) { FlinkCheckpointWithNamedInlineStateExportsEveryWay(); }

// The same on an S3-backed store (test radosgw; ctest label s3).
class MountExportS3 : public test::OnS3<MountExport> {};
TEST_F(MountExportS3, FlinkCheckpointWithNamedInlineStateExportsEveryWay) { FlinkCheckpointWithNamedInlineStateExportsEveryWay(); }

}  // namespace
}  // namespace snapfs::mounttest
