#include "core/chunks/chunk_store.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "base/coding.h"
#include "base/metrics.h"
#include "core/chunks/pack_format.h"

namespace snapfs {


ChunkStore::ChunkStore(Backend* backend, MetaStore* meta, const StoreConfig& config,
                       size_t cache_bytes)
    : backend_(backend),
      meta_(meta),
      seed_(config.hash_seed),
      verify_dedup_(config.verify_dedup),
      inline_max_(std::min(kInlineMax, config.chunker.min_size)),
      cache_capacity_(cache_bytes) {}

ChunkStore::~ChunkStore() {
  MutexLock l(&mu_);
  (void)SealActiveLocked();
}

Status ChunkStore::SealActiveLocked() {
  if (!active_) return Status::OK();
  Status s;
  {
    MutexLock sl(&sync_mu_);  // never while a Sync of this writer runs
    s = active_->Seal();
    active_id_.store(0);
  }
  if (!s.ok()) failed_packs_[active_->id()] = s.WithContext("pack " + std::to_string(active_->id()));
  active_.reset();
  return s;
}

Status ChunkStore::Open(bool list_packs) {
  uint64_t next = 1;
  std::string v;
  Status s = meta_->Get(Cf::kDefault, keys::kNextPack, &v);
  const bool counted = s.ok() && v.size() == 8;
  if (counted) next = GetLE64(v.data());
  else if (!s.ok() && !s.Is(Code::kNotFound)) return s;
  if (list_packs || !counted) {
    ASSIGN_OR_RETURN(auto packs, backend_->List());
    if (!packs.empty()) next = std::max(next, packs.back().id + 1);
  }
  MutexLock l(&mu_);
  next_pack_ = next;
  session_.store(sharing_.session);
  return Status::OK();
}

Status ChunkStore::RotateLocked() {
  RETURN_IF_ERROR(SealActiveLocked());
  // The id comes from a counter in the metadata, taken in a transaction: it is never
  // reused (even after GC removed the pack with the highest id and the store reopened),
  // and two processes writing one store never take the same id.
  PackId id = 0;
  const uint64_t floor = next_pack_;  // past every pack the backend listed at Open
  const uint64_t owner = session_.load();
  RETURN_IF_ERROR(kv::RunTxn(meta_->engine(), [&](kv::Txn& t) -> Status {
    std::string v;
    Status s = t.Get(Cf::kDefault, keys::kNextPack, &v);
    uint64_t next = floor;
    if (s.ok() && v.size() == 8) {
      next = std::max(next, GetLE64(v.data()));
    } else if (!s.Is(Code::kNotFound)) {
      return s;
    }
    id = next;
    std::string nv;
    PutLE64(&nv, next + 1);
    t.Put(Cf::kDefault, keys::kNextPack, nv);
    if (shared()) {
      // Recorded with the id, in the same transaction: GC never sees the id without
      // the record (sessions.h, ReadOpenPacks). Fenced: a reaped session makes no pack.
      RETURN_IF_ERROR(FenceSession(t, owner));
      t.Put(Cf::kDefault, keys::OpenPack(id), EncodeBE64(owner));
    }
    return Status::OK();
  }).WithContext("allocate a pack id"));
  next_pack_ = id + 1;
  if (shared()) open_records_.emplace(id, owner);
  auto created = backend_->Create(id);
  if (!created.ok()) {
    // What a write() may answer: ENOSPC, EROFS, else EIO (a spool folder that went
    // missing is no ENOENT to the writer).
    const Status& c = created.status();
    if (c.Is(Code::kNoSpace) || c.Is(Code::kReadOnly)) return c;
    return Status::IOError(c.message());
  }
  auto w = std::move(created).value();
  std::string h = pack::Header();
  auto r = w->Append(std::span(reinterpret_cast<const uint8_t*>(h.data()), h.size()));
  if (!r.ok()) {
    (void)w->Seal();
    return r.status();
  }
  active_ = std::move(w);
  active_id_.store(id);
  return Status::OK();
}

Result<ChunkLocation> ChunkStore::AppendLocked(const ChunkId& id,
                                               std::span<const uint8_t> data) {
  if (!active_ || active_->size() >= kPackTargetSize) RETURN_IF_ERROR(RotateLocked());
  scratch_.clear();  // the record header; the chunk's bytes are written from where they are
  pack::AppendRecordHeader(&scratch_, id, static_cast<uint32_t>(data.size()));
  const std::span<const uint8_t> parts[2] = {
      std::span(reinterpret_cast<const uint8_t*>(scratch_.data()), scratch_.size()), data};
  auto r = active_->AppendParts(parts);
  if (!r.ok()) {
    // The tail of this pack is now undefined: never append to it again. What earlier
    // appends put in it is durable only if the seal works (else their txns fail).
    (void)SealActiveLocked();
    return r.status().WithContext("append chunk to pack");
  }
  ChunkLocation loc;
  loc.pack = active_->id();
  loc.offset = *r + pack::kRecordHeaderSize;
  loc.length = static_cast<uint32_t>(data.size());
  return loc;
}

ChunkTxn::~ChunkTxn() {
  if (store && !held.empty()) store->Release(this);
}

Result<ChunkId> ChunkStore::Put(std::span<const uint8_t> data, ChunkTxn* txn) {
  ASSIGN_OR_RETURN(auto ids, PutMany({data}, txn));
  return ids[0];
}

Result<std::vector<ChunkId>> ChunkStore::PutMany(
    const std::vector<std::span<const uint8_t>>& datas, ChunkTxn* txn) {
  txn->store = this;
  std::vector<ChunkId> ids;
  std::vector<std::string> keys;
  ids.reserve(datas.size());
  keys.reserve(datas.size());
  for (const auto& d : datas) {
    ids.push_back(Hash(d.data(), d.size()));
    keys.push_back(keys::Chunk(ids.back()));
  }
  // Every index entry in one read of the writer's transaction (one round trip for a
  // remote engine), before mu_: other writers are not held up by it. This read is what
  // makes a concurrent GC deletion of an entry conflict with the writer.
  std::vector<std::optional<std::string>> found;
  RETURN_IF_ERROR(txn->kv->MultiGet(Cf::kChunks, keys, &found));
  std::vector<bool> check(datas.size(), false);
  // Under mu_ a run of chunks at a time: each run that appended kWritebackBytes starts
  // their device writes before the next run (a flush puts a whole region, up to tens of
  // MiB, in one call; its Sync would otherwise start every write at once).
  for (size_t i = 0; i < datas.size();) {
    bool appended = false;
    {
      MutexLock l(&mu_);
      const uint64_t new_bytes = stats_.bytes_new;  // grows with every chunk stored anew
      for (; i < datas.size() && stats_.bytes_new - new_bytes < kWritebackBytes; i++) {
        bool c = false;
        RETURN_IF_ERROR(PutLocked(ids[i], keys[i], datas[i], found[i].has_value(), txn, &c));
        check[i] = c;
      }
      appended = stats_.bytes_new != new_bytes;
    }
    if (appended) StartWriteback();
  }
  for (size_t i = 0; i < datas.size(); i++) {
    if (check[i]) RETURN_IF_ERROR(VerifyStored(ids[i], datas[i]));
  }
  return ids;
}

Status ChunkStore::PutLocked(const ChunkId& id, const std::string& key,
                             std::span<const uint8_t> data, bool indexed, ChunkTxn* txn,
                             bool* check_bytes) {
  stats_.puts++;
  stats_.bytes_put += data.size();
  auto it = inflight_.find(id);
  // A location in a failed pack (its seal failed, or our session was reaped) is no place
  // to point a new txn: the chunk is stored again below.
  if (it != inflight_.end() && it->second.has_location &&
      (it->second.loc.is_inline() || failed_packs_.count(it->second.loc.pack) == 0)) {
    it->second.holds++;
    txn->held.push_back(id);
    stats_.dedup_hits++;
    // Another uncommitted txn appended it (or this one, earlier in the batch); index it
    // in ours too (same value), so the entry exists whichever txn commits.
    txn->kv->Put(Cf::kChunks, key, it->second.loc.Encode());
    if (!it->second.loc.is_inline()) {
      txn->wrote_pack = true;
      txn->packs.push_back(it->second.loc.pack);
    }
    *check_bytes = verify_dedup_;
    return Status::OK();
  }
  if (indexed) {  // committed before our snapshot
    inflight_[id].holds++;
    txn->held.push_back(id);
    stats_.dedup_hits++;
    *check_bytes = verify_dedup_;
    return Status::OK();
  }
  ChunkLocation loc;
  if (space_guard_) {  // new bytes: a full disk must not reach the metadata log
    RETURN_IF_ERROR(data.size() <= inline_max_ ? space_guard_->ForMetadata()
                                               : space_guard_->ForData(data.size()));
  }
  if (data.size() <= inline_max_) {
    loc.length = static_cast<uint32_t>(data.size());
    loc.inline_data.assign(reinterpret_cast<const char*>(data.data()), data.size());
  } else {
    ASSIGN_OR_RETURN(loc, AppendLocked(id, data));
    txn->wrote_pack = true;
    if (txn->packs.empty() || txn->packs.back() != loc.pack) txn->packs.push_back(loc.pack);
  }
  // Unchecked costs nothing here: the MultiGet above already made the key checked.
  txn->kv->PutUnchecked(Cf::kChunks, key, loc.Encode());
  Inflight& f = inflight_[id];
  f.holds++;
  f.has_location = true;
  f.loc = std::move(loc);
  txn->held.push_back(id);
  stats_.bytes_new += data.size();
  return Status::OK();
}

Status ChunkStore::VerifyStored(const ChunkId& id, std::span<const uint8_t> data) {
  // Trust model: without the seed, colliding chunks cannot be crafted; with verify_dedup
  // even a writer who knows the seed cannot alias someone else's bytes.
  std::string stored;
  std::string v;
  Status s;
  {
    MutexLock l(&mu_);
    auto it = inflight_.find(id);
    if (it != inflight_.end() && it->second.has_location) {
      s = ReadAt(it->second.loc, &stored);
    } else {
      s = meta_->Get(Cf::kChunks, keys::Chunk(id), &v);
    }
  }
  if (s.ok() && !v.empty()) {
    ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(v));
    s = ReadAt(loc, &stored);
  }
  RETURN_IF_ERROR(s);
  if (stored.size() != data.size() || std::memcmp(stored.data(), data.data(), data.size())) {
    return Status::IOError("hash collision on chunk " + id.Hex() +
                           ": refusing to alias different bytes (verify_dedup)");
  }
  return Status::OK();
}

