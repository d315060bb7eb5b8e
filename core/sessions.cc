#include "core/sessions.h"

#include <unistd.h>

#include <optional>

#include "base/coding.h"
#include "base/log.h"

namespace snapfs {

std::string HostName() {
  char h[256] = {};
  if (::gethostname(h, sizeof h - 1) != 0) return "?";
  return h;
}

std::string MountWhat(const std::string& mountpoint) { return "mount " + mountpoint; }

namespace {

// Keys of `space` starting with `prefix`, read in `t` (conflict-free iteration).
Status ScanPrefix(kv::Txn& t, std::string_view prefix, std::vector<kv::KeyValue>* out) {
  auto it = t.NewIterator(Cf::kDefault);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    out->push_back(kv::KeyValue{std::string(it->key()), std::string(it->value())});
  }
  return it->status();
}

}  // namespace

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Session::Session(kv::Engine& engine, SessionOptions opts, uint64_t id)
    : engine_(engine), opts_(std::move(opts)), id_(id) {}

Session::~Session() { (void)Close(); }

Result<uint64_t> Session::RegisterRow(kv::Engine& engine, const SessionOptions& opts) {
  SessionValue v;
  v.started_ms = v.beat_ms = WallMs();
  v.timeout_ms = static_cast<uint64_t>(opts.timeout.count());
  v.pid = static_cast<uint32_t>(::getpid());
  v.host = HostName();
  v.what = opts.what;
  uint64_t id = 0;
  RETURN_IF_ERROR(kv::RunTxn(
      engine,
      [&](kv::Txn& t) -> Status {
        std::string c;
        Status s = t.Get(Cf::kDefault, keys::kNextSession, &c);
        id = 1;
        if (s.ok()) {
          ASSIGN_OR_RETURN(id, DecodeLE64(c));
        } else if (!s.Is(Code::kNotFound)) {
          return s;
        }
        t.Put(Cf::kDefault, keys::kNextSession, EncodeLE64(id + 1));
        t.Put(Cf::kDefault, keys::Session(id), v.Encode());
        return Status::OK();
      },
      kv::RunOptions{.sync = true}).WithContext("register a session"));
  return id;
}

Result<std::unique_ptr<Session>> Session::Register(kv::Engine& engine, SessionOptions opts) {
  if (opts.timeout.count() < 100) return Status::InvalidArgument("session timeout under 100 ms");
  ASSIGN_OR_RETURN(uint64_t id, RegisterRow(engine, opts));
  return std::unique_ptr<Session>(new Session(engine, std::move(opts), id));
}

Status Session::Renew() {
  if (!lost_.load() || closed_.load()) return Status::OK();
  ASSIGN_OR_RETURN(uint64_t id, RegisterRow(engine_, opts_));
  id_.store(id);
  {
    std::lock_guard l(health_mu_);
    health_written_ = SessionHealth{};  // the new id has no record yet
  }
  renewals_++;
  lost_.store(false);
  return Status::OK();
}

void Session::SetHealth(SessionHealth h) {
  std::lock_guard l(health_mu_);
  health_ = std::move(h);
}

Status Session::Heartbeat() {
  const uint64_t id = id_.load();
  if (lost_.load()) return Status::IOError("session " + std::to_string(id) + " was lost");
  if (closed_.load()) return Status::OK();
  const std::string key = keys::Session(id);
  std::optional<SessionHealth> publish;
  {
    std::lock_guard l(health_mu_);
    if (!(health_ == health_written_)) publish = health_;
  }
  Status st = kv::RunTxn(engine_, [&](kv::Txn& t) -> Status {
    std::string v;
    Status s = t.Get(Cf::kDefault, key, &v);
    if (s.Is(Code::kNotFound)) {
      return Status::IOError("session " + std::to_string(id) +
                             " was reaped (no heartbeat within " +
                             std::to_string(opts_.timeout.count()) + " ms)");
    }
    RETURN_IF_ERROR(s);
    ASSIGN_OR_RETURN(SessionValue nv, SessionValue::Decode(v));
    nv.beat++;
    nv.beat_ms = WallMs();
    t.Put(Cf::kDefault, key, nv.Encode());
    if (publish) t.Put(Cf::kDefault, keys::SessionHealth(id), publish->Encode());
    return Status::OK();
  });
  if (st.ok() && publish) {
    std::lock_guard l(health_mu_);
    health_written_ = *publish;
  }
  if (st.Is(Code::kIOError) && st.message().find("was reaped") != std::string::npos) {
    if (!lost_.exchange(true)) {
      SNAPFS_LOG_ERROR(st.message() + ": what pointed into its packs fails; registering a new one");
    }
  }
  return st;
}

