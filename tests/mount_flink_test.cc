// Imitates Apache Flink's incremental checkpointing to a `file://` checkpoint directory on a
// snapfs mount, syscall for syscall (see DESIGN.md section 1):
//
//   <mnt>/<32-hex job id>/{shared,taskowned}
//   chk-N/ created by the JobManager; 4 task threads upload their new state files
//   (UUID names) into shared/ and their private files into chk-N/, each opened
//   O_CREAT|O_TRUNC|O_WRONLY, written sequentially in 4-64 KiB writes, fsync'd and closed;
//   then chk-N/._metadata.inprogress.<uuid> (O_EXCL) is written, fsync'd and renamed to
//   chk-N/_metadata. The last 3 checkpoints are retained; older ones are subsumed exactly
//   as Flink does, asynchronously while the next checkpoint uploads: unlink _metadata,
//   unlink each private file, non-recursive rmdir of chk-N, then unlink, one by one, the
//   shared files no retained checkpoint uses.
//
// At the end: unmount, fsck --verify, stats (stored bytes ~ unique bytes written),
// remount, and every retained checkpoint is restorable byte for byte.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <set>

#include "tests/util/flink_sim.h"
#include "tests/util/mount_s3.h"

namespace snapfs::mounttest {
namespace {

constexpr int kCheckpoints = 10;
constexpr int kRetained = 3;
constexpr int kTasks = 4;
struct TaskState {
  std::vector<std::string> shared;  // uuids of the SST files the task's state consists of
};

struct Checkpoint {
  int id = 0;
  std::string dir;                  // relative to the job folder: chk-N
  std::vector<std::string> priv;    // private file names in chk-N
  std::vector<std::string> shared;  // shared uuids it references
  std::string metadata;             // expected bytes of chk-N/_metadata
};

class MountFlink : public MountFixture {
 protected:
  void IncrementalCheckpointsRetainThree();  // a TEST_F below runs it, on a local and on an S3 store
};

void MountFlink::IncrementalCheckpointsRetainThree() {
  const uint64_t seed = 0xf11c ^ (::getenv("SNAPFS_FLINK_SEED")
                                      ? std::strtoull(::getenv("SNAPFS_FLINK_SEED"), nullptr, 0)
                                      : 0ull);
  std::cerr << "[ seed ] MountFlink seed = " << seed << "\n";
  std::mt19937_64 rng(seed);
  const std::string job = JobId(rng);
  const std::string jobdir = Path(job);
  auto J = [&](const std::string& rel) { return jobdir + "/" + rel; };
  // JobManager: the checkpoint base folders (FsCheckpointStorageAccess.initializeBaseLocations).
  ASSERT_EQ(::mkdir(jobdir.c_str(), 0755), 0) << ErrnoName(errno);
  ASSERT_EQ(::mkdir(J("shared").c_str(), 0755), 0) << ErrnoName(errno);
  ASSERT_EQ(::mkdir(J("taskowned").c_str(), 0755), 0) << ErrnoName(errno);

  std::map<std::string, std::string> content;  // every file ever written: rel path -> bytes
  std::set<std::string> unique_contents_hashes;
  uint64_t unique_bytes = 0, written_bytes = 0;
  auto account = [&](const std::string& bytes) {
    written_bytes += bytes.size();
    // Exact identity of contents (files are either fresh random or exact re-uploads).
    std::string key =
        std::to_string(bytes.size()) + ":" + std::to_string(std::hash<std::string>{}(bytes));
    if (unique_contents_hashes.insert(key).second) unique_bytes += bytes.size();
  };
  std::vector<std::string> pool;  // contents uploaded before (re-uploads reuse them)

  std::vector<TaskState> tasks(kTasks);
  std::deque<Checkpoint> retained;
  std::map<std::string, int> shared_refs;  // uuid -> number of retained checkpoints using it
  std::thread cleanup;                     // the asynchronous subsumption of the last round
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();  // also when an assertion returns early
    }
  } joiner{cleanup};
  std::mutex err_mu;
  std::vector<std::string> errors;
  auto report = [&](std::string e) {
    std::lock_guard<std::mutex> l(err_mu);
    errors.push_back(std::move(e));
  };
  auto join_cleanup = [&] {
    if (cleanup.joinable()) cleanup.join();
  };

  // Uploads one file the way Flink's FsCheckpointStreamFactory does.
  auto upload = [&](const std::string& path, const std::string& bytes, uint64_t wseed) {
    std::mt19937_64 wr(wseed);
    if (auto e = UploadLikeFlink(path, bytes, wr); !e.empty()) report(e);
  };