void ChunkStore::Release(ChunkTxn* txn) {
  MutexLock l(&mu_);
  for (const auto& id : txn->held) {
    auto it = inflight_.find(id);
    if (it != inflight_.end() && --it->second.holds <= 0) inflight_.erase(it);
  }
  txn->held.clear();
}

namespace {
Status Reaped(uint64_t session) {
  return Status::IOError("session " + std::to_string(session) +
                         " of this process was reaped (no heartbeat in time): data written "
                         "into its packs cannot be committed; write it again");
}
}  // namespace

Status ChunkStore::FenceSession(kv::Txn& t, uint64_t session) {
  std::string v;
  Status s = t.Get(Cf::kDefault, keys::Session(session), &v);
  return s.Is(Code::kNotFound) ? Reaped(session) : s;
}

Status ChunkStore::FencePacks(kv::Txn& t, const std::vector<PackId>& packs) const {
  if (!shared() || packs.empty()) return Status::OK();
  std::vector<uint64_t> owners;
  {
    MutexLock l(&mu_);
    for (PackId p : packs) {
      // Our records go (ReleaseClosedPacks) only once no uncommitted txn points into the
      // pack; a renewal gives them all up and fails the packs.
      auto r = open_records_.find(p);
      if (r == open_records_.end()) {
        RETURN_IF_ERROR(FailedPackLocked({p}));
        return Status::IOError("pack " + std::to_string(p) + " has no open record");
      }
      owners.push_back(r->second);
    }
  }
  std::sort(owners.begin(), owners.end());
  owners.erase(std::unique(owners.begin(), owners.end()), owners.end());
  std::vector<std::string> keys;
  for (uint64_t o : owners) keys.push_back(keys::Session(o));
  std::vector<std::optional<std::string>> found;
  RETURN_IF_ERROR(t.MultiGet(Cf::kDefault, keys, &found));
  for (size_t i = 0; i < owners.size(); i++) {
    if (!found[i]) return Reaped(owners[i]);
  }
  return Status::OK();
}