Status DeleteSessionRecords(kv::Txn& t, uint64_t id) {
  t.Delete(Cf::kDefault, keys::Session(id));
  t.Delete(Cf::kDefault, keys::SessionHealth(id));
  std::vector<kv::KeyValue> packs;
  RETURN_IF_ERROR(ScanPrefix(t, keys::kOpenPackPrefix, &packs));
  for (const auto& kv : packs) {
    ASSIGN_OR_RETURN(uint64_t owner, DecodeBE64(kv.value));
    if (owner == id) t.Delete(Cf::kDefault, kv.key);
  }
  std::string lease;
  Status s = t.Get(Cf::kDefault, keys::kGcLease, &lease);
  if (s.ok()) {
    ASSIGN_OR_RETURN(uint64_t holder, DecodeBE64(lease));
    if (holder == id) t.Delete(Cf::kDefault, keys::kGcLease);
  } else if (!s.Is(Code::kNotFound)) {
    return s;
  }
  return Status::OK();
}

Status Session::Close() {
  if (closed_.exchange(true) || lost_.load()) return Status::OK();
  return kv::RunTxn(
      engine_, [&](kv::Txn& t) { return DeleteSessionRecords(t, id_.load()); },
      kv::RunOptions{.sync = true});
}

Result<uint64_t> Session::HoldGcLease() {
  std::lock_guard l(lease_mu_);
  if (lease_holds_ == 0) {
    const uint64_t id = id_.load();
    RETURN_IF_ERROR(AcquireGcLease(engine_, id));
    lease_session_ = id;
  }
  lease_holds_++;
  return lease_session_;
}

void Session::DropGcLease() {
  std::lock_guard l(lease_mu_);
  if (lease_holds_ == 0 || --lease_holds_ > 0) return;
  // A failure leaves the row until the session closes or is reaped; GC elsewhere waits
  // that long.
  if (Status s = ReleaseGcLease(engine_, lease_session_); !s.ok()) {
    SNAPFS_LOG_WARN("release the GC lease: " + s.ToString());
  }
}

Result<std::vector<SessionInfo>> ListSessions(kv::Engine& engine) {
  std::vector<SessionInfo> out;
  const int64_t now = WallMs();
  auto it = engine.NewIterator(Cf::kDefault);
  for (it->Seek(keys::kSessionPrefix); it->Valid() && it->key().starts_with(keys::kSessionPrefix);
       it->Next()) {
    SessionInfo i;
    ASSIGN_OR_RETURN(i.id, keys::DecodeSuffixId(it->key(), keys::kSessionPrefix));
    ASSIGN_OR_RETURN(i.value, SessionValue::Decode(it->value()));
    i.overdue = i.value.beat_ms + static_cast<int64_t>(i.value.timeout_ms) < now;
    out.push_back(std::move(i));
  }
  RETURN_IF_ERROR(it->status());
  return out;
}

Result<std::map<uint64_t, SessionHealth>> ListSessionHealth(kv::Engine& engine) {
  std::map<uint64_t, SessionHealth> out;
  auto it = engine.NewIterator(Cf::kDefault);
  for (it->Seek(keys::kSessionHealthPrefix);
       it->Valid() && it->key().starts_with(keys::kSessionHealthPrefix); it->Next()) {
    ASSIGN_OR_RETURN(uint64_t id, keys::DecodeSuffixId(it->key(), keys::kSessionHealthPrefix));
    ASSIGN_OR_RETURN(out[id], SessionHealth::Decode(it->value()));
  }
  RETURN_IF_ERROR(it->status());
  return out;
}

