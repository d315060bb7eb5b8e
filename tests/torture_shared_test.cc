// kill -9 torture on a shared store (DESIGN.md section 3, invariants 2-5 and 7): the load of
// tests/torture_test.cc (tests/util/torture_load.h) on two hosts at once, "a" and "b", two
// mounts of one `postgresql://` store (packs in a folder, or in the test radosgw:
// TortureSharedS3), each host with a writer of its own jobs. Each round SIGKILLs one
// daemon at a random moment (mostly b's, sometimes a's, now and then both), a third of the
// rounds also a `snapfs gc` half-way (a CLI session holding the GC lease), and then:
// (TortureShared.KillNineOfAnyOfThreeHosts...: three hosts, "a", "b" and "c"; each round
// kills one or two of them at random, now and then all three.)
//  - the survivor's writer keeps going, and every one of its operations must succeed
//    while the dead daemon's session expires and the survivor reaps it (its packs being
//    filled, its GC lease, its unlinked-while-open files); the round waits until the dead
//    session is gone from `snapfs status`, then stops the survivor's writer;
//  - `snapfs fsck URL --verify` of the store must be clean, run as a user runs it: beside
//    the live (idle) survivor. When both died, nobody has reaped them yet: fsck then sees
//    their sessions still registered, and the next mounts clean up after them;
//  - the dead hosts mount again, and every file whose fsync returned and every checkpoint
//    whose `_metadata` rename returned (savepoint: whose close returned), of both writers,
//    must read back byte for byte through BOTH mounts and be listed by `snapfs ls` on each.
// At the end, unmounted: no inode without a name (the held unlinked-while-open files of
// the dead daemons were purged). Sessions time out after 2 s (--session-timeout) so that
// a round takes seconds.
//
// SNAPFS_TORTURE_KILLS=N kills per test (default 8, 4 under ASan; scripts/torture.sh --shared),
// SNAPFS_TORTURE_SEED the seed. Label postgres (TortureShared) and s3 (TortureSharedS3).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/mount_fixture.h"
#include "tests/util/shared_mounts.h"
#include "tests/util/torture_load.h"

namespace snapfs::mounttest {
namespace {

// Under AddressSanitizer everything runs a few times slower: fewer kills keep the test's
// time in CI's budget.
#if defined(__SANITIZE_ADDRESS__)
constexpr uint64_t kDefaultKills = 4;
#else
constexpr uint64_t kDefaultKills = 8;
#endif

class TortureShared : public SharedMounts {
 protected:
  struct Host {
    std::string name, mnt;
    int pid = 0;
    std::unique_ptr<TortureLoad> load;
    std::thread writer;
    std::atomic<bool> stop{false};
    bool dead = false;
    UniqueFd held;  // a file it has open after unlinking it (kill -9: the survivor purges it)
    ~Host() {       // a test that returns early leaves no writer running
      stop = true;
      if (writer.joinable()) writer.join();
    }
  };

  const std::vector<std::string> kMountOptions = {"--session-timeout", "2"};

  void MountAgain(Host& h) {
    h.mnt = MountHost(h.name, kMountOptions);
    h.pid = pids_.back();
    h.dead = false;
  }