void ChunkStore::RenewSession(uint64_t session, const Status& why) {
  MutexLock l(&mu_);
  // The reap deleted the records of these packs: GC may take them at any time now.
  for (const auto& [p, owner] : open_records_) failed_packs_.try_emplace(p, why);
  open_records_.clear();
  if (active_) {
    // Sealed as at a rotation (commits before the reap may point into it); never
    // appended to again.
    const PackId id = active_->id();
    (void)SealActiveLocked();
    failed_packs_.try_emplace(id, why);
  }
  session_.store(session);
}

Status ChunkStore::FailedPackLocked(const std::vector<PackId>& packs) const {
  for (PackId p : packs) {
    auto f = failed_packs_.find(p);
    if (f != failed_packs_.end()) return f->second;
  }
  return Status::OK();
}

Status ChunkStore::ReleaseClosedPacks() {
  std::map<PackId, uint64_t> done;
  // Runs on the heartbeat thread: it must never wait behind a writer that holds mu_ (a
  // seal uploading a pack to S3 can take seconds; the session's heartbeat would miss its
  // timeout). A busy store is asked again at the next heartbeat; until then GC only keeps
  // away from those packs a little longer.
  if (!mu_.TryLock()) return Status::OK();
  for (auto it = open_records_.begin(); it != open_records_.end();) {
    const PackId p = it->first;
    if ((active_ && active_->id() == p) || PackHasInflightLocked(p)) {
      ++it;
      continue;
    }
    done.insert(*it);
    it = open_records_.erase(it);
  }
  mu_.Unlock();
  if (done.empty()) return Status::OK();
  Status st = kv::RunTxn(meta_->engine(), [&](kv::Txn& t) -> Status {
    for (const auto& [p, owner] : done) t.Delete(Cf::kDefault, keys::OpenPack(p));
    return Status::OK();
  });
  if (!st.ok()) {
    MutexLock l(&mu_);
    // Not if a renewal gave them up meanwhile: their records went with the reap.
    for (const auto& [p, owner] : done) {
      if (owner == session_.load()) open_records_.insert({p, owner});
    }
  }
  return st;
}

