// Filesystem::Txn: one namespace change as one WriteBatch, with the inodes it touches
// kept in memory so that several steps of the change (a rename, then the end of the
// snapshot whose marker it replaced, then the hidden entries that end frees) see each
// other's edits. Private to core/filesystem*.cc and core/snapshot_*.cc; ns_mu_ held.
#pragma once

#include <map>
#include <set>
#include <string>

#include "core/filesystem.h"
#include "core/meta_store.h"

namespace snapfs {

class Filesystem::Txn {
 public:
  explicit Txn(Filesystem* fs) : fs_(fs) {}

  rocksdb::WriteBatch b;

  // The inode as this transaction sees it; written back at Commit. NotFound if purged.
  Result<Inode*> Get(uint64_t ino) {
    if (purged_.count(ino)) return Status::NotFound("inode " + std::to_string(ino) + " purged");
    auto it = nodes_.find(ino);
    if (it != nodes_.end()) return &it->second;
    ASSIGN_OR_RETURN(auto n, fs_->LoadInode(ino));
    return &nodes_.emplace(ino, std::move(n)).first->second;
  }
  // Takes the caller's copy as the current state of the inode.
  void Put(const Inode& n) {
    nodes_[n.ino] = n;
    purged_.erase(n.ino);
  }
  void Purged(uint64_t ino) {
    nodes_.erase(ino);
    purged_.insert(ino);
  }
  bool IsPurged(uint64_t ino) const { return purged_.count(ino) > 0; }

  // What the batch changed that scans of the database cannot see yet.
  std::set<std::string> gone_dentries;            // dentry keys deleted
  std::set<std::pair<uint64_t, uint64_t>> gone_pins;   // (ino, snapshot folder)
  std::set<std::pair<uint64_t, uint64_t>> new_pins;    // (ino, snapshot folder)
  std::set<std::string> gone_hidden;              // hidden keys deleted
  std::set<uint64_t> collapse;                    // folders that may now hold nothing
  std::set<uint64_t> ended;                       // snapshots ended
  // Snapshots being committed: their pins are resolved (and in new_pins) before any old
  // snapshot lets go of its own; FinishSnapshots writes them.
  struct Prepared {
    uint64_t marker = 0;
    uint64_t content_hash = 0;
    std::string marker_name;
    std::map<uint64_t, std::pair<std::string, std::string>> pins;  // ino -> (view, path)
  };
  std::map<uint64_t, Prepared> prepared;
  bool snapshots_changed = false;
  // A snapshot is committed by this transaction: the commit must be durable when it
  // returns (Flink records the checkpoint as complete in its HA store once the rename of
  // _metadata returns, and restores from it after a power cut).
  bool commits_snapshot = false;
  std::vector<std::pair<uint64_t, std::string>> touched;  // entries removed or hidden

  // One iterator per key space for the whole transaction: creating a RocksDB iterator
  // costs more than a seek, and a removal of 10,000 files seeks ~6 times per file. They
  // see the database as of their creation, which is what the transaction builds on (the
  // sets above cover its own changes).
  rocksdb::Iterator* It(Cf c) {
    auto& slot = its_[static_cast<int>(c)];
    if (!slot) slot = fs_->meta_.NewIterator(c);
    return slot.get();
  }

  Status Commit(bool sync = false) {
    for (auto& [ino, n] : nodes_) fs_->PutInode(&b, n);
    if (commits_snapshot) {
      // Pack bytes first (the marker's and any file it pins that nobody fsync'd), then
      // the log with this batch and everything before it. Usually the writers' fsyncs
      // have synced the pack already and this costs one log sync.
      RETURN_IF_ERROR(fs_->chunks_.SyncAll().WithContext("make the snapshot durable"));
      sync = true;
    }
    Status s = fs_->meta_.Write(&b, sync);
    if (s.ok() && snapshots_changed) fs_->snapshot_gen_++;
    return s;
  }

 private:
  Filesystem* fs_;
  std::map<uint64_t, Inode> nodes_;
  std::set<uint64_t> purged_;
  std::unique_ptr<rocksdb::Iterator> its_[static_cast<int>(Cf::kCount)];
};

}  // namespace snapfs