  for (int n = 1; n <= kCheckpoints; n++) {
    Checkpoint cp;
    cp.id = n;
    cp.dir = "chk-" + std::to_string(n);
    // The JobManager creates the exclusive folder before triggering the tasks.
    ASSERT_EQ(::mkdir(J(cp.dir).c_str(), 0755), 0) << cp.dir << ": " << ErrnoName(errno);

    // Plan each task's upload on this thread (deterministic), then upload in parallel.
    struct Upload {
      std::string rel, bytes;
      uint64_t wseed;
    };
    std::vector<std::vector<Upload>> plan(kTasks);
    for (int t = 0; t < kTasks; t++) {
      TaskState& ts = tasks[t];
      // Compaction replaced some old SST files ...
      if (n > 1 && !ts.shared.empty()) {
        int drop = static_cast<int>(rng() % 3);
        for (int i = 0; i < drop && ts.shared.size() > 1; i++) {
          ts.shared.erase(ts.shared.begin() + static_cast<long>(rng() % ts.shared.size()));
        }
      }
      // ... and the incremental checkpoint uploads only the new ones.
      int fresh = n == 1 ? 4 + static_cast<int>(rng() % 3) : 1 + static_cast<int>(rng() % 2);
      for (int i = 0; i < fresh; i++) {
        std::string bytes;
        if (!pool.empty() && rng() % 4 == 0) {
          bytes = pool[rng() % pool.size()];  // a re-upload of identical bytes
        } else {
          // 16 KiB .. 2 MiB, log-uniform.
          double l = std::log(16.0 * kKiB) + (std::log(2.0 * kMiB) - std::log(16.0 * kKiB)) *
                                                 (static_cast<double>(rng() % 10000) / 10000.0);
          bytes = RandomBytes(static_cast<size_t>(std::exp(l)), rng());
          pool.push_back(bytes);
        }
        std::string uuid = RandomUuid(rng);
        ts.shared.push_back(uuid);
        plan[t].push_back({"shared/" + uuid, bytes, rng()});
      }
      // Private (exclusive) state: a couple of small files in chk-N.
      int priv = 1 + static_cast<int>(rng() % 2);
      for (int i = 0; i < priv; i++) {
        std::string name = RandomUuid(rng);
        cp.priv.push_back(name);
        plan[t].push_back(
            {cp.dir + "/" + name, RandomBytes(1 * kKiB + rng() % (15 * kKiB), rng()), rng()});
      }
      for (const auto& u : ts.shared) cp.shared.push_back(u);
    }
    for (auto& p : plan) {
      for (auto& u : p) {
        content[u.rel] = u.bytes;
        account(u.bytes);
      }
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < kTasks; t++) {
      threads.emplace_back([&, t] {
        for (const auto& u : plan[t]) upload(J(u.rel), u.bytes, u.wseed);
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_TRUE(errors.empty()) << "checkpoint " << n << ": " << errors.front();

    // The JobManager finalises: _metadata naming every file the checkpoint needs.
    JavaDataOutput md;
    WriteMetadataHeader(md, static_cast<uint64_t>(n), static_cast<uint32_t>(kTasks));
    size_t priv_i = 0;
    for (int t = 0; t < kTasks; t++) {
      md.WriteLong(rng());  // operator id
      md.WriteInt(static_cast<uint32_t>(tasks[t].shared.size()));
      for (const auto& u : tasks[t].shared) {
        md.WriteByte(kSharedFileHandle);
        md.WriteUTF("file:" + J("shared/" + u));
        md.WriteLong(content["shared/" + u].size());
      }
      // This task's private files (planned in task order).
      size_t np = 0;
      for (const auto& u : plan[t]) np += u.rel.starts_with(cp.dir + "/") ? 1 : 0;
      md.WriteInt(static_cast<uint32_t>(np));
      for (size_t i = 0; i < np; i++, priv_i++) {
        md.WriteByte(kRelativeFileHandle);
        md.WriteUTF(cp.priv[priv_i]);
        md.WriteLong(content[cp.dir + "/" + cp.priv[priv_i]].size());
      }
      md.WriteByte(kInlineHandle);
      md.WriteSizedBytes(RandomBytes(rng() % (4 * kKiB), rng()));  // small state inlined
    }
    cp.metadata = md.bytes();
    account(cp.metadata);
    {
      std::string tmp_name = cp.dir + "/._metadata.inprogress." + RandomUuid(rng);
      UniqueFd fd(::open(J(tmp_name).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
      ASSERT_TRUE(fd.ok()) << tmp_name << ": " << ErrnoName(errno);
      // Written through a buffered stream: a few writes.
      for (size_t off = 0; off < cp.metadata.size(); off += 4096) {
        ASSERT_EQ(WriteAllFd(fd.get(), std::string_view(cp.metadata).substr(off, 4096)), 0);
      }
      ASSERT_EQ(::fsync(fd.get()), 0) << ErrnoName(errno);
      ASSERT_EQ(fd.Close(), 0) << ErrnoName(errno);
      errno = 0;
      EXPECT_EQ(::open(J(tmp_name).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), -1);
      EXPECT_EQ(errno, EEXIST) << "O_EXCL on an existing in-progress file";
      ASSERT_EQ(::rename(J(tmp_name).c_str(), J(cp.dir + "/_metadata").c_str()), 0)
          << ErrnoName(errno);
      EXPECT_FALSE(Exists(J(tmp_name)));
    }
    content[cp.dir + "/_metadata"] = cp.metadata;
    // The completed checkpoint folder holds exactly its private files and _metadata.
    {
      std::vector<std::string> want = cp.priv;
      want.push_back("_metadata");
      std::sort(want.begin(), want.end());
      std::vector<std::string> got = ListDir(J(cp.dir));
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, want) << cp.dir;
      EXPECT_EQ(ReadFile(J(cp.dir + "/_metadata")), cp.metadata);
    }
    std::sort(cp.shared.begin(), cp.shared.end());
    for (const auto& u : cp.shared) shared_refs[u]++;
    retained.push_back(cp);

    // The previous round's asynchronous cleanup must be done before planning the next one.
    join_cleanup();
    ASSERT_TRUE(errors.empty()) << "subsumption: " << errors.front();
    if (static_cast<int>(retained.size()) > kRetained) {
      Checkpoint old = retained.front();
      retained.pop_front();
      std::vector<std::string> drop_shared;
      for (const auto& u : old.shared) {
        if (--shared_refs[u] == 0) {
          shared_refs.erase(u);
          drop_shared.push_back(u);
        }
      }
      content.erase(old.dir + "/_metadata");
      for (const auto& p : old.priv) content.erase(old.dir + "/" + p);
      for (const auto& u : drop_shared) content.erase("shared/" + u);
      // CompletedCheckpoint.discard(), run by the IO executor while the job goes on.
      cleanup = std::thread([&, old, drop_shared] {
        auto must = [&](int rc, const std::string& what) {
          if (rc != 0) report(what + ": " + ErrnoName(errno));
        };
        must(::unlink(J(old.dir + "/_metadata").c_str()), "unlink " + old.dir + "/_metadata");
        for (const auto& p : old.priv) {
          must(::unlink(J(old.dir + "/" + p).c_str()), "unlink " + old.dir + "/" + p);
        }
        must(::rmdir(J(old.dir).c_str()), "rmdir (non-recursive) " + old.dir);
        for (const auto& u : drop_shared) {
          must(::unlink(J("shared/" + u).c_str()), "unlink shared/" + u);
        }
      });
    }
  }
  join_cleanup();
  ASSERT_TRUE(errors.empty()) << errors.front();

  // The live tree is exactly what the retained checkpoints need.
  auto check_tree = [&](const char* when) {
    std::vector<std::string> top = ListDir(jobdir);
    std::sort(top.begin(), top.end());
    std::vector<std::string> want_top = {"shared", "taskowned"};
    for (const auto& cp : retained) want_top.push_back(cp.dir);
    std::sort(want_top.begin(), want_top.end());
    EXPECT_EQ(top, want_top) << when;
    std::vector<std::string> shared = ListDir(J("shared"));
    std::sort(shared.begin(), shared.end());
    std::vector<std::string> want_shared;
    for (const auto& [u, refs] : shared_refs) want_shared.push_back(u);
    EXPECT_EQ(shared, want_shared) << when << ": shared/ should hold exactly the files "
                                   << "retained checkpoints use";
    EXPECT_TRUE(ListDir(J("taskowned")).empty()) << when;
  };
  ASSERT_NO_FATAL_FAILURE(check_tree("before unmount"));

  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(fsck.code, 0) << "fsck --verify after the Flink run:\n" << fsck.Describe();
  auto stats = Stats();
  // Every chunk written so far: the live ones (stored_bytes) and those subsumed
  // checkpoints no longer reference that GC has not collected yet.
  uint64_t stored = StatU64(stats, "stored_bytes") + StatU64(stats, "unreferenced_bytes");
  std::cerr << "[ stats ] written " << written_bytes << " bytes, unique " << unique_bytes
            << " bytes; snapfs stats: " << stats.dump() << "\n";
  EXPECT_GE(static_cast<double>(stored), 0.9 * static_cast<double>(unique_bytes))
      << "stored bytes below the unique bytes written?";
  EXPECT_LE(static_cast<double>(stored), 1.1 * static_cast<double>(unique_bytes))
      << "stored bytes should be within 10% of the unique bytes written (dedup of re-uploads)";
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_NO_FATAL_FAILURE(check_tree("after remount"));

  // Restore each retained checkpoint as Flink would: read _metadata, resolve every
  // reference, read every file.
  for (const auto& cp : retained) {
    SCOPED_TRACE(cp.dir);
    std::string md = ReadFile(J(cp.dir + "/_metadata"));
    ASSERT_EQ(md, cp.metadata) << "_metadata differs";
    JavaDataInput in(md);
    ASSERT_EQ(in.ReadInt(), kMetadataMagic);
    in.ReadInt();
    ASSERT_EQ(in.ReadLong(), static_cast<uint64_t>(cp.id));
    in.ReadInt();
    uint32_t ops = in.ReadInt();
    std::set<std::string> shared_seen;
    size_t priv_seen = 0, missing = 0, wrong = 0;
    for (uint32_t o = 0; o < ops && in.ok(); o++) {
      in.ReadLong();
      uint32_t ns = in.ReadInt();
      for (uint32_t i = 0; i < ns && in.ok(); i++) {
        EXPECT_EQ(in.ReadByte(), kSharedFileHandle);
        std::string uri = in.ReadUTF();
        uint64_t size = in.ReadLong();
        ASSERT_TRUE(uri.starts_with("file:" + jobdir + "/shared/")) << uri;
        std::string path = uri.substr(5);
        int err = 0;
        std::string bytes = ReadFile(path, &err);
        if (err != 0) {
          missing++;
          ADD_FAILURE() << "shared file needed by " << cp.dir << " is missing: " << path << ": "
                        << ErrnoName(err);
          continue;
        }
        std::string rel = path.substr(jobdir.size() + 1);
        if (bytes.size() != size || bytes != content[rel]) {
          wrong++;
          ADD_FAILURE() << path << ": contents differ (" << bytes.size() << " bytes, expected "
                        << size << ")";
        }
        shared_seen.insert(rel.substr(7));
      }
      uint32_t np = in.ReadInt();
      for (uint32_t i = 0; i < np && in.ok(); i++) {
        EXPECT_EQ(in.ReadByte(), kRelativeFileHandle);
        std::string name = in.ReadUTF();
        uint64_t size = in.ReadLong();
        int err = 0;
        std::string bytes = ReadFile(J(cp.dir + "/" + name), &err);
        EXPECT_EQ(err, 0) << cp.dir << "/" << name << ": " << ErrnoName(err);
        EXPECT_EQ(bytes.size(), size);
        EXPECT_TRUE(bytes == content[cp.dir + "/" + name]) << cp.dir << "/" << name;
        priv_seen++;
      }
      EXPECT_EQ(in.ReadByte(), kInlineHandle);
      in.ReadSizedBytes();
    }
    EXPECT_TRUE(in.ok()) << "truncated _metadata";
    EXPECT_EQ(in.pos(), md.size()) << "trailing bytes in _metadata";
    EXPECT_EQ(missing, 0u);
    EXPECT_EQ(wrong, 0u);
    EXPECT_EQ(priv_seen, cp.priv.size());
    EXPECT_EQ(shared_seen, std::set<std::string>(cp.shared.begin(), cp.shared.end()));
  }
  // And every file of the tree byte for byte against what was written.
  size_t checked = 0;
  for (const auto& [rel, bytes] : content) {
    int err = 0;
    std::string got = ReadFile(J(rel), &err);
    EXPECT_EQ(err, 0) << rel << ": " << ErrnoName(err);
    EXPECT_TRUE(got == bytes) << rel << ": " << got.size() << " bytes, expected " << bytes.size();
    checked++;
  }
  std::cerr << "[ stats ] verified " << checked << " live files of " << retained.size()
            << " retained checkpoints\n";
}

TEST_F(MountFlink, IncrementalCheckpointsRetainThree) { IncrementalCheckpointsRetainThree(); }

// The same on an S3-backed store (test radosgw; ctest label s3).
class MountFlinkS3 : public test::OnS3<MountFlink> {};
TEST_F(MountFlinkS3, IncrementalCheckpointsRetainThree) { IncrementalCheckpointsRetainThree(); }

}  // namespace
}  // namespace snapfs::mounttest
