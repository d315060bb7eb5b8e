// One database store mounted twice, as two hosts would (docs/scale-out.md): the metadata
// in the test PostgreSQL, the packs in a shared folder (or the test radosgw: the S3
// variants). Driven like users do: `snapfs init|mount postgresql://...`, plain file I/O
// on both mount points, the CLI from either side, kill -9 of one daemon.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/meta/postgres_engine.h"
#include "core/sessions.h"
#include "tests/util/differ.h"
#include "tests/util/flink_sim.h"
#include "tests/util/mount_fixture.h"
#include "tests/util/pg_test_db.h"
#include "tests/util/shared_mounts.h"

namespace snapfs::mounttest {
namespace {

class MountShared : public SharedMounts {
 protected:
  void CloseToOpen();
  void Differential();
  void ThreeHosts();
  void Checkpoints();
  void KilledHost();
  void StalledHost();
};

// The value of an unlabelled sample in a Prometheus exposition, or -1.
double Sample(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(name + " ")) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

void MountShared::CloseToOpen() {
  const int port = FreePort();
  std::string a = MountHost("a", {"--metrics", "127.0.0.1:" + std::to_string(port)});
  std::string b = MountHost("b");
  std::string data = test::RandomBytes(3 << 20, 7);
  // Written and closed on a, no fsync: an open on b sees all of it.
  ASSERT_EQ(WriteFile(a + "/f", data), 0);
  EXPECT_TRUE(SameBytes(ReadFile(b + "/f"), data));
  // Rewritten shorter on b (b's kernel had not cached it, a's has): a's next open sees
  // the new size and bytes, not its cached pages.
  EXPECT_TRUE(SameBytes(ReadFile(a + "/f"), data));
  std::string data2 = test::RandomBytes(1 << 20, 8);
  ASSERT_EQ(WriteFile(b + "/f", data2), 0);
  EXPECT_TRUE(SameBytes(ReadFile(a + "/f"), data2));
  // A rename on a is seen on b within the entry timeout (1 s).
  ASSERT_EQ(::rename((a + "/f").c_str(), (a + "/g").c_str()), 0);
  EXPECT_TRUE(Eventually([&] { return Exists(b + "/g") && !Exists(b + "/f"); }))
      << "b still sees the old name";
  EXPECT_TRUE(SameBytes(ReadFile(b + "/g"), data2));
  ASSERT_EQ(::unlink((b + "/g").c_str()), 0);
  EXPECT_TRUE(Eventually([&] { return !Exists(a + "/g"); }));
  // What an operator scrapes: the database round trips and the session's state.
  CmdResult m = RunCmd({"curl", "-sS", "--max-time", "30",
                        "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
  ASSERT_EQ(m.code, 0) << m.Describe();
  EXPECT_GT(Sample(m.out, "snapfs_metadata_round_trips_total"), 10) << m.out;
  EXPECT_EQ(Sample(m.out, "snapfs_session_lost"), 0) << m.out;
  EXPECT_GT(Sample(m.out, "snapfs_session_id"), 0) << m.out;
}

TEST_F(MountShared, CloseToOpenAcrossHosts) { CloseToOpen(); }

// What a create costs through the kernel on a shared mount, in database round trips:
// the kernel's LOOKUP of the new name, GETATTRs of the folder (its permission check,
// after the previous create in it voided the kernel's copy) and of the new file, CREATE,
// FLUSH and RELEASE. Folders' attributes are cached for the entry timeout (files' are
// not: close-to-open); a file this daemon just made is opened without reading it back;
// the GETATTRs are answered from what this daemon just committed (attr_cache.h).
// Measured 2026-12-06: 7.2 round trips per create (17 with 4 GETATTRs before); 6.0 once a
// negative LOOKUP no longer reads a folder this process knows to be one, 5.0 once the BEGIN
// went with a transaction's first statement (both session 10).
TEST_F(MountShared, ACreateCostsAFewRoundTripsAndFolderAttributesAreCachedBriefly) {
  const int port = FreePort();
  std::string a = MountHost("a", {"--metrics", "127.0.0.1:" + std::to_string(port)});
  std::string b = MountHost("b");
  ASSERT_EQ(::mkdir((a + "/d").c_str(), 0755), 0);
  auto scrape = [&] {
    CmdResult m = RunCmd({"curl", "-sS", "--max-time", "30",
                          "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
    EXPECT_EQ(m.code, 0) << m.Describe();
    return m.out;
  };
  std::string before = scrape();
  const int n = 50;
  for (int i = 0; i < n; i++) {
    int fd = ::open((a + "/d/f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    ASSERT_EQ(::close(fd), 0);
  }
  std::string after = scrape();
  auto per = [&](const std::string& name) { return (Sample(after, name) - Sample(before, name)) / n; };
  double rt = per("snapfs_metadata_round_trips_total");
  double getattr = per("snapfs_fuse_requests_total{op=\"getattr\"}");
  std::cerr << "per create: " << rt << " round trips, " << getattr << " GETATTRs\n";
  EXPECT_LE(rt, 5.5) << "database round trips per create through the kernel";
  EXPECT_LE(getattr, 2.5) << "GETATTRs per create";
  // An unlink through the kernel: the folder's GETATTR, UNLINK (the file goes in its
  // transaction: no handle has it open), the kernel's ctime SETATTR and FORGET (both
  // answered without a read). 8 since session 14 (11 before).
  before = scrape();
  for (int i = 0; i < n; i++) ASSERT_EQ(::unlink((a + "/d/f" + std::to_string(i)).c_str()), 0);
  after = scrape();
  double urt = per("snapfs_metadata_round_trips_total");
  std::cerr << "per unlink: " << urt << " round trips\n";
  EXPECT_LE(urt, 8.5) << "database round trips per unlink through the kernel";
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(::close(::open((a + "/d/f" + std::to_string(i)).c_str(),
                             O_CREAT | O_WRONLY | O_CLOEXEC, 0644)),
              0);
  }
  // A folder's attributes changed on another host are seen within the entry timeout.
  struct stat st{};
  ASSERT_EQ(::stat((a + "/d").c_str(), &st), 0);
  ASSERT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::chmod((b + "/d").c_str(), 0711), 0);
  EXPECT_TRUE(Eventually([&] {
    struct stat s2{};
    return ::stat((a + "/d").c_str(), &s2) == 0 && (s2.st_mode & 07777) == 0711;
  })) << "a still sees the folder's old mode";
  // A file's size written on b is seen at once by the next stat on a (no attribute cache
  // for files).
  ASSERT_EQ(WriteFile(b + "/d/f0", std::string(4096, 'x')), 0);
  ASSERT_EQ(::stat((a + "/d/f0").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4096);
}

// A TaskManager on host a writes checkpoints; the job restores on host b from what a
// wrote; the snapshot a's marker made is listed and removed from b.
TEST_F(MountShared, CheckpointsWrittenOnOneHostRestoreAndGoFromAnother) { Checkpoints(); }

void MountShared::Checkpoints() {
  std::string a = MountHost("a"), b = MountHost("b");
  ContentMap content;
  FlinkJob job(a, "job", 42, &content);
  ASSERT_EQ(job.Init(), "");
  for (int i = 0; i < 3; i++) ASSERT_EQ(job.TakeCheckpoint(2, 200 << 10), "");
  auto on_b = [&](const std::string& p) {
    return std::make_pair(b + p.substr(a.size()), p);  // same file, seen from b
  };
  for (const auto& c : job.retained()) {
    size_t files = 0;
    EXPECT_EQ(Restore(b + "/job/" + c.name, a + "/job/" + c.name, content, on_b, &files), "")
        << c.name;
    EXPECT_GT(files, 0u);
  }
  CmdResult ls = Snapfs({"ls", b + "/job", "--json"});
  ASSERT_EQ(ls.code, 0) << ls.Describe();
  auto j = nlohmann::json::parse(ls.out, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["snapshots"].is_array()) << ls.out;
  EXPECT_EQ(j["snapshots"].size(), 3u) << ls.out;
  // Removed from b: gone on a too (after its entry timeout), the others intact.
  std::string first = job.retained().front().name;
  CmdResult rm = Snapfs({"rm", b + "/job/" + first});
  ASSERT_EQ(rm.code, 0) << rm.Describe();
  EXPECT_TRUE(Eventually([&] { return !Exists(a + "/job/" + first); }));
  for (size_t i = 1; i < job.retained().size(); i++) {
    const auto& c = job.retained()[i];
    EXPECT_EQ(Restore(a + "/job/" + c.name, a + "/job/" + c.name, content, InPlace), "") << c.name;
  }
  ASSERT_EQ(Snapfs({"umount", a}).code, 0);
  ASSERT_EQ(Snapfs({"umount", b}).code, 0);
  CmdResult gc = Snapfs({"gc", url_});
  EXPECT_EQ(gc.code, 0) << gc.Describe();
  ExpectFsckClean();
}

// The random-operation differential test (tests/util/differ.h) over three mounts of one
// store, against a native folder. Shared mounts promise close-to-open consistency and
// names within the entry timeout (docs/scale-out.md), so the stream moves between hosts
// in phases: a phase runs on one mount with its own handles, closes them all, and the
// next phase picks a host; switching to a host with the default 1 s entry timeout waits
// it out (c mounts with --entry-timeout 0 and needs no wait). After every phase the whole
// tree is compared through all three mounts. Then three threads, one per host, on their
// own names in shared folders (their transactions race in the database); then everything
// unmounted, fsck --verify clean, one host mounted again and compared.
TEST_F(MountShared, DifferentialOverThreeHosts) { Differential(); }

void MountShared::Differential() {
  const uint64_t seed = SeedFromEnv();
  std::cerr << "[ seed ] MountShared differential seed = " << seed
            << " (replay with SNAPFS_DIFF_SEED=" << seed << ")\n";
  const std::string hosts[3] = {MountHost("a"), MountHost("b"),
                                MountHost("c", {"--entry-timeout", "0"})};
  const bool cached_names[3] = {true, true, false};
  const std::string native = tmp_ + "/native";
  ASSERT_EQ(::mkdir(native.c_str(), 0755), 0);
  ::umask(022);
  for (const char* d : {"d", "e"}) {
    ASSERT_EQ(::mkdir((hosts[0] + "/" + d).c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((native + "/" + d).c_str(), 0755), 0);
  }
  auto wait_names = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1100)); };
  auto compare_all = [&](const std::string& when) {
    for (const auto& h : hosts) {
      std::string t = CompareTrees(h, native);
      ASSERT_TRUE(t.empty()) << "seed " << seed << ", " << when << ", through " << h << ":" << t;
    }
  };
  wait_names();

  // ---- Sequential: one stream, 12 phases of 80 operations, host picked per phase. ----
  std::vector<std::string> files;
  for (int i = 0; i < 6; i++) files.push_back("f" + std::to_string(i));
  for (int i = 0; i < 4; i++) files.push_back("d/g" + std::to_string(i));
  for (int i = 0; i < 2; i++) files.push_back("e/h" + std::to_string(i));
  Differ diff(hosts[0], native, seed, "sequential", files, {"d", "e"});
  std::mt19937_64 pick(seed ^ 0x3b05);
  int host = 0, step = 0;
  for (int phase = 0; phase < 12; phase++) {
    int next = static_cast<int>(pick() % 3);
    if (next != host) {
      diff.SetSnapRoot(hosts[next]);
      if (cached_names[next]) wait_names();
      host = next;
    }
    for (int i = 0; i < 80; i++) {
      std::string d = diff.Step(++step);
      ASSERT_TRUE(d.empty()) << "seed " << seed << ", phase " << phase << " on " << hosts[host]
                             << ", " << d;
    }
    diff.CloseAll();
    wait_names();
    ASSERT_NO_FATAL_FAILURE(compare_all("after phase " + std::to_string(phase)));
  }
  std::cerr << "[ stats ] sequential over three hosts: " << diff.Summary() << "\n";

  // ---- Concurrent: one thread per host, own names, shared folders. ----
  {
    auto failures = RunDiffersConcurrently(3, 200, [&](int t) {
      std::string pre = "t" + std::to_string(t) + "_";
      std::vector<std::string> mine;
      for (int i = 0; i < 4; i++) mine.push_back(pre + "f" + std::to_string(i));
      for (int i = 0; i < 3; i++) mine.push_back("d/" + pre + "g" + std::to_string(i));
      mine.push_back("e/" + pre + "h");
      return Differ(hosts[t], native, seed * 1000003 + static_cast<uint64_t>(t) + 1,
                    "host " + hosts[t], mine, {});
    });
    for (const auto& f : failures) ADD_FAILURE() << "seed " << seed << ", " << f;
    ASSERT_TRUE(failures.empty());
  }
  wait_names();
  ASSERT_NO_FATAL_FAILURE(compare_all("after the concurrent phase"));

  // ---- Every host unmounted, fsck --verify, one host back, compared again. ----
  for (const auto& h : hosts) ASSERT_EQ(Snapfs({"umount", h}).code, 0) << h;
  CmdResult fsck = Snapfs({"fsck", url_, "--verify"});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
  ASSERT_EQ(::rmdir(hosts[1].c_str()), 0);
  std::string b = MountHost("b");
  std::string t = CompareTrees(b, native);
  EXPECT_TRUE(t.empty()) << "seed " << seed << ", after unmount + mount:" << t;
}

// The Flink run over three mounts: TaskManagers on b and c write the shared and
// private files, the JobManager on a writes _metadata and subsumes old checkpoints, while
// `snapfs gc` runs from the side again and again; every retained checkpoint restores
// through every mount.
TEST_F(MountShared, JobManagerAndTaskManagersOnThreeHostsWithGcFromAFourth) { ThreeHosts(); }

void MountShared::ThreeHosts() {
  std::string a = MountHost("a"), b = MountHost("b"), c = MountHost("c");
  ContentMap content;
  FlinkJob job(a, "job", 77, &content);
  int n = 0;
  job.set_upload_via([&](const std::string& p) { return (n++ % 2 ? b : c) + p.substr(a.size()); });
  ASSERT_EQ(job.Init(), "");
  std::atomic<bool> stop{false};
  std::atomic<int> gcs{0};
  std::thread gc([&] {
    while (!stop.load()) {
      CmdResult r = Snapfs({"gc", url_, "--max-unused", "0"});
      // Busy: a daemon's own GC held the lease.
      EXPECT_TRUE(r.code == 0 || r.err.find("GC is running") != std::string::npos) << r.Describe();
      gcs++;
    }
  });
  for (int i = 0; i < 6; i++) {
    ASSERT_EQ(job.TakeCheckpoint(2, 150 << 10, /*compacted=*/1), "") << i;
    if (job.retained().size() > 3) {
      ASSERT_EQ(job.Subsume(), "");
    }
  }
  stop = true;
  gc.join();
  EXPECT_GT(gcs.load(), 0);
  for (const std::string& via : {a, b, c}) {
    auto resolve = [&](const std::string& p) { return std::make_pair(via + p.substr(a.size()), p); };
    for (const auto& cp : job.retained()) {
      EXPECT_EQ(Restore(via + "/job/" + cp.name, a + "/job/" + cp.name, content, resolve), "")
          << cp.name << " through " << via;
    }
  }
  for (const std::string& mp : {a, b, c}) ASSERT_EQ(Snapfs({"umount", mp}).code, 0);
  CmdResult g = Snapfs({"gc", url_});
  EXPECT_EQ(g.code, 0) << g.Describe();
  ExpectFsckClean();
}

// kill -9 of one host's daemon while it has a file open that it unlinked: the other host
// (here: `snapfs gc` run from anywhere) reaps its session after the timeout and purges the
// file; what the dead host fsync'd is intact.
TEST_F(MountShared, AKilledHostIsCleanedUpAfterItsSessionTimeout) { KilledHost(); }

void MountShared::KilledHost() {
  std::string a = MountHost("a", {"--session-timeout", "1"}), b = MountHost("b");
  std::string kept = test::RandomBytes(2 << 20, 9);
  ASSERT_EQ(WriteFile(a + "/kept", kept, /*fsync_it=*/true), 0);
  int fd = ::open((a + "/doomed").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(WriteAllFd(fd, test::RandomBytes(1 << 20, 10)), 0);
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::unlink((a + "/doomed").c_str()), 0);
  ASSERT_EQ(WriteAllFd(fd, test::RandomBytes(1 << 20, 11)), 0);  // unsynced, in a's pack
  int pid = DaemonPid(a);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitPidVanished(pid, std::chrono::seconds(20)));
  ::close(fd);
  (void)RunCmd({"fusermount3", "-u", "-z", a}, 30);

  // b's daemon watches a's session stay silent for its timeout (1 s) and reaps it.
  nlohmann::json sj;
  EXPECT_TRUE(SessionsBecome(b, 1, &sj))
      << "a's session was not reaped: " << sj.dump();
  EXPECT_EQ(sj["health"], "ok") << sj.dump();
  // Its unlinked-while-open file goes with the next namespace that looks (gc opens one).
  CmdResult gc = Snapfs({"gc", url_});
  ASSERT_EQ(gc.code, 0) << gc.Describe();
  EXPECT_TRUE(SameBytes(ReadFile(b + "/kept"), kept));
  ASSERT_EQ(Snapfs({"umount", b}).code, 0);
  CmdResult fsck = Snapfs({"fsck", url_, "--json"});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
  auto fj = nlohmann::json::parse(fsck.out, nullptr, false);
  ASSERT_TRUE(fj.is_object()) << fsck.out;
  EXPECT_EQ(fj.value("inodes", 0), 2) << "root and kept; the doomed file was purged: " << fsck.out;
}

// A host that stalls past its session timeout (SIGSTOP here; in production a long pause
// of the machine, or a partition from the database that the others did not share) is
// reaped by the others. When it wakes up it registers a new session by itself, without
// a remount: what it had fsync'd stays, what it writes afterwards reads on the other
// host, GC and fsck --verify agree (docs/scale-out.md, "Sessions").
TEST_F(MountShared, AStalledHostIsReapedAndRejoinsWithANewSession) { StalledHost(); }

void MountShared::StalledHost() {
  const int port = FreePort();
  std::string a = MountHost("a", {"--session-timeout", "1", "--metrics",
                                  "127.0.0.1:" + std::to_string(port)});
  std::string b = MountHost("b");
  auto metric = [&](const std::string& name) {
    CmdResult m = RunCmd({"curl", "-sS", "--max-time", "30",
                          "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
    return m.code == 0 ? Sample(m.out, name) : -2;
  };
  std::string kept = test::RandomBytes(2 << 20, 50);
  ASSERT_EQ(WriteFile(a + "/kept", kept, /*fsync_it=*/true), 0);
  const double first = metric("snapfs_session_id");
  ASSERT_GT(first, 0);
  const int pid = DaemonPid(a);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  nlohmann::json sj;
  bool reaped = SessionsBecome(b, 1, &sj);
  ASSERT_EQ(::kill(pid, SIGCONT), 0);
  ASSERT_TRUE(reaped) << "a's session was not reaped while it was stopped: " << sj.dump();

  // a finds its row gone at its next heartbeat and registers a new session.
  EXPECT_TRUE(Eventually(
      [&] {
        return metric("snapfs_session_renewals_total") == 1 &&
               metric("snapfs_session_lost") == 0;
      },
      20))
      << Log("a");
  EXPECT_NE(metric("snapfs_session_id"), first);
  EXPECT_TRUE(SessionsBecome(b, 2, &sj))
      << sj.dump();
  EXPECT_EQ(sj["health"], "ok") << sj.dump();
  EXPECT_EQ(DaemonPid(a), pid) << "status finds a's daemon under its new session";
  // A second mount on a's machine (same state folder) clears the local folders of
  // sessions that are gone, but not the spool a still uses under its first session's id.
  std::string c = MountHost("c", {}, "a");
  // a writes on, at once; b and c read it.
  std::string after = test::RandomBytes(3 << 20, 51);
  ASSERT_EQ(WriteFile(a + "/after", after, /*fsync_it=*/true), 0) << Log("a");
  EXPECT_TRUE(Eventually([&] { return ReadFile(b + "/after") == after; }, 10));
  EXPECT_TRUE(Eventually([&] { return ReadFile(c + "/after") == after; }, 10));
  EXPECT_TRUE(SameBytes(ReadFile(b + "/kept"), kept));
  EXPECT_TRUE(SameBytes(ReadFile(a + "/kept"), kept));
  CmdResult gc = Snapfs({"gc", url_, "--max-unused", "0"});
  EXPECT_EQ(gc.code, 0) << gc.Describe();
  EXPECT_TRUE(SameBytes(ReadFile(a + "/after"), after));
  for (const std::string& mp : {a, b, c}) ASSERT_EQ(Snapfs({"umount", mp}).code, 0);
  CmdResult fsck = Snapfs({"fsck", url_, "--verify"});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

// A host that mounts nothing names the store by its location: the snapshot verbs work on
// the whole namespace (they refused a postgresql:// location before: "neither inside a
// snapfs mount nor inside a store folder", docs/reliability.md finding 29).
TEST_F(MountShared, SnapshotVerbsTakeTheStoreLocation) {
  std::string a = MountHost("a");
  ContentMap content;
  FlinkJob job(a, "job", 5, &content);
  ASSERT_EQ(job.Init(), "");
  for (int i = 0; i < 2; i++) ASSERT_EQ(job.TakeCheckpoint(1, 64 << 10), "");
  ASSERT_EQ(WriteFile(a + "/job/shared/stray", "x", /*fsync_it=*/true), 0);
  ASSERT_EQ(Snapfs({"umount", a}).code, 0);
  CmdResult ls = Snapfs({"ls", url_, "--json"});
  ASSERT_EQ(ls.code, 0) << ls.Describe();
  auto j = nlohmann::json::parse(ls.out, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["snapshots"].is_array()) << ls.out;
  EXPECT_EQ(j["snapshots"].size(), 2u) << ls.out;
  CmdResult du = Snapfs({"du", url_});
  EXPECT_EQ(du.code, 0) << du.Describe();
  CmdResult o = Snapfs({"orphans", url_, "--older-than", "0", "--delete"});
  ASSERT_EQ(o.code, 0) << o.Describe();
  EXPECT_NE(o.out.find("1 orphan"), std::string::npos) << o.Describe();
  std::string b = MountHost("b");
  EXPECT_FALSE(Exists(b + "/job/shared/stray"));
  auto on_b = [&](const std::string& p) { return std::make_pair(b + p.substr(a.size()), p); };
  for (const auto& c : job.retained()) {
    EXPECT_EQ(Restore(b + "/job/" + c.name, a + "/job/" + c.name, content, on_b), "") << c.name;
  }
}

// fsck and gc sent to a mounted daemon hold off every other host's GC while they read one
// view of the store (GcLeaseHold): with another host's GC in progress (its lease held),
// fsck waits for it to end instead of checking under it, and gc says GC is running.
// Before, only an fsck of the unmounted store took the lease: a GC on another host could
// remove packs a daemon's fsck was reading, and it reported damage that was not there.
TEST_F(MountShared, FsckThroughADaemonWaitsForAnotherHostsGc) {
  std::string a = MountHost("a");
  ASSERT_EQ(WriteFile(a + "/f", test::RandomBytes(1 << 20, 3), /*fsync_it=*/true), 0);
  auto engine = kv::PostgresEngine::Open(conninfo_);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  SessionOptions so;
  so.timeout = std::chrono::minutes(2);
  so.what = "snapfs gc (the test, as another host)";
  auto other = Session::Register(**engine, so);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  auto held = (*other)->HoldGcLease();
  ASSERT_TRUE(held.ok()) << held.status().ToString();

  auto fsck = std::async(std::launch::async, [&] { return Snapfs({"fsck", a, "--verify"}); });
  EXPECT_EQ(fsck.wait_for(std::chrono::seconds(3)), std::future_status::timeout)
      << "fsck ran while another host's GC held the lease";
  CmdResult gc = Snapfs({"gc", a});
  EXPECT_EQ(gc.code, 4) << gc.Describe();  // README: busy
  EXPECT_NE(gc.err.find("GC is running"), std::string::npos) << gc.Describe();

  (*other)->DropGcLease();  // the other host's GC ends: fsck goes on
  CmdResult r = fsck.get();
  EXPECT_EQ(r.code, 0) << r.Describe();
  EXPECT_NE(r.out.find("no problems found"), std::string::npos) << r.Describe();
  // Its lease went with it: a GC runs now.
  CmdResult gc2 = Snapfs({"gc", a});
  EXPECT_EQ(gc2.code, 0) << gc2.Describe();
  EXPECT_TRUE((*other)->Close().ok());
}

TEST_F(MountShared, BadLocationsGetClearErrors) {
  // No such database.
  std::string bad = url_.substr(0, url_.rfind('/')) + "/no_such_db";
  std::string mp = tmp_ + "/x";
  ASSERT_EQ(::mkdir(mp.c_str(), 0755), 0);
  CmdResult r = Snapfs({"mount", bad, mp, "--state-dir", tmp_ + "/st", "--metrics", "off"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("no_such_db"), std::string::npos) << r.Describe();
  EXPECT_FALSE(IsMounted(mp));
  // A database with no store in it.
  std::string empty = *kv::PostgresEngine::PublicUrl(test::NewPgTestDatabase());
  r = Snapfs({"mount", empty, mp, "--state-dir", tmp_ + "/st", "--metrics", "off"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("snapfs init"), std::string::npos) << r.Describe();
  // Init twice; init without --data.
  r = Snapfs({"init", url_, "--data", tmp_ + "/data2"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("empty one"), std::string::npos) << r.Describe();
  r = Snapfs({"init", empty});
  EXPECT_EQ(r.code, 2) << "a usage error: " << r.Describe();
  EXPECT_NE(r.err.find("--data"), std::string::npos) << r.Describe();
}

// A PostgreSQL of the test's own, stopped and started again under the mounts.
class MountSharedDbRestart : public MountShared {
 protected:
  std::string NewDatabase() override {
    // Not below tmp_ (mode 0700): the server runs as the postgres user.
    char tmpl[] = "/tmp/snapfs-pgr-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    pg_dir_ = tmpl;
    CmdResult up = Server("up");
    EXPECT_EQ(up.code, 0) << up.Describe();
    std::string conninfo = up.out.substr(0, up.out.find_last_not_of('\n') + 1);
    conninfo = conninfo.substr(conninfo.rfind('\n') + 1);
    CmdResult db = RunCmd({"psql", "-q", conninfo + " dbname=postgres", "-c", "CREATE DATABASE t"});
    EXPECT_EQ(db.code, 0) << db.Describe();
    return conninfo + " dbname=t";
  }
  void TearDown() override {
    MountShared::TearDown();
    if (!pg_dir_.empty()) {
      (void)Server("down");
      std::error_code ec;
      std::filesystem::remove_all(pg_dir_, ec);
    }
  }
  CmdResult Server(const char* verb) {
    return RunCmd({"bash", std::string(SNAPFS_SOURCE_DIR) + "/scripts/pg-test-server.sh", verb,
                   pg_dir_},
                  120);
  }
  std::string pg_dir_;
};

// PostgreSQL goes away for longer than the session timeout and comes back: operations
// fail with EIO meanwhile (never hang, never corrupt), the mounts recover by themselves,
// and nobody's session is reaped for the silence every daemon shared.
TEST_F(MountSharedDbRestart, OperationsFailThenRecoverAndNoSessionIsLost) {
  std::string a = MountHost("a", {"--session-timeout", "2"});
  std::string b = MountHost("b", {"--session-timeout", "2"});
  std::string before = test::RandomBytes(1 << 20, 30);
  ASSERT_EQ(WriteFile(a + "/before", before, /*fsync_it=*/true), 0);
  CmdResult down = Server("down");
  ASSERT_EQ(down.code, 0) << down.Describe();

  auto t0 = std::chrono::steady_clock::now();
  int err = WriteFile(a + "/during", "x", /*fsync_it=*/true);
  EXPECT_EQ(err, EIO) << ErrnoName(err);
  int rerr = 0;
  (void)ReadFile(b + "/before", &rerr);
  EXPECT_EQ(rerr, EIO) << ErrnoName(rerr);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60)) << "no hang";
  std::this_thread::sleep_for(std::chrono::seconds(5));  // > the sessions' timeout

  CmdResult start = Server("start");
  ASSERT_EQ(start.code, 0) << start.Describe();
  std::string after = test::RandomBytes(1 << 20, 31);
  EXPECT_TRUE(Eventually([&] { return WriteFile(a + "/after", after, true) == 0; }, 30))
      << Log("a");
  EXPECT_TRUE(Eventually([&] { return ReadFile(b + "/after") == after; }, 30)) << Log("b");
  EXPECT_TRUE(SameBytes(ReadFile(b + "/before"), before));
  // Both daemons kept their sessions (a reaped one would have lost its writes for good).
  std::this_thread::sleep_for(std::chrono::seconds(3));  // > a timeout of watching
  CmdResult st = Snapfs({"status", b, "--json"});
  auto sj = nlohmann::json::parse(st.out, nullptr, false);
  ASSERT_TRUE(sj.is_object()) << st.Describe();
  EXPECT_EQ(sj["sessions"].size(), 2u) << st.out;
  // Degraded only by the EIOs answered during the outage (each daemon's health record:
  // "since start", as for a local daemon): no session missed its heartbeats.
  EXPECT_EQ(sj["health"], "degraded") << st.out;
  for (const auto& r : sj["reasons"]) {
    EXPECT_NE(r.get<std::string>().find("I/O error(s) answered since start"), std::string::npos)
        << st.out;
  }
  ASSERT_EQ(WriteFile(b + "/later", "y", true), 0);
  ASSERT_EQ(Snapfs({"umount", a}).code, 0);
  ASSERT_EQ(Snapfs({"umount", b}).code, 0);
  ExpectFsckClean();
}

// The same with the packs in the test radosgw: a commit points only at uploaded packs.
class MountSharedS3 : public OnSharedS3<MountShared> {};

TEST_F(MountSharedS3, CloseToOpenAcrossHosts) { CloseToOpen(); }
TEST_F(MountSharedS3, CheckpointsWrittenOnOneHostRestoreAndGoFromAnother) { Checkpoints(); }
TEST_F(MountSharedS3, AKilledHostIsCleanedUpAfterItsSessionTimeout) { KilledHost(); }
TEST_F(MountSharedS3, AStalledHostIsReapedAndRejoinsWithANewSession) { StalledHost(); }
TEST_F(MountSharedS3, DifferentialOverThreeHosts) { Differential(); }
// Packs are sealed (uploaded) at every commit here: GC rewrites them while the writers
// fill theirs, which it must leave alone.
TEST_F(MountSharedS3, JobManagerAndTaskManagersOnThreeHostsWithGcFromAFourth) { ThreeHosts(); }

}  // namespace
}  // namespace snapfs::mounttest
