// Simulated power cuts for the engine, in the style of leveldb's fault_injection_test and
// RocksDB's FaultInjectionTestFS:
//
//   CutClock      counts mutating I/O calls (RocksDB file writes, syncs, renames, deletes,
//                 folder syncs; pack creates, appends, syncs, seals, removes) and "cuts the
//                 power" at a chosen one. From that call on, what the disk will hold at the
//                 next boot is frozen: the process runs on (every call succeeds, so RocksDB
//                 never meets an error path it would not take in a real crash), but no sync
//                 makes anything durable any more and a pack Remove changes nothing. The
//                 test trusts no acknowledgement returned after the cut.
//   PowerCutFs    a rocksdb::FileSystemWrapper (pass NewEnv() to RocksEngine::Open) that
//                 remembers, per file, how many bytes were fsync'd/fdatasync'd, and per
//                 folder, which names it held at its last fsync. ApplyCut() (with the
//                 database closed) then rewrites the folder to what a disk would hold after
//                 the cut: every file cut back to its synced length, files created or renamed
//                 into place since the folder's last fsync gone, names unlinked or renamed
//                 away since then back with their synced bytes.
//   PowerCutGate  a BackendWrapper that ticks the clock on every mutating pack call; put a
//                 FaultInjectionBackend (backends/fault_backend.h) under it, whose
//                 DropUnsynced() cuts each pack back to its synced length. A pack Remove is
//                 not durable either (the local backend does not sync the folder after the
//                 unlink): RemovedPacks brings each pack removed since the last cut back,
//                 or not, a coin each.
//
// Deliberate simplifications: RocksDB's info LOG and LOCK files are not tracked; links,
// FileSystem::Truncate and random-write files are refused (RocksDB does not use them for
// our database); only the folders RocksDB fsyncs are modelled (its own, made before).
//
// Thread-safety: CutClock and PowerCutFs are safe to call from any thread (RocksDB's
// background threads use the file system); ApplyCut only with the database closed.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backends/backend_wrapper.h"

namespace snapfs::test {

class CutClock {
 public:
  // Cuts the power at the `n`-th mutating call from now (n >= 1).
  void ArmAfter(uint64_t n) {
    std::lock_guard l(mu_);
    target_ = ticks_ + n;
  }
  // Called before each mutating call: true while the power is on, false from the cut on
  // (the call then goes ahead but must make nothing durable).
  bool Tick() {
    std::lock_guard l(mu_);
    if (cut_) return false;
    ++ticks_;
    if (target_ != 0 && ticks_ >= target_) {
      cut_ = true;
      return false;
    }
    return true;
  }
  void CutNow() {
    std::lock_guard l(mu_);
    cut_ = true;
  }
  bool cut() const {
    std::lock_guard l(mu_);
    return cut_;
  }
  uint64_t ticks() const {
    std::lock_guard l(mu_);
    return ticks_;
  }
  // Power back on (after the cut was applied), disarmed.
  void Restore() {
    std::lock_guard l(mu_);
    cut_ = false;
    target_ = 0;
  }

 private:
  mutable std::mutex mu_;
  uint64_t ticks_ = 0;   // GUARDED_BY(mu_)
  uint64_t target_ = 0;  // GUARDED_BY(mu_); 0: not armed
  bool cut_ = false;     // GUARDED_BY(mu_)
};

class PowerCutFs final : public rocksdb::FileSystemWrapper {
 public:
  struct CutStats {
    uint64_t bytes_dropped = 0;   // unsynced file bytes cut off
    uint64_t files_dropped = 0;   // names created since their folder's last sync, removed
    uint64_t names_restored = 0;  // names unlinked or renamed away since then, back
  };

  // `graveyard`: a folder outside every tracked one, where unlinked files that a cut could
  // bring back wait.
  PowerCutFs(std::shared_ptr<CutClock> clock, std::string graveyard)
      : FileSystemWrapper(rocksdb::FileSystem::Default()),
        clock_(std::move(clock)),
        graveyard_(std::move(graveyard)) {
    std::filesystem::create_directories(graveyard_);
  }

  const char* Name() const override { return "PowerCutFs"; }

  // While set, every append to a file fails with an I/O error (a failing disk).
  void FailWrites(bool fail) { fail_writes_.store(fail); }

  // An Env over this file system; it must outlive the database, and this object it.
  std::unique_ptr<rocksdb::Env> NewEnv() {
    return rocksdb::NewCompositeEnv(std::shared_ptr<rocksdb::FileSystem>(
        std::shared_ptr<rocksdb::FileSystem>{}, this));  // aliasing: not owned
  }

