// Sessions of a shared store (a store whose metadata lives in a database that several
// hosts mount, docs/scale-out.md "Sessions").
//
// Every process that opens a shared store (a daemon, or a CLI verb that opens it
// directly) registers a session row and keeps it alive with heartbeats. What only that
// process knows about belongs to its session and is recorded with its id: the packs it
// is filling ("openpack" records), the files it has open after they were unlinked (the
// orphans' value), the GC lease. A session whose heartbeat stops (kill -9, a host that
// died or lost the network) expires after its timeout, and whoever notices first reaps
// it: one transaction deletes the row, its openpack records and its GC lease; its
// orphans are purged by the next namespace that looks (Filesystem::PurgeDeadOrphans).
//
// Death is observed, not computed from clocks: every heartbeat increments the row's beat
// counter, and a SessionReaper (in every daemon's heartbeat thread) reaps a session whose
// row it has seen unchanged for longer than that session's timeout, measured on its own
// monotonic clock while it reached the database the whole time. A reaper that fails to
// reach the database forgets what it saw: after an outage of the database itself, which
// stops every heartbeat at once, nobody is reaped for having been silent during it.
//
// Fencing: a session that was reaped must not commit references into packs GC may now
// delete. Every commit that points at chunks appended to a pack of this process reads,
// in its transaction, the row of the session that pack was recorded under
// (ChunkStore::FencePacks), so it fails if the reap deleted the row (with the pack's
// record), and it conflicts with (and retries after) a reap that commits first. The
// transaction that allocates a pack id reads the session's row too, so a reaped session
// makes no new record; GC's repoint reads its lease.
//
// A process whose session was reaped (it stalled, or was cut off from the database, for
// longer than its timeout while the others could watch) registers a new session and
// carries on (Renew): what pointed into the old session's packs fails with EIO, nothing
// else does. Open-but-unlinked files recorded under the old session were purged by the
// reap's side; their handles answer EIO/ESTALE, as for a file unlinked on another host.
//
// Thread-safety: Session is thread-safe; the free functions are stateless.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/meta/kv.h"
#include "core/meta/schema.h"

namespace snapfs {

struct SessionOptions {
  // How long the session counts as alive after a heartbeat. Heartbeats come every
  // timeout/4.
  std::chrono::milliseconds timeout{60000};
  std::string what;  // shown by `snapfs status`: "mount /mnt/ckpt", "snapfs gc"
};

int64_t WallMs();
// This host's name, as sessions record it.
std::string HostName();
// What a daemon's session says it is ("mount /mnt/ckpt"): how `status` and `umount` find
// the daemon of a mount point among the sessions (with HostName()).
std::string MountWhat(const std::string& mountpoint);

class Session {
 public:
  // Registers a new session (its id from the "next_session" counter).
  static Result<std::unique_ptr<Session>> Register(kv::Engine& engine, SessionOptions opts);
  ~Session();

  // The current session's id: changes when Renew registers a new one.
  uint64_t id() const { return id_.load(); }
  std::chrono::milliseconds timeout() const { return opts_.timeout; }

  // Increments the beat counter. Once the row is gone (reaped after a long stall), the
  // session is lost: Heartbeat returns IOError and lost() is true until Renew.
  // The health given to SetHealth goes with the next heartbeat's transaction when it
  // differs from what was last written (its "sessionhealth/" record: no extra round trip,
  // and no write at all while nothing goes wrong).
  Status Heartbeat();
  void SetHealth(SessionHealth h);
  bool lost() const { return lost_.load(); }
  // A lost session registers a new row (a new id) and is no longer lost. The caller
  // first gives up everything that belonged to the old id (ChunkStore::RenewSession
  // after). Sessions renewed so far: renewals().
  Status Renew();
  uint64_t renewals() const { return renewals_.load(); }
  // Deletes the session's row, its openpack records and a GC lease it holds (a clean
  // close). Idempotent.
  Status Close();