Status ChunkStore::Sync(const ChunkTxn& txn) {
  // The commit that follows points into these packs: it must not outlive their session.
  RETURN_IF_ERROR(FencePacks(*txn.kv, txn.packs));
  {
    MutexLock l(&mu_);
    RETURN_IF_ERROR(FailedPackLocked(txn.packs));
  }
  RETURN_IF_ERROR(SyncAll());
  // A pack of ours sealed meanwhile (rotation, or GC sealing the active pack) leaves
  // SyncAll nothing to sync; its seal's outcome is what counts.
  MutexLock l(&mu_);
  return FailedPackLocked(txn.packs);
}

void ChunkStore::StartWriteback() {
  if (sharing_.seal_on_sync) return;  // such packs are uploaded whole at their seal
  std::shared_ptr<PackWriter> w;
  uint64_t end = 0;
  {
    MutexLock l(&mu_);
    if (!active_) return;
    w = active_;
    end = w->size();
  }
  MutexLock s(&sync_mu_);
  // As in SyncAll: under sync_mu_ the writer is open if it is still the active one.
  if (active_id_.load() != w->id()) return;
  if (writeback_pack_ != w->id()) {
    writeback_pack_ = w->id();
    writeback_to_ = 0;
  }
  // Bytes a sync has made durable need no writes started.
  uint64_t from = std::max(writeback_to_, synced_pack_ == w->id() ? synced_size_ : 0);
  if (end <= from || end - from < kWritebackBytes) return;
  w->StartWriteback(from, end);
  writeback_to_ = end;
}

Status ChunkStore::SyncAll() {
  if (sharing_.seal_on_sync) {
    // Other hosts read what the next commit points at from the bucket: seal (= upload)
    // the active pack; chunks in packs sealed earlier were uploaded by their seal.
    MutexLock l(&mu_);
    if (!active_) return Status::OK();
    PackId id = active_->id();
    (void)SealActiveLocked();
    auto f = failed_packs_.find(id);
    if (f != failed_packs_.end()) return f->second;
    return Status::OK();
  }
  std::shared_ptr<PackWriter> w;
  uint64_t end = 0;
  {
    MutexLock l(&mu_);
    if (!active_) return Status::OK();  // rotated packs were sealed (synced)
    w = active_;
    end = w->size();
  }
  bool rotated;
  {
    MutexLock s(&sync_mu_);
    // A rotation seals under sync_mu_ and clears active_id_ there, so either the writer
    // is still open while we sync it, or its seal has synced it already.
    rotated = active_id_.load() != w->id();
    if (!rotated && !(synced_pack_ == w->id() && synced_size_ >= end)) {
      RETURN_IF_ERROR(w->Sync().WithContext("sync pack"));
      synced_pack_ = w->id();
      synced_size_ = end;
    }
  }
  if (rotated) {
    MutexLock l(&mu_);
    auto f = failed_packs_.find(w->id());
    if (f != failed_packs_.end()) return f->second;
  }
  return Status::OK();
}

Result<bool> ChunkStore::FreezeForGc(PackId pack, bool* sealed) {
  *sealed = false;
  MutexLock l(&mu_);
  if (PackHasInflightLocked(pack)) return false;
  if (active_ && active_->id() == pack) {
    // No uncommitted txn needs it (the committed ones synced their chunks before they
    // committed), so a failed seal costs no writer anything; GC stops all the same.
    RETURN_IF_ERROR(SealActiveLocked());
    *sealed = true;
  }
  return true;
}