  // Starts tracking the files in `dir` (not recursive): what is there now is durable.
  void Track(const std::string& dir) {
    std::lock_guard l(mu_);
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::string p = Norm(e.path().string());
      if (!Tracked(p)) continue;
      uint64_t id = next_id_++;
      current_[p] = id;
      durable_[p] = id;
      synced_[id] = kAll;
    }
  }

  // Rewrites the tracked folders to their state after the cut (see the file comment).
  // Call with the database closed and the clock cut; Restore the clock afterwards.
  CutStats ApplyCut() {
    std::lock_guard l(mu_);
    CutStats st;
    namespace fs = std::filesystem;
    // Everything present goes to the graveyard under its id, then the durable names come
    // back from it, each cut to its synced length.
    for (const auto& [p, id] : current_) {
      if (!in_graveyard_.count(id)) {
        fs::rename(p, Grave(id));
        in_graveyard_.insert(id);
      }
    }
    for (const auto& [p, id] : durable_) {
      bool was_current = current_.count(p) && current_.at(p) == id;
      if (!was_current) st.names_restored++;
      fs::rename(Grave(id), p);
      in_graveyard_.erase(id);
      uint64_t size = fs::file_size(p);
      uint64_t keep = synced_.at(id) == kAll ? size : std::min(size, synced_.at(id));
      if (keep < size) {
        fs::resize_file(p, keep);
        st.bytes_dropped += size - keep;
      }
      synced_[id] = kAll;
    }
    for (uint64_t id : in_graveyard_) {
      bool live = false;
      for (const auto& [p, cid] : current_) live |= cid == id;
      if (live) st.files_dropped++;
      fs::remove(Grave(id));
    }
    in_graveyard_.clear();
    current_ = durable_;
    return st;
  }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    std::string p = Norm(fname);
    if (!Tracked(p)) return target()->NewWritableFile(fname, opts, result, dbg);
    clock_->Tick();
    std::lock_guard l(mu_);
    Evict(p);
    std::unique_ptr<rocksdb::FSWritableFile> inner;
    rocksdb::IOStatus s = target()->NewWritableFile(fname, opts, &inner, dbg);
    if (!s.ok()) return s;
    uint64_t id = next_id_++;
    current_[p] = id;
    synced_[id] = 0;
    *result = std::make_unique<File>(this, id, 0, std::move(inner));
    return s;
  }

  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    std::string p = Norm(fname);
    if (!Tracked(p)) return target()->ReopenWritableFile(fname, opts, result, dbg);
    clock_->Tick();
    std::lock_guard l(mu_);
    std::unique_ptr<rocksdb::FSWritableFile> inner;
    rocksdb::IOStatus s = target()->ReopenWritableFile(fname, opts, &inner, dbg);
    if (!s.ok()) return s;
    uint64_t id;
    if (auto it = current_.find(p); it != current_.end()) {
      id = it->second;
    } else {
      id = next_id_++;
      current_[p] = id;
      synced_[id] = 0;
    }
    uint64_t size = inner->GetFileSize(rocksdb::IOOptions(), dbg);
    *result = std::make_unique<File>(this, id, size, std::move(inner));
    return s;
  }

  rocksdb::IOStatus ReuseWritableFile(const std::string&, const std::string&,
                                      const rocksdb::FileOptions&,
                                      std::unique_ptr<rocksdb::FSWritableFile>*,
                                      rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerCutFs: ReuseWritableFile");
  }
  rocksdb::IOStatus NewRandomRWFile(const std::string&, const rocksdb::FileOptions&,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>*,
                                    rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerCutFs: NewRandomRWFile");
  }
  rocksdb::IOStatus LinkFile(const std::string&, const std::string&, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerCutFs: LinkFile");
  }
  rocksdb::IOStatus Truncate(const std::string&, size_t, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerCutFs: Truncate");
  }

  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& io_opts,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSDirectory> inner;
    rocksdb::IOStatus s = target()->NewDirectory(name, io_opts, &inner, dbg);
    if (!s.ok()) return s;
    *result = std::make_unique<Dir>(this, Norm(name), std::move(inner));
    return s;
  }

  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    std::string s = Norm(src), d = Norm(dst);
    if (!Tracked(s) || !Tracked(d)) return target()->RenameFile(src, dst, options, dbg);
    clock_->Tick();
    std::lock_guard l(mu_);
    auto it = current_.find(s);
    if (it == current_.end()) return target()->RenameFile(src, dst, options, dbg);
    Evict(d);
    rocksdb::IOStatus st = target()->RenameFile(src, dst, options, dbg);
    if (!st.ok()) return st;
    uint64_t id = it->second;
    current_.erase(it);
    current_[d] = id;
    return st;
  }

  rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    std::string p = Norm(fname);
    if (!Tracked(p)) return target()->DeleteFile(fname, options, dbg);
    clock_->Tick();
    std::lock_guard l(mu_);
    if (!current_.count(p)) return target()->DeleteFile(fname, options, dbg);
    Evict(p);
    return rocksdb::IOStatus::OK();
  }

 private:
  static constexpr uint64_t kAll = std::numeric_limits<uint64_t>::max();

  // A writable file: counts its bytes, and tells the file system what a sync made durable.
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(PowerCutFs* fs, uint64_t id, uint64_t size, std::unique_ptr<rocksdb::FSWritableFile> t)
        : FSWritableFileOwnerWrapper(std::move(t)), fs_(fs), id_(id), size_(size) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      fs_->clock_->Tick();
      if (fs_->fail_writes_.load()) return rocksdb::IOStatus::IOError("injected: write failed");
      rocksdb::IOStatus s = target()->Append(data, o, dbg);
      if (s.ok()) size_ += data.size();
      return s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo&,
                             rocksdb::IODebugContext* dbg) override {
      return Append(data, o, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                       rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::NotSupported("PowerCutFs: PositionedAppend");
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                       const rocksdb::DataVerificationInfo&,
                                       rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::NotSupported("PowerCutFs: PositionedAppend");
    }
    rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
      fs_->clock_->Tick();
      rocksdb::IOStatus s = target()->Truncate(size, o, dbg);
      if (s.ok()) {
        size_ = size;
        fs_->TruncatedTo(id_, size);
      }
      return s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      const bool power = fs_->clock_->Tick();
      const uint64_t covered = size_;  // appended before the sync began
      rocksdb::IOStatus s = target()->Sync(o, dbg);
      if (s.ok() && power) fs_->Synced(id_, covered);
      return s;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      const bool power = fs_->clock_->Tick();
      const uint64_t covered = size_;  // appended before the sync began
      rocksdb::IOStatus s = target()->Fsync(o, dbg);
      if (s.ok() && power) fs_->Synced(id_, covered);
      return s;
    }
    // sync_file_range: starts write-back, promises nothing; not a sync here.
    rocksdb::IOStatus RangeSync(uint64_t, uint64_t, const rocksdb::IOOptions&,
                                rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::OK();
    }
    // SyncWAL needs it (DB::SyncWAL and synced writes sync the log beside appends); the
    // size is atomic for that.
    bool IsSyncThreadSafe() const override { return target()->IsSyncThreadSafe(); }

   private:
    PowerCutFs* const fs_;
    const uint64_t id_;
    std::atomic<uint64_t> size_;
  };

  class Dir final : public rocksdb::FSDirectoryWrapper {
   public:
    Dir(PowerCutFs* fs, std::string path, std::unique_ptr<rocksdb::FSDirectory> t)
        : FSDirectoryWrapper(std::move(t)), fs_(fs), path_(std::move(path)) {}
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      const bool power = fs_->clock_->Tick();
      rocksdb::IOStatus s = FSDirectoryWrapper::Fsync(o, dbg);
      if (s.ok() && power) fs_->DirSynced(path_);
      return s;
    }
    rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                                          const rocksdb::DirFsyncOptions&) override {
      return Fsync(o, dbg);
    }

   private:
    PowerCutFs* const fs_;
    const std::string path_;
  };

  static std::string Norm(const std::string& p) {
    std::string n = std::filesystem::path(p).lexically_normal().string();
    while (n.size() > 1 && n.back() == '/') n.pop_back();
    return n;
  }
  static std::string Parent(const std::string& p) {
    return std::filesystem::path(p).parent_path().string();
  }
  // The info log and the lock file are not part of what RocksDB recovers from.
  static bool Tracked(const std::string& p) {
    std::string base = std::filesystem::path(p).filename().string();
    return !base.starts_with("LOG") && base != "LOCK";
  }
  std::string Grave(uint64_t id) const { return graveyard_ + "/" + std::to_string(id); }

  // The name `p` goes away (unlink, or replaced by a create or rename): if a cut could
  // bring its file back, keep the file in the graveyard; else delete it. Requires mu_.
  void Evict(const std::string& p) {
    auto it = current_.find(p);
    if (it == current_.end()) return;
    uint64_t id = it->second;
    current_.erase(it);
    bool durable = false;
    for (const auto& [dp, did] : durable_) durable |= did == id;
    if (durable) {
      std::filesystem::rename(p, Grave(id));
      in_graveyard_.insert(id);
    } else {
      std::filesystem::remove(p);
    }
  }
  void Synced(uint64_t id, uint64_t size) {
    std::lock_guard l(mu_);
    if (synced_[id] != kAll) synced_[id] = std::max(synced_[id], size);
  }
  void TruncatedTo(uint64_t id, uint64_t size) {
    std::lock_guard l(mu_);
    if (synced_[id] != kAll && synced_[id] > size) synced_[id] = size;
  }
  void DirSynced(const std::string& dir) {
    std::lock_guard l(mu_);
    for (auto it = durable_.begin(); it != durable_.end();) {
      it = Parent(it->first) == dir ? durable_.erase(it) : std::next(it);
    }
    for (const auto& [p, id] : current_) {
      if (Parent(p) == dir) durable_[p] = id;
    }
  }

  const std::shared_ptr<CutClock> clock_;
  const std::string graveyard_;
  std::atomic<bool> fail_writes_{false};
  std::mutex mu_;
  uint64_t next_id_ = 1;                     // GUARDED_BY(mu_)
  std::map<std::string, uint64_t> current_;  // GUARDED_BY(mu_); path -> file id, now
  std::map<std::string, uint64_t> durable_;  // GUARDED_BY(mu_); the same after a cut
  std::map<uint64_t, uint64_t> synced_;      // GUARDED_BY(mu_); file id -> synced length
  std::set<uint64_t> in_graveyard_;          // GUARDED_BY(mu_); ids whose file is there
};