  // The store-wide GC lease, counted within this process. Each GC run, and each check
  // that must not see another host's GC under it (fsck, gc's check of the snapshots),
  // holds it while it runs: the first holder takes the lease row (AcquireGcLease: Busy,
  // naming the holder, while another live session has it), the last one gives it back.
  // Counted because they nest within one process under one session id (a daemon's
  // periodic GC during an fsck sent to it): a release by the inner one must not free the
  // outer one's lease. Returns the session id the lease is held under (for
  // FenceGcLease); DropGcLease takes no argument, it gives back what was held.
  Result<uint64_t> HoldGcLease();
  void DropGcLease();

 private:
  Session(kv::Engine& engine, SessionOptions opts, uint64_t id);
  // Writes a new row; returns its id.
  static Result<uint64_t> RegisterRow(kv::Engine& engine, const SessionOptions& opts);
  kv::Engine& engine_;
  const SessionOptions opts_;
  std::atomic<uint64_t> id_;
  std::atomic<uint64_t> renewals_{0};
  std::atomic<bool> lost_{false};
  std::atomic<bool> closed_{false};
  std::mutex health_mu_;
  SessionHealth health_;          // guarded by health_mu_: to publish
  SessionHealth health_written_;  // guarded by health_mu_: in the record of id_
  std::mutex lease_mu_;
  int lease_holds_ = 0;          // guarded by lease_mu_
  uint64_t lease_session_ = 0;   // guarded by lease_mu_: the id the lease row names
};

struct SessionInfo {
  uint64_t id = 0;
  SessionValue value;
  // Its last heartbeat is older than its timeout by the lister's wall clock: a hint for
  // people (`snapfs status`), never a reason to reap.
  bool overdue = false;
};
Result<std::vector<SessionInfo>> ListSessions(kv::Engine& engine);
// The health records of the sessions that published one (one scan).
Result<std::map<uint64_t, SessionHealth>> ListSessionHealth(kv::Engine& engine);

// Watches the sessions and reaps the dead ones (see above). Not thread-safe: one per
// heartbeat thread.
class SessionReaper {
 public:
  using Clock = std::chrono::steady_clock;
  explicit SessionReaper(uint64_t self) : self_(self) {}
  // Reads every session once; reaps those whose row this reaper has seen unchanged for
  // longer than their timeout. Returns the ids reaped. On an error, forgets everything.
  Result<std::vector<uint64_t>> Check(kv::Engine& engine, Clock::time_point now = Clock::now());
  // Forgets what it saw (this process could not reach the database).
  void Reset() { seen_.clear(); }

 private:
  struct Seen {
    std::string value;
    Clock::time_point since;
  };
  const uint64_t self_;
  std::map<uint64_t, Seen> seen_;
};

// Deletes every record of session `id` (row, openpack records, GC lease) in `t`.
Status DeleteSessionRecords(kv::Txn& t, uint64_t id);

// The packs GC must leave alone: those with an openpack record, and every id at or past
// `next` (a pack allocated after this read; its record may be invisible to it). Read in
// one transaction, before GC reads the chunk index: a pack whose record was deleted
// before this read had all its chunks committed before it too.
struct OpenPackSet {
  std::set<uint64_t> open;
  uint64_t next = 0;
  bool Excludes(uint64_t pack) const { return pack >= next || open.count(pack) != 0; }
};
Result<OpenPackSet> ReadOpenPacks(kv::Engine& engine);

// The store-wide GC lease: Busy (naming the holder) if a live session holds it.
Status AcquireGcLease(kv::Engine& engine, uint64_t session);
Status ReleaseGcLease(kv::Engine& engine, uint64_t session);
// In `t`: IOError unless `session` still holds the lease (a reap of it took the lease).
Status FenceGcLease(kv::Txn& t, uint64_t session);

}  // namespace snapfs