  // A file written (part of it fsync'd), unlinked and kept open, as a reader of a
  // subsumed checkpoint's file would: it lives in the host's session until closed, or
  // until the session is reaped and another namespace purges it.
  void HoldUnlinked(Host& h, uint64_t round) {
    std::string p = h.mnt + "/held-" + std::to_string(round);
    h.held = UniqueFd(::open(p.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(h.held.ok()) << p << ": " << ErrnoName(errno);
    ASSERT_EQ(WriteAllFd(h.held.get(), RandomBytes(128 * kKiB, round)), 0) << p;
    ASSERT_EQ(::fsync(h.held.get()), 0) << p << ": " << ErrnoName(errno);
    ASSERT_EQ(::unlink(p.c_str()), 0) << p << ": " << ErrnoName(errno);
    ASSERT_EQ(WriteAllFd(h.held.get(), RandomBytes(64 * kKiB, round + 1)), 0) << p;
  }

  // `snapfs gc URL --max-unused 0` SIGKILLed after `ms` (coreutils timeout), as an OOM
  // kill or a lost host would end it: its session (and the store's GC lease, and a pack
  // it was filling) stays until a daemon reaps it, after the CLI's 60 s timeout; GC is
  // refused meanwhile ("GC is running"). Counts how it ended.
  void KilledGc(int ms) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.3f", ms / 1000.0);
    CmdResult r = RunCmd(
        {"timeout", "-s", "KILL", secs, SNAPFS_BINARY, "gc", url_, "--max-unused", "0"}, 120);
    if (r.code == 128 + SIGKILL || r.code == 124) {
      cli_gc_killed_++;
    } else if (r.code == 0) {
      cli_gc_done_++;
    } else {
      EXPECT_NE(r.err.find("GC is running"), std::string::npos) << r.Describe();
      cli_gc_busy_++;
    }
  }

  void StartWriter(Host& h, uint64_t seed) {
    h.stop = false;
    h.load->killing() = false;
    h.writer = std::thread([&h, seed] { h.load->Run(h.stop, seed); });
  }

  void StopWriter(Host& h) {
    h.stop = true;
    if (h.writer.joinable()) h.writer.join();
  }

  // kill -9 of the host's daemon; its mount stays listed, dead, until cleared.
  void Kill(Host& h) {
    h.load->killing() = true;
    h.stop = true;
    const uint64_t connection = fuse::SnapfsConnection(h.mnt);
    ASSERT_EQ(::kill(h.pid, SIGKILL), 0) << "kill -9 " << h.pid << ": " << ErrnoName(errno);
    (void)AbortIfKilledDaemonHangs(h.pid, connection);
    ASSERT_TRUE(WaitPidVanished(h.pid, std::chrono::seconds(20)))
        << "daemon " << h.pid << " of " << h.name << " was not reaped";
    h.dead = true;
  }

  // The pids of the sessions `snapfs status` lists (other than its own).
  std::vector<int> SessionPids(const std::string& via) {
    CmdResult r = Snapfs({"status", via, "--json"});
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    std::vector<int> pids;
    if (!j.is_object() || !j.contains("sessions")) return {-1};
    for (const auto& s : j["sessions"]) pids.push_back(s.value("pid", 0));
    return pids;
  }

  // Waits until no session of `dead_pids` is registered any more (reaped after its
  // timeout by a live daemon), asking through `via`.
  bool Reaped(const std::string& via, const std::vector<int>& dead_pids, int seconds) {
    return Eventually(
        [&] {
          for (int p : SessionPids(via)) {
            if (p < 0 || std::find(dead_pids.begin(), dead_pids.end(), p) != dead_pids.end()) {
              return false;
            }
          }
          return true;
        },
        seconds);
  }

  // Every host unmounted and a namespace opened (`snapfs orphans`; not `gc`, which a
  // killed `snapfs gc`'s lease may still refuse): no inode is left without a name (every
  // file but the root has at least one entry; hidden ones count), so each dead session's
  // unlinked-while-open files were purged.
  void ExpectNoOrphanInodes(const std::deque<Host>& hosts) {
    for (const Host& h : hosts) {
      CmdResult u = Snapfs({"umount", tmp_ + "/" + h.name}, 60);
      ASSERT_EQ(u.code, 0) << u.Describe();
    }
    CmdResult o = Snapfs({"orphans", url_});
    ASSERT_EQ(o.code, 0) << o.Describe();
    CmdResult fsck = Snapfs({"fsck", url_, "--json"}, 300);
    ASSERT_EQ(fsck.code, 0) << fsck.Describe();
    auto j = nlohmann::json::parse(fsck.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << fsck.out;
    EXPECT_EQ(j.value("inodes", 0), j.value("dentries", 0) + 1) << fsck.out;
  }

  void RunKills(uint64_t kills, uint64_t seed, size_t nhosts = 2) {
    std::mt19937_64 rng(seed);
    std::deque<Host> hosts(nhosts);  // built in place: a Host (thread, atomic) cannot move
    for (size_t i = 0; i < nhosts; i++) hosts[i].name = std::string(1, static_cast<char>('a' + i));
    for (Host& h : hosts) {
      ASSERT_NO_FATAL_FAILURE(MountAgain(h));
      h.load = std::make_unique<TortureLoad>(h.mnt, h.name + "-", rng());
      h.load->set_orphans_per_job(true);
      ASSERT_NO_FATAL_FAILURE(h.load->Start());
    }
    auto start = std::chrono::steady_clock::now();
    uint64_t round = 0, b_kills = 0, a_kills = 0, both_kills = 0, some_kills = 0;
    double reap_secs = 0;  // from the kill until the survivor had reaped the session
    int reaps = 0;
    for (; round < kills; round++) {
      for (Host& h : hosts) ASSERT_NO_FATAL_FAILURE(HoldUnlinked(h, round));
      for (Host& h : hosts) StartWriter(h, rng());
      std::thread gc_killer;  // a third of the rounds: a `snapfs gc` killed half-way too
      if (rng() % 3 == 0) gc_killer = std::thread([this, ms = 20 + rng() % 600] { KilledGc(ms); });
      std::this_thread::sleep_for(
          std::chrono::milliseconds(rng() % 4 == 0 ? 300 + rng() % 900 : 20 + rng() % 300));
      uint64_t pick = rng() % 8;  // two hosts: 0: both; 1, 2: a; else b
      std::vector<Host*> victims;
      if (nhosts == 2) {
        if (pick == 0 || pick > 2) victims.push_back(&hosts[1]);
        if (pick <= 2) victims.push_back(&hosts[0]);
      } else if (pick == 0) {  // more hosts: 0: all of them; else one to all but one
        for (Host& h : hosts) victims.push_back(&h);
      } else {
        std::vector<Host*> order;
        for (Host& h : hosts) order.push_back(&h);
        std::shuffle(order.begin(), order.end(), rng);
        victims.assign(order.begin(), order.begin() + 1 + static_cast<long>(rng() % (nhosts - 1)));
      }
      std::vector<int> dead_pids;
      const auto killed_at = std::chrono::steady_clock::now();
      for (Host* v : victims) {
        dead_pids.push_back(v->pid);
        ASSERT_NO_FATAL_FAILURE(Kill(*v));
      }
      if (nhosts == 2) {
        (pick == 0 ? both_kills : pick <= 2 ? a_kills : b_kills)++;
      } else {
        (pick == 0 ? both_kills : some_kills)++;
      }
      for (Host* v : victims) {
        StopWriter(*v);  // its calls fail with ENOTCONN now, before the lazy unmount below
        v->held.Reset();
        CmdResult fu = RunCmd({"fusermount3", "-u", "-z", v->mnt}, 30);
        ASSERT_EQ(fu.code, 0) << fu.Describe();
      }
      if (gc_killer.joinable()) gc_killer.join();
      Host* survivor = nullptr;  // one live host (the last), which checks the reap
      for (Host& h : hosts) {
        if (!h.dead) survivor = &h;
      }
      const std::string when = "kill " + std::to_string(round);
      if (survivor) {  // it keeps writing while it notices the death and reaps the session
        bool reaped = Reaped(survivor->mnt, dead_pids, 60);
        reap_secs +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
        reaps++;
        for (Host& h : hosts) {
          if (h.dead) continue;
          StopWriter(h);
          EXPECT_EQ(h.held.Close(), 0) << h.name << ": " << ErrnoName(errno);
        }
        EXPECT_TRUE(reaped) << "the session of the killed daemon was not reaped by "
                            << survivor->name << " within 60 s" << Log(survivor->name);
      }
      if (HasFailure()) {
        for (Host& h : hosts) h.load->PrintHistory(when);
        break;
      }
      CmdResult fsck = Snapfs({"fsck", url_, "--verify"}, 300);
      EXPECT_EQ(fsck.code, 0) << "fsck --verify after " << when
                              << " (survivor: " << (survivor ? survivor->name : "none") << "):\n"
                              << fsck.Describe();
      for (Host* v : victims) ASSERT_NO_FATAL_FAILURE(MountAgain(*v));
      if (!survivor) {  // the next mounts clean up after all of them
        std::string logs;
        for (const Host& h : hosts) logs += Log(h.name);
        EXPECT_TRUE(Reaped(hosts[0].mnt, dead_pids, 60))
            << "the sessions of the killed daemons were not reaped after the remounts" << logs;
      }
      for (Host& h : hosts) {
        h.load->killing() = false;
        for (Host& via : hosts) h.load->Verify(via.mnt, round);
      }
      if (HasFailure()) {
        std::cout << "torture: failed after " << when << " (seed " << seed << ")\n";
        for (Host& h : hosts) h.load->PrintHistory(when);
        break;
      }
      for (Host& h : hosts) {
        h.load->Note("--- " + when + " verified");
        h.load->Recover(round);
      }
      if (HasFailure()) break;
    }
    for (Host& h : hosts) StopWriter(h);
    if (!HasFailure()) ExpectNoOrphanInodes(hosts);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "torture shared: " << nhosts << " hosts, " << round << " kills in "
              << static_cast<int>(secs) << " s (b " << b_kills << ", a " << a_kills
              << ", some of three " << some_kills << ", all " << both_kills
              << "; a survivor reaped "
              << "the dead session " << (reaps ? reap_secs / reaps : 0)
              << " s after the kill on average; `snapfs gc` killed " << cli_gc_killed_
              << " times, finished " << cli_gc_done_ << ", found GC running " << cli_gc_busy_
              << "); seed " << seed << std::endl;
    for (Host& h : hosts) {
      std::cout << "torture shared: host " << h.name << ": " << h.load->Summary() << std::endl;
    }
  }

  std::atomic<uint64_t> cli_gc_killed_{0}, cli_gc_done_{0}, cli_gc_busy_{0};
};

TEST_F(TortureShared, KillNineOfEitherHostLosesNothingAcknowledgedAndTheOtherKeepsWorking) {
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
  RunKills(EnvOr("SNAPFS_TORTURE_KILLS", kDefaultKills), seed);
}

// Three hosts: one or two killed at once (the survivors reap them, whichever notices
// first), sometimes all three. Half the kills of the two-host test: each round verifies
// three writers' work through three mounts.
TEST_F(TortureShared, KillNineOfAnyOfThreeHostsLosesNothingAcknowledgedAndTheRestKeepWorking) {
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261207);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
  RunKills(EnvOr("SNAPFS_TORTURE_KILLS", kDefaultKills / 2), seed, 3);
}

class TortureSharedS3 : public OnSharedS3<TortureShared> {};

TEST_F(TortureSharedS3, KillNineOfEitherHostLosesNothingAcknowledgedAndTheOtherKeepsWorking) {
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
  RunKills(EnvOr("SNAPFS_TORTURE_KILLS", kDefaultKills), seed);
}

}  // namespace
}  // namespace snapfs::mounttest