// Packs removed since the last cut, with their bytes: a cut may bring them back (the local
// backend unlinks a pack without syncing its folder, so the unlink is not durable).
struct RemovedPacks {
  std::mutex mu;
  std::map<PackId, std::vector<uint8_t>> packs;  // GUARDED_BY(mu)

  // At a cut: each pack removed since the last one comes back, or not (a coin each), in
  // `backend`. Returns how many came back.
  Result<uint64_t> Resurrect(Backend& backend, std::mt19937_64& rng) {
    std::lock_guard l(mu);
    uint64_t back = 0;
    for (auto& [id, bytes] : packs) {
      if (rng() % 2) continue;
      ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> w, backend.Create(id));
      RETURN_IF_ERROR(w->Append(bytes).status());
      RETURN_IF_ERROR(w->Seal());
      back++;
    }
    packs.clear();
    return back;
  }
};

// Ticks the clock on every mutating pack call; from the cut on, Sync and Seal make nothing
// durable and Remove removes nothing (all return OK). Before the cut, a Remove keeps the
// pack's bytes in `removed`, for the cut to bring back.
class PowerCutGate final : public BackendWrapper {
 public:
  PowerCutGate(std::shared_ptr<Backend> target, std::shared_ptr<CutClock> clock,
               std::shared_ptr<RemovedPacks> removed = nullptr)
      : BackendWrapper(std::move(target)), clock_(std::move(clock)), removed_(std::move(removed)) {}