Result<std::vector<uint64_t>> SessionReaper::Check(kv::Engine& engine, Clock::time_point now) {
  std::map<uint64_t, std::string> rows;
  {
    auto it = engine.NewIterator(Cf::kDefault);
    for (it->Seek(keys::kSessionPrefix);
         it->Valid() && it->key().starts_with(keys::kSessionPrefix); it->Next()) {
      auto id = keys::DecodeSuffixId(it->key(), keys::kSessionPrefix);
      if (id.ok()) rows[*id] = std::string(it->value());
    }
    if (!it->status().ok()) {
      Reset();
      return it->status();
    }
  }
  std::erase_if(seen_, [&](const auto& kv) { return rows.count(kv.first) == 0; });
  std::vector<uint64_t> reaped;
  for (const auto& row : rows) {
    const uint64_t id = row.first;  // (not a structured binding: the lambda below uses it)
    const std::string& value = row.second;
    if (id == self_) continue;
    auto s = seen_.find(id);
    if (s == seen_.end() || s->second.value != value) {
      seen_[id] = Seen{value, now};
      continue;
    }
    auto sv = SessionValue::Decode(value);
    if (!sv.ok()) continue;  // fsck's business
    if (now - s->second.since <= std::chrono::milliseconds(sv->timeout_ms)) continue;
    // Silent for longer than its timeout while we watched. Reaped only if the row is
    // still exactly what we saw: a heartbeat committed meanwhile makes the transaction
    // retry and see the new value (and a reap by another process, the row gone).
    bool gone = false;
    Status st = kv::RunTxn(
        engine,
        [&](kv::Txn& t) -> Status {
          gone = false;
          std::string v;
          Status g = t.Get(Cf::kDefault, keys::Session(id), &v);
          if (g.Is(Code::kNotFound) || (g.ok() && v != value)) return Status::OK();
          RETURN_IF_ERROR(g);
          gone = true;
          return DeleteSessionRecords(t, id);
        },
        kv::RunOptions{.sync = true});
    if (!st.ok()) {
      Reset();
      return st;
    }
    seen_.erase(id);
    if (gone) {
      SNAPFS_LOG_WARN("reaped session " + std::to_string(id) + " (" + sv->what + " on " +
                      sv->host + ", pid " + std::to_string(sv->pid) + "): no heartbeat for " +
                      std::to_string(sv->timeout_ms) + " ms");
      reaped.push_back(id);
    }
  }
  return reaped;
}

Result<OpenPackSet> ReadOpenPacks(kv::Engine& engine) {
  OpenPackSet set;
  RETURN_IF_ERROR(kv::RunTxn(engine, [&](kv::Txn& t) -> Status {
    set.open.clear();
    std::string v;
    Status s = t.Get(Cf::kDefault, keys::kNextPack, &v);
    set.next = 1;
    if (s.ok()) {
      ASSIGN_OR_RETURN(set.next, DecodeLE64(v));
    } else if (!s.Is(Code::kNotFound)) {
      return s;
    }
    std::vector<kv::KeyValue> packs;
    RETURN_IF_ERROR(ScanPrefix(t, keys::kOpenPackPrefix, &packs));
    for (const auto& kv : packs) {
      ASSIGN_OR_RETURN(uint64_t id, keys::DecodeSuffixId(kv.key, keys::kOpenPackPrefix));
      set.open.insert(id);
    }
    return Status::OK();
  }));
  return set;
}

Status AcquireGcLease(kv::Engine& engine, uint64_t session) {
  return kv::RunTxn(engine, [&](kv::Txn& t) -> Status {
    std::string v;
    Status s = t.Get(Cf::kDefault, keys::kGcLease, &v);
    if (s.ok()) {
      ASSIGN_OR_RETURN(uint64_t holder, DecodeBE64(v));
      std::string sv;
      Status hs = t.Get(Cf::kDefault, keys::Session(holder), &sv);
      if (hs.ok() && holder != session) {
        auto who = SessionValue::Decode(sv);
        return Status::Busy("GC is running in session " + std::to_string(holder) +
                            (who.ok() ? " (" + who->what + " on " + who->host + ")" : ""));
      }
      if (!hs.ok() && !hs.Is(Code::kNotFound)) return hs;
    } else if (!s.Is(Code::kNotFound)) {
      return s;
    }
    t.Put(Cf::kDefault, keys::kGcLease, EncodeBE64(session));
    return Status::OK();
  });
}

Status ReleaseGcLease(kv::Engine& engine, uint64_t session) {
  return kv::RunTxn(engine, [&](kv::Txn& t) -> Status {
    std::string v;
    Status s = t.Get(Cf::kDefault, keys::kGcLease, &v);
    if (s.Is(Code::kNotFound)) return Status::OK();
    RETURN_IF_ERROR(s);
    ASSIGN_OR_RETURN(uint64_t holder, DecodeBE64(v));
    if (holder == session) t.Delete(Cf::kDefault, keys::kGcLease);
    return Status::OK();
  });
}

Status FenceGcLease(kv::Txn& t, uint64_t session) {
  std::string v;
  Status s = t.Get(Cf::kDefault, keys::kGcLease, &v);
  if (s.ok()) {
    ASSIGN_OR_RETURN(uint64_t holder, DecodeBE64(v));
    if (holder == session) return Status::OK();
  } else if (!s.Is(Code::kNotFound)) {
    return s;
  }
  return Status::IOError("GC's session " + std::to_string(session) +
                         " was reaped (no heartbeat in time) and lost the GC lease: its "
                         "copies are not committed; run gc again");
}

}  // namespace snapfs