bool ChunkStore::PackHasInflightLocked(PackId pack) const {
  for (const auto& [id, f] : inflight_) {
    if (f.has_location && !f.loc.is_inline() && f.loc.pack == pack) return true;
  }
  return false;
}

Status ChunkStore::ReadAt(const ChunkLocation& loc, std::string* out) {
  if (loc.is_inline()) {
    *out = loc.inline_data;
    return Status::OK();
  }
  out->resize(loc.length);
  return backend_->Read(loc.pack, loc.offset, loc.length, reinterpret_cast<uint8_t*>(out->data()));
}

Result<std::shared_ptr<const std::string>> ChunkStore::Get(const ChunkId& id) {
  if (auto hit = CacheLookup(id)) return hit;
  Status last;
  // A GC may move the chunk and remove its old pack between our index lookup and our
  // read; a second lookup then finds the new location.
  for (int attempt = 0; attempt < 2; attempt++) {
    std::string v;
    RETURN_IF_ERROR(meta_->Get(Cf::kChunks, keys::Chunk(id), &v)
                        .WithContext("chunk " + id.Short() + " not in index"));
    ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(v));
    auto data = std::make_shared<std::string>();
    // Chunks of a file written in one go lie one after another in their pack: a miss is
    // likely followed by reads of the next ones.
    // Hinted once per MiB of pack crossed, not per chunk: each hint costs a page-cache walk.
    constexpr uint64_t kStep = 1 << 20;
    uint64_t end = loc.offset + loc.length;
    if (!loc.is_inline() && loc.offset / kStep != end / kStep) {
      backend_->Prefetch(loc.pack, end / kStep * kStep + kStep, kPrefetchBytes);
    }
    last = ReadAt(loc, data.get());
    if (last.Is(Code::kNotFound)) continue;
    RETURN_IF_ERROR(last.WithContext("read chunk " + id.Short()));
    if (Hash(data->data(), data->size()) != id) {
      metrics::HashMismatches().Inc();
      return Status::Corruption("chunk " + id.Hex() + " in pack " + std::to_string(loc.pack) +
                                " at offset " + std::to_string(loc.offset) +
                                ": bytes do not match their hash");
    }
    CacheInsert(id, data);
    return std::shared_ptr<const std::string>(std::move(data));
  }
  // The index points into a pack that is gone: that is corruption, not a missing file.
  return Status::Corruption("read chunk " + id.Short() + ": " + last.ToString());
}

Result<ChunkLocation> ChunkStore::Relocate(const ChunkId& id, std::span<const uint8_t> data) {
  MutexLock l(&mu_);
  return AppendLocked(id, data);
}

PackId ChunkStore::active_pack() const {
  MutexLock l(&mu_);
  return active_ ? active_->id() : 0;
}

ChunkStoreStats ChunkStore::stats() const {
  ChunkStoreStats s;
  {
    MutexLock l(&mu_);
    s = stats_;
  }
  MutexLock c(&cache_mu_);
  s.cache_hits = cache_hits_;
  s.cache_misses = cache_misses_;
  return s;
}

std::shared_ptr<const std::string> ChunkStore::CacheLookup(const ChunkId& id) {
  MutexLock l(&cache_mu_);
  auto it = cache_.find(id);
  if (it == cache_.end()) {
    cache_misses_++;
    return nullptr;
  }
  cache_hits_++;
  lru_.splice(lru_.begin(), lru_, it->second.pos);
  return it->second.data;
}

void ChunkStore::CacheInsert(const ChunkId& id, std::shared_ptr<const std::string> data) {
  if (data->size() > cache_capacity_) return;
  MutexLock l(&cache_mu_);
  if (cache_.count(id)) return;
  lru_.push_front(id);
  cache_used_ += data->size();
  cache_[id] = CacheEntry{std::move(data), lru_.begin()};
  while (cache_used_ > cache_capacity_ && !lru_.empty()) {
    auto victim = cache_.find(lru_.back());
    cache_used_ -= victim->second.data->size();
    cache_.erase(victim);
    lru_.pop_back();
  }
}

void ChunkStore::DropFromCache(const ChunkId& id) {
  MutexLock l(&cache_mu_);
  auto it = cache_.find(id);
  if (it == cache_.end()) return;
  cache_used_ -= it->second.data->size();
  lru_.erase(it->second.pos);
  cache_.erase(it);
}

}  // namespace snapfs