  Result<std::unique_ptr<PackWriter>> Create(PackId id) override {
    clock_->Tick();
    ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> w, BackendWrapper::Create(id));
    return std::unique_ptr<PackWriter>(std::make_unique<Writer>(std::move(w), clock_));
  }
  Status Remove(PackId id) override {
    if (!clock_->Tick()) return Status::OK();
    std::vector<uint8_t> bytes;
    if (removed_) {
      ASSIGN_OR_RETURN(std::vector<PackInfo> packs, BackendWrapper::List());
      for (const PackInfo& p : packs) {
        if (p.id != id) continue;
        bytes.resize(p.size);
        RETURN_IF_ERROR(BackendWrapper::Read(id, 0, p.size, bytes.data()));
      }
    }
    RETURN_IF_ERROR(BackendWrapper::Remove(id));
    if (removed_) {
      std::lock_guard l(removed_->mu);
      removed_->packs[id] = std::move(bytes);
    }
    return Status::OK();
  }

 private:
  class Writer final : public PackWriterWrapper {
   public:
    Writer(std::unique_ptr<PackWriter> t, std::shared_ptr<CutClock> clock)
        : PackWriterWrapper(std::move(t)), clock_(std::move(clock)) {}
    Result<uint64_t> Append(std::span<const uint8_t> data) override {
      clock_->Tick();
      return PackWriterWrapper::Append(data);
    }
    Status Sync() override {
      if (!clock_->Tick()) return Status::OK();
      return PackWriterWrapper::Sync();
    }
    Status Seal() override {
      if (!clock_->Tick()) return Status::OK();
      return PackWriterWrapper::Seal();
    }

   private:
    const std::shared_ptr<CutClock> clock_;
  };

  const std::shared_ptr<CutClock> clock_;
  const std::shared_ptr<RemovedPacks> removed_;
};

}  // namespace snapfs::test
